"""train.micro_tokens: a step's one-document rows regrouped into micro-batches of like rows (text-only apart from
rows with visual tokens, longest first), the same step under loss_norm tokens (vidgpt.train.lm_trainer.group_rows)."""

import json
from pathlib import Path

import pytest
import torch

from test_lm_loss import assert_grads_close, grads, make_lm
from vidgpt.config import load_config
from vidgpt.errors import ConfigError
from vidgpt.train.lm_loss import LossHead, LossSettings
from vidgpt.train.lm_trainer import group_rows, trained_tokens

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "lm" / "tiny.yaml"


def _row(ids, seq_len=48, pad=2):
    """One document a row, as the single packer makes it: position ids from 0, weight 0 at the start and on padding."""
    n = len(ids)
    row = {"input_ids": torch.full((seq_len,), pad, dtype=torch.long), "position_ids": torch.zeros(seq_len, dtype=torch.long),
           "weights": torch.zeros(seq_len)}
    row["input_ids"][:n] = torch.tensor(ids)
    row["position_ids"][:n] = torch.arange(n)
    row["weights"][1:n] = 1.0
    return row


def _rows(lm, spec, seed=0):
    """Rows of ("text"|"video", length): text-only ids, or a short text lead-in, <|vision_start|> and visual codes."""
    g = torch.Generator().manual_seed(seed)
    off, out = lm.vocab.vision_start_id, []
    for kind, n in spec:
        if kind == "text":
            ids = torch.randint(3, off, (n,), generator=g).tolist()
        else:
            ids = (torch.randint(3, off, (3,), generator=g).tolist() + [off]
                   + torch.randint(lm.vocab.visual_offset, lm.vocab.end, (n - 4,), generator=g).tolist())
        out.append(_row(ids))
    return out


def test_group_rows_keeps_kinds_apart_longest_first_within_the_budget():
    lm = make_lm(lora=False)
    spec = [("text", 10), ("video", 30), ("text", 20), ("video", 12), ("text", 5), ("video", 40), ("video", 11)]
    rows = _rows(lm, spec)
    groups = group_rows(rows, 60, lm.vocab.vision_start_id)
    lens = [[int(r.nonzero().max()) + 1 for r in b["weights"]] for b in groups]
    # visual rows first: 40 alone (40 + 40 > 60), then 30 + 12 (2 x 30 = 60), then 11; text rows: 20 + 10 + 5 (3 x 20)
    assert lens == [[40], [30, 12], [11], [20, 10, 5]]
    off = lm.vocab.vision_start_id
    assert [bool((b["input_ids"] >= off).any(1).all()) for b in groups] == [True, True, True, False]
    assert sum(len(x) for x in lens) == len(rows)
    assert [len(b["weights"]) for b in group_rows(rows, 1, off)] == [1] * len(rows)  # a tiny budget: a row each


@pytest.mark.parametrize("kl", [0.0, 1.0])
def test_grouped_rows_give_the_step_of_one_row_each(kl):
    """Token-weighted (loss_norm tokens): the summed loss x trained tokens and the gradients of the grouped
    micro-batches equal those of one row a micro-batch, text KL included (its mean is over a text-only group's
    trained positions)."""
    lm = make_lm(lora=True)
    head = LossHead(lm.vocab, LossSettings(head="constrained", text_kl_weight=kl, text_kl_rows="all"))
    rows = _rows(lm, [("text", 9), ("video", 30), ("text", 21), ("video", 14), ("text", 16), ("video", 25)], seed=1)
    single = [{k: v[None] for k, v in r.items()} for r in rows]
    groups = group_rows(rows, 64, lm.vocab.vision_start_id)
    assert len(groups) < len(rows)
    total = float(sum(trained_tokens(b["weights"]) for b in single))

    def step(batches):
        lm.model.zero_grad(set_to_none=True)
        acc = 0.0
        for b in batches:
            loss, _ = head(lm.model, b)
            (loss * trained_tokens(b["weights"]) / total).backward()
            acc += float(loss.detach()) * trained_tokens(b["weights"]) / total
        return acc, grads(lm.model)

    l1, g1 = step(single)
    l2, g2 = step(groups)
    assert l1 == pytest.approx(l2, rel=1e-5)
    assert_grads_close(g1, g2, tol=1e-4)


def test_micro_tokens_in_training_and_its_checks(tmp_path):
    """One step of the tiny config under a token budget: the same loss, rows and eval with and without regrouping;
    micro_tokens needs step_tokens and one row a micro-batch."""
    from vidgpt.train.lm_trainer import LMTrainConfig, train_lm

    common = ["data.packing=single", "train.seq_len=64", "train.micro_batch_size=1", "train.ckpt_every=0",
              "train.log_every=1", "train.grad_clip=0", "train.warmup_steps=0", "train.loss_norm=tokens",
              "train.steps=2", "train.eval_every=2", "train.eval_batches=2", "train.step_tokens=120"]

    def run(name, *sets):
        out = tmp_path / name
        train_lm(load_config(LMTrainConfig, TINY, common + list(sets)), out, progress=False)
        return [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines() if '"loss"' in x]

    plain, grouped = run("plain"), run("grouped", "train.micro_tokens=128")
    for a, b in zip(plain, grouped):
        assert a["rows"] == b["rows"] > 2
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert plain[-1]["eval_loss"] == pytest.approx(grouped[-1]["eval_loss"], rel=1e-5)
    for bad in (["train.micro_tokens=-1"], ["train.micro_tokens=100", "train.step_tokens=0"],
                ["train.micro_tokens=100", "train.micro_batch_size=2"]):
        with pytest.raises(ConfigError, match="micro_tokens"):
            train_lm(load_config(LMTrainConfig, TINY, common + bad), tmp_path / "bad", progress=False)
