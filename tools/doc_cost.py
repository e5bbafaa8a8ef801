"""What a training row costs, by kind: the trainer's forward + backward on a config's own rows, one row at a time.

A step of one document a row mixes plain-text and chat rows (~100 tokens, each with the text KL's extra forward of
the base), blueprint-only clips (~240) and whole clips (~940). `tools/step_balance.py` takes compute as proportional
to tokens; this measures it: for each kind the rows, their mean tokens, the seconds a row, the seconds per 1,000
tokens, and a least-squares fit seconds = a + b x tokens (a: what a row costs whatever its length). No optimizer
step (the same for every row).

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 taskset -c 0 python tools/doc_cost.py --config configs/lm/default_model_p26.yaml --rows 60
"""

from __future__ import annotations

import argparse
import statistics
import time


def row_kind(ids, vocab, long_visual: int = 400) -> str:
    """text (no token of the new vocabulary: the text KL's rows), visual short (<= long_visual tokens: blueprint-only
    clips, images) or visual long (whole clips, edits)."""
    if not bool((ids >= vocab.offset).any()):
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
    ap.add_argument("--set", action="append", default=[], help="config overrides, as for vidgpt lm train")
    a = ap.parse_args(argv)

    import torch

    from vidgpt.config import load_config
    from vidgpt.train.lm_trainer import (LMTrainConfig, build_lm, document_tokens, forward_loss, make_loss_head,
                                         packed_rows)
    from vidgpt.train.packing import collate
    from vidgpt.utils import cpu_bf16_if_native

    torch.set_num_threads(a.threads)
    cfg = load_config(LMTrainConfig, a.config, ["train.init_from="] + a.set)  # an untrained extension costs the same
    lm, _ = build_lm(cfg, torch.device("cpu"), None)
    head = make_loss_head(cfg, lm.vocab, torch.device("cpu"))
    bf16 = cpu_bf16_if_native(cfg.train.cpu_bf16, lambda m: None)
    amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else (lambda: torch.autocast("cpu", enabled=False))
    model = lm.model
    model.train()
    pad = getattr(lm.text_tokenizer, "pad_token_id", None) or 0
    rows = packed_rows(cfg.data, lm.vocab, lm.text_tokenizer, cfg.train.seq_len, cfg.train.seed, "train", pad)
    seen: dict[str, list[tuple[int, float]]] = {}
    for i in range(a.warmup + a.rows):
        batch = collate([next(rows)])
        n = document_tokens(batch["weights"])
        kind = row_kind(batch["input_ids"][0, :n], lm.vocab)
        t = time.perf_counter()
        loss, _ = forward_loss(model, batch, amp, head)
        loss.backward()
        dt = time.perf_counter() - t
        model.zero_grad(set_to_none=True)
        if i >= a.warmup:
            seen.setdefault(kind, []).append((n, dt))

    total_s = sum(dt for v in seen.values() for _, dt in v)
    total_n = sum(n for v in seen.values() for n, _ in v)
    print(f"{a.config}: {a.rows} rows after {a.warmup} warm-up, {a.threads} thread(s), bf16 autocast {bf16}; "
          f"{total_n / total_s:.0f} tokens/s over all")
    print("| kind | rows | mean tokens | s a row | s per 1,000 tokens | share of the time | fit: a (s a row) + b (s per 1,000) |")
    print("|---|---|---|---|---|---|---|")
    for kind in sorted(seen):
        ns, ts = [n for n, _ in seen[kind]], [dt for _, dt in seen[kind]]
        fa, fb = fit([float(n) for n in ns], ts)
        print(f"| {kind} | {len(ns)} | {statistics.mean(ns):.0f} | {statistics.mean(ts):.2f} | "
              f"{1000 * sum(ts) / sum(ns):.2f} | {sum(ts) / total_s:.0%} | {fa:.2f} + {1000 * fb:.2f} |")
    return 0


if __name__ == "__main__":
    from vidgpt.errors import VidgptError

    try:
        raise SystemExit(main())
    except VidgptError as e:  # a bad config or data path: one line, no traceback
        raise SystemExit(f"doc_cost.py: error: {e}")
