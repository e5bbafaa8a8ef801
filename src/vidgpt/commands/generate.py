"""`vidgpt generate`, `vidgpt edit` and `vidgpt chat`: make, edit and talk about clips."""

from __future__ import annotations

import sys


# The CLI's speculative default (docs/DECODING.md, "Speculative decoding by default"): on the shipped model K=4 exact
# windows keep ~2 of 4 drafts a pass; a pass over 5 positions costs ~1.4 one-token steps, hence the give-up rate.
AUTO_SPECULATIVE = 4
AUTO_GIVE_UP = 1.5


def _model_args(p) -> None:
    p.add_argument("--model", help="vidgpt model directory (default: $VIDGPT_MODEL or the shipped model/)")
    p.add_argument("--device", default="", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--plain", action="store_true", help="use the plain transformers decode loop instead of the fast one")
    p.add_argument("--speculative", type=int, default=None, metavar="K",
                   help="speculative Jacobi decoding with K drafts per pass (the same tokens up to float rounding). "
                        f"Default: {AUTO_SPECULATIVE} drafts, back to one token a pass when fewer than "
                        f"{AUTO_GIVE_UP} tokens come per pass (an untrained model); 0 = off")
    p.add_argument("--speculative-mode", choices=("exact", "sjd"), default="exact",
                   help="with --speculative: exact (the same tokens as one a pass) or sjd (approximate acceptance: "
                        "more drafts kept, another clip for a seed; docs/DECODING.md)")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--bf16-weights", action="store_true",
                   help="bfloat16 linear weights (default on CPUs with native bf16 (AVX512-BF16/AMX): ~1.6x faster "
                        "products, next-code distributions within KL 1e-4 of fp32; emulated and slower elsewhere)")
    w.add_argument("--fp32-weights", action="store_true",
                   help="fp32 weights everywhere: the exact path (the same tokens as --plain up to float rounding)")
    w.add_argument("--int8-weights", action="store_true",
                   help="CPU: int8 decoder weights with 8-bit activations (fbgemm dynamic linear, smoothed on the "
                        "model's int8_maxima.safetensors): ~2x faster decoding on AVX2 CPUs; an approximation "
                        "(next-code KL ~7e-3 nats against fp32, docs/DECODING.md)")
    p.add_argument("--int8-head", action="store_true",
                   help="with --int8-weights: the head's visual rows in int8 too (smoothed on the model's final-norm "
                        "maxima): a faster head kernel but measured SLOWER end to end (49 s vs 25-28 s for 17 frames) "
                        "and a little further from fp32 (KL ~8e-3); experimental, docs/DECODING.md")


