"""`vidgpt lm extend|train|build-prefs|merge|info`."""

from __future__ import annotations

from ..cli import add_group


def register(sub) -> None:
    from ..row_init import ROW_INITS

    g = add_group(sub, "lm", "extend an LLM with visual tokens, train it, merge LoRA adapters")

    p = g.add_parser(
        "extend", help="add the visual and layout tokens to a backbone",
        description="Load a causal LM (the embedded smollm2-135m, a local HF directory or a hub id), add the "
        "video tokenizer's codes and the layout tokens to its vocabulary (new rows = mean of the old rows + "
        "small seeded noise) and write a vidgpt LM directory that plain transformers loads, with vidgpt.json "
        "and the video tokenizer copied into video_tokenizer/.",
    )
    p.add_argument("--backbone", default="smollm2-135m", help="smollm2-135m (embedded, default), a HF causal-LM dir, a hub id, or tiny-<family> (a random tiny model: llama, qwen2, qwen3, mistral, gemma, gemma2, phi3, gpt_neox, gpt2)")
    p.add_argument("--tokenizer", help="video tokenizer directory (K is read from its config.json); default: the shipped tokenizer/")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--codebook-bits", type=int, help="K, overriding the tokenizer's config.json")
    p.add_argument("--subtokens", type=int, help="S sub-tokens per code (default 1 up to K=16, else the smallest S with <= 16 bits each; K=18 -> 2)")
    p.add_argument("--form", choices=["full", "delta"], default="full", help="full HF directory (default) or delta (new rows only, on top of the base)")
    p.add_argument("--pad-to-multiple-of", type=int, default=64, help="round the embedding rows up to this (default 64; 1 = exact)")
    p.add_argument("--plain-layout", action="store_true", help="record the plain (no chat template) layout in vidgpt.json")
    p.add_argument("--row-init", choices=ROW_INITS, default="mean",
                   help="new visual rows: the text rows' mean + noise (default); bits: + the code's LFQ bits @ a random matrix; "
                   "colour: + the text embedding of the colour the code decodes to; colour+bits: both (vidgpt.row_init)")
    p.add_argument("--row-init-scale", type=float, default=1.0, help="the structure's size (bits: std over the text rows'; colour: share of the colour word)")
    p.add_argument("--seed", type=int, default=0, help="seed of the new rows' noise")
    p.add_argument("--clip", default="17x128x128", metavar="TxHxW",
                   help="the clip one context must hold, with its blueprint and a prompt (default 17x128x128; 'none' skips the check)")
    p.set_defaults(func=_extend)

    p = g.add_parser(
        "train", help="continued pretraining from a YAML config",
        description="Continued pretraining on packed text/video sequences. Runs directly or under "
        "`accelerate launch` (see configs/accelerate/). OUT/checkpoints holds resumable state, OUT/log.jsonl "
        "the log, OUT/model the final vidgpt LM directory.",
    )
    p.add_argument("--config", required=True, help="YAML config, e.g. configs/lm/tiny.yaml")
    p.add_argument("--out", help="output directory (default runs/lm/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUT/checkpoints")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=100 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    p = g.add_parser(
        "merge", help="merge a LoRA adapter and save the full form",
        description="Load a vidgpt LM directory (delta form with adapter/, or full), merge the adapter into the "
        "weights and write the full form (a plain HF directory + vidgpt.json + video_tokenizer/).",
    )
    p.add_argument("--model", required=True, help="vidgpt LM directory")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=_merge)

    p = g.add_parser(
        "build-prefs", help="preference pairs from the model's own blueprints (for loss.preference_weight)",
        description="Render fresh train-split scenes of straight moves, sample the model's blueprints for their captions, "
        "judge each one's motion with the project's judge, and write every wrong-way sample as a pair against the true "
        "clip's blueprint, with the model's own margin as the DPO reference (vidgpt.train.preference_pairs).",
    )
    p.add_argument("--model", default="model", help="the vidgpt LM that samples (and is the reference; default model/)")
    p.add_argument("--out", required=True, help="output shard directory")
    p.add_argument("--num", type=int, default=100, help="scenes drawn (non-straight moves are skipped; default 100)")
    p.add_argument("--samples", type=int, default=2, help="blueprints sampled per prompt (default 2)")
    p.add_argument("--frames", type=int, default=9, help="frames per clip (default 9)")
    p.add_argument("--size", type=int, default=128, help="clip side (default 128)")
    p.add_argument("--duration", type=float, help="as build-lm's --duration (default: the clip's own length)")
    p.add_argument("--seed", type=int, default=0, help="scenes and sampling seed (default 0)")
    p.add_argument("--cfg", type=float, default=3.0, help="guidance scale of the sampling (default 3, vidgpt generate's)")
    p.add_argument("--batch", type=int, default=8, help="blueprints sampled per call (default 8)")
    p.add_argument("--winners", choices=["truth", "own"], default="truth",
                   help="the better side of a pair: the true clip's blueprint (truth, the default) or one of the model's "
                   "own samples of the same prompt that moved the asked way (own: both sides on-policy)")
    p.add_argument("--per-prompt", type=int, default=4, help="with --winners own: at most this many pairs a prompt (default 4)")
    p.add_argument("--config", help="world config YAML (default: built-in)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a world config value")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_build_prefs)

    p = g.add_parser("info", help="say what a directory holds",
                     description="Say what a directory holds: a vidgpt LM (full or delta form, vocabulary, layout, adapter), "
                     "a plain transformers model (family, shape, context, chat template, whether `lm extend` takes it), "
                     "a video tokenizer or a training run (checkpoints, final model).")
    p.add_argument("model", help="a directory")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    p.set_defaults(func=_info)


