"""The learning curve of ONE training run, from its checkpoints: `vidgpt lm train` writes runs/X/checkpoints/step-N/.

For each checkpoint not evaluated yet (results cached in OUT/curve.json; OUT = the run dir by default), it
measures, with tools/learning_curve.py's functions:

- blueprint-preview adherence on --n held-out prompts of the world given by --set (e.g. max_objects=1, the
  default model's one-object scenes): colour / motion / colour+motion / shape / whole clip;
- the held-out visual-token loss (constrained CE on --heldout held-out clips; 0 = skip);
- from the run's log.jsonl (free): the training loss around the step, the trainer's last eval loss, and the
  wall time of training up to the step (summed over pieces: start/resume to the step's record);
- training tokens: the checkpoint's trainer state (exact for a run never resumed, else rows x tokens per row);

then writes OUT/curve.md (table + extrapolation to 80% colour+motion) and OUT/curve.png (adherence against
tokens and wall hours, loss against tokens). Safe on a run that keeps training: the checkpoints are read,
memory-mapped, never written or copied; one that vanishes (keep_checkpoints) is skipped. The model is built
once from the run's config.yaml and each checkpoint's weights are loaded into it. Clip size: the run's shards
manifests (vidgpt.train.lm_data.clip_size_of_sources), or --frames/--size.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 19 taskset -c 1 python tools/eval_checkpoints.py runs/lm9/fast \\
        --n 30 --set max_objects=1 [--heldout 8] [--watch 10]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import learning_curve as lc  # noqa: E402  (tools/ is not a package)

FORMAT = "vidgpt-checkpoint-curve"


# --- what the run says ----------------------------------------------------------------------------------------


def read_log(run: Path) -> list[dict]:
    p = run / "log.jsonl"
    if not p.is_file():
        return []
    out = []
    for line in p.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line being written
            continue
    return out


def wall_seconds(recs: list[dict], step: int) -> float | None:
    """Training wall time up to `step`: per piece (start or resume event .. its last step record <= step)."""
    total, begin, last, seen = 0.0, None, None, False
    for r in recs:
        if r.get("event") in ("start", "resume"):
            if r.get("event") == "resume" and r.get("step", 0) >= step:
                break
            if begin is not None and last is not None:
                total += last - begin
            begin, last = r.get("time"), None
        elif "loss" in r and isinstance(r.get("step"), int):
            if r["step"] > step:
                break
            if r.get("time") is not None:
                last, seen = r["time"], True
    if begin is not None and last is not None:
        total += last - begin
    return total if seen else None


def log_losses(recs: list[dict], step: int, window: int) -> dict:
    """Mean training loss over the `window` steps up to `step`; the trainer's last eval loss at or before it."""
    tr = [r["loss"] for r in recs if "loss" in r and step - window < r.get("step", -1) <= step]
    ev = [(r["step"], r["eval_loss"]) for r in recs if "eval_loss" in r and r.get("step", -1) <= step]
    return {"train_loss": float(np.mean(tr)) if tr else None,
            "trainer_eval_step": ev[-1][0] if ev else None, "trainer_eval_loss": ev[-1][1] if ev else None}


def checkpoint_tokens(state: dict) -> tuple[int | None, bool]:
    """(training tokens up to the checkpoint, estimated?) from trainer_state.json."""
    stats, rows = state.get("stats") or {}, state.get("rows")
    if not stats.get("rows") or rows is None:
        return None, False
    if stats["rows"] == rows:
        return int(stats["tokens"]), False
    return int(round(rows * stats["tokens"] / stats["rows"])), True  # stats restart with each resumed piece


# --- evaluation -------------------------------------------------------------------------------------------------


