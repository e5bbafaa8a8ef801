"""Decode speed: vidgpt fast path vs plain path (HF forward + DynamicCache) vs `model.generate`.

    python tools/bench_generate.py --tiny            # quick CPU run on a tiny random model
    python tools/bench_generate.py                   # SmolLM2-135M shaped random model (GPU: checks the targets)
    python tools/bench_generate.py --model model/    # a real vidgpt model directory

Prints visual tokens/s for batch 1 (no CFG) and batch B with CFG (2B rows). On CUDA it checks the
targets: >= 2,000 tok/s at batch 1, >= 50x `model.generate`, >= 20,000 tok/s at batch 32 with CFG.
"""

from __future__ import annotations

import argparse
import time

import torch


def build(args):
    from vidgpt.embedded import load_embedded_tokenizer
    from vidgpt.generate.pipeline import VidGPT
    from vidgpt.generate.tiny import tiny_lm, tiny_video_tokenizer
    from vidgpt.vocab import UnifiedVocab, VocabSpec

    if args.model:
        return VidGPT.from_pretrained(args.model), VidGPT.from_pretrained(args.model, fast=False)
    tok = load_embedded_tokenizer()
    if args.tiny:
        vocab = UnifiedVocab(VocabSpec(8, 1, 8, 8), offset=len(tok))
        lm = dict(hidden=64, layers=2, heads=4, kv_heads=2)
    else:  # SmolLM2-135M shape: hidden 576, 30 layers, 9 heads, 3 kv heads, K=14
        vocab = UnifiedVocab(VocabSpec(14, 1, 64, 64), offset=len(tok))
        lm = dict(hidden=576, layers=30, heads=9, kv_heads=3)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = tiny_lm(vocab.total_size, max_positions=8192, **lm).to(device, dtype)
    vt = tiny_video_tokenizer(vocab.spec.codebook_bits).to(device)
    return VidGPT(model, tok, vocab, vt, fast=True), VidGPT(model, tok, vocab, vt, fast=False)


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny random model, small clip (quick CPU run)")
    ap.add_argument("--model", help="a vidgpt model directory instead of a random model")
    ap.add_argument("--batch", type=int, default=None, help="batch for the CFG row (default 32 on GPU, 4 on CPU)")
    args = ap.parse_args()
    fast, plain = build(args)
    gpu = torch.cuda.is_available()
    size = dict(frames=5, height=32, width=32) if args.tiny else dict(frames=17, height=128, width=128)
    batch = args.batch or (32 if gpu else 4)
    kw = dict(decode=False, temperature=1.0, seed=0)
    fast.generate("warm up", **size, cfg=1.0, **kw)  # CUDA graph capture, allocator warm-up
    fast.generate("warm up", **size, num=batch, cfg=3.0, **kw)
    rows = []
    out, t = timed(lambda: fast.generate("a red circle moves right", **size, cfg=1.0, **kw))
    ntok = len(out.token_ids[0])
    rows.append(("vidgpt fast, batch 1", ntok, t))
    out, t = timed(lambda: plain.generate("a red circle moves right", **size, cfg=1.0, **kw))
    rows.append(("vidgpt plain (HF forward + DynamicCache), batch 1", ntok, t))
    ids = torch.tensor([out.prompt_ids], device=fast.device)
    _, t = timed(lambda: plain.model.generate(ids, max_new_tokens=ntok, min_new_tokens=ntok, do_sample=True, top_k=0))
    rows.append(("transformers model.generate, batch 1 (unconstrained)", ntok, t))
    out, t = timed(lambda: fast.generate("a red circle moves right", **size, num=batch, cfg=3.0, **kw))
    rows.append((f"vidgpt fast, batch {batch} + CFG ({2 * batch} rows)", ntok * batch, t))
    print(f"device: {torch.cuda.get_device_name() if gpu else 'cpu'}; clip {size}, {ntok} tokens per sample")
    print(f"{'path':58s} {'tokens':>8s} {'seconds':>9s} {'tok/s':>10s}")
    speeds = {}
    for name, n, t in rows:
        speeds[name] = n / t
        print(f"{name:58s} {n:8d} {t:9.3f} {n / t:10.0f}")
    s1, sp, sg, sb = list(speeds.values())
    print(f"fast / plain: {s1 / sp:.1f}x, fast / model.generate: {s1 / sg:.1f}x")
    if gpu and not args.tiny:
        checks = [("batch-1 >= 2,000 tok/s", s1 >= 2000), (">= 50x model.generate", s1 / sg >= 50),
                  ("batch-32 CFG >= 20,000 tok/s", sb >= 20000 or batch != 32)]
        for name, ok in checks:
            print(f"target {name}: {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
