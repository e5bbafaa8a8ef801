"""Measure a trained vidgpt model (`vidgpt eval model --model DIR`).

    report = evaluate_model("runs/lm/default/model", EvalConfig(n=50), out="runs/eval")

Five measurements, all judged by the rule-based judge (vidgpt.data.judge) against the scene that
was asked for, on scenes no training run draws (eval seeds; prompts from held-out compositions):

1. adherence: held-out scenes, prompt = one of their captions (styles in turn), generate, judge.
   Share of objects whose colour / shape / motion / all three pass, and of clips that pass whole.
2. preview: the blueprint section of the same samples decoded at half size, judged at that size.
   free-form: the first `freeform` of those scenes again, prompted in words a person might type
   (vidgpt.data.world.freeform: other word orders, synonyms, a background named or not; never the
   training templates), judged the same way, with the template prompts' shares on the same scenes.
3. editing: edit pairs (colour, motion, add, remove by default); the source clip + instruction go
   to the model (edit layout), the result is judged against the target scene. `edited` = the
   changed thing matches the target (the object's new colour / motion; the added object is there;
   the removed one is gone), `rest` = every other object passes and nothing unexpected shows;
   `pass` = both.
4. continuation: a clip's continuation judged against the same scene, and the PSNR between the
   last source frame and the first continued frame (a seam measure; higher = smoother).
5. language: perplexity of a held-out English text (vidgpt/data/heldout_text.txt, never trained
   on) under the base backbone and under the trained model, and their greedy answers to a few
   fixed prompts.

The scenes come from the world config `world_config` + `world_set` (KEY=VALUE overrides, as for `vidgpt data
build-lm --set`; e.g. max_objects=1 for a model trained on one-object scenes), recorded in the report.

Outputs (OUT/): report.md (the tables, also printed), report.json, samples.png (a contact sheet of
generated clips with their prompts and verdicts).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ConfigError, GenerationError, ModelError, VidgptError
from .utils import progress_wanted

EDIT_EVAL_KINDS = ["color", "motion", "add", "remove"]
TEXT_PROMPTS = [
    "What is the capital of France?",
    "Write one sentence about the ocean.",
    "List three colours.",
    "What is 12 plus 7?",
]
ATTRS = ("color", "shape", "motion")


@dataclass
class EvalConfig:
    n: int = 50  # held-out prompts (adherence + preview)
    freeform: int = -1  # free-form prompts of the first held-out scenes (-1: n // 2; at most n)
    edits: int = -1  # edit pairs (-1: n // 2)
    continuations: int = -1  # continuations (-1: n // 5, at least 1)
    frames: int = 17
    size: int = 128  # height = width
    fps: float = 8.0
    cfg: float = 3.0  # classifier-free guidance scale
    late_cfg: float | None = None  # the scale from the blueprint's second latent frame on (None = cfg)
    # the guidance's negative prompt for text-to-video: "default" = what `vidgpt generate` uses on this model
    # (VidGPT.default_negative: the prompt with its motion reversed on a model with contrast_motion, else empty); "empty"
    negative: str = "default"
    temperature: float = 1.0
    top_k: int | None = None
    seed: int = 0
    batch_size: int = 8  # samples per decode call
    edit_kinds: list[str] = field(default_factory=lambda: list(EDIT_EVAL_KINDS))
    edit_split: str = "train"  # train: edits that make training-like compositions; heldout: edits that make held-out ones
    language: bool = True
    text_prompts: list[str] = field(default_factory=lambda: list(TEXT_PROMPTS))
    max_new_tokens: int = 48
    sheet_clips: int = 8  # clips on the contact sheet
    # the world the held-out prompts, edit pairs and continuations come from: a world config YAML (empty: the
    # built-in one) and KEY=VALUE overrides, exactly as `vidgpt data build-lm --config/--set` (e.g. max_objects=1
    # for a model trained on one-object scenes)
    world_config: str = ""
    world_set: list[str] = field(default_factory=list)

    def world(self):
        """The WorldConfig these settings name, its objects moving over the clip's own length as `vidgpt data
        build-lm` lays them out (unless `duration=` is set): edit sources and continuations move as training clips."""
        from .data.synthetic import load_world_config

        return load_world_config(self.world_config or None, list(self.world_set), frames=self.frames, fps=self.fps)

    def resolved(self) -> "EvalConfig":
        c = EvalConfig(**asdict(self))
        if c.edits < 0:
            c.edits = c.n // 2
        if c.continuations < 0:
            c.continuations = max(1, c.n // 5)
        if c.freeform < 0:
            c.freeform = c.n // 2
        c.freeform = min(c.freeform, c.n)  # the same scenes as template prompts: a paired comparison
        if c.n < 0 or c.batch_size < 1:
            raise GenerationError(f"eval: --n must be >= 0 and --batch-size >= 1 (got {c.n}, {c.batch_size})")
        if c.edit_split not in ("train", "heldout"):
            raise GenerationError(f"eval: edit split must be train or heldout, got {c.edit_split!r}")
        from .data.world.edit_pairs import EDIT_KINDS

        bad = [k for k in c.edit_kinds if k not in EDIT_KINDS]
        if bad or not c.edit_kinds or len(set(c.edit_kinds)) != len(c.edit_kinds):
            raise GenerationError(f"eval: edit kinds {','.join(c.edit_kinds) or '(none)'}: name each once, from "
                                  f"{', '.join(EDIT_KINDS)}")
        return c


def model_scope(model_dir) -> list[str]:
    """The world overrides a model was trained on (vidgpt.json `scope.world_set`, written by tools/ship_model.py);
    [] when it names none (the whole world)."""
    try:
        meta = json.loads((Path(model_dir) / "vidgpt.json").read_text())
    except (OSError, ValueError):
        return []
    return [str(x) for x in ((meta.get("scope") or {}).get("world_set") or [])]


# --- small helpers ------------------------------------------------------------------------------


def _mean(xs) -> float | None:
    xs = [float(x) for x in xs]
    return float(np.mean(xs)) if xs else None


def _rng(seed: int, section: int, i: int) -> np.random.Generator:
    """Eval streams: disjoint from the training data's (vidgpt.data.lm_dataset.unit_rng uses 7919)."""
    return np.random.default_rng([int(seed), 424242, section, int(i)])


def _batches(items: Sequence, size: int):
    for s in range(0, len(items), size):
        yield items[s : s + size]


def attribute_shares(results) -> dict:
    """Shares over objects (colour, shape, motion, all three) and over clips (pass) of JudgeResults."""
    objs = [v for r in results for v in r.objects]
    out = {a: _mean(getattr(v, a).passed for v in objs) for a in ATTRS}
    out["object"] = _mean(v.passed for v in objs)
    out["clip"] = _mean(r.passed for r in results)
    out["objects"] = len(objs)
    out["clips"] = len(results)
    return out


def heldout_text() -> str:
    """The held-out English text shipped with vidgpt (never in any training source)."""
    p = Path(__file__).resolve().parent / "data" / "heldout_text.txt"
    if not p.is_file():
        raise ModelError(f"{p}: the held-out text is missing from this installation")
    return p.read_text(encoding="utf-8")


# --- generation in batches ----------------------------------------------------------------------


def _sampling(cfg: EvalConfig):
    from .generate.sampling import SamplingConfig

    return SamplingConfig(temperature=cfg.temperature, top_k=cfg.top_k, cfg=cfg.cfg, late_cfg=cfg.late_cfg)


def generate_batch(pipe, prompts: list[str], cfg: EvalConfig, gen, negatives: list[str] | None = None,
                   blueprint_only: bool = False):
    """Text prompts -> (blocks, full frames uint8 [N,T,H,W,3], preview frames [N,T,H/2,W/2,3] or None).
    negatives: one negative prompt (or a list of them, guided away from together: sampling.negative_groups) per
    prompt for the guidance (default: cfg.negative: "default" = the pipeline's
    default_negative of each prompt, what `vidgpt generate` does; "empty" = the empty prompt). blueprint_only: sample
    the blueprint section alone and decode only the previews (full frames None)."""
    from .generate.sampling import negative_groups
    from .layout import Sample, Turn

    sampling = _sampling(cfg)
    shape = pipe.latent_shape(cfg.frames, cfg.size, cfg.size)
    ids = [pipe.layout.prompt_ids(Sample([Turn("user", [p])])) for p in prompts]
    if negatives is None:
        if cfg.negative not in ("default", "empty"):
            raise ConfigError(f"eval: negative={cfg.negative!r}; expected default or empty")
        negatives = [pipe.default_negative(p) if cfg.negative == "default" else "" for p in prompts]
    uncond = None
    if sampling.use_cfg:
        uncond = [pipe.layout.prompt_ids(Sample([Turn("user", [n])])) for group in negative_groups(negatives)
                  for n in group]
    from .data.motion_words import named_direction

    blocks, _ = pipe.sample_blocks(ids, uncond, shape, pipe.sections(blueprint_only), sampling, gen,
                                   directions=[named_direction(p) for p in prompts])  # as `generate` (best_of)
    full = None if blueprint_only else pipe.to_frames(pipe.decode_blocks(blocks))
    preview = None
    if all(b.blueprint is not None for b in blocks):
        import torch

        tok = pipe.video_tokenizer
        with torch.inference_mode():
            half = tok.decode(torch.stack([b.blueprint for b in blocks]).to(tok.device)).float().cpu()
        preview = pipe.to_frames(half)
    return blocks, full, preview


def edit_batch(pipe, clips: list[np.ndarray], instructions: list[str], task: str, cfg: EvalConfig, gen):
    """Batched `VidGPT.edit`: per clip (pasted-back result uint8 [T',H',W',3], raw decoded target)."""
    from .generate.editing import edit_sample, paste_back, plan_edit
    from .layout import Sample, Turn

    sampling = _sampling(cfg)
    mult = 16 if pipe.blueprint else 8
    plans = [plan_edit(c, task, ins, mult=mult) for c, ins in zip(clips, instructions)]
    shape = pipe.latent_shape(*plans[0].target_size)
    prompts, uncond = [], []
    for plan in plans:
        source, sample = edit_sample(pipe, plan)
        prompts.append(pipe.layout.prompt_ids(sample))
        uncond.append(pipe.layout.prompt_ids(Sample([Turn("user", [source, ""])])))
    blocks, _ = pipe.sample_blocks(prompts, uncond if sampling.use_cfg else None, shape, pipe.sections(), sampling, gen)
    raw = pipe.to_frames(pipe.decode_blocks(blocks))
    return [(paste_back(p, r), r) for p, r in zip(plans, raw)]


# --- 1 + 2: adherence on held-out compositions ----------------------------------------------------


def heldout_items(cfg: EvalConfig, world, n: int | None = None, recaption=None, split: str = "heldout") -> list[tuple]:
    """(scene, style, prompt) of the first n (default cfg.n) held-out prompts: caption styles in turn.
    recaption(scene) -> another scene or None: the prompt captions that scene instead, with the same draws (None
    gives the prompt ""). split="train": compositions of the training split instead (e.g. to learn from the model's
    own samples without touching the held-out ones)."""
    from .data.synthetic import STYLES, caption, sample_scene

    items = []
    for i in range(cfg.n if n is None else n):
        rng = _rng(cfg.seed, 1, i)
        scene = sample_scene(rng, world, split)
        style = STYLES[i % len(STYLES)]
        told = scene if recaption is None else recaption(scene)
        items.append((scene, style, caption(told, rng, style) if told is not None else ""))
    return items


OPPOSITE_MOTION = {"left": "right", "right": "left", "up": "down", "down": "up", "up-left": "down-right",
                   "down-right": "up-left", "up-right": "down-left", "down-left": "up-right", "grow": "shrink", "shrink": "grow"}


def opposite_motion_prompts(cfg: EvalConfig, world, n: int | None = None) -> list[str]:
    """For each of heldout_items' prompts, the same scene captioned in the same style with every object's motion
    reversed (left <-> right, grow <-> shrink, ...; bounce, rotate and stay have no opposite and give the empty
    prompt): a negative prompt that differs from the prompt in the motion only."""
    import dataclasses

    def reversed_scene(scene):
        if not all(o.motion in OPPOSITE_MOTION for o in scene.objects):
            return None
        return dataclasses.replace(scene, objects=[dataclasses.replace(o, motion=OPPOSITE_MOTION[o.motion]) for o in scene.objects])

    return [prompt for _, _, prompt in heldout_items(cfg, world, n, recaption=reversed_scene)]


# the eight directions in clockwise order on the screen: a quarter turn is two steps
_COMPASS = ("right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right")


def turned_motion(motion: str, quarter_turns: int) -> str | None:
    """A direction turned by quarter_turns x 90 degrees clockwise ("right", 1 -> "down"); grow / shrink turned by an
    odd number of quarter turns have no counterpart (None), by two they swap; other motions give None."""
    if motion in _COMPASS:
        return _COMPASS[(_COMPASS.index(motion) + 2 * quarter_turns) % len(_COMPASS)]
    if motion in ("grow", "shrink") and quarter_turns % 2 == 0:
        return OPPOSITE_MOTION[motion] if quarter_turns % 4 else motion
    return None


def other_motion_prompts(cfg: EvalConfig, world, n: int | None = None) -> list[list[str]]:
    """For each of heldout_items' prompts, the same scene captioned in the same style with every object's direction
    turned by 90, 180 and 270 degrees: three negative prompts that differ from the prompt in the direction only, so
    guidance away from their mean pushes from every other way at once, where the reversed caption
    (opposite_motion_prompts) pushes from one. Growth / shrinking gives its one opposite; bounce, rotate and stay
    the empty prompt."""
    import dataclasses

    def turned_scene(q):
        def recaption(scene):
            motions = [turned_motion(o.motion, q) for o in scene.objects]
            if any(m is None for m in motions):
                return None
            return dataclasses.replace(scene, objects=[dataclasses.replace(o, motion=m)
                                                       for o, m in zip(scene.objects, motions)])
        return recaption

    turns = [[p for _, _, p in heldout_items(cfg, world, n, recaption=turned_scene(q))] for q in (1, 2, 3)]
    out = []
    for quarter, half, three_quarter in zip(*turns):
        negatives = [t for t in (quarter, half, three_quarter) if t]
        out.append(negatives or [""])
    return out


def freeform_items(cfg: EvalConfig, world) -> list[tuple]:
    """(scene, "freeform", prompt) for the first cfg.freeform held-out scenes (the same scenes as the first
    cfg.freeform template prompts), worded by vidgpt.data.world.freeform, never as the training captions."""
    from .data.world.freeform import freeform_prompt

    return [(scene, "freeform", freeform_prompt(scene, _rng(cfg.seed, 4, i)))
            for i, (scene, _, _) in enumerate(heldout_items(cfg, world, cfg.freeform))]


def eval_adherence(pipe, cfg: EvalConfig, world, bar=None, items: list[tuple] | None = None,
                   gen_seed: int | None = None) -> tuple[dict, list[dict]]:
    """Returns (report section, sheet entries [{frames, label}]). items: (scene, style, prompt) to judge
    (default: the cfg.n held-out template prompts)."""
    from .data.judge import judge_clip
    from .generate.sampling import make_generator

    items = heldout_items(cfg, world) if items is None else items
    gen = make_generator(cfg.seed if gen_seed is None else gen_seed, pipe.device)
    full_res, prev_res, samples, sheet = [], [], [], []
    for batch in _batches(items, cfg.batch_size):
        _, full, preview = generate_batch(pipe, [p for _, _, p in batch], cfg, gen)
        for k, (scene, style, prompt) in enumerate(batch):
            r = judge_clip(full[k], scene, fps=cfg.fps)
            full_res.append(r)
            rp = judge_clip(preview[k], scene, fps=cfg.fps) if preview is not None else None
            if rp is not None:
                prev_res.append(rp)
            samples.append({"prompt": prompt, "style": style, "scene": scene.to_dict(), "pass": r.passed,
                            "preview_pass": None if rp is None else rp.passed, "verdict": r.summary(),
                            "objects": [{a: getattr(v, a).passed for a in ATTRS} for v in r.objects]})
            if len(sheet) < cfg.sheet_clips:
                sheet.append({"frames": full[k], "label": f"[{'PASS' if r.passed else 'fail'}] {prompt}"})
        if bar is not None:
            bar.update(len(batch))
    section = {"n": len(items), "full": attribute_shares(full_res),
               "preview": attribute_shares(prev_res) if prev_res else None, "samples": samples}
    return section, sheet


def eval_freeform(pipe, cfg: EvalConfig, world, bar=None, template: dict | None = None) -> dict:
    """Adherence on free-form prompts of the first cfg.freeform held-out scenes, judged as `eval_adherence`;
    `template` (the adherence section) gives the template prompts' shares on the same scenes beside it."""
    section, _ = eval_adherence(pipe, cfg, world, bar, items=freeform_items(cfg, world), gen_seed=cfg.seed + 3)
    section["same_scenes_template"] = None
    if template is not None:
        section["same_scenes_template"] = sample_shares(template["samples"][: cfg.freeform])
    return section


def sample_shares(samples: list[dict]) -> dict:
    """`attribute_shares` of full clips from the per-object verdicts that adherence samples record."""
    objs = [o for s in samples for o in s["objects"]]
    out = {a: _mean(o[a] for o in objs) for a in ATTRS}
    out["object"] = _mean(all(o[a] for a in ATTRS) for o in objs)
    out["clip"] = _mean(s["pass"] for s in samples)
    out["objects"] = len(objs)
    out["clips"] = len(samples)
    return out


# --- 3: editing -----------------------------------------------------------------------------------


def edited_object(source, target, kind: str) -> dict:
    """What changed between two scenes: the index (in target) of the edited object, or the removed colour."""
    if kind in ("color", "shape", "motion"):
        for i, (a, b) in enumerate(zip(source.objects, target.objects)):
            if getattr(a, kind) != getattr(b, kind):
                return {"index": i}
    if kind == "add":
        before = {(o.color, o.shape) for o in source.objects}
        for i, o in enumerate(target.objects):
            if (o.color, o.shape) not in before:
                return {"index": i}
    if kind == "remove":
        after = {o.color for o in target.objects}
        for o in source.objects:
            if o.color not in after:
                return {"removed_color": o.color}
    return {}


def edit_verdict(result, what: dict, kind: str) -> dict:
    """edited / rest / pass for a JudgeResult against the target scene (see the module docstring)."""
    objs = result.objects
    if "removed_color" in what:
        edited = what["removed_color"] not in result.extra_colors
        rest = all(v.passed for v in objs) and not [c for c in result.extra_colors if c != what["removed_color"]]
    else:
        i = what.get("index")
        if i is None:
            return {"edited": False, "rest": False, "pass": False}
        v = objs[i]
        edited = {"color": v.color.passed, "shape": v.shape.passed, "motion": v.motion.passed,
                  "add": v.color.passed and v.shape.passed}.get(kind, v.passed)
        rest = all(o.passed for j, o in enumerate(objs) if j != i) and not result.extra_colors
    return {"edited": bool(edited), "rest": bool(rest), "pass": bool(edited and rest)}


def sample_edit_pairs(cfg: EvalConfig, world) -> list[tuple]:
    """(source scene, target scene, instruction, kind) for cfg.edits pairs, kinds in turn."""
    from .data.synthetic import make_edit_pair, sample_scene
    from .errors import DataError

    pairs = []
    for i in range(cfg.edits):
        kind = cfg.edit_kinds[i % len(cfg.edit_kinds)]
        for attempt in range(50):
            rng = _rng(cfg.seed, 2, i * 1000 + attempt)
            scene = sample_scene(rng, world, "train")
            try:
                pairs.append(make_edit_pair(rng, scene, kind, config=world, split=cfg.edit_split))
                break
            except DataError:
                continue
    return pairs


def missing_edit_kinds(cfg: EvalConfig, pairs: list[tuple]) -> dict[str, int]:
    """Kinds the world admits no pair of (e.g. `add` with max_objects=1): kind -> pairs asked for but not made."""
    asked: dict[str, int] = {}
    for i in range(cfg.edits):
        k = cfg.edit_kinds[i % len(cfg.edit_kinds)]
        asked[k] = asked.get(k, 0) + 1
    for p in pairs:
        asked[p[3]] -= 1
    return {k: v for k, v in asked.items() if v > 0}


def eval_editing(pipe, cfg: EvalConfig, world, bar=None) -> dict:
    from .data.judge import judge_clip
    from .data.synthetic import render_scene
    from .generate.sampling import make_generator

    pairs = sample_edit_pairs(cfg, world)
    gen = make_generator(cfg.seed + 1, pipe.device)
    verdicts, samples = [], []
    for batch in _batches(pairs, cfg.batch_size):
        clips = [render_scene(s, cfg.frames, cfg.size, cfg.size, cfg.fps) for s, _, _, _ in batch]
        outs = edit_batch(pipe, clips, [ins for _, _, ins, _ in batch], "instruct", cfg, gen)
        for (source, target, ins, kind), (video, _) in zip(batch, outs):
            r = judge_clip(video, target, fps=cfg.fps)
            v = {"kind": kind, **edit_verdict(r, edited_object(source, target, kind), kind)}
            verdicts.append(v)
            samples.append({**v, "instruction": ins, "source_scene": source.to_dict(), "target_scene": target.to_dict(),
                            "verdict": r.summary()})
        if bar is not None:
            bar.update(len(batch))

    def shares(vs):
        return {"n": len(vs), **{k: _mean(v[k] for v in vs) for k in ("edited", "rest", "pass")}}

    by_kind = {k: shares([v for v in verdicts if v["kind"] == k]) for k in cfg.edit_kinds}
    return {"n": len(verdicts), "split": cfg.edit_split, "overall": shares(verdicts), "by_kind": by_kind,
            "not_made": missing_edit_kinds(cfg, pairs), "samples": samples}


# --- 4: continuation ------------------------------------------------------------------------------


def eval_continuation(pipe, cfg: EvalConfig, world, bar=None) -> dict:
    from .data.judge import judge_clip
    from .data.lm_dataset import long_world
    from .data.synthetic import render_scene, sample_scene
    from .generate.sampling import make_generator
    from .metrics import psnr

    w = long_world(world, cfg.frames, cfg.fps)
    scenes = [sample_scene(_rng(cfg.seed, 3, i), w, "train") for i in range(cfg.continuations)]
    gen = make_generator(cfg.seed + 2, pipe.device)
    results, seams, samples = [], [], []
    for batch in _batches(scenes, cfg.batch_size):
        clips = [render_scene(s, cfg.frames, cfg.size, cfg.size, cfg.fps) for s in batch]
        outs = edit_batch(pipe, clips, [""] * len(batch), "continue", cfg, gen)
        for scene, clip, (_, cont) in zip(batch, clips, outs):
            r = judge_clip(cont, scene, fps=cfg.fps)
            seam = psnr(clip[-1:], cont[:1])
            results.append(r)
            seams.append(seam)
            samples.append({"scene": scene.to_dict(), "pass": r.passed, "seam_psnr": seam, "verdict": r.summary()})
        if bar is not None:
            bar.update(len(batch))
    finite = [s for s in seams if math.isfinite(s)]
    return {"n": len(results), "judge": attribute_shares(results), "seam_psnr": _mean(finite), "samples": samples}


# --- 5: language ----------------------------------------------------------------------------------


def perplexity(model, tokenizer, text: str, max_len: int = 1024, rows: int | None = None) -> dict:
    """Token-level perplexity of `text` (chunks of max_len tokens; the first token of each is context), the softmax
    over every row. rows: also `text_rows`, the perplexity with the softmax over the first `rows` rows only (e.g.
    what a text turn may sample: the text ids and <|vision_start|>), from the same forward passes."""
    import torch

    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    device = next(model.parameters()).device
    nll, nll_rows, count = 0.0, 0.0, 0
    ce = torch.nn.functional.cross_entropy
    with torch.inference_mode():
        for s in range(0, len(ids) - 1, max_len - 1):
            chunk = torch.tensor([ids[s : s + max_len]], device=device)
            if chunk.shape[1] < 2:
                break
            logits = model(input_ids=chunk, use_cache=False).logits[0, :-1].float()
            nll += float(ce(logits, chunk[0, 1:], reduction="sum"))
            if rows is not None:
                nll_rows += float(ce(logits[:, :rows], chunk[0, 1:], reduction="sum"))
            count += chunk.shape[1] - 1
    mean = nll / max(count, 1)
    out = {"perplexity": math.exp(mean), "nll": mean, "tokens": count}
    if rows is not None:
        out["text_rows"] = math.exp(nll_rows / max(count, 1))
    return out


def base_answers(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy answers of a plain HF causal LM (in its chat template when it has one)."""
    import torch

    device = next(model.parameters()).device
    out = []
    for p in prompts:
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        else:
            text = p + "\n"
        ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]], device=device)
        eos = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        with torch.inference_mode():
            gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=pad, eos_token_id=eos)
        out.append(tokenizer.decode(gen[0, ids.shape[1] :], skip_special_tokens=True).strip())
    return out


def load_base(pipe):
    """(model, tokenizer, name) of the backbone the vidgpt model was extended from."""
    from .backbone import load_backbone

    name = pipe.meta.get("base") or pipe.meta.get("backbone")
    if not name:
        raise ModelError("vidgpt.json names no backbone")
    model, tok = load_backbone(name, tiny=pipe.meta.get("tiny"))
    dtype = next(pipe.model.parameters()).dtype
    return model.to(pipe.device, dtype).eval(), tok, str(name)


def eval_language(pipe, cfg: EvalConfig) -> dict:
    from .layout import Sample, Turn

    text = heldout_text()
    max_len = min(1024, pipe.max_positions)
    # text_rows: what a text turn samples from (the constrained decoder allows the text rows and <|vision_start|>)
    trained = perplexity(pipe.model, pipe.text_tokenizer, text, max_len, rows=pipe.vocab.vision_start_id + 1)
    trained_answers = [pipe.generate_text(Sample([Turn("user", [p])]), max_new_tokens=cfg.max_new_tokens, seed=0,
                                          temperature=0.0) for p in cfg.text_prompts]
    section = {"heldout_chars": len(text), "trained": trained, "base": None, "base_name": None, "base_error": None}
    base_ans = [None] * len(cfg.text_prompts)
    try:
        model, tok, name = load_base(pipe)
        section["base_name"] = name
        section["base"] = perplexity(model, tok, text, max_len)
        base_ans = base_answers(model, tok, cfg.text_prompts, cfg.max_new_tokens)
        del model
    except (VidgptError, OSError, ValueError) as e:  # e.g. the base is a hub id this machine cannot reach
        section["base_error"] = " ".join(str(e).split())[:300]
    section["answers"] = [{"prompt": p, "base": b, "trained": t} for p, b, t in zip(cfg.text_prompts, base_ans, trained_answers)]
    return section


# --- reporting ------------------------------------------------------------------------------------


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x, fmt="{:.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def _cell(text: str | None, limit: int = 120) -> str:
    if text is None:
        return "-"
    t = " ".join(str(text).split()).replace("|", "\\|")
    return t if len(t) <= limit else t[: limit - 1] + "…"


def _negative_words(c: dict) -> str:
    if c.get("negative", "empty") == "empty" or not c.get("contrast_motion"):
        return "empty"
    return "the prompt with its motion reversed"


def world_line(c: dict) -> str:
    """The world the scenes came from, as the report config records it."""
    parts = [f"`{c['world_config']}`" if c.get("world_config") else "built-in world config"]
    parts += [f"`{o}`" for o in c.get("world_set") or []]
    return ", ".join(parts)


def markdown_report(rep: dict) -> str:
    c = rep["config"]
    lines = [f"# vidgpt evaluation: {rep['model']}", "",
             f"{c['frames']}x{c['size']}x{c['size']} clips, cfg {c['cfg']} (negative prompt: {_negative_words(c)}), "
             f"temperature {c['temperature']}, seed {c['seed']}", "",
             f"World: {world_line(c)}", ""]
    a = rep.get("adherence")
    if a:
        lines += [f"## Prompt adherence on held-out compositions (n = {a['n']})", "",
                  "| share passing | full clip | blueprint preview (half size) |", "|---|---|---|"]
        prev = a["preview"] or {}
        for key, name in (("color", "colour"), ("shape", "shape"), ("motion", "motion"), ("object", "all three (per object)"),
                          ("clip", "whole clip")):
            lines.append(f"| {name} | {_pct(a['full'][key])} | {_pct(prev.get(key))} |")
        lines.append("")
    f = rep.get("freeform")
    if f:
        same = f.get("same_scenes_template") or {}
        prev = f["preview"] or {}
        lines += [f"## Free-form prompts on the same held-out scenes (n = {f['n']})", "",
                  "Other word orders, synonyms, a background named or not (vidgpt.data.world.freeform); never the "
                  "caption templates of the training data. Beside them: the template prompts of the same scenes.", "",
                  "| share passing | free-form, full clip | free-form, preview | template prompts, full clip |",
                  "|---|---|---|---|"]
        for key, name in (("color", "colour"), ("shape", "shape"), ("motion", "motion"), ("object", "all three (per object)"),
                          ("clip", "whole clip")):
            lines.append(f"| {name} | {_pct(f['full'][key])} | {_pct(prev.get(key))} | {_pct(same.get(key))} |")
        lines.append("")
    e = rep.get("editing")
    if e:
        lines += [f"## Editing (n = {e['n']}, {e['split']} compositions)", "",
                  "| kind | n | edited thing right | rest kept | pass |", "|---|---|---|---|---|"]
        for k, v in list(e["by_kind"].items()) + [("all", e["overall"])]:
            lines.append(f"| {k} | {v['n']} | {_pct(v['edited'])} | {_pct(v['rest'])} | {_pct(v['pass'])} |")
        lines.append("")
        if e.get("not_made"):
            lines += ["Edits this world admits none of (not measured): "
                      + ", ".join(f"{k} ({v} asked)" for k, v in e["not_made"].items()), ""]
    co = rep.get("continuation")
    if co:
        j = co["judge"]
        lines += [f"## Continuation (n = {co['n']})", "", "| measure | value |", "|---|---|",
                  f"| colour / shape / motion (per object) | {_pct(j['color'])} / {_pct(j['shape'])} / {_pct(j['motion'])} |",
                  f"| whole clip passes | {_pct(j['clip'])} |",
                  f"| seam PSNR, last source frame vs first new frame | {_num(co['seam_psnr'])} dB |", ""]
    lang = rep.get("language")
    if lang:
        b, t = lang["base"], lang["trained"]
        lines += ["## Language kept", "", f"Held-out text: {lang['heldout_chars']} characters (vidgpt/data/heldout_text.txt).", "",
                  "| model | perplexity | tokens |", "|---|---|---|",
                  f"| base ({lang['base_name'] or 'unavailable'}) | {_num(b and b['perplexity'])} | {b['tokens'] if b else '-'} |",
                  f"| trained | {_num(t['perplexity'])} | {t['tokens']} |"]
        if t.get("text_rows") is not None:
            lines.append(f"| trained, over the rows a text turn samples from (text + <\\|vision_start\\|>) | "
                         f"{_num(t['text_rows'])} | {t['tokens']} |")
        if b:
            ratio = t["perplexity"] / b["perplexity"]
            rows = f", {t['text_rows'] / b['perplexity']:.2f}x over the text rows" if t.get("text_rows") else ""
            lines.append(f"| trained / base | {ratio:.2f}x{rows} | |")
        lines.append("")
        if lang.get("base_error"):
            lines += [f"Base model not measured: {lang['base_error']}", ""]
        lines += ["| prompt | base answer | trained answer |", "|---|---|---|"]
        for r in lang["answers"]:
            lines.append(f"| {_cell(r['prompt'])} | {_cell(r['base'])} | {_cell(r['trained'])} |")
        lines.append("")
    if rep.get("timing"):
        lines += ["Seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in rep["timing"].items()), ""]
    if rep.get("files"):
        lines += ["Files: " + ", ".join(f"{k} `{v}`" for k, v in rep["files"].items()), ""]
    return "\n".join(lines)


def save_sheet(path: Path, entries: list[dict], max_frames: int = 9) -> Path | None:
    """PNG: one row per clip (up to max_frames frames, evenly spaced) under its label."""
    from PIL import Image, ImageDraw

    from .utils import atomic_path

    if not entries:
        return None
    h, w = entries[0]["frames"].shape[1:3]
    scale = max(1, 96 // max(h, 1))
    th, tw = h * scale, w * scale
    cols = min(max_frames, max(len(e["frames"]) for e in entries))
    label_h, gap = 14, 4
    width = max(cols * (tw + gap) + gap, 480)
    img = Image.new("RGB", (width, len(entries) * (th + label_h + gap) + gap), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    y = gap
    for e in entries:
        draw.text((gap, y), e["label"][: width // 6], fill=(0, 0, 0))
        y += label_h
        frames = e["frames"]
        pick = np.linspace(0, len(frames) - 1, min(cols, len(frames))).round().astype(int)
        for k, i in enumerate(pick):
            tile = Image.fromarray(frames[i]).resize((tw, th), Image.NEAREST)
            img.paste(tile, (gap + k * (tw + gap), y))
        y += th + gap
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def evaluate_model(model_dir=None, cfg: EvalConfig | None = None, out=None, progress: bool = True, pipe=None,
                   world=None) -> dict:
    """Run every measurement on a vidgpt model directory (or a loaded VidGPT `pipe`); write OUT/report.*."""
    from tqdm.auto import tqdm

    from .utils import atomic_write_text

    cfg = (cfg or EvalConfig()).resolved()
    world = world or cfg.world()
    timing: dict[str, float] = {}
    t0 = time.time()
    if pipe is None:
        from .generate import VidGPT

        pipe = VidGPT.from_pretrained(model_dir)
    timing["load"] = time.time() - t0
    rep: dict = {"format": "vidgpt-eval", "version": 1, "model": str(model_dir) if model_dir else "(in memory)",
                 "config": {**asdict(cfg), "contrast_motion": bool(getattr(pipe, "contrast_motion", False))},
                 "world": asdict(world), "device": str(pipe.device)}
    total = cfg.n + cfg.freeform + cfg.edits + cfg.continuations
    bar = tqdm(total=total, desc="eval", unit="clip", disable=not progress_wanted(progress), dynamic_ncols=True)
    sheet: list[dict] = []
    sections = (("adherence", eval_adherence, cfg.n), ("freeform", eval_freeform, cfg.freeform),
                ("editing", eval_editing, cfg.edits), ("continuation", eval_continuation, cfg.continuations))
    for name, fn, count in sections:
        if count <= 0:
            rep[name] = None
            continue
        bar.set_description(f"eval {name}")
        t = time.time()
        if name == "freeform":
            res = fn(pipe, cfg, world, bar, template=rep.get("adherence"))
        else:
            res = fn(pipe, cfg, world, bar)
        if name == "adherence":
            res, sheet = res
        rep[name] = res
        timing[name] = time.time() - t
    bar.close()
    if cfg.language:
        t = time.time()
        rep["language"] = eval_language(pipe, cfg)
        timing["language"] = time.time() - t
    else:
        rep["language"] = None
    rep["timing"] = timing
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        files = {"markdown": str(out / "report.md"), "json": str(out / "report.json")}
        png = save_sheet(out / "samples.png", sheet)
        if png:
            files["samples"] = str(png)
        rep["files"] = files
        atomic_write_text(out / "report.json", json.dumps(rep, indent=1, default=_json_default) + "\n")
        atomic_write_text(out / "report.md", markdown_report(rep) + "\n")
    return rep


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.bool_):
        return bool(x)
    return str(x)