class Evaluator:
    """The run's model, built once; each checkpoint's weights are loaded into it and measured."""

    def __init__(self, run: Path, cfg, args):
        import torch

        from vidgpt.data.synthetic import load_world_config
        from vidgpt.tokenizer import VideoTokenizer
        from vidgpt.train.lm_trainer import build_lm

        self.run, self.cfg, self.args = run, cfg, args
        if not cfg.data.blueprint:
            raise SystemExit(f"{run}: trained without blueprints (data.blueprint: false); the preview needs them")
        self.world = load_world_config(None, list(args.set))
        lm, _ = build_lm(cfg, torch.device("cpu"), None)
        lm.model.eval()
        self.lm = lm
        tok = args.tokenizer or (str(lm.video_tokenizer_dir) if lm.video_tokenizer_dir else "")
        if not tok:
            raise SystemExit(f"{run}: the run's config names no video tokenizer; pass --tokenizer DIR")
        self.video_tokenizer = VideoTokenizer.from_pretrained(tok, device="cpu").eval()
        self.heldout = None
        if args.heldout > 0:
            key = hashlib.sha1(json.dumps([args.frames, args.size, args.heldout, args.heldout_seed, list(args.set),
                                           str(Path(tok).resolve())]).encode()).hexdigest()[:10]
            data = args.out / "curve_data" / key
            ns = SimpleNamespace(seed=args.heldout_seed, heldout=args.heldout, world_set=list(args.set), tokenizer=tok,
                                 frames=args.frames, size=args.size)
            data.mkdir(parents=True, exist_ok=True)
            lc.build_heldout(data, ns)
            self.heldout = data / "heldout.jsonl"

    def evaluate(self, ckpt: Path) -> dict:
        from vidgpt.backbone import merge_lora
        from vidgpt.generate import VidGPT
        from vidgpt.train.lm_init import load_checkpoint_weights

        t0 = time.time()
        load_checkpoint_weights(self.lm.model, ckpt, str(ckpt))
        lm = copy.copy(self.lm)
        lm.model = copy.deepcopy(self.lm.model)
        merge_lora(lm)
        lm.model.eval()
        out = {"load_s": time.time() - t0}
        if self.heldout is not None:
            t = time.time()
            out.update(lc.heldout_visual_loss(None, self.heldout, self.cfg.data.chat, lm=lm))
            out["heldout_loss_s"] = time.time() - t
        else:
            out.update(heldout_visual_loss=None, heldout_visual_tokens=0)
        pipe = VidGPT(lm.model, lm.text_tokenizer, lm.vocab, self.video_tokenizer, chat=self.cfg.data.chat, meta=lm.meta)
        ns = SimpleNamespace(eval_n=self.args.n, frames=self.args.frames, size=self.args.size,
                             eval_seed=self.args.eval_seed, full_clips=self.args.full_clips)
        out["preview"] = lc.preview_adherence(pipe, ns, self.world)
        out["full_check"] = lc.full_clip_check(pipe, ns, self.world)
        out["eval_s"] = time.time() - t0
        return out


def point_of(run: Path, ckpt: Path, recs: list[dict], window: int) -> dict:
    state = json.loads((ckpt / "trainer_state.json").read_text())
    tokens, est = checkpoint_tokens(state)
    return {"step": int(state["step"]), "checkpoint": ckpt.name, "tokens": tokens, "tokens_estimated": est,
            "wall_s": wall_seconds(recs, int(state["step"])), **log_losses(recs, int(state["step"]), window)}


# --- curve file, table, plot -------------------------------------------------------------------------------------


def load_curve(path: Path, run: Path, settings: dict) -> dict:
    if not path.is_file():
        return {"format": FORMAT, "run": str(run), "settings": settings, "points": []}
    curve = json.loads(path.read_text())
    if curve.get("settings") != settings:
        diff = {k: (curve.get("settings", {}).get(k), settings[k]) for k in settings
                if curve.get("settings", {}).get(k) != settings[k]}
        raise SystemExit(f"{path}: made with other settings {diff} (cached, new); pass the same ones or --name OTHER")
    return curve


