"""Preference pairs from the model's own blueprints (DPO): the true clip's blueprint over the model's wrong-way one.

Teacher-forced, the default model already prefers a true clip under its caption to the same clip under the reversed
caption by several nats (`eval_contrast_margin`, vidgpt.train.motion_pairs), yet the clips it samples move the asked
way barely more often than chance, and reranking its own samples by its own likelihoods does not find the right ones
(model/README.md): what it does on real clips is not what it does on its own. So these pairs are made on-policy:

1. `build_preferences`: for fresh train-split scenes of straight moves (rendered as `vidgpt data build-lm` renders
   them), the model samples `samples` blueprints for the scene's caption (blueprint only, guidance as `vidgpt generate`
   samples it); each is decoded at half size and the project's judge checks its object's motion against the scene.
   Every sample whose motion is wrong becomes a pair: the true clip's blueprint (encoded by the model's tokenizer) is
   `better`, the sample `worse`, both under the same caption. With `winners="own"` (`--winners own`) the better side
   is instead one of the model's own samples of the same prompt that the judge passed on motion (both sides right on
   colour): both on-policy, so a pair differs mainly in where the object went. The reference margin (the sampling
   model's own NLL(worse) - NLL(better) over the blueprint's latent frames >= 1, fp32) is stored with the pair.
   `vidgpt lm build-prefs --model model --out DIR ...` writes them as shards (Parquet).
2. `loss.preference_weight` > 0 (the trainer): each micro-step adds weight x the mean over `loss.preference_pairs`
   pairs of -log sigmoid(beta * (m - m_ref)), m = NLL(worse) - NLL(better) under the weights being trained: DPO,
   its reference the model that sampled the pairs (start the piece from that model). Logged: `pref_margin`
   (m - m_ref of the step's pairs) and, on held-out pairs, `eval_pref_margin` and `eval_pref_wins` (share with
   m > m_ref).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.world.scene import DIRECTIONS
from ..errors import ConfigError, DataError
from ..layout import blueprint_shape
from .lm_data import LMDataConfig, RecordSource, RecordTable, SourceConfig, _source_seed
from .motion_pairs import BlueprintPairFormatter, Pair, PairStream

PREF_STREAM = 901  # source index of the preference stream in _source_seed


class PreferenceFormatter(BlueprintPairFormatter):
    """A preference record -> Pair (better = the true blueprint, worse = the sample; ref margin), or None."""

    def __call__(self, rec: dict, rng: np.random.Generator | None = None, where: str = "record") -> Pair | None:
        if rec.get("win_blueprint") is None or rec.get("lose_blueprint") is None:
            return None
        shape = tuple(int(x) for x in rec["shape"])
        docs = [self.document(rec["caption"], shape, rec[k], where) for k in ("win_blueprint", "lose_blueprint")]
        return Pair(docs[0], docs[1], rec["caption"], str(rec.get("observed") or "no motion"),
                    float(rec.get("ref_margin") or 0.0))


class PreferencePairs(PairStream):
    """Preference pairs of one split from shards of `build_preferences`."""

    def __init__(self, data: LMDataConfig, paths: list[str], vocab, text_tokenizer, seed: int, split: str = "train",
                 holdout_every: int | None = None):
        if not paths:
            raise ConfigError("loss.preference_weight > 0 needs loss.preference_paths (shards of `vidgpt lm build-prefs`)")
        src = SourceConfig(kind="shards", paths=list(paths))
        hold = data.holdout_every if holdout_every is None else holdout_every
        self.source = RecordSource(src, PreferenceFormatter(vocab, text_tokenizer, data),
                                   _source_seed(seed, PREF_STREAM, split, 0), split, hold, 0, 1, RecordTable(src))


# --- building the pairs -------------------------------------------------------------------------------------------

STRAIGHT = tuple(DIRECTIONS)


WINNERS = ("truth", "own")


@dataclass
class PreferenceBuild:
    num: int = 100  # scenes (prompts) drawn; those with any non-straight motion are skipped
    samples: int = 2  # blueprints sampled per prompt
    frames: int = 9
    size: int = 128
    fps: float = 8.0
    duration: float | None = None  # as build-lm's --duration
    seed: int = 0
    cfg: float = 3.0  # guidance scale of the sampling (vidgpt generate's)
    temperature: float = 1.0
    batch: int = 8  # blueprints sampled per call
    # what a pair's `better` side is: "truth", the true clip's blueprint (every wrong-way sample is a pair);
    # "own", one of the model's own samples for the same prompt that the judge passed on motion (both sides
    # on-policy, so a pair differs mainly in where the object went; both sides' colour passed too)
    winners: str = "truth"
    per_prompt: int = 4  # "own": at most this many pairs a prompt (each wrong sample once, the right ones in turn)


def _scenes(b: PreferenceBuild, world) -> list[tuple]:
    """(index, scene, caption) of the prompts: train-split scenes whose every object moves in a straight line."""
    from ..data.synthetic import STYLES, caption, sample_scene

    out = []
    for i in range(b.num):
        rng = np.random.default_rng([b.seed, 4241, i])
        scene = sample_scene(rng, world, "train")
        if all(o.motion in STRAIGHT for o in scene.objects):
            out.append((i, scene, caption(scene, rng, STYLES[i % len(STYLES)])))
    return out


@dataclass
class _Sample:
    prompt: int  # index of the prompt's scene
    codes: list[int]  # the sampled blueprint, flat
    motion_ok: bool
    colour_ok: bool
    observed: str


def _own_pairs(samples: list[_Sample], per_prompt: int) -> list[tuple[_Sample, _Sample]]:
    """(right, wrong) pairs of one prompt's samples: every sample with the right colour whose motion failed, up to
    per_prompt of them, each against a right-motion, right-colour sample of the same prompt taken in turn."""
    right = [x for x in samples if x.motion_ok and x.colour_ok]
    wrong = [x for x in samples if not x.motion_ok and x.colour_ok]
    return [(right[j % len(right)], w) for j, w in enumerate(wrong[:per_prompt])] if right else []


def build_preferences(model_dir, out, b: PreferenceBuild, world, progress: bool = False, log=print) -> dict:
    """Sample, judge and write preference pairs (see the module docstring); returns the counts."""
    from ..data.judge import judge_clip
    from ..data.lm_dataset import encode_batch
    from ..data.synthetic import render_scene
    from ..data.world.scene import clip_world
    from ..backbone import load_vidgpt_lm
    from ..evaluate import EvalConfig, generate_batch
    from ..generate.pipeline import VidGPT
    from ..generate.sampling import make_generator
    from .lm_loss import LossHead, LossSettings
    from .motion_pairs import pair_batch, pair_margins

    if b.samples < 1 or b.num < 1:
        raise ConfigError(f"build-prefs: --num {b.num} and --samples {b.samples} must be >= 1")
    if b.winners not in WINNERS:
        raise ConfigError(f"build-prefs: --winners must be one of {', '.join(WINNERS)}, not {b.winners!r}")
    if b.winners == "own" and (b.samples < 2 or b.per_prompt < 1):
        raise ConfigError("build-prefs: --winners own pairs samples of one prompt: --samples >= 2, --per-prompt >= 1")
    world = clip_world(world, b.frames, b.fps, b.duration)
    pipe = VidGPT.from_pretrained(model_dir, decode_options={"cfg_fine": False})
    if not pipe.blueprint:
        raise ConfigError(f"{model_dir}: the model draws no blueprint; preference pairs are on blueprints")
    ecfg = EvalConfig(frames=b.frames, size=b.size, cfg=b.cfg, temperature=b.temperature)
    gen = make_generator(b.seed, pipe.device)
    chat = bool((pipe.meta.get("layout") or {}).get("chat", True))
    fmt = PreferenceFormatter(pipe.vocab, pipe.text_tokenizer, LMDataConfig(chat=chat, loss_on=["visual"]))
    head = LossHead(pipe.vocab, LossSettings(head="constrained"))
    ref_model = load_vidgpt_lm(model_dir).model  # fp32, LoRA merged: the reference NLLs (the pipeline may run bf16)
    items = _scenes(b, world)
    scenes = {i: (scene, cap) for i, scene, cap in items}
    counts = {"prompts": len(items), "samples": 0, "wrong": 0, "right": 0}
    todo = [(i, scene, cap) for i, scene, cap in items for _ in range(b.samples)]
    from tqdm.auto import tqdm

    from ..utils import progress_wanted

    bar = tqdm(total=len(todo), desc="build-prefs", unit="blueprint", disable=not progress_wanted(progress))
    shape = pipe.latent_shape(b.frames, b.size, b.size)
    sampled: dict[int, list[_Sample]] = {i: [] for i, _, _ in items}
    for s in range(0, len(todo), b.batch):
        part = todo[s : s + b.batch]
        blocks, _, preview = generate_batch(pipe, [c for _, _, c in part], ecfg, gen, [""] * len(part),
                                           blueprint_only=True)
        for (i, scene, _), blk, frames in zip(part, blocks, preview):
            v = judge_clip(frames, scene, fps=b.fps).objects[0]
            sampled[i].append(_Sample(i, blk.blueprint.reshape(-1).tolist(), bool(v.motion.passed),
                                      bool(v.color.passed), str(v.motion.observed)))
            counts["samples"] += 1
            counts["right" if v.motion.passed else "wrong"] += 1
        bar.update(len(part))
    bar.close()

    if b.winners == "truth":  # the true clips' blueprints, rendered and encoded once for each prompt that has a pair
        need = [(i, sc, c) for i, sc, c in items if not all(x.motion_ok for x in sampled[i])]
        truth = {}
        for s in range(0, len(need), b.batch):
            part = need[s : s + b.batch]
            coded = encode_batch(pipe.video_tokenizer, [render_scene(sc, b.frames, b.size, b.size, b.fps)
                                                        for _, sc, _ in part], True, len(part))
            truth.update({i: bp.reshape(-1).tolist() for (i, _, _), (_, bp) in zip(part, coded)})
        pairs = [(truth[i], x) for i, xs in sampled.items() for x in xs if not x.motion_ok]
    else:
        pairs = [(w.codes, x) for xs in sampled.values() for w, x in _own_pairs(xs, b.per_prompt)]
    records = []
    for n, (win, lose) in enumerate(pairs):
        scene, cap = scenes[lose.prompt]
        records.append({"caption": cap, "shape": list(shape), "blueprint_shape": list(blueprint_shape(shape)),
                        "win_blueprint": win, "lose_blueprint": lose.codes, "asked": scene.objects[0].motion,
                        "observed": lose.observed, "source": f"prefs:{b.seed}/{lose.prompt}/{n}",
                        "scene": scene.to_dict()})
    for s in range(0, len(records), b.batch):  # the reference margins, a batch of pairs a forward
        part = records[s : s + b.batch]
        with torch.no_grad():
            m = pair_margins(head, ref_model, pair_batch([fmt(r, None) for r in part], pipe.pad_id))
        for rec, x in zip(part, m.tolist()):
            rec["ref_margin"] = float(x)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_parquet(records, out / "part-00000-00000.parquet")
    counts["pairs"] = len(records)
    counts["prompts_paired"] = len({lose.prompt for _, lose in pairs})
    (out / "report.json").write_text(json.dumps({"build": b.__dict__, "model": str(model_dir), "counts": counts}, indent=1))
    log(f"build-prefs: {counts['prompts']} prompts, {counts['samples']} sampled blueprints, {counts['right']} moved the "
        f"asked way, {counts['pairs']} pairs ({b.winners} winners, {counts['prompts_paired']} prompts) -> {out}")
    return counts


def _write_parquet(records: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not records:
        raise DataError("build-prefs: no pair (no wrong-way sample, no prompt with both a right and a wrong one, or no "
                        "straight move among the prompts); raise --num or --samples")
    rows = [dict(r, scene=json.dumps(r["scene"])) for r in records]
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    tmp.replace(path)