def _sampling_args(p) -> None:
    p.add_argument("--seed", type=int, default=None, help="random seed (same seed, same clip)")
    p.add_argument("--cfg", type=float, default=3.0, help="classifier-free guidance scale (1 = off; default 3)")
    p.add_argument("--negative", default="", metavar="TEXT",
                   help="negative prompt for guidance (default: the empty prompt, or for `generate` on a model that "
                        "contrasts motion the prompt with its motion reversed)")
    p.add_argument("--cfg-fine", action="store_true",
                   help="guide the fine section too. Default: guidance on the clip's header and blueprint only, the fine "
                        "section drawn from the conditional row alone (half the rows a pass, 1.5-1.6x faster at 17 "
                        "frames on the CPU, the same judged adherence on 30 held-out prompts; docs/DECODING.md)")
    p.add_argument("--blueprint-mask", type=int, default=None, metavar="M",
                   help="draw the fine section only within M blueprint cells of what the blueprint shows over its "
                        "background; the other fine cells are set from the blueprint's own re-encoded preview and fed "
                        "several a pass (default: the model's vidgpt.json setting, else off; model/README.md)")
    p.add_argument("--copy-gain", type=float, default=None, metavar="G",
                   help="on a model with a copy read-out: how strongly the prompt's direction steers which cell of the "
                        "previous blueprint frame each code copies (0 = off; default: the model's vidgpt.json "
                        "copy_gain; model/README.md measures 1-4)")
    p.add_argument("--best-of", type=int, default=None, metavar="N",
                   help="on a model with a motion verifier: draw N blueprints for a prompt that names a direction and "
                        "keep the one the verifier finds likeliest to move that way (text-to-video prompts and new clips in "
                        "chat; an edit draws one; 1 = off; default: the model's vidgpt.json best_of)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0 = greedy)")
    p.add_argument("--fine-temperature", type=float, default=None, metavar="T",
                   help="the fine section's own temperature: the header and blueprint are drawn first (at --temperature), "
                        "then the fine codes at T (default: the model's vidgpt.json fine_temperature, else --temperature)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the K most likely codes")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(sub) -> None:
    p = sub.add_parser(
        "generate", help="text -> video or image",
        description="Generate clips from a text prompt: the LM writes a coarse blueprint, then the fine tokens, "
        "under a structure constraint; the video tokenizer decodes them. Prints the paths written.",
    )
    p.add_argument("prompt", help="what the clip shows, e.g. \"a red circle moves right\"")
    p.add_argument("-o", "--output", default="out.mp4", help="output file (.mp4, .gif, or .png for images; default out.mp4)")
    p.add_argument("--frames", type=int, default=None, help="frames, 1+4n (1 = image; default: the model's clip size, 17 when it records none)")
    p.add_argument("--height", type=int, default=None, help="pixels, a multiple of 16 (default: the model's, 128)")
    p.add_argument("--width", type=int, default=None, help="pixels, a multiple of 16 (default: the model's, 128)")
    p.add_argument("--clip-frames", type=int, default=None, help="draw longer videos clip by clip of this many frames, each continuing the last")
    p.add_argument("--num", type=int, default=1, help="samples for the prompt, drawn in one batch (files get -0, -1, ... suffixes)")
    p.add_argument("--blueprint-only", action="store_true", help="stop after the blueprint: a fast half-size preview, upsampled 2x")
    p.add_argument("--gif", action="store_true", help="write a .gif instead of the output's extension")
    p.add_argument("--grid", action="store_true", help="also write a PNG contact sheet of the frames")
    p.add_argument("--fps", type=float, default=None, help="frames per second of the written video (default: the model's, 8)")
    p.add_argument("--no-expand", action="store_true", help="do not let the LM expand the prompt into a detailed caption")
    contrast = p.add_mutually_exclusive_group()
    contrast.add_argument("--contrast-motion", dest="contrast_motion", action="store_true", default=None,
                          help="guide away from the prompt with its motion reversed (\"moving right\" -> \"moving left\") "
                               "instead of the empty prompt, so the guidance carries the direction. Default: on when the "
                               "model's vidgpt.json says so (the shipped model: yes; model/README.md, \"Motion-contrast "
                               "guidance\") and no --negative is given")
    contrast.add_argument("--no-contrast-motion", dest="contrast_motion", action="store_false",
                          help="guide away from the empty prompt (or --negative) even on a model that contrasts motion")
    _sampling_args(p)
    _model_args(p)
    p.set_defaults(func=_generate)

    p = sub.add_parser(
        "edit", help="edit a clip: continue, inpaint, outpaint, interpolate or follow an instruction",
        description="Edit a video with the LM. The source clip is cut to 1+4n frames and cropped to a multiple of 16 "
        "pixels. For inpaint and outpaint the known pixels are pasted back from the source after decoding.",
    )
    p.add_argument("input", help="input video or image")
    p.add_argument("instruction", nargs="?", default="", help="what to change (needed for --task instruct)")
    p.add_argument("-o", "--output", required=True, help="output file (.mp4, .gif or .png)")
    p.add_argument("--task", default="instruct", choices=["continue", "inpaint", "outpaint", "interpolate", "instruct"])
    p.add_argument("--mask", help="inpaint region: x0,y0,x1,y1 in pixels, or a mask image (white = repaint)")
    p.add_argument("--frames", type=int, default=None, help="use at most this many input frames")
    p.add_argument("--height", type=int, default=None, help="resize the input to this height first")
    p.add_argument("--width", type=int, default=None, help="resize the input to this width first")
    p.add_argument("--num", type=int, default=1, help="samples (files get -0, -1, ... suffixes)")
    p.add_argument("--grid", action="store_true", help="also write a PNG contact sheet of the frames")
    p.add_argument("--fps", type=float, default=None, help="frames per second of the written video")
    _sampling_args(p)
    _model_args(p)
    p.set_defaults(func=_edit)

    p = sub.add_parser(
        "chat", help="talk about clips in the terminal",
        description="A terminal conversation: ask for clips, then refer to them (\"make it blue\", \"continue it\", "
        "\"clip 1\"). Each clip is saved and its path printed. Commands: /save [path], /reset, /help, /quit.",
    )
    p.add_argument("--out-dir", default="chat_clips", help="where clips are saved (default chat_clips/)")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: the model's clip size)")
    p.add_argument("--height", type=int, default=None, help="pixels (default: the model's)")
    p.add_argument("--width", type=int, default=None, help="pixels (default: the model's)")
    _sampling_args(p)
    _model_args(p)
    p.set_defaults(func=_chat)


