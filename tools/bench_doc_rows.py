"""One document a row against a packed row, on the real model: forward + backward through the trainer's loss head.

A packed row of several documents has position ids that restart at each document; transformers then builds a
block-diagonal mask and, on the CPU, sdpa computes the whole row's attention on its masked path. The same documents
as one row each stay causal sequences (sdpa's causal kernel). This times both on the same random visual documents
(`--docs` documents of `--len` tokens, bf16 autocast as the trainer on an AVX512-BF16 CPU), and the one-a-row case at
several micro-batch sizes, and prints a table with the packed row as the baseline. (`tools/bench_train.py --cpu-real
--row-per-doc` times one layout of real clip documents on a model directory made by `vidgpt lm extend`, with the
step's split into forward / head / backward; this one builds the model from a train config, as the trainer does.)

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 taskset -c 0 python tools/bench_doc_rows.py --config configs/lm/default_model_p25.yaml
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/lm/default_model_p25.yaml")
    ap.add_argument("--docs", type=int, default=8)
    ap.add_argument("--len", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the trainer's processes run one each)")
    a = ap.parse_args()

    from vidgpt.train.lm_trainer import cost_tool_lm, forward_loss, make_loss_head

    torch.set_num_threads(a.threads)
    cfg, lm, _, _ = cost_tool_lm(a.config)  # as the trainer builds it (frozen weights in bf16 since 2026-12-06)
    head = make_loss_head(cfg, lm.vocab, torch.device("cpu"))
    amp = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    model = lm.model
    model.train()
    D, L = a.docs, a.len
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(lm.vocab.visual_offset, lm.vocab.visual_offset + 2 ** lm.vocab.spec.codebook_bits, (D, L), generator=g)
    w = torch.ones(D, L)
    w[:, 0] = 0
    packed = {"input_ids": ids.reshape(1, -1), "position_ids": torch.arange(L).repeat(D).reshape(1, -1),
              "weights": w.reshape(1, -1)}
    rows = {"input_ids": ids, "position_ids": torch.arange(L).repeat(D, 1), "weights": w}

    def run(batches) -> tuple[float, float]:
        best, loss = float("inf"), 0.0
        for _ in range(a.repeats):
            t = time.perf_counter()
            for b in batches:
                lo, _ = forward_loss(model, b, amp, head)
                lo.backward()
                model.zero_grad(set_to_none=True)
                loss = float(lo.detach())
            best = min(best, time.perf_counter() - t)
        return best, loss

    run([{k: v[:1] for k, v in rows.items()}])  # warm-up
    table = [("packed: 1 row of %d documents" % D, *run([packed]))]
    for B in (1, 2, 4, D):
        if D % B == 0:
            table.append((f"one a row, micro-batch {B}", *run([{k: v[i:i + B] for k, v in rows.items()}
                                                               for i in range(0, D, B)])))
    base = table[0][1]
    print(f"{D} documents x {L} tokens, {a.threads} thread(s), bf16 autocast, {a.repeats} repeats (best)")
    print("| layout | s | tokens/s | x packed | loss of the last micro-batch |")
    print("|---|---|---|---|---|")
    for name, s, loss in table:
        print(f"| {name} | {s:.1f} | {D * L / s:.0f} | {base / s:.2f} | {loss:.4f} |")


if __name__ == "__main__":
    main()
