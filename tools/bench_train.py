"""Continued-pretraining throughput: vidgpt's trainer step against a plain transformers baseline.

vidgpt: packed rows (documents back to back, position ids restarting, no cross-document attention),
the fastest attention present (vidgpt.attention.pick_attention), the trainer's weighted loss, AdamW.
baseline: the same documents in padded batches (one document per row, attention_mask), transformers'
default attention, the model's own loss, AdamW. Both bf16 autocast on CUDA. Tokens/s counts real
(non-padding) tokens only; MFU = 6 * params * tokens/s + causal attention FLOPs, over the peak
(H100 bf16 dense 989 TFLOP/s; on CPU a measured fp32 matmul peak).

    python tools/bench_train.py --tiny          # CPU, a minute
    python tools/bench_train.py                 # GPU: 135M (SmolLM2 shape) and ~1B Llama, 8k-token rows

On a GPU the script checks the targets: >= 40% MFU at 1B and >= 2x the baseline's tokens/s.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

from vidgpt.attention import pick_attention
from vidgpt.train.lm_trainer import weighted_lm_loss
from vidgpt.train.packing import Document, collate, pack

SHAPES = {
    # name: (hidden, layers, heads, kv_heads, intermediate, vocab)
    "tiny": (64, 2, 4, 2, 256, 512),
    "135m": (576, 30, 9, 3, 1536, 65792),  # SmolLM2-135M + K=14 visual rows (padded to 64)
    "1b": (2048, 16, 32, 8, 8192, 65792),  # Llama-3.2-1B-like
}
PEAK_H100_BF16 = 989e12


def make_model(shape, attn, device):
    from transformers import LlamaConfig, LlamaForCausalLM

    h, l, nh, kv, inter, vocab = SHAPES[shape]
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=h, num_hidden_layers=l, num_attention_heads=nh,
                      num_key_value_heads=kv, intermediate_size=inter, tie_word_embeddings=True,
                      max_position_embeddings=16384)
    cfg._attn_implementation = attn
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).to(device)


def flops_per_token(model, seq_ctx: float) -> float:
    """6 N (N without the input embedding, with the tied head) + causal attention 6 * layers * hidden * ctx."""
    c = model.config
    n = sum(p.numel() for p in model.parameters())
    n_emb = model.get_input_embeddings().weight.numel()
    n_eff = n - n_emb + c.vocab_size * c.hidden_size  # the head matmul still costs 2 * V * H per token
    return 6 * n_eff + 6 * c.num_hidden_layers * c.hidden_size * seq_ctx


def documents(n, lo, hi, vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(lo, hi + 1, (1,), generator=g))
        ids = torch.randint(3, vocab, (length,), generator=g).tolist()
        out.append(Document(ids, [1.0] * length))
    return out


def cpu_peak_flops() -> float:
    a = torch.randn(1024, 1024)
    b = torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    k = 20
    for _ in range(k):
        a @ b
    return 2 * 1024**3 * k / (time.perf_counter() - t)


def run(step_fn, batches, warmup, device):
    for b in batches[:warmup]:
        step_fn(b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    tokens = 0
    for b in batches[warmup:]:
        tokens += step_fn(b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return tokens / (time.perf_counter() - t)


def bench(shape, seq_len, micro, steps, warmup, device, doc_range):
    amp_dtype = torch.bfloat16 if device.type == "cuda" else None
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp_dtype else (lambda: torch.autocast("cpu", enabled=False))
    vocab = SHAPES[shape][5]
    docs = documents(micro * (steps + warmup) * 8, doc_range[0], doc_range[1], vocab)
    results = {}

    # --- vidgpt: packed rows, best attention ---
    attn = pick_attention(device, amp_dtype)
    model = make_model(shape, attn, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    rows = list(pack(iter(docs), seq_len))
    batches = [collate(rows[i : i + micro]) for i in range(0, len(rows) - micro + 1, micro)][: steps + warmup]

    def packed_step(b):
        b = {k: v.to(device, non_blocking=True) for k, v in b.items()}
        with amp():
            logits = model(input_ids=b["input_ids"], position_ids=b["position_ids"], use_cache=False).logits
        loss, _ = weighted_lm_loss(logits, b["input_ids"], b["weights"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return int((b["weights"] > 0).sum()) + int((b["position_ids"] == 0).sum())  # real tokens (approx.)

    tps = run(packed_step, batches, warmup, device)
    mean_doc = sum(len(d) for d in docs) / len(docs)
    fpt = flops_per_token(model, mean_doc / 2)
    results["vidgpt"] = (attn, tps, fpt * tps)
    del model, opt
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # --- baseline: padded batches, default attention ---
    model = make_model(shape, "sdpa", device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    pbatches = []
    for i in range(0, len(docs) - micro + 1, micro):
        chunk = docs[i : i + micro]
        L = min(seq_len, max(len(d) for d in chunk))
        ids = torch.zeros(micro, L, dtype=torch.long)
        mask = torch.zeros(micro, L, dtype=torch.long)
        for r, d in enumerate(chunk):
            n = min(L, len(d))
            ids[r, :n] = torch.tensor(d.input_ids[:n])
            mask[r, :n] = 1
        pbatches.append((ids, mask))
        if len(pbatches) == steps + warmup:
            break

    def padded_step(b):
        ids, mask = (x.to(device) for x in b)
        labels = ids.masked_fill(mask == 0, -100)
        with amp():
            loss = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return int(mask.sum())

    tps_b = run(padded_step, pbatches, warmup, device)
    results["baseline"] = ("sdpa (padded)", tps_b, fpt * tps_b)
    del model, opt
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="CPU-sized shape and short sequences (about a minute)")
    ap.add_argument("--shapes", nargs="+", help="subset of: " + ", ".join(SHAPES))
    ap.add_argument("--seq-len", type=int, default=None)
    ap.add_argument("--micro", type=int, default=None, help="rows per step")
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    if args.tiny:
        shapes, seq_len, micro, steps, warmup, docs = args.shapes or ["tiny"], args.seq_len or 256, args.micro or 4, args.steps or 10, 2, (16, 160)
        peak, peak_name = cpu_peak_flops(), "measured fp32 matmul"
    else:
        shapes, seq_len, micro, steps, warmup, docs = args.shapes or ["135m", "1b"], args.seq_len or 8192, args.micro or 1, args.steps or 20, 3, (256, 4096)
        peak, peak_name = (PEAK_H100_BF16, "H100 bf16 dense") if device.type == "cuda" else (cpu_peak_flops(), "measured fp32 matmul")
    print(f"device {device}, rows of {seq_len} tokens x {micro}, documents {docs[0]}-{docs[1]} tokens, {steps} timed steps; "
          f"peak {peak / 1e12:.2f} TFLOP/s ({peak_name})")
    print(f"{'shape':<6} {'run':<9} {'attention':<18} {'tokens/s':>12} {'TFLOP/s':>9} {'MFU':>7}")
    ok = True
    for shape in shapes:
        res = bench(shape, seq_len, micro, steps, warmup, device, docs)
        for run_name, (attn, tps, flops) in res.items():
            print(f"{shape:<6} {run_name:<9} {attn:<18} {tps:>12.0f} {flops / 1e12:>9.3f} {100 * flops / peak:>6.1f}%")
        speedup = res["vidgpt"][1] / res["baseline"][1]
        print(f"{shape:<6} speedup vidgpt/baseline: {speedup:.2f}x")
        if device.type == "cuda":
            if speedup < 2:
                ok = False
                print(f"  TARGET MISSED: speedup {speedup:.2f}x < 2x")
            if shape == "1b" and res["vidgpt"][2] / peak < 0.40:
                ok = False
                print(f"  TARGET MISSED: MFU {100 * res['vidgpt'][2] / peak:.1f}% < 40% at 1B")
    if device.type == "cuda":
        print("targets met" if ok else "targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
