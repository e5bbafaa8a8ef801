"""vidgpt.train.bit_rows: the bitwise part is exact where it is added, folding keeps the function and the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vidgpt.config import load_config
from vidgpt.errors import ConfigError
from vidgpt.tokenizer.lfq import codes_to_bits
from vidgpt.train.bit_rows import ATTR, attach_bit_rows, bit_rows_of, detach_bit_rows, fold_bit_rows
from vidgpt.train.lm_loss import LossHead, LossSettings, reference_loss
from vidgpt.train.lm_trainer import LMTrainConfig, train_lm

from test_lm_loss import make_batch, make_lm

TINY_YAML_DIR = Path(__file__).resolve().parents[1] / "configs" / "lm"


def _with_bits(lm, seed=3, scale=0.3):
    bits = attach_bit_rows(lm.model, lm.vocab)
    with torch.no_grad():
        bits.A.copy_(scale * torch.randn(bits.A.shape, generator=torch.Generator().manual_seed(seed)))
    return bits


def _plain_logits(lm, batch):
    return lm.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits


@pytest.mark.parametrize("lora,subtokens", [(True, 1), (False, 1), (True, 2)])
def test_bitwise_part_equals_the_folded_rows_under_every_head(lora, subtokens):
    lm = make_lm(lora, subtokens=subtokens)
    batch = make_batch(lm)
    bits = _with_bits(lm)
    heads = {h: LossHead(lm.vocab, LossSettings(head=h)) for h in ("full", "constrained")}
    with torch.no_grad():
        before = {h: float(f(lm.model, batch)[0]) for h, f in heads.items()}
        assert fold_bit_rows(lm.model)
        assert not bits.A.any()
        after = {h: float(f(lm.model, batch)[0]) for h, f in heads.items()}
        logits = _plain_logits(lm, batch)  # the model's own forward: the folded rows are ordinary rows now
        ref = {h: float(reference_loss(logits, batch["input_ids"], batch["weights"], lm.vocab,
                                       "plain" if h == "full" else h)[0]) for h in heads}
    for h in heads:
        assert after[h] == pytest.approx(before[h], abs=1e-5), h
        assert before[h] == pytest.approx(ref[h], abs=1e-5), h
    # and the part really moved the loss (the test would pass trivially if it added nothing)
    lm2 = make_lm(lora, subtokens=subtokens)
    with torch.no_grad():
        plain = float(heads["constrained"](lm2.model, batch)[0])
    assert abs(plain - before["constrained"]) > 1e-3


def test_rows_of_each_code_follow_its_bits():
    lm = make_lm(False)
    bits = _with_bits(lm)
    v0 = lm.vocab.visual_offset
    part = bits.part()
    codes = torch.tensor([0, 5, 63])
    want = codes_to_bits(codes, lm.vocab.spec.codebook_bits) @ bits.A[0]
    assert torch.allclose(part[codes], want, atol=1e-6)
    W = torch.zeros(8, part.shape[1])  # a slice that straddles the end of the text rows and the visual rows
    out = bits.add_to_rows(W, v0 - 3, v0 + 5)
    assert not out[:3].any() and torch.allclose(out[3:], part[:5])
    assert bits.add_to_rows(W, 0, 8) is W


def test_A_learns():
    lm = make_lm(True)
    batch = make_batch(lm)
    bits = _with_bits(lm, scale=0.0)
    head = LossHead(lm.vocab, LossSettings(head="constrained", embed_grad="head_only"))
    loss, _ = head(lm.model, batch)
    loss.backward()
    assert bits.A.grad is not None and bits.A.grad.abs().sum() > 0


def test_detach_leaves_plain_rows_and_no_extra_tensor():
    lm = make_lm(True)
    batch = make_batch(lm)
    _with_bits(lm)
    head = LossHead(lm.vocab, LossSettings(head="constrained"))
    with torch.no_grad():
        before = float(head(lm.model, batch)[0])
        detach_bit_rows(lm.model)
        assert bit_rows_of(lm.model) is None
        assert not any(ATTR in k for k in lm.model.state_dict())
        assert float(head(lm.model, batch)[0]) == pytest.approx(before, abs=1e-5)


def _tiny(extra):
    return load_config(LMTrainConfig, TINY_YAML_DIR / "tiny.yaml",
                       ["train.eval_batches=0", "loss.head=constrained", "model.bit_rows=true"] + extra)


def _losses(out):
    return [r["loss"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in r]


def test_folding_at_checkpoints_does_not_change_the_run(tmp_path):
    a = train_lm(_tiny(["train.steps=12", "train.ckpt_every=0"]), tmp_path / "a", progress=False)
    b = train_lm(_tiny(["train.steps=12", "train.ckpt_every=3"]), tmp_path / "b", progress=False)
    la, lb = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert len(la) == 12 and la == pytest.approx(lb, abs=1e-4)
    assert la[-1] < la[0]
    assert a["loss"] == pytest.approx(b["loss"], abs=1e-4)
    # the checkpoint holds folded rows (A = 0), the model dir no bit-row tensor at all
    from vidgpt.train.lm_init import checkpoint_state
    from vidgpt.train.lm_trainer import checkpoint_dirs

    state = checkpoint_state(checkpoint_dirs(tmp_path / "b")[-1])
    (key,) = [k for k in state if ATTR in k]
    assert not state[key].any()
    from safetensors.torch import load_file

    saved = load_file(str(next((tmp_path / "b" / "model").glob("*.safetensors"))))
    assert not any(ATTR in k for k in saved)


def test_resume_with_bit_rows_continues_exactly(tmp_path):
    whole = _tiny(["train.steps=10", "train.ckpt_every=5"])
    train_lm(whole, tmp_path / "whole", progress=False)
    part = _tiny(["train.steps=5", "train.ckpt_every=5"])
    train_lm(part, tmp_path / "piece", progress=False)
    train_lm(whole, tmp_path / "piece", resume=True, progress=False)
    assert _losses(tmp_path / "piece") == pytest.approx(_losses(tmp_path / "whole"), abs=1e-5)


def test_init_from_a_run_without_bit_rows_and_back(tmp_path):
    plain = load_config(LMTrainConfig, TINY_YAML_DIR / "tiny.yaml",
                        ["train.eval_batches=0", "loss.head=constrained", "train.steps=3", "train.ckpt_every=3"])
    train_lm(plain, tmp_path / "plain", progress=False)
    train_lm(_tiny(["train.steps=3", "train.ckpt_every=3", f"train.init_from={tmp_path / 'plain'}"]),
             tmp_path / "bits", progress=False)
    back = load_config(LMTrainConfig, TINY_YAML_DIR / "tiny.yaml",
                       ["train.eval_batches=0", "loss.head=constrained", "train.steps=3",
                        f"train.init_from={tmp_path / 'bits'}"])
    train_lm(back, tmp_path / "back", progress=False)


def test_a_full_form_model_of_a_bit_rows_run_starts_the_next_piece(tmp_path):
    # the saved model holds its rows folded and no bit-row tensor; a full fine-tune with bit rows starts from it
    full = ["lora.enabled=false", "train.save_form=full", "train.ckpt_every=0"]
    first = train_lm(_tiny(full + ["train.steps=3"]), tmp_path / "first", progress=False)
    nxt = train_lm(_tiny(full + ["train.steps=2", f"train.init_from={tmp_path / 'first' / 'model'}"]),
                   tmp_path / "next", progress=False)
    assert _losses(tmp_path / "next")[0] < _losses(tmp_path / "first")[0]
    assert first["loss"] > 0 and nxt["loss"] > 0


def test_plain_head_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="bit_rows"):
        train_lm(_tiny(["loss.head=plain", "train.steps=1"]), tmp_path / "x", progress=False)
