"""`vidgpt data build-lm`: LM training shards straight from the synthetic world (vidgpt.data.lm_dataset).

`register_lm_data_commands(data_subparsers)` adds the subcommand to the `vidgpt data` group.
"""

from __future__ import annotations

BUILD_HELP = (
    "Render train-split synthetic scenes (never the held-out compositions), tokenize them with the video "
    "tokenizer (fine codes + blueprint codes) and write Parquet token shards for `vidgpt lm train` "
    "(a `shards` source): --num text-to-video clips with every caption style, --images 1-frame images, --edits "
    "edit pairs (scene edits: colour, shape, motion, add, remove, background; plus general edits: inpaint, "
    "outpaint, interpolate, reverse, mirror, greyscale) and --continuations (first part -> next part of a longer "
    "render). No mp4 in between. Unit i of each kind depends only on --seed and i: rerunning resumes, a larger "
    "--num adds units. --captions-out writes the short captions for `vidgpt data recaption` and stops; "
    "--recaptions reads its output back. --text-out writes plain English paragraphs for the LM's `text` source."
)


def register_lm_data_commands(g) -> None:
    p = g.add_parser("build-lm", help="render + tokenize synthetic LM training shards", description=BUILD_HELP)
    p.add_argument("--out", required=True, help="output shard directory")
    p.add_argument("--tokenizer", help="video tokenizer directory (default: $VIDGPT_TOKENIZER or the shipped tokenizer/)")
    p.add_argument("--num", type=int, default=1000, help="text-to-video clips (default 1000)")
    p.add_argument("--images", type=int, default=0, help="images, t=1 (default 0)")
    p.add_argument("--edits", type=int, default=0, help="edit pairs (default 0)")
    p.add_argument("--continuations", type=int, default=0, help="continuation pairs (default 0)")
    p.add_argument("--frames", type=int, default=17, help="frames per clip, 1+4n (default 17)")
    p.add_argument("--size", type=int, default=128, help="height and width, a multiple of 16 (default 128)")
    p.add_argument("--height", type=int, help="height (overrides --size)")
    p.add_argument("--width", type=int, help="width (overrides --size)")
    p.add_argument("--fps", type=float, default=8.0, help="frames per second of the world (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0); use another for more distinct data")
    p.add_argument("--config", help="world config YAML (default: built-in, same as configs/data/world.yaml)")
    p.add_argument("--duration", type=float, help="seconds a linear move's 28-42%% of the frame takes and objects stay "
                   "in frame (default: the clip's own length, frames / fps)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a world config value")
    p.add_argument("--general-edits", type=float, default=0.25, help="share of edits that are general edits (default 0.25)")
    p.add_argument("--no-blueprint", action="store_true", help="no blueprint codes (multiples of 8 then suffice)")
    p.add_argument("--batch-size", type=int, default=16, help="clips per tokenizer call (default 16)")
    p.add_argument("--records-per-chunk", type=int, default=256, help="records per Parquet chunk (default 256)")
    p.add_argument("--recaptions", help="JSONL written by `vidgpt data recaption` from --captions-out: adds the rewrites")
    p.add_argument("--captions-out", help="write the planned units' short captions as JSONL here (for recaption) and stop")
    p.add_argument("--text-out", help="also write plain English paragraphs (Python docs) as DIR/python-docs.txt")
    p.add_argument("--device", default="", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_build_lm)


def _build_lm(args) -> int:
    import json
    from pathlib import Path

    from ..data.lm_dataset import BuildLMConfig, build_lm_shards, caption_manifest, write_text_corpus
    from ..data.synthetic import duration_overridden, load_world_config
    from ..errors import ConfigError

    cfg = BuildLMConfig(
        num=args.num, images=args.images, edits=args.edits, continuations=args.continuations, frames=args.frames,
        height=args.height or args.size, width=args.width or args.size, fps=args.fps, seed=args.seed,
        batch_size=args.batch_size, records_per_chunk=args.records_per_chunk, blueprint=not args.no_blueprint,
        general_edits=args.general_edits, duration=args.duration,
    )
    if duration_overridden(args.overrides):
        raise ConfigError("build-lm: set the world's duration with --duration SECONDS (default: the clip's length)")
    world = load_world_config(args.config, args.overrides)
    if args.text_out:
        path, n = write_text_corpus(args.text_out)
        print(f"wrote {n} plain-text documents to {path}")
    if args.captions_out:
        from ..utils import atomic_path

        recs = caption_manifest(cfg, world)
        with atomic_path(args.captions_out) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
        print(f"wrote {len(recs)} captions to {args.captions_out}; rewrite them with "
              f"`vidgpt data recaption --in {args.captions_out} --out REWRITTEN.jsonl`, then pass --recaptions REWRITTEN.jsonl")
        return 0

    from ..tokenizer import VideoTokenizer, default_tokenizer_dir
    from ..utils import pick_device

    tok_dir = args.tokenizer or default_tokenizer_dir()
    tokenizer = VideoTokenizer.from_pretrained(tok_dir, device=pick_device(args.device or None)).eval()
    result = build_lm_shards(args.out, tokenizer, cfg, world, recaptions_path=args.recaptions,
                             tokenizer_dir=str(Path(tok_dir)), progress=not args.no_progress)
    print(f"build-lm: {result.summary()}")
    if result.units_skipped:
        print(f"skipped units and why: {Path(args.out) / 'report.json'}")
    return 0
