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

CPU mode on the real shape (`--cpu-real`, see bench_cpu_real): the extended embedded SmolLM2-135M from a
`vidgpt lm extend` directory, documents of the default layout (chat turn: caption -> 17x128x128 clip as
blueprint + fine codes, through vidgpt.train.lm_data.RecordFormatter), packed without padding; every
variant of vidgpt.train.lm_loss (and LoRA on the upper layers only) against a plain transformers step
(`model(..., labels=...)`) on the same batch, with the split of a step and the share of the fp32 matmul
rate measured in the same run:

    OMP_NUM_THREADS=1 taskset -c 1 python tools/bench_train.py --cpu-real --model runs/lm_untrained_train
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

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


# --- CPU, real shape ------------------------------------------------------------------------------------------

# name: (loss.head, loss.embed_grad, LoRA (False = full finetuning), lora.layers_from)
CPU_VARIANTS = {
    "plain-lora": ("plain", "input", True, 0),  # transformers step: model(..., labels=...), LoRA r=32 all layers
    "plain-full": ("plain", "input", False, 0),  # transformers step, full finetuning
    "full-lora": ("full", "input", True, 0),  # fast head, same objective as plain (all rows, trained positions)
    "constrained-lora": ("constrained", "input", True, 0),  # fast head, the layout's allowed rows (CPU default)
    "constrained-full": ("constrained", "input", False, 0),
    "headonly-lora": ("constrained", "head_only", True, 0),  # + new rows learn through the tied head only
    "headonly-from10": ("constrained", "head_only", True, 10),  # + LoRA on layers 10..29 only
    "headonly-from15": ("constrained", "head_only", True, 15),
    "headonly-from20": ("constrained", "head_only", True, 20),
    "compile-constrained-lora": ("constrained", "input", True, 0),  # + torch.compile of every decoder layer
}
ISSUE_FLOPS_PER_TOKEN = 0.63e9  # issue 10: exact LoRA on all 30 layers, visual-only head, 1,664-token documents
# CPU time of this process (one thread): other jobs share the core, and wall time would count their slices too
CLOCK = time.process_time


def matmul_rate(seconds: float = 1.5) -> dict:
    """fp32 GFLOP/s of a square 2048 product and of a model-shaped one (1648x576 @ 576x1536), this process."""
    out = {}
    for name, (m, k, n) in {"square2048": (2048, 2048, 2048), "model_shape": (1648, 576, 1536)}.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        for _ in range(2):
            a @ b
        reps, t = 0, CLOCK()
        while CLOCK() - t < seconds:
            a @ b
            reps += 1
        out[name] = 2 * m * k * n * reps / (CLOCK() - t) / 1e9
    return out


def kernel_rates(L: int = 1661) -> dict:
    """GFLOP/s (CPU time) of the step's kernel kinds at the real shape: dense layer, LoRA pair, causal attention."""
    import torch.nn.functional as F

    def rate(fn, flops, seconds=1.0):
        fn()
        reps, t = 0, CLOCK()
        while CLOCK() - t < seconds:
            fn()
            reps += 1
        return flops * reps / (CLOCK() - t) / 1e9

    x, W = torch.randn(L, 576), torch.randn(576, 1536)
    A, B = torch.randn(576, 32), torch.randn(32, 1536)
    q, k, v = (torch.randn(1, 9, L, 64, requires_grad=True) for _ in range(3))
    att = 4 * L * (L + 1) / 2 * 64 * 9

    def att_fwd():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def att_fb():
        F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()

    return {"dense_576x1536": rate(lambda: x @ W, 2 * L * 576 * 1536),
            "lora_pair_r32": rate(lambda: (x @ A) @ B, 2 * L * 32 * (576 + 1536)),
            "sdpa_causal_fwd": rate(att_fwd, att), "sdpa_causal_fwd_bwd": rate(att_fb, 3 * att)}


def real_documents(lm, n: int, frames: int, size: int, seed: int = 0):
    """Documents of the default layout: a held-out-style caption -> (frames x size x size) clip, blueprint + fine.

    Codes are random (their values do not change the cost); the caption is the synthetic world's.
    """
    import numpy as np

    from vidgpt.data.synthetic import STYLES, caption, sample_scene
    from vidgpt.data.world.scene import WorldConfig
    from vidgpt.layout import blueprint_shape
    from vidgpt.train.lm_data import LMDataConfig, RecordFormatter

    fmt = RecordFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig())
    rng = np.random.default_rng(seed)
    world = WorldConfig()
    t, h, w = 1 + (frames - 1) // 4, size // 8, size // 8
    bt, bh, bw = blueprint_shape((t, h, w))
    k = 2**lm.vocab.spec.codebook_bits
    docs = []
    for i in range(n):
        scene = sample_scene(rng, world, "train")
        rec = {"codes": rng.integers(0, k, t * h * w).tolist(), "shape": [t, h, w],
               "blueprint_codes": rng.integers(0, k, bt * bh * bw).tolist(),
               "captions": [caption(scene, rng, STYLES[i % len(STYLES)])]}
        docs.append(fmt(rec, rng))
    return docs


