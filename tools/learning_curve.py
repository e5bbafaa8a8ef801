"""Learning curve of LM continued pretraining: how many training tokens (and CPU-hours) the model needs.

From ONE config (configs/lm/*.yaml), trains short runs at 3+ token budgets (each a full run with its own
warmup + cosine schedule, the curve's honest form) on data built once, and evaluates every run on
held-out compositions (scenes of the synthetic world's held-out split, never in the training data):

- held-out visual-token loss: constrained cross entropy (vidgpt.train.lm_loss, the rows the sampler draws
  from) over the visual tokens of held-out clips, tokenized by the same video tokenizer;
- blueprint-preview adherence on >= 30 held-out prompts (vidgpt.evaluate's prompts and judge): only the
  blueprint section is sampled (a quarter of the tokens), decoded at half size and judged for colour and
  motion (and shape); colour+motion = share of objects whose colour AND motion pass;
- a few full clips (blueprint + fine, `vidgpt.evaluate.eval_adherence`) as a check that preview and full
  clip agree.

Then writes OUT/curve.md + OUT/curve.json (table, timings, data build time) and OUT/curve.png (adherence
against training tokens and wall time, held-out loss), and extrapolates, by a straight-line fit of
logit(colour+motion adherence) against log(tokens), the tokens and CPU-hours to 80% adherence.

Data: `vidgpt data build-lm` in --workers parallel processes (disjoint seeds, each resumable), plus a
held-out record file; built once under OUT/data (or --data DIR to share it between curves). Every stage
is resumable: a finished run (model/ present) or evaluation (point.json) is reused, a cut run resumes
from its last checkpoint. `compare` overlays several curves.

    python tools/learning_curve.py run --config configs/lm/cpu_default.yaml --out runs/curve/k8-17x128 \\
        --budgets 100000 200000 400000 --num 600 --frames 17 --size 128 --workers 2
    python tools/learning_curve.py compare runs/curve/* --out docs/curves
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TARGET = 0.8


# --- data ---------------------------------------------------------------------------------------------------


def _worker_env(core: int | None) -> tuple[dict, list[str]]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    prefix = ["taskset", "-c", str(core)] if core is not None else []
    return env, prefix


def build_train_data(data: Path, args) -> dict:
    """`vidgpt data build-lm` in args.workers processes: part-k gets seed*100+k and its share of the units."""
    data.mkdir(parents=True, exist_ok=True)
    procs, t0 = [], time.time()
    cores = [int(c) for c in args.cores.split(",")] if args.cores else [None]
    for k in range(args.workers):
        share = lambda n: n // args.workers + (1 if k < n % args.workers else 0)  # noqa: E731
        num, images = share(args.num), share(args.images)
        if num + images == 0:
            continue
        env, prefix = _worker_env(cores[k % len(cores)])
        cmd = prefix + [sys.executable, "-m", "vidgpt", "data", "build-lm", "--out", str(data / "train" / f"part-{k}"),
                        "--tokenizer", args.tokenizer, "--num", str(num), "--images", str(images),
                        "--frames", str(args.frames), "--size", str(args.size), "--seed", str(args.seed * 100 + k),
                        "--device", "cpu", "--no-progress"]
        for o in args.world_set:
            cmd += ["--set", o]
        log = open(data / f"build-{k}.log", "a")
        procs.append((cmd, subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    failed = []
    for cmd, p, log in procs:
        if p.wait() != 0:
            failed.append(" ".join(cmd))
        log.close()
    if failed:
        raise SystemExit(f"build-lm failed (see {data}/build-*.log): {failed[0]}")
    return {"train_build_s": time.time() - t0, "workers": args.workers}


def build_heldout(data: Path, args) -> dict:
    """Held-out-split scenes rendered, tokenized and written as code records (JSONL) for the held-out loss."""
    import torch

    from vidgpt.data.lm_dataset import encode_batch
    from vidgpt.data.synthetic import STYLES, caption, load_world_config, render_scene, sample_scene
    from vidgpt.tokenizer import VideoTokenizer

    path = data / "heldout.jsonl"
    if path.is_file():
        return {}
    t0 = time.time()
    torch.set_num_threads(1)
    world = load_world_config(None, args.world_set)
    tok = VideoTokenizer.from_pretrained(args.tokenizer, device="cpu")
    scenes, clips, caps = [], [], []
    for i in range(args.heldout):
        rng = np.random.default_rng([args.seed, 777, i])
        scene = sample_scene(rng, world, "heldout")
        scenes.append(scene)
        clips.append(render_scene(scene, args.frames, args.size, args.size, 8.0))
        caps.append(caption(scene, rng, STYLES[i % len(STYLES)]))
    coded = encode_batch(tok, clips, True, 8)
    recs = []
    for (codes, bp), cap in zip(coded, caps):
        recs.append({"codes": codes.reshape(-1).tolist(), "shape": list(codes.shape),
                     "blueprint_codes": bp.reshape(-1).tolist(), "blueprint_shape": list(bp.shape), "captions": [cap]})
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in recs))
    os.replace(tmp, path)
    return {"heldout_build_s": time.time() - t0, "heldout_clips": len(recs)}


def ensure_data(data: Path, args) -> dict:
    info_path = data / "build.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    if not info.get("train_done"):
        info.update(build_train_data(data, args))
        info["train_done"] = True
        info_path.write_text(json.dumps(info, indent=1))
    if not (data / "heldout.jsonl").is_file():
        info.update(build_heldout(data, args))
        info_path.write_text(json.dumps(info, indent=1))
    return info


# --- training -------------------------------------------------------------------------------------------------


def run_config(args, data: Path, steps: int | None = None):
    from vidgpt.config import load_config
    from vidgpt.train.lm_data import SourceConfig
    from vidgpt.train.lm_trainer import LMTrainConfig

    cfg = load_config(LMTrainConfig, args.config, list(args.set))
    cfg.data.sources = [SourceConfig(kind="shards", paths=[str(data / "train")])]
    if steps is not None:
        t = cfg.train
        t.steps = steps
        t.warmup_steps = min(t.warmup_steps, max(1, steps // 10))
        t.eval_every = 0
        t.ckpt_every = max(1, steps // 4)  # resumable, at most a quarter of a run lost
        t.log_every = max(1, min(t.log_every, steps // 10 or 1))
    return cfg


def vocab_and_tokenizer(cfg):
    """The run's vocabulary and extended text tokenizer (without training anything)."""
    m = cfg.model
    if m.path:
        from transformers import AutoTokenizer

        from vidgpt.backbone import read_meta
        from vidgpt.vocab import UnifiedVocab

        return UnifiedVocab.from_dict(read_meta(m.path)["vocab"]), AutoTokenizer.from_pretrained(m.path)
    from vidgpt.backbone import extend

    lm = extend(m.backbone, m.tokenizer or None, codebook_bits=m.codebook_bits or None, subtokens=m.subtokens or None,
                tiny=m.tiny or None, chat=cfg.data.chat)
    return lm.vocab, lm.text_tokenizer


