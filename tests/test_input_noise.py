"""vidgpt.train.input_noise: noisy video-code inputs, clean targets; the loss heads read them; resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vidgpt.train.input_noise import corrupt_video_inputs, noise_generator
from vidgpt.train.lm_loss import LossHead, LossSettings

from test_lm_loss import make_batch, make_lm

TINY_YAML = Path(__file__).resolve().parents[1] / "configs" / "lm" / "tiny.yaml"


@pytest.mark.parametrize("subtokens", [1, 2])
def test_only_trained_video_codes_change_and_stay_in_their_group(subtokens):
    lm = make_lm(False, subtokens=subtokens)
    batch = make_batch(lm, rows=4)
    assert corrupt_video_inputs(batch, lm.vocab, 0.0, noise_generator(0, 0, 0)) is batch
    out = corrupt_video_inputs(batch, lm.vocab, 0.5, noise_generator(0, 3, 1))
    ids, noisy = batch["input_ids"], out["model_input_ids"]
    assert torch.equal(out["input_ids"], ids)  # the targets are untouched
    changed = noisy != ids
    video = lm.vocab.is_visual(ids) & (batch["weights"] > 0)
    assert not (changed & ~video).any()  # text, layout, padding and untrained codes never change
    share = changed.sum().item() / video.sum().item()
    assert 0.35 < share < 0.55  # ~rate, less the draws that hit the same code
    for g in range(subtokens):
        lo, hi = lm.vocab.group_range(g)
        in_group = (ids >= lo) & (ids < hi)
        assert ((noisy[in_group] >= lo) & (noisy[in_group] < hi)).all()
    again = corrupt_video_inputs(batch, lm.vocab, 0.5, noise_generator(0, 3, 1))
    assert torch.equal(again["model_input_ids"], noisy)  # a function of (seed, step, micro, rank)
    other = corrupt_video_inputs(batch, lm.vocab, 0.5, noise_generator(0, 4, 1))
    assert not torch.equal(other["model_input_ids"], noisy)


def test_uniform_mode_gives_each_row_its_own_rate():
    lm = make_lm(False)
    batch = make_batch(lm, rows=8, seq_len=128)
    out = corrupt_video_inputs(batch, lm.vocab, 0.9, noise_generator(2, 0, 0), mode="uniform")
    video = lm.vocab.is_visual(batch["input_ids"]) & (batch["weights"] > 0)
    share = ((out["model_input_ids"] != batch["input_ids"]) & video).sum(1) / video.sum(1).clamp(min=1)
    assert float(share.max() - share.min()) > 0.3 and float(share.max()) < 0.95
    with pytest.raises(ValueError, match="mode"):
        corrupt_video_inputs(batch, lm.vocab, 0.5, noise_generator(0, 0, 0), mode="gaussian")


@pytest.mark.parametrize("head", ["plain", "constrained"])
def test_loss_heads_read_the_noisy_inputs_and_score_the_true_targets(head):
    lm = make_lm(True)
    lm.model.eval()
    batch = make_batch(lm)
    loss_head = LossHead(lm.vocab, LossSettings(head=head, embed_grad="input"), "cpu", 1)
    with torch.no_grad():
        clean, n = loss_head(lm.model, batch)
        same, n_same = loss_head(lm.model, {**batch, "model_input_ids": batch["input_ids"].clone()})
        noisy, n_noisy = loss_head(lm.model, corrupt_video_inputs(batch, lm.vocab, 0.5, noise_generator(1, 0, 0)))
    assert float(same) == pytest.approx(float(clean), abs=1e-6) and n_same == n == n_noisy
    assert abs(float(noisy) - float(clean)) > 1e-4


def test_trainer_with_input_noise_resumes_exactly_and_rejects_bad_rates(tmp_path, killed_lm_run):
    from vidgpt.config import load_config
    from vidgpt.errors import ConfigError
    from vidgpt.train.lm_trainer import LMTrainConfig, train_lm

    sets = ["train.steps=6", "train.seq_len=64", "train.ckpt_every=3", "train.eval_batches=0", "data.input_noise=0.3"]

    def losses(out):
        return {r["step"]: r["loss"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in r}

    train_lm(load_config(LMTrainConfig, TINY_YAML, sets), tmp_path / "straight", progress=False)
    train_lm(load_config(LMTrainConfig, TINY_YAML, sets[:-1]), tmp_path / "clean", progress=False)
    straight, clean = losses(tmp_path / "straight"), losses(tmp_path / "clean")
    assert straight[1] != pytest.approx(clean[1], abs=1e-6)  # the noise reached the model
    killed_lm_run(load_config(LMTrainConfig, TINY_YAML, sets), tmp_path / "resumed", kill_step=3)
    train_lm(load_config(LMTrainConfig, TINY_YAML, sets), tmp_path / "resumed", resume=True, progress=False)
    resumed = losses(tmp_path / "resumed")
    assert all(abs(resumed[s] - straight[s]) < 1e-6 for s in range(1, 7))
    with pytest.raises(ConfigError, match="input_noise"):
        train_lm(load_config(LMTrainConfig, TINY_YAML, [*sets[:-1], "data.input_noise=1.0"]), tmp_path / "bad", progress=False)
