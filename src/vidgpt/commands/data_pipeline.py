"""`vidgpt data ingest | recaption | stats`: real videos -> token shards, captions rewritten by an LM.

`register_pipeline_commands(data_subparsers)` adds the three subcommands to the `vidgpt data`
group (commands/data.py calls it).
"""

from __future__ import annotations

INGEST_HELP = (
    "Tokenize real videos and images into Parquet token shards (docs/CONTRACTS.md). INPUT is a folder, a media "
    "file, or a caption file (.jsonl/.csv/.tsv with path and caption columns; the synthetic manifest of "
    "`vidgpt data synth`, edit pairs included). Captions: the listing file, else --captions, else a sidecar .txt. "
    "Videos are resampled to --fps, cut into clips and sent to the nearest --buckets shape by aspect ratio "
    "(longest length that fits); images become 1-frame records. Slices: --num-shards N --shard-index I, or one "
    "slice per process under `accelerate launch`. Rerunning the same command resumes; unreadable files are "
    "listed in OUT/report.json."
)


def register_pipeline_commands(g) -> None:
    """Add `ingest`, `recaption` and `stats` to the subparsers `g` of the `vidgpt data` group."""
    from ..data.ingest import DEFAULT_BUCKETS

    p = g.add_parser("ingest", help="tokenize real videos/images into token shards", description=INGEST_HELP)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="folders, media files or caption files (.jsonl/.csv/.tsv)")
    p.add_argument("--out", required=True, help="output shard directory")
    p.add_argument("--captions", action="append", default=[], metavar="FILE", help="caption file for the media found in folders (repeatable)")
    p.add_argument("--tokenizer", help="tokenizer directory (default: $VIDGPT_TOKENIZER or the shipped tokenizer/)")
    p.add_argument("--buckets", default=DEFAULT_BUCKETS, help=f"target shapes FRAMESxHEIGHTxWIDTH, comma-separated (default {DEFAULT_BUCKETS})")
    p.add_argument("--fps", type=float, default=8.0, help="resample videos to this frame rate (default 8; 0 keeps each file's rate)")
    p.add_argument("--stride", type=int, help="frames between clip starts at the target fps (default: the clip length, no overlap)")
    p.add_argument("--max-clips-per-file", type=int, help="at most this many clips from one file")
    p.add_argument("--max-frames-per-file", type=int, help="read at most this many frames (at the target fps) of a file")
    p.add_argument("--scene-cuts", action="store_true", help="cut clips only inside scenes (frame-difference threshold)")
    p.add_argument("--scene-threshold", type=float, default=0.3, help="mean absolute thumbnail difference (0..1) that marks a cut (default 0.3)")
    p.add_argument("--no-blueprint", action="store_true", help="do not compute blueprint codes")
    p.add_argument("--batch-size", type=int, default=8, help="clips per tokenizer call (default 8)")
    p.add_argument("--records-per-chunk", type=int, default=256, help="records per Parquet chunk (default 256)")
    p.add_argument("--num-shards", type=int, help="split the files into N slices (default 1, or the process count under accelerate)")
    p.add_argument("--shard-index", type=int, help="which slice this process takes, 0..N-1")
    p.add_argument("--device", default="", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_ingest)

    p = g.add_parser(
        "recaption",
        help="add LM-rewritten captions to a manifest",
        description="Expand short captions into detailed ones (--mode expand) or paraphrase them (--mode paraphrase) with a "
        "causal LM (the embedded SmolLM2 by default, or a local HF model dir / hub id), and add the accepted rewrites to "
        "each record's `captions`. Garbage answers fall back to the original caption and are counted. Answers are cached "
        "in --cache, so a rerun makes no model calls.",
    )
    p.add_argument("--in", dest="input", required=True, help="JSONL manifest with a caption per record")
    p.add_argument("--out", required=True, help="output JSONL (may equal --in)")
    p.add_argument("--mode", choices=["expand", "paraphrase"], default="expand", help="expand (default) or paraphrase")
    p.add_argument("--model", default="smollm2-135m", help="smollm2-135m (embedded, default), a HF model directory or hub id")
    p.add_argument("--num", type=int, default=2, help="rewrites per caption when sampling (default 2; greedy gives 1)")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature; 0 = greedy (default 0.7)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--max-new-tokens", type=int, default=96, help="longest answer in tokens (default 96)")
    p.add_argument("--batch-size", type=int, default=16, help="captions per generate() call (default 16)")
    p.add_argument("--cache", help="cache directory (default: OUT's folder/.recaption-cache)")
    p.add_argument("--device", default="", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_recaption)

    p = g.add_parser("stats", help="counts of a token shard directory", description="Print records by kind and by latent shape, visual token totals and skipped files of a shard directory.")
    p.add_argument("dir", metavar="DIR", help="shard directory (written by `vidgpt data ingest`)")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(func=_stats)


