"""What a training row costs, by kind: the trainer's forward + backward on a config's own rows, one row at a time.

A step of one document a row mixes plain-text and chat rows (~100 tokens, each with the text KL's extra forward of
the base), blueprint-only clips (~240) and whole clips (~940). `tools/step_balance.py` takes compute as proportional
to tokens; this measures it: for each kind the rows, their mean tokens, the seconds a row, the seconds per 1,000
tokens, and a least-squares fit seconds = a + b x tokens (a: what a row costs whatever its length). No optimizer
step (the same for every row).

`--micro-tokens N` then times the same rows as the trainer takes them under `train.micro_tokens: N`: cut into steps
of `--step-tokens` document tokens, each step regrouped by `lm_trainer.group_rows`, and prints both tokens/s and the
largest difference between the two ways' step losses (token-weighted, as under `loss_norm: tokens`; ~0 up to bf16).

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 taskset -c 0 python tools/doc_cost.py --config configs/lm/default_model_p26.yaml --rows 60
    ... --rows 120 --micro-tokens 1100 --step-tokens 2300
"""

from __future__ import annotations

import argparse
import statistics
import time


def row_kind(ids, vocab, long_visual: int = 400) -> str:
    """text (no token of the new vocabulary: the text KL's rows), visual short (<= long_visual tokens: blueprint-only
    clips, images) or visual long (whole clips, edits)."""
    from vidgpt.train.lm_loss import is_text_row

    if is_text_row(ids, vocab.offset):
        return "text"
    return "visual short" if ids.numel() <= long_visual else "visual long"


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares y = a + b x (b = 0 when every x is the same)."""
    mx, my = statistics.mean(xs), statistics.mean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx > 0 else 0.0
    return my - b * mx, b


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/lm/default_model_p26.yaml")
    ap.add_argument("--rows", type=int, default=60, help="timed rows (after the warm-up)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--micro-tokens", type=int, default=0, help="also time the rows regrouped (train.micro_tokens)")
    ap.add_argument("--step-tokens", type=int, default=2300, help="the steps' token budget for --micro-tokens")
    ap.add_argument("--fp32-frozen", action="store_true",
                    help="keep the frozen linear weights fp32 (before 2026-12-06; the trainer stores them in bf16)")
    ap.add_argument("--set", action="append", default=[], help="config overrides, as for vidgpt lm train")
    a = ap.parse_args(argv)

    import torch

    from vidgpt.train.lm_trainer import (cost_tool_lm, document_tokens, forward_loss, group_rows, make_loss_head,
                                         packed_rows, trained_tokens)
    from vidgpt.train.packing import collate

    torch.set_num_threads(a.threads)
    cfg, lm, pad, bf16 = cost_tool_lm(a.config, a.set, fp32_frozen=a.fp32_frozen)  # as the trainer builds it
    head = make_loss_head(cfg, lm.vocab, torch.device("cpu"))
    amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else (lambda: torch.autocast("cpu", enabled=False))
    model = lm.model
    model.train()
    rows = packed_rows(cfg.data, lm.vocab, lm.text_tokenizer, cfg.train.seq_len, cfg.train.seed, "train", pad)

    def timed(batch) -> tuple[float, float]:  # (seconds of forward + backward, loss x trained tokens)
        t = time.perf_counter()
        loss, _ = forward_loss(model, batch, amp, head)
        loss.backward()
        dt = time.perf_counter() - t
        model.zero_grad(set_to_none=True)
        return dt, float(loss.detach()) * trained_tokens(batch["weights"])

    seen: dict[str, list[tuple[int, float]]] = {}
    kept, sums, times = [], [], []
    for i in range(a.warmup + a.rows):
        row = next(rows)
        batch = collate([row])
        n = document_tokens(batch["weights"])
        kind = row_kind(batch["input_ids"][0, :n], lm.vocab)
        dt, lsum = timed(batch)
        if i >= a.warmup:
            seen.setdefault(kind, []).append((n, dt))
            kept.append(row)
            sums.append(lsum)
            times.append(dt)

    total_s = sum(dt for v in seen.values() for _, dt in v)
    total_n = sum(n for v in seen.values() for n, _ in v)
    print(f"{a.config}: {a.rows} rows after {a.warmup} warm-up, {a.threads} thread(s), bf16 autocast {bf16}"
          f"{' (frozen weights fp32)' if a.fp32_frozen else ''}; "
          f"{total_n / total_s:.0f} tokens/s over all")
    print("| kind | rows | mean tokens | s a row | s per 1,000 tokens | share of the time | fit: a (s a row) + b (s per 1,000) |")
    print("|---|---|---|---|---|---|---|")
    for kind in sorted(seen):
        ns, ts = [n for n, _ in seen[kind]], [dt for _, dt in seen[kind]]
        fa, fb = fit([float(n) for n in ns], ts)
        print(f"| {kind} | {len(ns)} | {statistics.mean(ns):.0f} | {statistics.mean(ts):.2f} | "
              f"{1000 * sum(ts) / sum(ns):.2f} | {sum(ts) / total_s:.0%} | {fa:.2f} + {1000 * fb:.2f} |")
    if a.micro_tokens > 0:
        steps, cur, n = [], [], 0  # the timed rows cut into steps as step_batches cuts them
        for i, row in enumerate(kept):
            cur.append(i)
            n += document_tokens(row["weights"][None])
            if n >= a.step_tokens:
                steps.append(cur)
                cur, n = [], 0
        grouped_s, worst, micro = 0.0, 0.0, 0
        for idx in steps:
            single = sum(sums[i] for i in idx)
            both = 0.0
            for b in group_rows([kept[i] for i in idx], a.micro_tokens, lm.vocab.vision_start_id):
                dt, lsum = timed(b)
                grouped_s += dt
                both += lsum
                micro += 1
            worst = max(worst, abs(both - single) / max(abs(single), 1e-9))
        rows_n = sum(len(idx) for idx in steps)
        toks = sum(document_tokens(kept[i]["weights"][None]) for idx in steps for i in idx)
        single_s = sum(times[i] for idx in steps for i in idx)
        print(f"\n{len(steps)} steps of >= {a.step_tokens} tokens ({rows_n} rows, {toks} document tokens):")
        print("| micro-batches | count | s | tokens/s |")
        print("|---|---|---|---|")
        print(f"| one row each | {rows_n} | {single_s:.1f} | {toks / single_s:.0f} |")
        print(f"| micro_tokens {a.micro_tokens} | {micro} | {grouped_s:.1f} | {toks / grouped_s:.0f} |")
        print(f"largest relative difference of a step's loss (token-weighted sum), grouped vs one row each: {worst:.2e}")
    return 0


if __name__ == "__main__":
    from vidgpt.errors import VidgptError

    try:
        raise SystemExit(main())
    except VidgptError as e:  # a bad config or data path: one line, no traceback
        raise SystemExit(f"doc_cost.py: error: {e}")
