"""Decode-step speed per backbone family: vidgpt's fast decoder vs the plain path vs transformers' own
static cache (eager and torch.compile'd), on random models of one shape (docs/FAST_DECODE_FAMILIES.md).

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 taskset -c 1 python tools/bench_fast_families.py --cpu-time \
        [--families llama,gemma2,...] [--variants fast,plain,static,compiled] [--layers 30] [--hidden 576]

Each family is built at the SmolLM2-135M shape by default (hidden 576, 30 layers, 9 heads, 3 kv heads,
MLP 1536, vocabulary 49,152 text + 16,384 visual rows) with the family's own quirks (vidgpt.backbone
tiny_config). A step feeds one token to 2 rows (one CFG pair) after a `--context`-long prompt and
computes the logits of the 16,384 visual rows (the fast path: those rows only; the others: the
full head, as they do). Printed: ms per step (best of 2 runs of --steps steps).
"""

from __future__ import annotations

import argparse
import time

import torch

from vidgpt.utils import best_time

CLOCK = time.perf_counter


def _best(fn, reps: int = 2) -> float:
    return best_time(fn, reps, CLOCK)  # CLOCK: wall or, with --cpu-time, the process's CPU seconds


def build(family, args):
    from transformers import AutoModelForCausalLM

    from vidgpt.backbone import tiny_config

    cfg = tiny_config(family, args.vocab, hidden_size=args.hidden, layers=args.layers, heads=args.heads,
                      kv_heads=args.kv_heads, max_positions=4096, tied=True)
    for k in ("intermediate_size", "n_inner"):
        if hasattr(cfg, k) and getattr(cfg, k) is not None:
            setattr(cfg, k, args.mlp)
    if family in ("mistral", "gemma2"):
        cfg.sliding_window = 1024
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg).eval()


@torch.inference_mode()
def time_backend(backend, rows, context, steps, lo, hi):
    from vidgpt.generate.decoding import left_pad

    g = torch.Generator().manual_seed(0)
    ids, mask = left_pad([torch.randint(0, lo, (context,), generator=g).tolist() for _ in range(rows)], 0)
    state = backend.prefill(ids, mask, max_len=context + 3 * steps + 4)
    tok = backend.logits(state, lo, hi).argmax(-1) + lo

    def run():
        nonlocal state, tok
        for _ in range(steps):
            state = backend.step(tok)
            tok = backend.logits(state, lo, hi).argmax(-1) + lo

    run()
    return _best(run) / steps * 1e3


@torch.inference_mode()
def time_static(model, rows, context, steps, lo, hi, compiled, freezing=False):
    """transformers StaticCache: prefill, then one-token forwards (torch.compile'd when `compiled`;
    `freezing`: inductor's constant folding of the weights, which on the CPU prepacks them for oneDNN)."""
    import torch._inductor.config as inductor_config
    from transformers import StaticCache

    inductor_config.freezing = freezing

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, lo, (rows, context), generator=g)
    total = context + 3 * steps + 4
    cache = StaticCache(config=model.config, max_cache_len=total)
    fwd = torch.compile(model.forward, dynamic=False, fullgraph=False) if compiled else model.forward
    t0 = time.perf_counter()
    out = model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
    tok = out.logits[:, -1, lo:hi].argmax(-1) + lo
    pos = context

    def run():
        nonlocal tok, pos
        for _ in range(steps):
            p = torch.full((rows, 1), pos, dtype=torch.long)
            logits = fwd(input_ids=tok.view(-1, 1), position_ids=p, cache=cache, use_cache=True, logits_to_keep=1).logits
            tok = logits[:, -1, lo:hi].argmax(-1) + lo
            pos += 1

    run()  # compiles
    warm = time.perf_counter() - t0
    return _best(run) / steps * 1e3, warm


def main():
    from vidgpt.backbone import TINY_FAMILIES
    from vidgpt.generate.decoding import HFBackend
    from vidgpt.generate.fast_decode import FastDecoder

    global CLOCK
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default=",".join(TINY_FAMILIES))
    ap.add_argument("--variants", default="fast,plain,static,compiled,frozen",
                    help="fast, plain, static (HF StaticCache eager), compiled (+ torch.compile), frozen (+ inductor freezing)")
    ap.add_argument("--hidden", type=int, default=576)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--heads", type=int, default=9)
    ap.add_argument("--kv-heads", type=int, default=3)
    ap.add_argument("--mlp", type=int, default=1536)
    ap.add_argument("--vocab", type=int, default=49152 + 16384)
    ap.add_argument("--rows", type=int, default=2)
    ap.add_argument("--context", default="40,1000", help="prompt lengths to time after")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--cpu-time", action="store_true", help="process CPU seconds instead of wall (a shared core)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.cpu_time:
        CLOCK = time.process_time
    lo, hi = args.vocab - 16384, args.vocab
    ctxs = [int(c) for c in args.context.split(",")]
    variants = args.variants.split(",")
    print(f"clock: {'process CPU time' if args.cpu_time else 'wall'}; threads {torch.get_num_threads()}; shape hidden {args.hidden}, "
          f"{args.layers} layers, {args.heads} heads / {args.kv_heads} kv, MLP {args.mlp}, vocab {args.vocab}; rows {args.rows}")
    print(f"{'family':9s} {'variant':34s} " + " ".join(f"{'ms@' + str(c):>9s}" for c in ctxs) + "  notes")
    for family in args.families.split(","):
        model = build(family, args)
        for v in variants:
            cells, note = [], ""
            try:
                for c in ctxs:
                    if v == "fast":
                        ms = time_backend(FastDecoder(model), args.rows, c, args.steps, lo, hi)
                    elif v == "plain":
                        ms = time_backend(HFBackend(model), args.rows, c, args.steps, lo, hi)
                    else:
                        ms, warm = time_static(model, args.rows, c, args.steps, lo, hi, compiled=v != "static",
                                               freezing=v == "frozen")
                        note += f"warm-up (compile) {warm:.0f} s wall @{c}; "
                    cells.append(ms)
            except Exception as e:  # a variant that does not run for a family is a row of the table too
                note += f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
            name = {"fast": "vidgpt fast (one decoder + adapter)", "plain": "vidgpt plain (HF + DynamicCache)",
                    "static": "HF StaticCache, eager", "compiled": "HF StaticCache + torch.compile",
                    "frozen": "HF StaticCache + compile, freezing"}[v]
            print(f"{family:9s} {name:34s} " + " ".join(f"{c:9.1f}" for c in cells) + " " * 10 * (len(ctxs) - len(cells))
                  + f"  {note}", flush=True)
        del model


if __name__ == "__main__":
    main()
