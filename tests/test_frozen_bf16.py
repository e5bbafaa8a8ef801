"""Frozen linear weights stored in bf16 for LoRA runs under CPU bf16 autocast (lm_trainer.frozen_linears_to_bf16):
autocast's own cast done once, so the loss and gradients are those of the fp32-stored weights."""

import json
from pathlib import Path

import pytest
import torch

from test_lm_loss import assert_grads_close, grads, make_batch, make_lm
from vidgpt.config import load_config
from vidgpt.train.lm_loss import LossHead, LossSettings
from vidgpt.train.lm_trainer import frozen_linears_to_bf16

ROOT = Path(__file__).resolve().parents[1]


def _step(lm, head, batch):
    lm.model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = head(lm.model, batch)
    loss.backward()
    return float(loss.detach()), grads(lm.model)


def test_frozen_weights_in_bf16_change_neither_loss_nor_gradients():
    lm = make_lm(lora=True)
    head = LossHead(lm.vocab, LossSettings(head="constrained", text_kl_weight=1.0, text_kl_rows="all"))
    batch = make_batch(lm)
    before = _step(lm, head, batch)
    emb = lm.model.get_input_embeddings().weight
    n = frozen_linears_to_bf16(lm.model)
    assert n == 2 * 7  # q k v o gate up down of both layers; not the head over the vocabulary
    assert emb.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in lm.model.parameters() if p.requires_grad)
    frozen = [m.weight for m in lm.model.modules() if isinstance(m, torch.nn.Linear) and not m.weight.requires_grad]
    assert sum(w.dtype == torch.bfloat16 for w in frozen) == n == len(frozen) - 1  # the head stays fp32
    assert all(w.dtype == torch.float32 for w in frozen if w.shape[0] == emb.shape[0])
    after = _step(lm, head, batch)
    assert after[0] == pytest.approx(before[0], rel=1e-6)
    assert_grads_close(before[1], after[1], tol=1e-5)
    assert frozen_linears_to_bf16(lm.model) == n  # idempotent


def test_a_lora_run_under_cpu_bf16_trains_and_saves_its_delta(tmp_path):
    """The trainer applies it (cpu_bf16 on a CPU with native bf16; elsewhere fp32 as before): the run trains and the
    delta it saves loads."""
    from vidgpt.backbone import load_vidgpt_lm
    from vidgpt.train.lm_trainer import LMTrainConfig, train_lm

    sets = ["train.steps=3", "train.eval_every=3", "train.ckpt_every=0", "train.log_every=1", "lora.enabled=true",
            "lora.r=4", "lora.alpha=8", "loss.head=constrained", "train.save_form=delta", "train.cpu_bf16=true"]
    train_lm(load_config(LMTrainConfig, ROOT / "configs" / "lm" / "tiny.yaml", sets), tmp_path / "run", progress=False)
    recs = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if '"loss"' in x]
    assert len(recs) == 3 and all(torch.isfinite(torch.tensor(r["loss"])) for r in recs)
    lm = load_vidgpt_lm(tmp_path / "run" / "model")
    assert all(p.dtype == torch.float32 for p in lm.model.parameters())  # the saved delta rebuilds an fp32 model