def _build_prefs(args) -> int:
    from ..data.synthetic import duration_overridden, load_world_config
    from ..errors import ConfigError
    from ..train.preference_pairs import PreferenceBuild, build_preferences

    if duration_overridden(args.overrides):
        raise ConfigError("build-prefs: set the world's duration with --duration SECONDS")
    b = PreferenceBuild(num=args.num, samples=args.samples, frames=args.frames, size=args.size, duration=args.duration,
                        seed=args.seed, cfg=args.cfg, batch=args.batch, winners=args.winners, per_prompt=args.per_prompt)
    build_preferences(args.model, args.out, b, load_world_config(args.config, args.overrides), progress=not args.no_progress)
    return 0


def _extend(args) -> int:
    from pathlib import Path

    from ..backbone import extend, save_vidgpt_lm
    from ..errors import ModelError

    tok_dir = args.tokenizer
    if tok_dir is None and args.codebook_bits is None:
        try:
            from ..tokenizer import default_tokenizer_dir

            tok_dir = str(default_tokenizer_dir())
        except ImportError as e:
            raise ModelError("no --tokenizer given and vidgpt.tokenizer is not importable; pass --tokenizer or --codebook-bits") from e
    if tok_dir is not None and not Path(tok_dir).is_dir():
        raise ModelError(f"{tok_dir}: video tokenizer directory not found")
    lm = extend(args.backbone, tok_dir, codebook_bits=args.codebook_bits, subtokens=args.subtokens, seed=args.seed,
                pad_to_multiple_of=args.pad_to_multiple_of, chat=not args.plain_layout, clip=_parse_clip(args.clip),
                row_init=args.row_init, row_init_scale=args.row_init_scale)
    save_vidgpt_lm(lm, args.out, form=args.form)
    print(f"extended {args.backbone}: {lm.vocab} -> {args.out} ({args.form} form)")
    return 0


def _train(args) -> int:
    from pathlib import Path

    from ..config import load_config
    from ..train.lm_trainer import LMTrainConfig, train_lm

    cfg = load_config(LMTrainConfig, args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs/lm") / Path(args.config).stem
    last = train_lm(cfg, out, resume=args.resume, progress=not args.no_progress)
    summary = ", ".join(f"{k} {last[k]:.4f}" for k in ("loss", "eval_loss") if k in last)
    import os

    if os.environ.get("RANK", "0") == "0":  # one line, from the main process
        print(f"model saved to {out / 'model'} ({summary}); log {out / 'log.jsonl'}")
    return 0


def _merge(args) -> int:
    from ..backbone import load_vidgpt_lm, save_vidgpt_lm

    lm = load_vidgpt_lm(args.model)  # merges adapter/ on load
    save_vidgpt_lm(lm, args.out, form="full")
    print(f"merged {args.model} -> {args.out}")
    return 0


def _parse_clip(text: str):
    from ..errors import ConfigError

    if text is None or text.strip().lower() == "none":
        return None
    try:
        t, h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--clip {text!r}: expected TxHxW, e.g. 17x128x128, or none") from None
    return t, h, w


def _info(args) -> int:
    import json

    from ..backbone import describe_dir, format_description

    info = describe_dir(args.model)
    print(json.dumps(info, indent=2) if args.json else format_description(info))
    return 0
