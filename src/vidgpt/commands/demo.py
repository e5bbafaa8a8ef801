"""`vidgpt demo`: the README's main job on the embedded defaults.

`vidgpt demo --gallery` draws a clip for each of a few prompts with the default model (or --model) and writes
them side by side with each prompt under its clip: gallery.gif, gallery.png (frames) and one mp4 per prompt.
`vidgpt demo` without it is the tokenizer round trip: it renders a clip from the synthetic world, encodes it
with the shipped video tokenizer into codes and the blueprint, decodes both, and writes
original | reconstruction | blueprint preview side by side.
"""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the default model's clips for a few prompts (--gallery), or the tokenizer round trip of a clip",
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
    p.add_argument("--gallery", action="store_true",
                   help="draw --prompts with the default model (or --model) instead of the tokenizer round trip")
    p.add_argument("--model", default=None, help="--gallery: model dir (default: $VIDGPT_MODEL or the shipped model/)")
    p.add_argument("--prompts", default="|".join(GALLERY_PROMPTS),
                   help="--gallery: prompts separated by | (default: %(default)s)")
    p.set_defaults(func=run)


# one object over a plain background moving one of the four ways, none of them a held-out composition: what the
# default model was trained for (its scope since piece 24)
GALLERY_PROMPTS = ("a red circle moving right", "a blue square moving left", "a yellow triangle moving up",
                   "a green hexagon moving down")


def gallery_frames(clips, labels, line_chars: int = 21, gap: int = 4):
    """uint8 [T, H', W', 3]: the clips side by side on white, each prompt wrapped under its clip (same T, H, W)."""
    import textwrap

    import numpy as np
    from PIL import Image, ImageDraw

    t, h, w = clips[0].shape[:3]
    lines = [textwrap.wrap(text, max(4, line_chars * w // 128))[:3] for text in labels]
    band = 12 * max(len(x) for x in lines) + gap
    width, height = len(clips) * (w + gap) + gap, h + band + 2 * gap
    base = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(base)
    for k, ls in enumerate(lines):
        for j, line in enumerate(ls):
            draw.text((gap + k * (w + gap), gap + h + 2 + 12 * j), line, fill=(0, 0, 0))
    out = np.repeat(np.asarray(base)[None], t, axis=0).copy()
    for k, clip in enumerate(clips):
        out[:, gap:gap + h, gap + k * (w + gap):gap + k * (w + gap) + w] = clip
    return out


def run_gallery(args) -> int:
    import re
    import time
    from pathlib import Path

    from ..data import video_io
    from ..errors import GenerationError
    from ..generate.pipeline import resolve_model_dir
    from .generate import load_pipeline

    prompts = [x.strip() for x in args.prompts.split("|") if x.strip()]
    if not prompts:
        raise GenerationError("--prompts: give at least one prompt (separated by |)")
    d = resolve_model_dir(args.model)
    t0 = time.time()
    pipe = load_pipeline(d)  # as `vidgpt generate` loads it, with its defaults
    load_s = time.time() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clips, seconds = [], []
    for text in prompts:
        t0 = time.time()
        res = pipe.generate(text, seed=args.seed)
        seconds.append(time.time() - t0)
        clips.append(res.videos[0])
        name = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60] or "clip"
        video_io.write_video(out / f"{name}.mp4", res.videos[0], fps=args.fps)
        print(f"{seconds[-1]:5.1f} s  {text!r} -> {out / (name + '.mp4')}")
    frames = gallery_frames(clips, prompts)
    video_io.write_video(out / "gallery.gif", frames, fps=args.fps)
    video_io.save_contact_sheet(out / "gallery.png", frames)
    t, h, w = clips[0].shape[:3]
    print(f"model {d} loaded in {load_s:.1f} s; {len(prompts)} clips of {t}x{h}x{w}, seed {args.seed}, "
          f"{sum(seconds) / len(seconds):.1f} s a clip")
    print(f"wrote {out / 'gallery.gif'} (the clips with their prompts), {out / 'gallery.png'}")
    return 0


def run(args) -> int:
    if args.gallery:
        return run_gallery(args)
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
