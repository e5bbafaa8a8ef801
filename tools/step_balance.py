"""How evenly two data-parallel processes split a step's work: fixed micro-batch counts against a token budget.

Each process reads its own stream of rows; under `train.grad_accum` each takes the same number of rows a step, and
with one document a row of mixed lengths (a 230-token blueprint, a 1,000-token clip, a 60-token chat answer) their
token totals differ, so the process with fewer waits at the gradient all-reduce for the other. `train.step_tokens`
has each take rows until they hold a token budget. This reads the rows a config's run would train on (no model
step: the data only) and prints, for each way of cutting steps, the tokens a process takes a step and the share of
the step the slower process leaves the faster one idle (compute taken as proportional to document tokens, a token of
a text-only row counting `--text-cost`: ~2 measured on this CPU, docs/TRAINING_CPU.md). `--cut-costs` adds cuts with
`train.text_token_cost` at those values.

    python tools/step_balance.py --config configs/lm/default_model_p26.yaml --steps 200
    python tools/step_balance.py --config configs/lm/default_model_p27.yaml --accum --budgets 2300 --text-cost 2 --cut-costs 2
"""

from __future__ import annotations

import argparse
import statistics


def _cut(streams, micro: int, accum: int, budget: int, steps: int, new_from: int, text_cost: float,
         cut_cost: float) -> list[list[float]]:
    """Per step, the compute of each process: document tokens, a text-only row's counting `text_cost`; the steps cut
    with `cut_cost` as train.text_token_cost."""
    from vidgpt.train.lm_loss import is_text_row
    from vidgpt.train.lm_trainer import document_tokens, step_batches

    def cost(b) -> float:
        text = is_text_row(b["input_ids"], new_from)
        return document_tokens(b["weights"]) * (text_cost if text else 1.0)

    return [[sum(cost(b) for b in step_batches(s, micro, accum, budget, 0, new_from, cut_cost)) for s in streams]
            for _ in range(steps)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/lm/default_model_p26.yaml")
    ap.add_argument("--world", type=int, default=2, help="data-parallel processes")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--accum", type=int, nargs="*", default=[8], help="fixed micro-batches a process a step")
    ap.add_argument("--budgets", type=int, nargs="+", default=[2300], help="train.step_tokens values")
    ap.add_argument("--text-cost", type=float, default=1.0, help="a text-only row's token in compute (1 = tokens)")
    ap.add_argument("--cut-costs", type=float, nargs="*", default=[], help="train.text_token_cost values to cut with")
    a = ap.parse_args(argv)

    import torch

    from vidgpt.train.lm_trainer import cost_tool_lm, packed_rows

    torch.set_num_threads(1)
    cfg, lm, pad, _ = cost_tool_lm(a.config)  # the model only for its vocabulary and text tokenizer
    t = cfg.train

    def streams():
        return [packed_rows(cfg.data, lm.vocab, lm.text_tokenizer, t.seq_len, t.seed, "train", pad, r, a.world)
                for r in range(a.world)]

    nf, tc = lm.vocab.vision_start_id, a.text_cost
    rows = [(f"grad_accum {k} (x micro {t.micro_batch_size})", _cut(streams(), t.micro_batch_size, k, 0, a.steps, nf, tc, 1.0))
            for k in a.accum]
    rows += [(f"step_tokens {b}", _cut(streams(), t.micro_batch_size, 0, b, a.steps, nf, tc, 1.0)) for b in a.budgets]
    rows += [(f"step_tokens {b}, text_token_cost {c:g}", _cut(streams(), t.micro_batch_size, 0, b, a.steps, nf, tc, c))
             for b in a.budgets for c in a.cut_costs]
    print(f"{a.config}: {a.world} processes, {a.steps} steps, the same rows for each cut; compute = document tokens, "
          f"a text-only row's x {tc:g}")
    print("| cut | compute a process a step (mean) | spread between processes (mean max - min) | idle share of the faster |")
    print("|---|---|---|---|")
    for name, steps in rows:
        mean = statistics.mean(x for s in steps for x in s)
        spread = statistics.mean(max(s) - min(s) for s in steps)
        idle = statistics.mean(1 - statistics.mean(s) / max(s) for s in steps)  # a process's idle share of the step
        print(f"| {name} | {mean:.0f} | {spread:.0f} | {idle:.1%} |")
    return 0


if __name__ == "__main__":
    from vidgpt.errors import VidgptError

    try:
        raise SystemExit(main())
    except VidgptError as e:  # a bad config or data path: one line, no traceback
        raise SystemExit(f"step_balance.py: error: {e}")