def table(curve: dict) -> str:
    s = curve["settings"]
    lines = [f"# Checkpoint curve: {curve['run']}", "",
             f"Blueprint-preview adherence on {s['n']} held-out prompts (eval seed {s['eval_seed']}), "
             f"{s['frames']}x{s['size']}x{s['size']} clips, world {', '.join(s['world_set']) or 'built-in'}; held-out "
             f"visual-token loss on {s['heldout']} held-out clips. Evaluated on {curve.get('threads', 1)} thread(s). "
             "colour+motion = share of objects whose colour AND motion pass.", "",
             "| step | tokens | wall (h) | train loss | trainer eval loss | held-out visual loss | preview colour "
             "| preview motion | colour+motion | shape | whole clip | eval (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in curve["points"]:
        pv = p["preview"]
        tok = "-" if p["tokens"] is None else f"{p['tokens']:,}" + ("~" if p["tokens_estimated"] else "")
        wall = "-" if p["wall_s"] is None else f"{p['wall_s'] / 3600:.2f}"
        lines.append(f"| {p['step']} | {tok} | {wall} | {lc._f(p['train_loss'])} | {lc._f(p['trainer_eval_loss'])} | "
                     f"{lc._f(p['heldout_visual_loss'])} | {lc._f(pv['color'])} | {lc._f(pv['motion'])} | "
                     f"{lc._f(pv['color_motion'])} | {lc._f(pv['shape'])} | {lc._f(pv['clip'])} | {p['eval_s']:.0f} |")
    e = curve["extrapolation"]
    lines.append("")
    if any(p["tokens_estimated"] for p in curve["points"]):
        lines += ["~ tokens estimated (rows x tokens per row of the resumed piece).", ""]
    if e["ok"]:
        lines.append(f"Extrapolation (logit(colour+motion) vs ln tokens, {len(curve['points'])} points): "
                     f"{lc.TARGET:.0%} at ~{e['tokens']:,.0f} tokens. A straight-line fit through noisy points.")
    else:
        lines.append(f"No extrapolation: {e['why']}.")
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, name: str, curve: dict) -> None:
    from vidgpt.utils import atomic_write_text

    curve["points"].sort(key=lambda p: p["step"])
    curve["extrapolation"] = lc.extrapolate([(p["tokens"], p["preview"]["color_motion"], p["preview"]["objects"])
                                             for p in curve["points"]])
    atomic_write_text(out / f"{name}.json", json.dumps(curve, indent=1, default=str) + "\n")
    atomic_write_text(out / f"{name}.md", table(curve))
    nan = float("nan")
    pts = [{"tokens": p["tokens"], "train_wall_s": nan if p["wall_s"] is None else p["wall_s"], "preview": p["preview"],
            "heldout_visual_loss": nan if p["heldout_visual_loss"] is None else p["heldout_visual_loss"]}
           for p in curve["points"]]
    if pts:
        lc.plot([{"name": Path(curve["run"]).name, "points": pts, "extrapolation": curve["extrapolation"]}],
                out / f"{name}.png")


# --- main -------------------------------------------------------------------------------------------------------


