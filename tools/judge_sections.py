"""Judge a model's held-out clips three ways from ONE sampling: the full clip (the LM's fine section), the blueprint
preview (decoded at half size), and the blueprint decoded, upsampled 2x and re-encoded at full size (what skipping
the fine section would give).

    OMP_NUM_THREADS=2 python tools/judge_sections.py model --n 30 --frames 9 --size 128 \\
        --set max_objects=1 --set 'backgrounds=[solid]' [--dtype int8]

Prints the running colour shares and, at the end, the judge's shares per way (colour, shape, motion, object, clip).
The prompts are `vidgpt.evaluate.heldout_items` (the held-out compositions of the world given by --set), sampled
with CFG --cfg (3), --temperature (1) and --top-k (none) from generator seed --seed, --batch clips per decode call.
"""

from __future__ import annotations

import argparse
import time


def main(argv=None) -> int:
    import torch
    import torch.nn.functional as F

    from vidgpt.data.judge import judge_clip
    from vidgpt.evaluate import EvalConfig, attribute_shares, generate_batch, heldout_items
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
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-k", type=int, default=None)
    ap.add_argument("--no-cfg-fine", action="store_true",
                    help="guidance on the header and blueprint only (decode option cfg_fine=False)")
    args = ap.parse_args(argv)

    pipe = VidGPT.from_pretrained(args.model, decode_options={"dtype": args.dtype, "cfg_fine": not args.no_cfg_fine})
    cfg = EvalConfig(n=args.n, frames=args.frames, size=args.size, world_set=args.world_set, batch_size=args.batch,
                     seed=args.seed, cfg=args.cfg, temperature=args.temperature, top_k=args.top_k)
    items = heldout_items(cfg, cfg.world())
    gen = make_generator(args.seed, pipe.device)
    tok = pipe.video_tokenizer
    res = {"full": [], "preview": [], "upsampled": []}
    t0 = time.time()
    for s in range(0, len(items), args.batch):
        batch = items[s : s + args.batch]
        blocks, full, preview = generate_batch(pipe, [p for _, _, p in batch], cfg, gen)
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
    return 0


if __name__ == "__main__":
    from pathlib import Path

    from vidgpt.errors import run_tool

    run_tool(main, Path(__file__).name)
