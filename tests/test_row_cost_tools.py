"""tools/doc_cost.py and tools/step_balance.py: what a row costs by kind, and how evenly processes split a step."""

from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "lm" / "tiny.yaml")
SETS = ["--set", "data.packing=single", "--set", "train.seq_len=64"]


def test_row_kinds_and_the_fit(load_tool):
    cost = load_tool("doc_cost")

    class V:
        offset = 100

    assert cost.row_kind(torch.tensor([1, 2, 3]), V) == "text"
    assert cost.row_kind(torch.tensor([1, 150, 3]), V) == "visual short"
    assert cost.row_kind(torch.tensor([1] * 400 + [150]), V) == "visual long"
    a, b = cost.fit([100.0, 200.0, 400.0], [0.3, 0.5, 0.9])  # exactly 0.1 + 0.002 x
    assert abs(a - 0.1) < 1e-9 and abs(b - 0.002) < 1e-12
    assert cost.fit([5.0, 5.0], [1.0, 3.0]) == (2.0, 0.0)


def test_both_tools_run_on_the_tiny_config(load_tool, capsys):
    assert load_tool("doc_cost").main(["--config", TINY, "--rows", "4", "--warmup", "1"] + SETS) == 0
    out = capsys.readouterr().out
    assert "| visual short | 4 |" in out
    assert load_tool("doc_cost").main(["--config", TINY, "--rows", "6", "--warmup", "0", "--micro-tokens", "200",
                                       "--step-tokens", "50"] + SETS) == 0
    out = capsys.readouterr().out
    assert "| one row each |" in out and "| micro_tokens 200 |" in out
    diff = float(out.split("grouped vs one row each: ")[1].split()[0])
    assert diff < 1e-4  # fp32 here: the grouped step's loss is the same
    assert load_tool("step_balance").main(["--config", TINY, "--steps", "5", "--accum", "2", "--budgets", "100"]) == 0
    assert load_tool("step_balance").main(["--config", TINY, "--steps", "5", "--accum", "--budgets", "100",
                                           "--text-cost", "2", "--cut-costs", "2"]) == 0
    out = capsys.readouterr().out
    assert "| grad_accum 2 (x micro 4) |" in out and "| step_tokens 100 |" in out
    assert "| step_tokens 100, text_token_cost 2 |" in out
