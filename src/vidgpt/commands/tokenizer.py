"""`vidgpt tokenizer train|eval|encode|decode`."""

from __future__ import annotations

import sys

from ..cli import add_group
from ..errors import VidgptError


def register(sub) -> None:
    g = add_group(sub, "tokenizer", "train, evaluate and run the LFQ video tokenizer")

    p = g.add_parser("train", help="train a tokenizer from a YAML config", description="Train the LFQ video tokenizer. OUT/ ends up a tokenizer directory (config.json + model.safetensors); OUT/checkpoint/ holds the resumable state, OUT/log.jsonl the log.")
    p.add_argument("--config", required=True, help="YAML config, e.g. configs/tokenizer/default.yaml")
    p.add_argument("--out", help="output directory (default runs/tokenizer/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config value, e.g. --set train.steps=100 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    def tok_args(q, frames: int | None = 17):
        q.add_argument("--tokenizer", help="tokenizer directory (default: $VIDGPT_TOKENIZER or the shipped tokenizer/)")
        if frames is not None:
            q.add_argument("--frames", type=int, default=frames, help=f"frames to take from the start, 1+4n (default {frames}; fewer if the clip is shorter)")
            q.add_argument("--size", type=int, default=128, help="center crop to SIZE x SIZE, a multiple of 8 (default 128)")
        q.add_argument("--device", default="", help="cpu or cuda (default: cuda when present)")

    p = g.add_parser(
        "eval",
        help="reconstruction PSNR/SSIM of clips; round-trip judge on synthetic scenes",
        description="Encode and decode each clip; print PSNR, SSIM, tokens per clip and the share of the codebook used. "
        "With --synthetic N: render N held-out scenes of the synthetic world, round-trip them and report the share whose "
        "reconstruction still passes the project's judge (whole clips; objects' colour, shape, motion) and the same for the "
        "half-size blueprint (colour, motion): the ceiling this tokenizer puts on text-to-video adherence.",
    )
    p.add_argument("videos", nargs="*", metavar="VIDEO", help="video or image files (or frame folders)")
    tok_args(p)
    p.add_argument("--synthetic", type=int, default=0, metavar="N", help="round-trip judge on N held-out synthetic scenes (fixed by --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic scenes (default 0)")
    p.add_argument("--world-config", default="", metavar="YAML",
                   help="world config the synthetic scenes come from (default: built-in, as for `vidgpt data build-lm --config`)")
    p.add_argument("--set", dest="world_set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a world config value for --synthetic (repeatable), e.g. max_objects=1 or 'sizes=[huge]': "
                   "the ceiling on the scenes a model's scope covers")
    p.add_argument("--json", action="store_true", help="one JSON object per file on stdout (file, psnr, ssim, tokens, codebook_usage)")
    p.add_argument("--save-recon", metavar="DIR", help="write original|reconstruction side-by-side mp4s here")
    p.set_defaults(func=_eval)

    p = g.add_parser("encode", help="video -> codes file", description="Encode one video or image into a codes file (.safetensors or .npz) that also records the tokenizer's K and config hash.")
    p.add_argument("input", help="video or image file")
    p.add_argument("-o", "--output", required=True, help="codes file, .safetensors or .npz")
    tok_args(p)
    p.set_defaults(func=_encode)

    p = g.add_parser("decode", help="codes file -> video", description="Decode a codes file written by `vidgpt tokenizer encode` into a video.")
    p.add_argument("codes", help="codes file (.safetensors or .npz)")
    p.add_argument("-o", "--output", required=True, help="output video (.mp4, .gif or .png)")
    p.add_argument("--fps", type=int, default=8)
    tok_args(p, frames=None)
    p.set_defaults(func=_decode)


def _train(args) -> int:
    from pathlib import Path

    from ..config import load_config
    from ..train.tokenizer_trainer import TokenizerTrainConfig, train_tokenizer

    cfg = load_config(TokenizerTrainConfig, args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs/tokenizer") / Path(args.config).stem
    last = train_tokenizer(cfg, out, resume=args.resume, progress=not args.no_progress)
    summary = ", ".join(f"{k} {last[k]:.3f}" for k in ("loss", "psnr", "eval_psnr", "eval_usage") if k in last)
    print(f"tokenizer saved to {out} ({summary})")
    return 0


def _load_tokenizer(args):
    from ..tokenizer import VideoTokenizer, default_tokenizer_dir
    from ..utils import pick_device

    return VideoTokenizer.from_pretrained(args.tokenizer or default_tokenizer_dir(), device=pick_device(args.device or None))


def _eval(args) -> int:
    import json
    from pathlib import Path

    import torch

    from ..metrics import psnr, ssim
    from ..tokenizer import codebook_usage
    from ..tokenizer.clip_io import load_clip, save_side_by_side

    if args.synthetic < 0:
        raise VidgptError(f"--synthetic {args.synthetic}: the number of scenes must be >= 0")
    if not args.videos and not args.synthetic:
        raise VidgptError("tokenizer eval: give VIDEO files, or --synthetic N for the round-trip judge on synthetic scenes")
    tok = _load_tokenizer(args)
    if args.synthetic:
        _eval_synthetic(tok, args)
        if not args.videos:
            return 0
    failed = 0
    all_codes = []
    for path in args.videos:
        try:
            x = load_clip(path, args.frames, args.size)
            codes = tok.encode(x)
            recon = tok.decode(codes).cpu()
        except VidgptError as e:
            failed += 1
            print(f"vidgpt: error: {' '.join(str(e).split())}", file=sys.stderr)
            continue
        all_codes.append(codes.flatten())
        row = {
            "file": str(path),
            "psnr": round(psnr(recon, x), 3),
            "ssim": round(ssim(recon, x), 4),
            "tokens": int(codes.numel()),
            "codebook_usage": round(codebook_usage(codes, tok.codebook_bits), 6),
        }
        if args.save_recon:
            row["recon"] = str(save_side_by_side(Path(args.save_recon) / (Path(path).stem + "_recon.mp4"), x, recon))
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            t, h, w = codes.shape
            print(f"{path}: PSNR {row['psnr']:.2f} dB  SSIM {row['ssim']:.4f}  tokens {row['tokens']} ({t}x{h}x{w})  codebook used {100 * row['codebook_usage']:.3f}%" + (f"  -> {row['recon']}" if "recon" in row else ""))
    if all_codes and not args.json and len(all_codes) > 1:
        print(f"all clips: codebook used {100 * codebook_usage(torch.cat(all_codes), tok.codebook_bits):.3f}% of {tok.codebook_size}")
    if failed:
        print(f"vidgpt: error: {failed} of {len(args.videos)} file(s) failed", file=sys.stderr)
        return 1
    return 0


def _eval_synthetic(tok, args) -> None:
    import json

    from tqdm import tqdm

    from ..data.synthetic import load_world_config
    from ..tokenizer_ceiling import heldout_scenes, roundtrip_judge

    if args.size % (2 * tok.space_factor):
        raise VidgptError(f"--size {args.size}: the round-trip judge needs a multiple of {2 * tok.space_factor} (blueprint at half size)")
    world = load_world_config(args.world_config or None, args.world_set, frames=args.frames)  # the judge renders at 8 fps
    scenes = heldout_scenes(args.synthetic, seed=args.seed, config=world)
    for blueprint in (False, True):
        bar = tqdm(total=len(scenes), desc="blueprint" if blueprint else "fine", disable=not sys.stderr.isatty() or args.json, leave=False)
        rep = roundtrip_judge(tok, scenes, frames=args.frames, size=args.size, blueprint=blueprint, progress=bar.update)
        bar.close()
        print(json.dumps(rep.to_dict()) if args.json else rep.summary(), flush=True)


def _encode(args) -> int:
    from ..tokenizer.clip_io import load_clip
    from ..tokenizer.codes_file import save_codes

    tok = _load_tokenizer(args)
    x = load_clip(args.input, args.frames, args.size)
    codes = tok.encode(x).cpu()
    out = save_codes(args.output, codes, tok, source=str(args.input))
    t, h, w = codes.shape
    print(f"{out}: {codes.numel()} codes ({t}x{h}x{w}, K={tok.codebook_bits})")
    return 0


def _decode(args) -> int:
    from ..tokenizer.codes_file import load_codes
    from ..tokenizer.clip_io import write_clip

    tok = _load_tokenizer(args)
    codes = load_codes(args.codes, tok)
    video = tok.decode(codes).cpu()
    out = write_clip(args.output, video, fps=args.fps)
    print(f"{out}: {video.shape[-3]} frames of {video.shape[-2]}x{video.shape[-1]}")
    return 0
