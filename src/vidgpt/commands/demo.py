"""`vidgpt demo`: the README's main job on the embedded defaults.

Until a default LM ships (the GPU training issue), the demo is a tokenizer round trip: it renders a
clip from the synthetic world, encodes it with the shipped video tokenizer into codes and the
blueprint, decodes both, and writes original | reconstruction | blueprint preview side by side.
"""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="tokenizer round trip of a generated clip, written to mp4 (the README's main job)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-o", "--out", default="outputs/demo", help="output folder (default: %(default)s)")
    p.add_argument("--tokenizer", default=None, help="video tokenizer dir (default: the shipped tokenizer/)")
    p.add_argument("--frames", type=int, default=17, help="frames, 1+4n (default: %(default)s)")
    p.add_argument("--height", type=int, default=128, help="height, a multiple of 8 (default: %(default)s)")
    p.add_argument("--width", type=int, default=128, help="width, a multiple of 8 (default: %(default)s)")
    p.add_argument("--fps", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    import numpy as np
    import torch

    from ..data import video_io
    from ..data.synthetic import WorldConfig, caption, render_scene, sample_scene
    from ..errors import GenerationError
    from ..metrics import psnr, ssim
    from ..tokenizer import VideoTokenizer, blueprint_input, default_tokenizer_dir

    if args.height % 8 or args.width % 8 or min(args.height, args.width) < 8:
        raise GenerationError(f"{args.height}x{args.width}: height and width must be multiples of 8 (the tokenizer's compression)")
    if args.frames < 1 or (args.frames - 1) % 4:
        raise GenerationError(f"--frames {args.frames}: must be 1 + 4n (1, 5, 9, 13, 17, ...)")
    tok_dir = Path(args.tokenizer) if args.tokenizer else default_tokenizer_dir()
    tok = VideoTokenizer.from_pretrained(tok_dir).eval()

    rng = np.random.default_rng(args.seed)
    scene = sample_scene(rng, WorldConfig())
    text = caption(scene, rng, style="detailed")
    clip = render_scene(scene, frames=args.frames, height=args.height, width=args.width, fps=args.fps)
    x = video_io.frames_to_tensor(clip).unsqueeze(0)

    with torch.inference_mode():
        codes = tok.encode(x)
        recon = tok.decode(codes)
        bp_codes = tok.encode(blueprint_input(x, tok.space_factor))
        bp = tok.decode(bp_codes)
        bp_up = torch.nn.functional.interpolate(
            bp[0].transpose(0, 1), size=(args.height, args.width), mode="nearest"
        ).transpose(0, 1)[None]

    rec_frames = video_io.tensor_to_frames(recon[0])
    bp_frames = video_io.tensor_to_frames(bp_up[0])
    side = np.concatenate([clip, rec_frames, bp_frames], axis=2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mp4 = out / "roundtrip.mp4"
    video_io.write_video(mp4, side, fps=args.fps)
    video_io.write_video(out / "roundtrip.gif", side, fps=args.fps)
    video_io.save_contact_sheet(out / "frames.png", side)

    t, h, w = codes.shape[1:]
    usage = codes.unique().numel() / tok.codebook_size
    print(f"clip: {text!r} ({args.frames}x{args.height}x{args.width})")
    print(f"tokens: {t}x{h}x{w} = {t * h * w} fine + {bp_codes[0].numel()} blueprint, K={tok.codebook_bits}")
    print(f"reconstruction: PSNR {psnr(recon, x):.2f} dB, SSIM {ssim(recon, x):.3f}; codes used {usage:.2%} of the codebook")
    print(f"wrote {mp4} (original | reconstruction | blueprint preview), {out / 'roundtrip.gif'}, {out / 'frames.png'}")
    return 0