def load_pipeline(model=None, *, device=None, plain: bool = False, speculative: int | None = None,
                  speculative_mode: str = "exact", dtype: str = "auto", int8_head: bool = False, cfg_fine: bool = False,
                  blueprint_mask: int | None = None, copy_gain: float | None = None, best_of: int | None = None,
                  fine_temperature: float | None = None):
    """The pipeline the CLI draws with: `model` (default: $VIDGPT_MODEL or model/), speculative windows on by default
    (exact mode, given up while they do not pay), guidance on the blueprint only unless `cfg_fine`, light loading
    unless `plain`; prints the model's status note."""
    from ..generate.pipeline import VidGPT, resolve_model_dir

    d = resolve_model_dir(model)  # one-line ModelError before anything heavy
    if speculative is None:  # the default: drafts while they pay (exact mode only; sjd is asked for by name)
        opts = {"speculative": AUTO_SPECULATIVE, "speculative_mode": speculative_mode,
                "speculative_give_up": AUTO_GIVE_UP if speculative_mode == "exact" else 0.0}
    else:
        opts = {"speculative": speculative, "speculative_mode": speculative_mode}
    opts["dtype"] = dtype
    opts["cfg_fine"] = bool(cfg_fine)
    if blueprint_mask is not None:  # else the model's own setting (vidgpt.json "blueprint_mask")
        opts["blueprint_mask"] = int(blueprint_mask)
    if copy_gain is not None:  # else the model's own setting (vidgpt.json "copy_gain")
        opts["copy_gain"] = float(copy_gain)
    if best_of is not None:  # else the model's own setting (vidgpt.json "best_of")
        opts["best_of"] = int(best_of)
    if fine_temperature is not None:  # else the model's own setting (vidgpt.json "fine_temperature")
        opts["fine_temperature"] = float(fine_temperature)
    if dtype == "int8":
        opts["int8_head"] = bool(int8_head)
    # light: the fast decoder's weights without transformers' model classes (seconds less a call; light_model.py)
    pipe = VidGPT.from_pretrained(d, device=device, fast=not plain, decode_options=opts, light=not plain)
    status = pipe.meta.get("status")
    if status:  # e.g. a default model still in training (tools/ship_model.py --status)
        print(f"vidgpt: note: {d}: {status}", file=sys.stderr)
    return pipe


def _load(args):
    from ..errors import GenerationError
    from ..generate.pipeline import resolve_model_dir

    d = resolve_model_dir(args.model)  # one-line ModelError before anything heavy
    if args.speculative is not None and args.speculative < 0:
        raise GenerationError(f"--speculative {args.speculative}: drafts per pass must be >= 0 (0 = off)")
    if args.int8_head and not args.int8_weights:
        raise GenerationError("--int8-head goes with --int8-weights")
    if args.bf16_weights:
        from ..utils import cpu_has_native_bf16

        if (args.device or "cpu") == "cpu" and not cpu_has_native_bf16():
            print("vidgpt: note: --bf16-weights: this CPU has no native bf16 (AVX512-BF16/AMX); emulated bf16 "
                  "is slower than fp32", file=sys.stderr)
        dtype = "bf16"
    elif args.int8_weights:
        from ..generate.fast_decode import int8_supported

        if (args.device or "cpu") != "cpu" or args.plain or not int8_supported():
            raise GenerationError("--int8-weights needs the fast path on a CPU with PyTorch's fbgemm/x86 quantized "
                                  "kernels (drop --plain / --device cuda)")
        dtype = "int8"
    else:  # bf16 where the CPU computes it natively (fast_decode.auto_bf16_weights), unless told otherwise
        dtype = "fp32" if args.fp32_weights else "auto"
    return load_pipeline(d, device=args.device or None, plain=args.plain, speculative=args.speculative,
                         speculative_mode=args.speculative_mode, dtype=dtype, int8_head=args.int8_head,
                         cfg_fine=bool(getattr(args, "cfg_fine", False)),
                         blueprint_mask=getattr(args, "blueprint_mask", None),
                         copy_gain=getattr(args, "copy_gain", None), best_of=getattr(args, "best_of", None),
                         fine_temperature=getattr(args, "fine_temperature", None))