def evaluate_new(args, run: Path, cfg, evaluator_box: list) -> int:
    """Evaluate the checkpoints not in the curve yet; returns how many were added."""
    from vidgpt.errors import VidgptError
    from vidgpt.train.lm_trainer import checkpoint_dirs

    settings = {"n": args.n, "eval_seed": args.eval_seed, "frames": args.frames, "size": args.size,
                "world_set": list(args.set), "heldout": args.heldout, "heldout_seed": args.heldout_seed,
                "full_clips": args.full_clips}
    path = args.out / f"{args.name}.json"
    curve = load_curve(path, run, settings)
    done = {p["step"] for p in curve["points"]}
    added = 0
    for ckpt in checkpoint_dirs(run):
        try:
            step = int(json.loads((ckpt / "trainer_state.json").read_text())["step"])
        except (OSError, ValueError, KeyError):
            continue  # vanished or incomplete
        if step in done or (args.every and step % args.every):
            continue
        if not evaluator_box:
            evaluator_box.append(Evaluator(run, cfg, args))
        try:
            point = point_of(run, ckpt, read_log(run), args.loss_window)
            point.update(evaluator_box[0].evaluate(ckpt))
        except (FileNotFoundError, VidgptError) as e:
            print(f"{ckpt}: skipped ({' '.join(str(e).split())[:200]})", flush=True)
            continue
        import torch

        point["evaluated_at"] = time.time()
        curve["threads"] = torch.get_num_threads()
        curve["points"].append(point)
        done.add(step)
        added += 1
        write_outputs(args.out, args.name, curve)  # after every point: a cut run loses at most one
        pv = point["preview"]
        print(f"step {step}: {point['tokens']} tokens, held-out visual loss {lc._f(point['heldout_visual_loss'])}, "
              f"preview colour {lc._f(pv['color'])} motion {lc._f(pv['motion'])} colour+motion "
              f"{lc._f(pv['color_motion'])} ({point['eval_s']:.0f} s)", flush=True)
    if curve["points"] and not added:
        write_outputs(args.out, args.name, curve)
    return added


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="training run directory (config.yaml, checkpoints/, log.jsonl)")
    ap.add_argument("--n", type=int, default=30, help="held-out prompts for the preview adherence (default 30)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="world config override for the held-out scenes, e.g. max_objects=1 (repeatable)")
    ap.add_argument("--frames", type=int, help="clip frames (default: the run's data manifest)")
    ap.add_argument("--size", type=int, help="clip height = width (default: the run's data manifest)")
    ap.add_argument("--heldout", type=int, default=8, help="held-out clips for the visual-token loss (0 = skip)")
    ap.add_argument("--heldout-seed", type=int, default=1)
    ap.add_argument("--eval-seed", type=int, default=0)
    ap.add_argument("--full-clips", type=int, default=0, help="full clips as a preview check (default 0)")
    ap.add_argument("--tokenizer", default="", help="video tokenizer dir (default: the run config's)")
    ap.add_argument("--every", type=int, default=0, help="only checkpoints whose step is a multiple of this")
    ap.add_argument("--loss-window", type=int, default=25, help="steps the training loss is averaged over")
    ap.add_argument("--out", help="where curve.json/md/png go (default: the run dir)")
    ap.add_argument("--name", default="curve", help="file name stem (default curve)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--watch", type=float, default=0, help="minutes between looks for new checkpoints until the run "
                    "has model/ (0 = once)")
    args = ap.parse_args(argv)

    import torch

    from vidgpt.config import load_config
    from vidgpt.train.lm_data import clip_size_of_sources
    from vidgpt.train.lm_trainer import LMTrainConfig

    torch.set_num_threads(args.threads)
    run = Path(args.run)
    if not (run / "config.yaml").is_file():
        raise SystemExit(f"{run}: not a training run (no config.yaml)")
    cfg = load_config(LMTrainConfig, run / "config.yaml")
    clip = clip_size_of_sources(cfg.data) or {}
    square = clip.get("height") if clip.get("height") == clip.get("width") else None
    args.frames, args.size = args.frames or clip.get("frames"), args.size or square
    if not args.frames or not args.size:
        raise SystemExit(f"{run}: no data manifest gives the clip size; pass --frames and --size")
    args.out = Path(args.out) if args.out else run
    args.out.mkdir(parents=True, exist_ok=True)
    box: list = []
    while True:
        added = evaluate_new(args, run, cfg, box)
        finished = (run / "model" / "vidgpt.json").is_file()
        if not args.watch or (finished and not added):
            break
        time.sleep(args.watch * 60)
    md = args.out / f"{args.name}.md"
    print(md.read_text() if md.is_file() else f"{run}: no checkpoints to evaluate yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
