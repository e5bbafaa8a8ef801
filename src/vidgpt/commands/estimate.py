"""`vidgpt estimate`: tokens, training compute, cost and inference time (see vidgpt.estimate)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "estimate",
        help="tokens per clip/hour, training FLOPs, GPU-hours and cost",
        description="Back-of-envelope numbers for a video corpus: tokens per clip, minute and hour of video at the "
        "tokenizer's 4x8x8 compression, total tokens, training FLOPs (6*P + 12*L*D*S per token), GPU-hours at an MFU, "
        "cost, and the inference cost of one clip. Formulas: `python -c 'import vidgpt.estimate as e; print(e.__doc__)'`.",
    )
    p.add_argument("--fps", type=float, default=8.0, help="frames per second of the clips (default 8)")
    p.add_argument("--size", type=int, default=128, help="square frame side, a multiple of 8 (default 128)")
    p.add_argument("--height", type=int, help="frame height (overrides --size)")
    p.add_argument("--width", type=int, help="frame width (overrides --size)")
    p.add_argument("--frames", type=int, default=17, help="frames per clip, 1+4k (default 17)")
    p.add_argument("--hours", type=float, default=100_000.0, help="hours of video in the corpus (default 100000)")
    p.add_argument("--images", type=int, default=0, help="images in the corpus (default 0)")
    p.add_argument("--image-size", type=int, default=128, help="image side (default 128 -> 256 tokens)")
    p.add_argument("--params", type=float, default=135e6, help="LLM parameters (default 135e6, SmolLM2-135M)")
    p.add_argument("--layers", type=int, default=30, help="LLM layers (default 30)")
    p.add_argument("--hidden", type=int, default=576, help="LLM hidden size (default 576)")
    p.add_argument("--seq-len", type=int, default=8192, help="training sequence length (default 8192)")
    p.add_argument("--mfu", type=float, default=0.4, help="model FLOP utilization (default 0.4)")
    p.add_argument("--gpu-peak-tflops", type=float, default=989.0, help="GPU peak TFLOP/s (default 989, H100 bf16 dense)")
    p.add_argument("--price-per-gpu-hour", type=float, default=2.0, help="USD per GPU-hour (default 2.0)")
    p.add_argument("--bandwidth-gbs", type=float, default=3350.0, help="GPU memory bandwidth GB/s for decoding (default 3350)")
    p.add_argument("--no-blueprint", action="store_true", help="inference writes only the fine tokens")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    p.set_defaults(func=_estimate)


def _estimate(args) -> int:
    import json

    from ..estimate import EstimateInputs, estimate, format_report

    inp = EstimateInputs(
        fps=args.fps, size=args.size, height=args.height, width=args.width, frames=args.frames, hours=args.hours,
        images=args.images, image_size=args.image_size, params=args.params, layers=args.layers, hidden=args.hidden,
        seq_len=args.seq_len, mfu=args.mfu, gpu_peak_tflops=args.gpu_peak_tflops,
        price_per_gpu_hour=args.price_per_gpu_hour, bandwidth_gbs=args.bandwidth_gbs, blueprint=not args.no_blueprint,
    )
    r = estimate(inp)
    print(json.dumps(r, indent=2) if args.json else format_report(r))
    return 0