class StepClock:
    """Times the decoder's forward and the moment the gradient reaches its output (hooks on the decoder)."""

    def __init__(self, decoder):
        self.body_start = self.body_end = self.head_bwd_end = None
        decoder.register_forward_pre_hook(self._pre)
        decoder.register_forward_hook(self._post)

    def _pre(self, mod, args):
        self.body_start = CLOCK()

    def _post(self, mod, args, out):
        self.body_end = CLOCK()
        h = out.last_hidden_state
        if h.requires_grad:
            h.register_hook(self._grad)

    def _grad(self, g):
        self.head_bwd_end = CLOCK()


def variant_flops(cfg, lengths, trained_rows: int, lora: bool, r: int, layers_from: int, head: str,
                  embed_grad: str, vocab_rows: int) -> float:
    """FLOPs of one step (forward + backward), counted from the shapes; divide by tokens for per token.

    trained_rows: sum over the trained positions of the rows their softmax runs over (fast heads).
    """
    H, I, nl = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    kvd = cfg.num_key_value_heads * (H // cfg.num_attention_heads)
    P = H * H * 2 + 2 * H * kvd + 3 * H * I
    lora_pl = r * ((H + H) * 2 + 2 * (H + kvd) + 2 * (H + I) + (I + H)) if lora else 0
    L = sum(lengths)
    ctx = sum(n * (n + 1) / 2 for n in lengths)
    attn = 4 * H * ctx
    n_lora = nl - layers_from if lora else 0
    fwd = nl * (2 * P * L + attn) + n_lora * 2 * lora_pl * L
    head_f = 2 * H * vocab_rows * L if head == "plain" else 2 * H * trained_rows
    nb = nl if (not lora or embed_grad == "input") else nl - layers_from
    bwd = nb * (2 * P * L + 2 * attn) + n_lora * 4 * lora_pl * L + (0 if lora else nl * 2 * P * L)
    return fwd + bwd + 3 * head_f


def bench_cpu_real(args) -> int:
    import copy
    import json

    from vidgpt.backbone import VidgptLM, apply_lora, load_vidgpt_lm
    from vidgpt.train.lm_loss import LossHead, LossSettings, reference_loss, target_groups
    from vidgpt.train.lm_trainer import LMTrainLoop, make_optimizer
    from vidgpt.train.lora_layers import upper_layer_targets

    names = args.variants or list(CPU_VARIANTS)
    bad = [n for n in names if n not in CPU_VARIANTS]
    if bad:
        print(f"unknown variant {bad[0]!r} (known: {', '.join(CPU_VARIANTS)})")
        return 2
    steps = args.steps or 2
    rate0 = matmul_rate()
    base = load_vidgpt_lm(args.model)
    base.model.set_attn_implementation("sdpa")
    docs = real_documents(base, args.docs, args.frames, args.size)
    lengths = [len(d) for d in docs]
    if args.row_per_doc:  # one document per row, padded to the longest (the trainer's rows at a small seq_len)
        rows = [r for d in docs for r in pack(iter([d]), max(lengths))]
    else:
        rows = list(pack(iter(docs), sum(lengths)))  # one row, no padding
    batch = collate(rows)
    L = sum(lengths)  # real tokens per step
    V = base.model.config.vocab_size
    cfg = base.model.config
    print(f"CPU, {torch.get_num_threads()} thread(s); model {args.model}: {cfg.num_hidden_layers} layers, hidden "
          f"{cfg.hidden_size}, {V} rows; {len(rows)} row(s) of {batch['input_ids'].shape[1]} holding {len(docs)} document(s) {lengths} "
          f"({args.frames}x{args.size}x{args.size} clip + caption, chat layout), {steps} timed step(s) after "
          f"{args.warmup} warm-up; matmul fp32 {rate0['square2048']:.1f} GFLOP/s (2048^3), "
          f"{rate0['model_shape']:.1f} (1648x576x1536)")

    # the same loss on the same batch (the untrained extension = every LoRA variant before its first step)
    m = base.model
    with torch.no_grad():
        labels = batch["input_ids"].masked_fill(batch["weights"] == 0, -100)
        out = m(input_ids=batch["input_ids"], position_ids=batch["position_ids"], labels=labels, use_cache=False)
        ref_c, _ = reference_loss(out.logits, batch["input_ids"], batch["weights"], base.vocab, "constrained")
        fast_f, _ = LossHead(base.vocab, LossSettings(head="full"))(m, batch)
        fast_c, _ = LossHead(base.vocab, LossSettings(head="constrained"))(m, batch)
    checks = {"plain_transformers": float(out.loss), "fast_full": float(fast_f),
              "masked_reference_constrained": float(ref_c), "fast_constrained": float(fast_c)}
    print(f"loss on this batch: transformers {checks['plain_transformers']:.6f}, fast full {checks['fast_full']:.6f} "
          f"(diff {abs(checks['plain_transformers'] - checks['fast_full']):.1e}); constrained: masked full logits "
          f"{checks['masked_reference_constrained']:.6f}, fast {checks['fast_constrained']:.6f} "
          f"(diff {abs(checks['masked_reference_constrained'] - checks['fast_constrained']):.1e})")
    del out

    tgt = batch["input_ids"][:, 1:].reshape(-1)[batch["weights"][:, 1:].reshape(-1) > 0]
    rows_c = sum((hi - lo) * p.numel() for lo, hi, p in target_groups(tgt, base.vocab, V, "constrained"))
    rows_f = V * tgt.numel()

    results = []
    for name in names:
        head, eg, lora, lf = CPU_VARIANTS[name]
        model = copy.deepcopy(base.model)
        lm = VidgptLM(model, base.text_tokenizer, base.vocab, dict(base.meta), None)
        if lora:
            targets = upper_layer_targets(model, ["all-linear"], lf) if lf else ["all-linear"]
            apply_lora(lm, r=32, alpha=64, target_modules=targets, train_new_rows=True)
        else:
            for p in model.parameters():
                p.requires_grad_(True)
        model = lm.model
        model.train()
        if name.startswith("compile-"):
            for layer in (model.get_base_model() if lora else model).model.layers:
                layer.compile(dynamic=False)
        opt = make_optimizer(model, LMTrainLoop(lr=1e-4, weight_decay=0.0))
        decoder = (model.get_base_model() if lora else model).model
        clock = StepClock(decoder)
        loss_head = LossHead(base.vocab, LossSettings(head=head, embed_grad=eg))

        def loss_fn():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                return _loss()

        def _loss():
            if head == "plain":
                lab = batch["input_ids"].masked_fill(batch["weights"] == 0, -100)
                return model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], labels=lab,
                             use_cache=False).loss
            return loss_head(model, batch)[0]

        rate_before = matmul_rate(0.5)["model_shape"]
        split = {"forward": 0.0, "head_loss": 0.0, "backward": 0.0, "optimizer": 0.0}
        total, losses, warm = 0.0, [], 0.0
        for s in range(args.warmup + steps):
            t0 = CLOCK()
            loss = loss_fn()
            t1 = CLOCK()
            loss.backward()
            t2 = CLOCK()
            opt.step()
            opt.zero_grad(set_to_none=True)
            t3 = CLOCK()
            losses.append(float(loss.detach()))
            if s < args.warmup:
                warm += t3 - t0
                continue
            hb = clock.head_bwd_end or t1
            split["forward"] += clock.body_end - t0
            split["head_loss"] += (t1 - clock.body_end) + (hb - t1)
            split["backward"] += t2 - hb
            split["optimizer"] += t3 - t2
            total += t3 - t0
        tps = L * steps / total
        rate_here = (rate_before + matmul_rate(0.5)["model_shape"]) / 2  # the core is shared: the rate around this variant
        fl = variant_flops(cfg, lengths, rows_c if head == "constrained" else rows_f, lora, 32, lf, head, eg, V)
        results.append({"variant": name, "head": head, "embed_grad": eg, "lora": lora, "layers_from": lf,
                        "tokens_per_s": tps, "step_s": total / steps, "warmup_s": warm, "first_loss": losses[0],
                        "split_s": {k: v / steps for k, v in split.items()}, "gflop_per_token": fl / L / 1e9,
                        "gflops": fl / L * tps / 1e9, "matmul_gflops_around": rate_here,
                        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)})
        print(f"  {name}{' (bf16 autocast)' if args.bf16 else ''}: {tps:.1f} tokens/s (warm-up {warm:.1f} s; matmul rate "
              f"around it {rate_here:.1f} GFLOP/s; first loss {losses[0]:.6f})", flush=True)
        del model, opt, lm
    rate1 = matmul_rate()
    kr = kernel_rates(L)
    print("kernel rates (GFLOP/s, CPU time): " + ", ".join(f"{k} {v:.1f}" for k, v in kr.items()))
    peak = max(rate0["square2048"], rate1["square2048"], rate0["model_shape"], rate1["model_shape"])
    bound = peak * 1e9 / ISSUE_FLOPS_PER_TOKEN
    by = {r["variant"]: r for r in results}
    print(f"\nmatmul fp32 rate (this process, start/end): 2048^3 {rate0['square2048']:.1f}/{rate1['square2048']:.1f}, "
          f"model shape {rate0['model_shape']:.1f}/{rate1['model_shape']:.1f} GFLOP/s; peak {peak:.1f} -> issue bound "
          f"{bound:.1f} tokens/s (0.63 GFLOP/token)")
    print("tok/s@peak = tok/s x peak / (matmul rate measured around the variant): other jobs share the core; "
          "x plain, %rate and %bound use it")
    hdr = (f"{'variant':<24} {'tok/s':>7} {'tok/s@peak':>10} {'x plain':>7} {'step s':>7} {'fwd':>6} {'head+loss':>9} {'bwd':>6} {'opt':>5} "
           f"{'GF/tok':>6} {'GFLOP/s':>7} {'%rate':>6} {'%bound':>6} {'trainable':>10}")
    print(hdr)
    for r in results:
        r["tokens_per_s_at_peak"] = r["tokens_per_s"] * peak / r["matmul_gflops_around"]
    for r in results:
        ref = by.get("plain-lora" if r["lora"] else "plain-full")
        x = r["tokens_per_s_at_peak"] / ref["tokens_per_s_at_peak"] if ref else float("nan")
        r["x_plain"] = x
        r["share_of_rate"] = r["gflops"] / r["matmul_gflops_around"]
        r["share_of_bound"] = r["tokens_per_s_at_peak"] / bound
        sp = r["split_s"]
        print(f"{r['variant']:<24} {r['tokens_per_s']:>7.1f} {r['tokens_per_s_at_peak']:>10.1f} {x:>7.2f} {r['step_s']:>7.1f} {sp['forward']:>6.1f} "
              f"{sp['head_loss']:>9.1f} {sp['backward']:>6.1f} {sp['optimizer']:>5.2f} {r['gflop_per_token']:>6.3f} "
              f"{r['gflops']:>7.1f} {100 * r['share_of_rate']:>5.1f}% {100 * r['share_of_bound']:>5.1f}% "
              f"{r['trainable']:>10,}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"threads": torch.get_num_threads(), "model": args.model,
                                               "lengths": lengths, "steps": steps, "warmup": args.warmup,
                                               "matmul_gflops": {"start": rate0, "end": rate1, "peak": peak},
                                               "issue_bound_tokens_per_s": bound, "loss_checks": checks, "kernel_rates": kr,
                                               "results": results}, indent=1))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="CPU-sized shape and short sequences (about a minute)")
    ap.add_argument("--shapes", nargs="+", help="subset of: " + ", ".join(SHAPES))
    ap.add_argument("--seq-len", type=int, default=None)
    ap.add_argument("--micro", type=int, default=None, help="rows per step")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--cpu-real", action="store_true", help="CPU benchmark on the real shape (see bench_cpu_real)")
    ap.add_argument("--model", default="runs/lm_untrained_train", help="--cpu-real: a vidgpt LM dir (vidgpt lm extend)")
    ap.add_argument("--variants", nargs="+", help="--cpu-real: subset of: " + ", ".join(CPU_VARIANTS))
    ap.add_argument("--docs", type=int, default=1, help="--cpu-real: documents per packed row (default 1)")
    ap.add_argument("--frames", type=int, default=17, help="--cpu-real: clip frames (default 17)")
    ap.add_argument("--size", type=int, default=128, help="--cpu-real: clip height = width (default 128)")
    ap.add_argument("--row-per-doc", action="store_true", help="--cpu-real: one document per row (padded) instead of one packed row")
    ap.add_argument("--bf16", action="store_true", help="--cpu-real: bf16 autocast for the step (fast on CPUs with AVX512-BF16/AMX; an approximation: compare the losses)")
    ap.add_argument("--warmup", type=int, default=1, help="--cpu-real: untimed steps per variant")
    ap.add_argument("--json", help="--cpu-real: also write the results here")
    args = ap.parse_args(argv)
    if args.cpu_real:
        return bench_cpu_real(args)
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