def _print_written(paths) -> None:
    for p in paths:
        print(p)


def _generate(args) -> int:
    from pathlib import Path

    from ..errors import GenerationError

    if not args.prompt.strip():
        raise GenerationError("the prompt is empty; describe the clip to generate")
    if args.contrast_motion and args.negative:
        raise GenerationError("--contrast-motion makes its own negative prompt; drop --negative or --contrast-motion")
    pipe = _load(args)
    negative = args.negative or pipe.default_negative(args.prompt, args.contrast_motion)
    if negative and not args.negative:
        print(f"negative prompt (motion contrast): {negative}", file=sys.stderr)
    elif args.contrast_motion:
        print("negative prompt: none (the prompt names no motion to reverse)", file=sys.stderr)
    out = pipe.generate(
        args.prompt, frames=args.frames, height=args.height, width=args.width, num=args.num, seed=args.seed,
        cfg=args.cfg, negative_prompt=negative, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        blueprint_only=args.blueprint_only, expand=False if args.no_expand else None, clip_frames=args.clip_frames,
        progress=not args.no_progress,
    )
    path = Path(args.output)
    if args.gif:
        path = path.with_suffix(".gif")
    if out.prompt != args.prompt.strip():
        print(f"expanded prompt: {out.prompt}", file=sys.stderr)
    _print_written(out.save(path, fps=args.fps, grid=args.grid))
    return 0


def _edit(args) -> int:
    from ..data.video_io import read_video

    frames = read_video(args.input)  # VideoReadError names the file
    pipe = _load(args)
    out = pipe.edit(
        frames, args.instruction, task=args.task, mask=args.mask, height=args.height, width=args.width,
        max_frames=args.frames, num=args.num, seed=args.seed, cfg=args.cfg, negative_prompt=args.negative,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, progress=not args.no_progress,
    )
    _print_written(out.save(args.output, fps=args.fps, grid=args.grid))
    return 0


CHAT_HELP = """Ask for a clip ("make a red circle moving right"), then refer to it ("make it blue", "continue it",
"clip 1 but slower"). Commands: /save [path] saves the last clip (again), /reset starts over, /help, /quit."""


def _chat(args) -> int:
    from pathlib import Path

    from ..data.video_io import write_video
    from ..errors import VidgptError
    from ..generate.chat import ChatSession

    pipe = _load(args)
    session = ChatSession()
    out_dir = Path(args.out_dir)
    print("vidgpt chat -- /help for commands, /quit to leave")
    n = 0
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            print()
            return 0
        if not line:
            continue
        if line.startswith("/"):
            cmd, _, rest = line.partition(" ")
            if cmd in ("/quit", "/exit"):
                return 0
            if cmd == "/help":
                print(CHAT_HELP)
            elif cmd == "/reset":
                session.reset()
                print("(conversation cleared)")
            elif cmd == "/save":
                clips = [c for c in session.clips if c.frames is not None]
                if not clips:
                    print("(no clip to save yet)")
                    continue
                path = Path(rest.strip() or out_dir / f"clip-{len(clips)}.mp4")
                frames = clips[-1].frames
                if frames.shape[0] == 1 and path.suffix != ".png":
                    path = path.with_suffix(".png")
                print(f"saved {write_video(path, frames, fps=pipe.fps)}")
            else:
                print(f"unknown command {cmd}; /help lists them")
            continue
        try:
            reply = pipe.chat(
                line, session=session, frames=args.frames if not session.clips else None,
                height=args.height if not session.clips else None, width=args.width if not session.clips else None,
                seed=args.seed, cfg=args.cfg, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                progress=not args.no_progress,
            )
        except VidgptError as e:  # a bad turn does not end the conversation
            print(f"vidgpt: error: {' '.join(str(e).split())}", file=sys.stderr)
            continue
        if session.dropped:
            print(f"(left {session.dropped} oldest exchange(s) out of the context to make room)")
        if reply.is_clip:
            n += 1
            suffix = ".png" if reply.frames.shape[0] == 1 else ".mp4"
            path = write_video(out_dir / f"clip-{n}{suffix}", reply.frames, fps=pipe.fps)
            session.clips[-1].path = str(path)
            print(f"vidgpt> [clip {len(session.clips)}] {path}")
        else:
            print(f"vidgpt> {reply.text}")
