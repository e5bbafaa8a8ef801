"""Judge a model's held-out clips three ways from ONE sampling: the full clip (the LM's fine section), the blueprint
preview (decoded at half size), and the blueprint decoded, upsampled 2x and re-encoded at full size (what skipping
the fine section would give).

    OMP_NUM_THREADS=2 python tools/judge_sections.py model --n 30 --frames 9 --size 128 \\
        --set max_objects=1 --set 'backgrounds=[solid]' [--dtype int8]

Prints the running colour shares and, at the end, the judge's shares per way (colour, shape, motion, object, clip).
The prompts are `vidgpt.evaluate.heldout_items` (the held-out compositions of the world given by --set), sampled
with CFG --cfg (3), --temperature (1) and --top-k (none) from generator seed --seed, --batch clips per decode call;
--negative opposite-motion guides away from the same caption with the motion reversed instead of the empty prompt.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None) -> int:
    import torch
    import torch.nn.functional as F

    from vidgpt.data.judge import judge_clip
    from vidgpt.evaluate import EvalConfig, attribute_shares, generate_batch, heldout_items, opposite_motion_prompts, other_motion_prompts
    from vidgpt.generate.pipeline import VidGPT
    from vidgpt.generate.sampling import make_generator

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--set", dest="world_set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--batch", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "int8", "auto"),
                    help="decoder weights (fast_decode.FastDecoder dtype; int8 smoothed on the model's int8_maxima)")
    ap.add_argument("--cfg", type=float, default=3.0, help="guidance scale (EvalConfig.cfg; 3 = vidgpt generate's)")
    ap.add_argument("--late-cfg", type=float, default=None,
                    help="guidance scale from the blueprint's second latent frame on (EvalConfig.late_cfg; default: --cfg)")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-k", type=int, default=None)
    ap.add_argument("--no-cfg-fine", action="store_true",
                    help="guidance on the header and blueprint only (decode option cfg_fine=False)")
    ap.add_argument("--negative", choices=("empty", "opposite-motion", "other-motions", "default"), default="empty",
                    help="the guidance's negative prompt: the empty prompt, the same caption with every motion reversed "
                         "(evaluate.opposite_motion_prompts; empty where a motion has no opposite), other-motions: the "
                         "caption with every direction turned by 90, 180 and 270 degrees, guided away from together "
                         "(evaluate.other_motion_prompts), or default: what "
                         "`vidgpt generate` uses on this model (VidGPT.default_negative of each prompt)")
    ap.add_argument("--follow-blueprint", type=float, default=1.0,
                    help="guidance scale of the fine section away from the same prompt over a still blueprint "
                         "(decode option follow_blueprint; 1 = off)")
    ap.add_argument("--follow-cells", choices=("all", "moved"), default="all",
                    help="where --follow-blueprint guides: every fine code, or those under blueprint cells that moved")
    ap.add_argument("--blueprint-mask", type=int, default=None, metavar="M",
                    help="draw the fine section only within M blueprint cells of what the blueprint shows; the rest "
                         "from the re-encoded preview (decode option blueprint_mask; default off)")
    ap.add_argument("--copy-gain", type=float, default=None, metavar="G",
                    help="the copy read-out's tilt gain at sampling time (decode option copy_gain; default: the model's "
                         "vidgpt.json copy_gain)")
    ap.add_argument("--best-of", type=int, default=None, metavar="N",
                    help="blueprints drawn per prompt that names a direction, the motion verifier's pick kept (decode "
                         "option best_of; default: the model's vidgpt.json best_of)")
    ap.add_argument("--fine-temperature", type=float, default=None, metavar="T",
                    help="the fine section's own temperature, drawn after the blueprint (decode option "
                         "fine_temperature; default: the model's vidgpt.json fine_temperature, else the temperature)")
    ap.add_argument("--motion-table", action="store_true",
                    help="also print, per section, how far the objects of straight-move prompts move and where to")
    ap.add_argument("--shape-table", action="store_true",
                    help="also print, for the full clips, each asked shape's share drawn right and the shapes the "
                         "judge saw instead (where shapes are lost: blobs read as circles, or one shape for all)")
    ap.add_argument("--preview-only", action="store_true",
                    help="sample the blueprint section alone and judge its preview: the full run's preview columns "
                         "(the sampler's noise is keyed by position, so the blueprints are the same), ~5x faster")
    args = ap.parse_args(argv)

    options = {"dtype": args.dtype, "cfg_fine": not args.no_cfg_fine, "follow_blueprint": args.follow_blueprint,
               "follow_cells": args.follow_cells}
    if args.best_of is not None:  # else the model's own setting
        options["best_of"] = args.best_of
    if args.fine_temperature is not None:  # else the model's own setting
        options["fine_temperature"] = args.fine_temperature
    if args.copy_gain is not None:  # else the model's own setting
        options["copy_gain"] = args.copy_gain
    if args.blueprint_mask is not None:  # else the model's own setting
        options["blueprint_mask"] = args.blueprint_mask
    pipe = VidGPT.from_pretrained(args.model, decode_options=options)
    cfg = EvalConfig(n=args.n, frames=args.frames, size=args.size, world_set=args.world_set, batch_size=args.batch,
                     seed=args.seed, cfg=args.cfg, late_cfg=args.late_cfg, temperature=args.temperature, top_k=args.top_k)
    items = heldout_items(cfg, cfg.world())
    if args.negative == "opposite-motion":
        negatives = opposite_motion_prompts(cfg, cfg.world())
    elif args.negative == "other-motions":
        negatives = other_motion_prompts(cfg, cfg.world())
    elif args.negative == "default":
        negatives = [pipe.default_negative(p) for _, _, p in items]
    else:
        negatives = [""] * len(items)
    gen = make_generator(args.seed, pipe.device)
    tok = pipe.video_tokenizer
    res = {"preview": []} if args.preview_only else {"full": [], "preview": [], "upsampled": []}
    t0 = time.time()
    for s in range(0, len(items), args.batch):
        batch = items[s : s + args.batch]
        blocks, full, preview = generate_batch(pipe, [p for _, _, p in batch], cfg, gen, negatives[s : s + args.batch],
                                               blueprint_only=args.preview_only)
        if args.preview_only:
            res["preview"] += [judge_clip(frames, scene, fps=cfg.fps) for (scene, _, _), frames in zip(batch, preview)]
            print(f"{s + len(batch)} clips, {time.time() - t0:.0f} s: preview colour "
                  f"{attribute_shares(res['preview'])['color']:.2f}", flush=True)
            continue
        with torch.inference_mode():
            half = tok.decode(torch.stack([b.blueprint for b in blocks]).to(tok.device))
            up = F.interpolate(half, scale_factor=(1, 2, 2), mode="trilinear", align_corners=False).clamp(-1, 1)
            again = pipe.to_frames(tok.decode(tok.encode(up)).float().cpu())
        for k, (scene, _, _) in enumerate(batch):
            for key, frames in (("full", full[k]), ("preview", preview[k]), ("upsampled", again[k])):
                res[key].append(judge_clip(frames, scene, fps=cfg.fps))
        print(f"{s + len(batch)} clips, {time.time() - t0:.0f} s: colour " +
              " ".join(f"{k} {attribute_shares(v)['color']:.2f}" for k, v in res.items()), flush=True)
    for k, v in res.items():
        sh = attribute_shares(v)
        print(f"{k:10s} " + " ".join(f"{a} {sh[a]:.3f}" for a in ("color", "shape", "motion", "object", "clip")))
    if args.motion_table:
        print(motion_table(items, res))
    if args.shape_table and "full" in res:
        print(shape_table(res["full"]))
    return 0


def shape_table(verdicts) -> str:
    """Per asked shape over the objects the judge saw: how many, the share drawn right, and the shapes it saw
    (most often first); the last row sums the shapes seen over all of them."""
    from collections import Counter

    seen = [o.shape for v in verdicts for o in v.objects if o.shape.observed is not None]
    lines = ["| asked shape | objects seen | right | judged as (count) |", "|---|---|---|---|"]
    for asked in sorted({c.expected for c in seen}):
        mine = [c for c in seen if c.expected == asked]
        got = Counter(c.observed for c in mine).most_common()
        lines.append(f"| {asked} | {len(mine)} | {np.mean([c.passed for c in mine]):.2f} | "
                     + ", ".join(f"{k} {n}" for k, n in got) + " |")
    total = Counter(c.observed for c in seen).most_common()
    lines.append(f"| all | {len(seen)} | {np.mean([c.passed for c in seen]) if seen else 0:.2f} | "
                 + ", ".join(f"{k} {n}" for k, n in total) + " |")
    return "\n".join(lines)


def motion_table(items, res) -> str:
    """Objects asked for a straight move (one of the 8 directions): their observed centroid speed (frame widths a
    second, from the judge's track; the judge calls a clip a move from 0.05), the share fast enough to be called a move,
    the share moving the asked way (within 45 degrees, fast enough), and the speed the world renders such moves at."""
    from vidgpt.data.judge import MIN_SPEED
    from vidgpt.data.world.scene import DIRECTIONS

    lines = ["| section | straight-move objects seen | mean speed (frame/s) | median | moving (>= 0.05) | "
             "moving the asked way |", "|---|---|---|---|---|---|"]
    asked = [(i, o) for i, (scene, _, _) in enumerate(items) for o in scene.objects if o.motion in DIRECTIONS]
    for key, verdicts in res.items():
        speeds, right = [], 0
        for i, o in asked:
            v = next((x for x in verdicts[i].objects if x.motion.expected == o.motion and "vx" in x.measures), None)
            if v is None:
                continue
            vx, vy = v.measures["vx"], v.measures["vy"]
            sp = float(np.hypot(vx, vy))
            speeds.append(sp)
            dx, dy = DIRECTIONS[o.motion]
            right += sp >= MIN_SPEED and (vx * dx + vy * dy) / sp >= np.cos(np.pi / 4)
        if speeds:
            sp = np.asarray(speeds)
            lines.append(f"| {key} | {len(sp)} of {len(asked)} | {sp.mean():.3f} | {np.median(sp):.3f} | "
                         f"{(sp >= MIN_SPEED).mean():.2f} | {right / len(sp):.2f} |")
    ref = [o.speed for _, o in asked]
    if ref:
        lines.append(f"(the world renders these moves at {np.mean(ref):.3f} frame/s on average)")
    return "\n".join(lines)


if __name__ == "__main__":
    from pathlib import Path

    from vidgpt.errors import run_tool

    run_tool(main, Path(__file__).name)