def tokens_per_step(cfg) -> tuple[float, float]:
    """(real tokens per optimizer step, mean document tokens), by packing the run's first rows."""
    from vidgpt.train.lm_data import mixed_documents, packed_rows
    from vidgpt.train.packing import PackStats

    vocab, tok = vocab_and_tokenizer(cfg)
    stats = PackStats()
    gen = packed_rows(cfg.data, vocab, tok, cfg.train.seq_len, cfg.train.seed, "train", 0, stats=stats)
    for _ in range(16):
        next(gen)
    docs = mixed_documents(cfg.data, vocab, tok, cfg.train.seed, "train")
    mean_doc = float(np.mean([len(next(docs)) for _ in range(16)]))
    per_row = stats.tokens / max(1, stats.rows)
    return per_row * cfg.train.micro_batch_size * cfg.train.grad_accum, mean_doc


def train_budget(args, data: Path, run: Path, steps: int) -> dict:
    from vidgpt.train.lm_trainer import checkpoint_dirs, train_lm

    wall_file = run / "wall.json"
    if (run / "model" / "vidgpt.json").is_file() and wall_file.is_file():
        return json.loads(wall_file.read_text())
    cfg = run_config(args, data, steps)
    resume = bool(checkpoint_dirs(run))
    prev = json.loads(wall_file.read_text()) if wall_file.is_file() else {"train_wall_s": 0.0}
    t0 = time.time()
    train_lm(cfg, run, resume=resume, progress=not args.quiet)
    recs = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if x.strip()]
    done = [r for r in recs if r.get("event") == "done"]
    losses = [r["loss"] for r in recs if "loss" in r]
    out = {"train_wall_s": prev["train_wall_s"] + time.time() - t0, "steps": steps,
           "tokens": (done[-1]["pack_stats"]["tokens"] if done else None),
           "final_train_loss": float(np.mean(losses[-max(1, len(losses) // 10):])) if losses else None,
           "resumed": resume}
    wall_file.write_text(json.dumps(out, indent=1))
    return out


# --- evaluation -----------------------------------------------------------------------------------------------


def heldout_visual_loss(model_dir: Path | None, heldout: Path, chat: bool, lm=None) -> dict:
    """Constrained CE over the visual tokens of the held-out clips (mean per token); `lm`: a loaded VidgptLM
    (in eval mode) in place of model_dir (tools/eval_checkpoints.py)."""
    import torch

    from vidgpt.backbone import load_vidgpt_lm
    from vidgpt.train.lm_data import LMDataConfig, RecordFormatter
    from vidgpt.train.lm_loss import LossHead, LossSettings
    from vidgpt.train.packing import collate, pack

    lm = lm if lm is not None else load_vidgpt_lm(model_dir)
    fmt = RecordFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig(chat=chat, loss_on=["visual"]))
    head = LossHead(lm.vocab, LossSettings(head="constrained"))
    rng = np.random.default_rng(0)
    tot, n = 0.0, 0
    with torch.no_grad():
        for line in heldout.read_text().splitlines():
            doc = fmt(json.loads(line), rng)
            batch = collate(list(pack(iter([doc]), len(doc))))
            loss, k = head(lm.model, batch)
            tot += float(loss) * k
            n += k
    return {"heldout_visual_loss": tot / max(n, 1), "heldout_visual_tokens": n}


def _items(n: int, seed: int, world):
    from vidgpt.data.synthetic import STYLES, caption, sample_scene
    from vidgpt.evaluate import _rng

    out = []
    for i in range(n):
        rng = _rng(seed, 1, i)  # the same held-out prompts as `vidgpt eval model`
        scene = sample_scene(rng, world, "heldout")
        out.append((scene, caption(scene, rng, STYLES[i % len(STYLES)])))
    return out


def shares(results) -> dict:
    from vidgpt.evaluate import attribute_shares

    out = attribute_shares(results)
    objs = [v for r in results for v in r.objects]
    out["color_motion"] = float(np.mean([v.color.passed and v.motion.passed for v in objs])) if objs else None
    return out


def preview_adherence(pipe, args, world) -> dict:
    """Blueprint-only samples for args.eval_n held-out prompts, decoded at half size, judged."""
    import torch

    from vidgpt.data.judge import judge_clip
    from vidgpt.evaluate import EvalConfig, _sampling
    from vidgpt.generate.sampling import make_generator
    from vidgpt.layout import Sample, Turn

    ecfg = EvalConfig(n=args.eval_n, frames=args.frames, size=args.size, seed=args.eval_seed)
    sampling = _sampling(ecfg)
    shape = pipe.latent_shape(args.frames, args.size, args.size)
    gen = make_generator(ecfg.seed, pipe.device)
    items = _items(args.eval_n, ecfg.seed, world)
    results, t0 = [], time.time()
    for s in range(0, len(items), ecfg.batch_size):
        batch = items[s : s + ecfg.batch_size]
        ids = [pipe.layout.prompt_ids(Sample([Turn("user", [p])])) for _, p in batch]
        uncond = [pipe.layout.prompt_ids(Sample([Turn("user", [""])]))] * len(batch) if sampling.use_cfg else None
        blocks, _ = pipe.sample_blocks(ids, uncond, shape, ("blueprint",), sampling, gen)
        tok = pipe.video_tokenizer
        with torch.inference_mode():
            half = tok.decode(torch.stack([b.blueprint for b in blocks]).to(tok.device)).float().cpu()
        frames = pipe.to_frames(half)
        results += [judge_clip(frames[k], scene, fps=ecfg.fps) for k, (scene, _) in enumerate(batch)]
    out = shares(results)
    out["eval_s"] = time.time() - t0
    return out


def full_clip_check(pipe, args, world) -> dict | None:
    """A few full clips through vidgpt.evaluate.eval_adherence: full vs preview shares on the same samples."""
    from vidgpt.evaluate import EvalConfig, eval_adherence

    if args.full_clips <= 0:
        return None
    t0 = time.time()
    ecfg = EvalConfig(n=args.full_clips, frames=args.frames, size=args.size, seed=args.eval_seed,
                      batch_size=min(8, args.full_clips)).resolved()
    sec, _ = eval_adherence(pipe, ecfg, world)
    agree = [s["pass"] == s["preview_pass"] for s in sec["samples"] if s["preview_pass"] is not None]
    return {"full": {k: sec["full"][k] for k in ("color", "motion", "object", "clip")},
            "preview": {k: sec["preview"][k] for k in ("color", "motion", "object", "clip")} if sec["preview"] else None,
            "clip_verdict_agreement": float(np.mean(agree)) if agree else None, "n": sec["n"], "eval_s": time.time() - t0}


def evaluate_point(args, data: Path, run: Path, chat: bool) -> dict:
    from vidgpt.data.synthetic import load_world_config
    from vidgpt.generate import VidGPT

    path = run / "point.json"
    if path.is_file():
        return json.loads(path.read_text())
    world = load_world_config(None, args.world_set)
    out = heldout_visual_loss(run / "model", data / "heldout.jsonl", chat)
    pipe = VidGPT.from_pretrained(run / "model", device="cpu")
    out["preview"] = preview_adherence(pipe, args, world)
    out["full_check"] = full_clip_check(pipe, args, world)
    path.write_text(json.dumps(out, indent=1, default=str))
    return out


# --- fit, table, plot -----------------------------------------------------------------------------------------


def logit_points(points: list[tuple[float, float, int]]) -> tuple[list[float], list[float]]:
    """(ln tokens, logit adherence) of the usable (tokens, adherence, objects) points; a share of 0 or 1 is clipped
    half an object in from the edge."""
    xs, ys = [], []
    for tokens, a, n in points:
        if a is None or tokens is None or tokens <= 0:
            continue
        eps = 0.5 / max(n, 1)
        a = min(max(a, eps), 1 - eps)
        xs.append(math.log(tokens))
        ys.append(math.log(a / (1 - a)))
    return xs, ys


def extrapolate(points: list[tuple[float, float, int]], target: float = TARGET) -> dict:
    """Fit logit(a) = alpha + beta * ln(tokens) on (tokens, adherence, objects); tokens where a = target."""
    xs, ys = logit_points(points)
    if len(xs) < 2 or len(set(xs)) < 2:
        return {"ok": False, "why": "fewer than 2 budgets with a result"}
    beta, alpha = np.polyfit(xs, ys, 1)
    if beta <= 1e-6:
        return {"ok": False, "why": f"adherence does not rise with tokens (slope {beta:.3f} in logit per ln tokens)",
                "alpha": float(alpha), "beta": float(beta)}
    t = math.exp((math.log(target / (1 - target)) - alpha) / beta)
    return {"ok": True, "alpha": float(alpha), "beta": float(beta), "tokens": t}


def table(curve: dict) -> str:
    lines = [f"### {curve['name']}", "",
             f"config `{curve['config']}` {' '.join(curve['set'])}; data {curve['data']['clips']} clips "
             f"{curve['frames']}x{curve['size']}x{curve['size']} (+{curve['data']['images']} images), built in "
             f"{curve['data'].get('train_build_s', float('nan')) / 60:.1f} min on {curve['data'].get('workers')} "
             f"process(es); mean document {curve['mean_doc_tokens']:.0f} tokens; threads per process "
             f"{curve['threads']}.", "",
             "| budget (tokens) | steps | trained tokens | train wall | tokens/s | train loss | held-out visual loss "
             "| preview colour | preview motion | preview colour+motion | full-clip check (colour/motion, agree) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in curve["points"]:
        pv, fc = p["preview"], p.get("full_check")
        fcs = "-" if not fc else (f"{fc['full']['color']:.2f}/{fc['full']['motion']:.2f} (n={fc['n']}, "
                                  f"{fc['clip_verdict_agreement']:.2f})" if fc["full"]["color"] is not None else "-")
        lines.append(f"| {p['budget']:,} | {p['steps']} | {p['tokens'] or 0:,} | {p['train_wall_s'] / 60:.1f} min | "
                     f"{(p['tokens'] or 0) / max(p['train_wall_s'], 1e-9):.1f} | {p['final_train_loss']:.3f} | "
                     f"{p['heldout_visual_loss']:.3f} | {_f(pv['color'])} | {_f(pv['motion'])} | "
                     f"{_f(pv['color_motion'])} | {fcs} |")
    e = curve["extrapolation"]
    lines.append("")
    if e["ok"]:
        lines.append(f"Extrapolation (logit(colour+motion) vs ln tokens, {len(curve['points'])} points): "
                     f"{TARGET:.0%} at ~{e['tokens']:,.0f} tokens (~{e['clips']:,.0f} documents of this size), "
                     f"~{e['cpu_hours']:.1f} CPU-hours at the measured {e['tokens_per_s']:.1f} tokens/s "
                     f"({curve['threads']} thread(s)). A straight-line fit through few, noisy points: an order of "
                     "magnitude, not a promise.")
    else:
        lines.append(f"No extrapolation: {e['why']}.")
    return "\n".join(lines)


def _f(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def plot(curves: list[dict], png: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for c in curves:
        pts = [p for p in c["points"] if p["tokens"]]
        tok = [p["tokens"] for p in pts]
        hrs = [p["train_wall_s"] / 3600 for p in pts]
        cm = [p["preview"]["color_motion"] for p in pts]
        col = [p["preview"]["color"] for p in pts]
        line, = axes[0].plot(tok, cm, "o-", label=f"{c['name']} colour+motion")
        axes[0].plot(tok, col, "x--", color=line.get_color(), alpha=0.6, label=f"{c['name']} colour")
        e = c["extrapolation"]
        if e["ok"]:
            xs = np.geomspace(min(tok), max(e["tokens"], max(tok)), 50)
            ys = 1 / (1 + np.exp(-(e["alpha"] + e["beta"] * np.log(xs))))
            axes[0].plot(xs, ys, ":", color=line.get_color())
        axes[1].plot(hrs, cm, "o-", color=line.get_color(), label=c["name"])
        axes[2].plot(tok, [p["heldout_visual_loss"] for p in pts], "o-", color=line.get_color(), label=c["name"])
    for ax in axes[:2]:
        ax.axhline(TARGET, color="grey", lw=0.8, ls="--")
        ax.set_ylim(0, 1)
        ax.set_ylabel("preview adherence (held-out prompts)")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("training tokens")
    axes[1].set_xlabel("training wall time (hours)")
    axes[2].set_xscale("log")
    axes[2].set_xlabel("training tokens")
    axes[2].set_ylabel("held-out visual-token loss")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def write_curve(out: Path, curves: list[dict]) -> None:
    from vidgpt.utils import atomic_write_text

    atomic_write_text(out / "curve.json", json.dumps(curves if len(curves) > 1 else curves[0], indent=1, default=str))
    atomic_write_text(out / "curve.md", "\n\n".join(table(c) for c in curves) + "\n")
    plot(curves, out / "curve.png")


# --- the default model's recorded pieces ---------------------------------------------------------------------

CHANCE = {"colour": 1 / 9, "motion": 1 / 13}  # a guess among the world's 9 colours / 13 motions (the judge's classes)
PIECE_ATTRS = (("preview_colour", "preview colour"), ("preview_motion", "preview motion"),
               ("full_colour", "full-clip colour"), ("full_motion", "full-clip motion"))


def read_pieces(csv_path: Path) -> dict[str, list[dict]]:
    """Lineage -> its recorded evaluation points (docs/curves/pieces.csv), in token order."""
    import csv

    lineages: dict[str, list[dict]] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            pt = {"point": row["point"], "tokens": float(row["tokens"]), "n": int(row["n"]), "source": row["source"],
                  "cpu_hours": float(row["cpu_hours"]) if row["cpu_hours"] else None}
            for key, _ in PIECE_ATTRS:
                pt[key] = float(row[key]) if row.get(key) else None
            lineages.setdefault(row["lineage"], []).append(pt)
    for pts in lineages.values():
        pts.sort(key=lambda p: p["tokens"])
    return lineages


def pieces_fits(points: list[dict]) -> dict[str, dict]:
    """Per attribute: the logit-vs-ln-tokens fit to 80%, where the lineage spans at least 2x in tokens."""
    fits = {}
    for key, _ in PIECE_ATTRS:
        pts = [(p["tokens"], p[key], p["n"]) for p in points if p[key] is not None]
        toks = [t for t, _, _ in pts]
        if len(pts) < 3 or max(toks) < 2 * min(toks):
            fits[key] = {"ok": False, "why": "fewer than 3 points or under a 2x span of tokens"}
            continue
        e = extrapolate(pts)
        if "beta" in e:
            e["beta_se"] = slope_se(pts)
            if e["ok"] and e["beta"] < 2 * e["beta_se"]:
                e = {**e, "ok": False, "why": f"the slope {e['beta']:.2f} +- {e['beta_se']:.2f} (logit per ln token) "
                     "is within two standard errors of zero: no rising trend the points can tell from noise"}
        hrs = [(p["tokens"], p["cpu_hours"]) for p in points if p["cpu_hours"]]
        if e["ok"] and hrs:
            t_last, h_last = max(hrs)
            e["tokens_per_s"] = t_last / (h_last * 3600)
            e["cpu_hours"] = e["tokens"] / e["tokens_per_s"] / 3600
        fits[key] = e
    return fits


def slope_se(points: list[tuple[float, float, int]]) -> float:
    """Standard error of the logit-vs-ln-tokens slope that extrapolate fits."""
    xs, ys = logit_points(points)
    if len(xs) < 3:
        return float("inf")
    x, y = np.asarray(xs), np.asarray(ys)
    beta, alpha = np.polyfit(x, y, 1)
    resid = y - (alpha + beta * x)
    sxx = float(((x - x.mean()) ** 2).sum())
    return float(math.sqrt(float((resid ** 2).sum()) / (len(x) - 2) / sxx)) if sxx > 0 else float("inf")


def pool_lineages(lineages: dict[str, list[dict]], prefix: str) -> dict[str, list[dict]]:
    """Add one lineage holding every point of the lineages whose name starts with `prefix`."""
    pts = [p for name, ps in lineages.items() if name.startswith(prefix) for p in ps]
    if not pts:
        return lineages
    return {**lineages, f"{prefix}, all points pooled": sorted(pts, key=lambda p: p["tokens"])}


def pieces_table(lineages: dict[str, list[dict]], pooled: tuple[str, ...] = ()) -> str:
    lines = ["| lineage | point | tokens | CPU hours | n | " + " | ".join(name for _, name in PIECE_ATTRS) + " |",
             "|---|---|---|---|---|" + "---|" * len(PIECE_ATTRS)]
    for name, pts in lineages.items():
        if name in pooled:
            continue
        for p in pts:
            hrs = "-" if p["cpu_hours"] is None else f"{p['cpu_hours']:.2f}"
            lines.append(f"| {name} | {p['point']} | {p['tokens'] / 1e6:.2f} M | {hrs} | {p['n']} | "
                         + " | ".join(_f(p[k]) for k, _ in PIECE_ATTRS) + " |")
    lines += ["", f"Fits of logit(share) against ln(tokens) within each lineage, to {TARGET:.0%}:", ""]
    for name, pts in lineages.items():
        fits = pieces_fits(pts)
        for key, label in PIECE_ATTRS:
            e = fits[key]
            if e["ok"]:
                hours = f", ~{e['cpu_hours']:.1f} CPU-hours at its {e['tokens_per_s']:.0f} tokens/s" if "cpu_hours" in e else ""
                lines.append(f"- {name}, {label}: {TARGET:.0%} at ~{e['tokens'] / 1e6:,.3g} M tokens{hours} "
                             f"(slope {e['beta']:.2f} +- {e['beta_se']:.2f} logit per ln token)")
            elif "beta" in e:
                lines.append(f"- {name}, {label}: no extrapolation, {e['why']}")
    return "\n".join(lines)


def pieces_plot(lineages: dict[str, list[dict]], png: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
    for ax, attr in zip(axes, ("colour", "motion")):
        for i, (name, pts) in enumerate(lineages.items()):
            colour = f"C{i}"
            for section, style in (("preview", "o-"), ("full", "s--")):
                key = f"{section}_{attr}"
                xy = [(p["tokens"], p[key]) for p in pts if p[key] is not None]
                if xy:
                    ax.plot(*zip(*xy), style, color=colour, alpha=0.85 if section == "preview" else 0.6,
                            label=f"{name}: {'blueprint preview' if section == 'preview' else 'full clip'}")
        ax.axhline(TARGET, color="grey", lw=0.8, ls="--")
        chance = CHANCE[attr]
        ax.axhline(chance, color="grey", lw=0.8, ls=":")
        ax.annotate(f"chance ~{chance:.2f}", (0.01, chance + 0.01), xycoords=("axes fraction", "data"), fontsize=7)
        ax.set_xscale("log")
        ax.set_ylim(0, 1)
        ax.set_xlabel("training tokens (cumulative within the lineage)")
        ax.set_title(f"held-out prompts: {attr} right")
    axes[0].set_ylabel("share of held-out prompts (judge)")
    axes[1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def cmd_pieces(args) -> int:
    from vidgpt.utils import atomic_write_text

    lineages = read_pieces(Path(args.csv))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pooled = lineages
    for prefix in args.pool:
        pooled = pool_lineages(pooled, prefix)
    text = pieces_table(pooled, pooled=tuple(k for k in pooled if k not in lineages))
    atomic_write_text(out / "pieces.md", text + "\n")
    png = pieces_plot(lineages, out / "pieces.png")
    print(text)
    print(f"wrote {out / 'pieces.md'}" + (f" and {png}" if png else ""))
    return 0


# --- commands -------------------------------------------------------------------------------------------------


def cmd_run(args) -> int:
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else out / "data"
    info = ensure_data(data, args)
    cfg = run_config(args, data)
    per_step, mean_doc = tokens_per_step(cfg)
    points = []
    for b in sorted(args.budgets):
        steps = max(2, math.ceil(b / per_step))
        run = out / "runs" / f"b{b}"
        tr = train_budget(args, data, run, steps)
        ev = evaluate_point(args, data, run, cfg.data.chat)
        points.append({"budget": b, **tr, **ev})
        print(f"budget {b:,}: {tr['tokens']:,} tokens in {tr['train_wall_s'] / 60:.1f} min, held-out visual loss "
              f"{ev['heldout_visual_loss']:.3f}, preview colour+motion {_f(ev['preview']['color_motion'])}", flush=True)
    e = extrapolate([(p["tokens"], p["preview"]["color_motion"], p["preview"]["objects"]) for p in points])
    big = max(points, key=lambda p: p["tokens"] or 0)
    tps = (big["tokens"] or 0) / max(big["train_wall_s"], 1e-9)
    if e["ok"]:
        e.update(tokens_per_s=tps, cpu_hours=e["tokens"] / max(tps, 1e-9) / 3600, clips=e["tokens"] / mean_doc)
    curve = {"name": args.name or out.name, "config": args.config, "set": list(args.set), "frames": args.frames,
             "size": args.size, "threads": torch.get_num_threads(), "mean_doc_tokens": mean_doc,
             "tokens_per_step": per_step,
             "data": {**info, "clips": args.num, "images": args.images, "world_set": list(args.world_set)},
             "points": points, "extrapolation": e}
    write_curve(out, [curve])
    print((out / "curve.md").read_text())
    return 0


def cmd_compare(args) -> int:
    curves = []
    for d in args.dirs:
        c = json.loads((Path(d) / "curve.json").read_text())
        curves += c if isinstance(c, list) else [c]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_curve(out, curves)
    print((out / "curve.md").read_text())
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="build data once, train at each budget, evaluate, table + plot + extrapolation")
    r.add_argument("--config", required=True, help="LM training config YAML (its data sources are replaced)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    r.add_argument("--out", required=True)
    r.add_argument("--name", help="curve name in tables and plots (default: the --out folder's name)")
    r.add_argument("--budgets", type=int, nargs="+", required=True, help="training tokens per run (3+ values)")
    r.add_argument("--data", help="data folder to build into / reuse (default OUT/data)")
    r.add_argument("--tokenizer", default="tokenizer", help="video tokenizer dir (default tokenizer/)")
    r.add_argument("--num", type=int, default=600, help="text-to-video training clips")
    r.add_argument("--images", type=int, default=0, help="text-to-image training images")
    r.add_argument("--frames", type=int, default=17)
    r.add_argument("--size", type=int, default=128)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--world-set", action="append", default=[], metavar="KEY=VALUE",
                   help="world config override for data and eval, e.g. max_objects=1 (single-object scenes)")
    r.add_argument("--workers", type=int, default=2, help="build-lm processes (default 2)")
    r.add_argument("--cores", default="", help="comma-separated cores to pin the build processes to (taskset)")
    r.add_argument("--heldout", type=int, default=32, help="held-out clips for the visual-token loss")
    r.add_argument("--eval-n", type=int, default=30, help="held-out prompts for the preview adherence (>= 30)")
    r.add_argument("--eval-seed", type=int, default=0)
    r.add_argument("--full-clips", type=int, default=3, help="full clips as a check (0 = none)")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_run)
    c = sub.add_parser("compare", help="overlay curves: one table and one plot")
    c.add_argument("dirs", nargs="+")
    c.add_argument("--out", required=True)
    c.set_defaults(func=cmd_compare)
    pc = sub.add_parser("pieces", help="the default model's recorded evaluations (a CSV) as curves, fits and a plot")
    pc.add_argument("csv", help="e.g. docs/curves/pieces.csv: lineage, point, tokens, cpu_hours, n, preview/full shares")
    pc.add_argument("--out", required=True)
    pc.add_argument("--pool", action="append", default=[], metavar="PREFIX",
                    help="also fit all points of the lineages whose name starts with PREFIX together (repeatable)")
    pc.set_defaults(func=cmd_pieces)
    args = ap.parse_args(argv)
    if args.cmd == "run" and len(args.budgets) < 3:
        print("note: the issue asks for 3+ budgets", file=sys.stderr)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
