"""Benchmark the tokenizer: encode/decode frames/s, peak memory and achieved TFLOP/s.

    python tools/bench_tokenizer.py --config configs/tokenizer/default.yaml --batch-sizes 1 2
    python tools/bench_tokenizer.py --config configs/tokenizer/gpu.yaml --device cuda --batch-sizes 1 4 16

Clips are 17x128x128 by default. On CUDA: bf16 autocast and channels-last-3d; TFLOP/s is compared
with the GPU's dense bf16 peak (--peak-tflops, guessed from the device name otherwise). FLOPs are
counted once per shape with torch.utils.flop_counter.FlopCounterMode.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from vidgpt.config import load_config
from vidgpt.tokenizer import VideoTokenizer
from vidgpt.train.tokenizer_trainer import TokenizerTrainConfig

BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "4090": 165.0}


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def timed(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/tokenizer/default.yaml")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="device bf16 peak (default: guessed on CUDA)")
    args = ap.parse_args()

    device = torch.device(args.device)
    cfg = load_config(TokenizerTrainConfig, args.config).model
    tok = VideoTokenizer(cfg).eval().to(device)
    cuda = device.type == "cuda"
    if cuda:
        tok = tok.to(memory_format=torch.channels_last_3d)
    peak = args.peak_tflops
    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    if cuda and not peak:
        peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), 0.0)
    params = sum(p.numel() for p in tok.parameters()) / 1e6
    print(f"{args.config}: K={cfg.codebook_bits}, {params:.2f}M params, device {name}, threads {torch.get_num_threads()}, "
          f"clips {args.frames}x{args.size}x{args.size}{', bf16 + channels-last' if cuda else ', fp32'}")
    print(f"{'batch':>5} | {'enc frames/s':>12} | {'dec frames/s':>12} | {'enc TFLOP/s':>11} | {'dec TFLOP/s':>11} | {'peak mem MiB':>12}" + (" | % of bf16 peak (enc/dec)" if peak else ""))
    for bs in args.batch_sizes:
        x = torch.rand(bs, 3, args.frames, args.size, args.size, device=device) * 2 - 1
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last_3d)
            torch.cuda.reset_peak_memory_stats(device)
        ctx = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda)  # noqa: E731

        def enc():
            with ctx():
                return tok.encode(x)

        codes = enc()

        def dec():
            with ctx():
                return tok.decode(codes)

        with torch.inference_mode():
            f_enc, f_dec = count_flops(enc), count_flops(dec)
        t_enc, t_dec = timed(enc, device, args.repeats), timed(dec, device, args.repeats)
        frames = bs * args.frames
        mem = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        te, td = f_enc / t_enc / 1e12, f_dec / t_dec / 1e12
        row = f"{bs:>5} | {frames / t_enc:>12.1f} | {frames / t_dec:>12.1f} | {te:>11.3f} | {td:>11.3f} | {mem:>12.0f}"
        if peak:
            row += f" | {100 * te / peak:.1f}% / {100 * td / peak:.1f}%"
        print(row, flush=True)
    if not cuda:
        print("(CPU peak mem is the process max RSS)")


if __name__ == "__main__":
    main()