def _ingest(args) -> int:
    import os

    from ..data.ingest import IngestConfig, distributed_slice, gather_items, ingest
    from ..errors import DataError
    from ..tokenizer import VideoTokenizer, default_tokenizer_dir
    from ..utils import pick_device

    num, index = args.num_shards, args.shard_index
    if num is None and index is None:
        num, index = distributed_slice()
    elif num is None or index is None:
        raise DataError("--num-shards and --shard-index go together")
    device = args.device or None
    if device is None and num > 1 and os.environ.get("LOCAL_RANK"):
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}"
    cfg = IngestConfig(
        buckets=args.buckets, fps=args.fps or None, stride=args.stride, max_clips_per_file=args.max_clips_per_file,
        max_frames_per_file=args.max_frames_per_file, scene_cuts=args.scene_cuts, scene_threshold=args.scene_threshold,
        blueprint=not args.no_blueprint, batch_size=args.batch_size, records_per_chunk=args.records_per_chunk,
    )
    tok_dir = args.tokenizer or default_tokenizer_dir()
    tokenizer = VideoTokenizer.from_pretrained(tok_dir, device=pick_device(device)).eval()
    items = gather_items(args.inputs, args.captions)
    if not items:
        raise DataError(f"no media files found in {', '.join(args.inputs)}")
    result = ingest(items, args.out, tokenizer, cfg, num_shards=num, shard_index=index,
                    progress=not args.no_progress, tokenizer_dir=str(tok_dir))
    print(f"ingest slice {index}/{num}: {result.summary()}")
    if result.files_skipped:
        print(f"skipped files and why: {args.out}/report.json")
    return 0


def _recaption(args) -> int:
    import json
    from pathlib import Path

    from ..data.captions import read_jsonl
    from ..data.recaption import RewriteCache, RewriteSettings, load_rewriter, recaption_records
    from ..utils import atomic_path

    records = read_jsonl(args.input)
    settings = RewriteSettings(mode=args.mode, num=args.num, max_new_tokens=args.max_new_tokens,
                               temperature=args.temperature, top_p=args.top_p, seed=args.seed)
    cache = RewriteCache(args.cache or Path(args.out).parent / ".recaption-cache")
    model, tok, model_id = load_rewriter(args.model, device=args.device or None)
    stats = recaption_records(records, model, tok, settings, model_id=model_id, batch_size=args.batch_size,
                              cache=cache, progress=not args.no_progress)
    with atomic_path(args.out) as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    res = stats.result
    print(f"recaption ({args.mode}, {model_id}): {stats.records} records, {stats.new_captions} new captions on "
          f"{stats.rewritten} records, {res.fallbacks} garbage answers fell back to the original, {res.cached} from the "
          f"cache, {res.model_calls} model calls, {stats.without_caption} records without caption -> {args.out}")
    return 0


def _stats(args) -> int:
    import json

    from ..data.shards import format_stats, shard_stats

    stats = shard_stats(args.dir)
    print(json.dumps(stats) if args.json else format_stats(stats))
    return 0
