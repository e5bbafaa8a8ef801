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
    loss_head = LossHead(lm.vocab, LossSettings(head=head, embed_grad="input"), "cpu")
    with torch.no_grad():
        clean, n = loss_head(lm.model, batch)
        same, n_same = loss_head(lm.model, {**batch, "model_input_ids": batch["input_ids"].clone()})
        noisy, n_noisy = loss_head(lm.model, corrupt_video_inputs(batch, lm.vocab, 0.5, noise_generator(1, 0, 0)))
    assert float(same) == pytest.approx(float(clean), abs=1e-6) and n_same == n == n_noisy
    assert abs(float(noisy) - float(clean)) > 1e-4


@pytest.mark.parametrize("noise,bad", [("input_noise=0.3", "input_noise=1.0"), ("stay_noise=0.5", "stay_noise=1.5")])
def test_trainer_with_input_noise_resumes_exactly_and_rejects_bad_rates(tmp_path, killed_lm_run, noise, bad):
    from vidgpt.config import load_config
    from vidgpt.errors import ConfigError
    from vidgpt.train.lm_trainer import LMTrainConfig, train_lm

    sets = ["train.steps=6", "train.seq_len=64", "train.ckpt_every=3", "train.eval_batches=0", f"data.{noise}"]

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
    with pytest.raises(ConfigError, match=bad.split("=")[0]):
        train_lm(load_config(LMTrainConfig, TINY_YAML, [*sets[:-1], f"data.{bad}"]), tmp_path / "bad", progress=False)


def _stay_batch(subtokens, t=3):
    """Two packed rows: text-to-video documents (blueprint + fine) and an edit whose source clip is not trained."""
    import numpy as np

    from vidgpt.backbone import extend
    from vidgpt.layout import Layout
    from vidgpt.train.lm_data import LMDataConfig, RecordFormatter
    from vidgpt.train.packing import collate, pack

    lm = extend("tiny-llama", None, codebook_bits=6, subtokens=subtokens,
                tiny={"hidden_size": 32, "layers": 1, "heads": 2, "kv_heads": 1}, chat=False)
    rng = np.random.default_rng(0)
    recs = []
    for i in range(3):
        rec = {"codes": rng.integers(0, 64, t * 16).tolist(), "shape": [t, 4, 4],
               "blueprint_codes": rng.integers(0, 64, t * 4).tolist(), "caption": "red circle, moving right"}
        if i == 2:
            rec["edit"] = {"source_codes": rng.integers(0, 64, t * 16).tolist(), "source_shape": [t, 4, 4],
                           "instruction": "make it blue"}
        recs.append(rec)
    fmt = RecordFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig(chat=False))
    docs = [fmt(r, rng) for r in recs]
    batch = collate(list(pack(docs, seq_len=max(len(d) for d in docs) + 2, pad_id=0)))
    for r, d in enumerate(docs):
        recs[r]["_length"] = len(d)
    return lm, Layout(lm.vocab, lm.text_tokenizer, chat=False), recs, batch


@pytest.mark.parametrize("subtokens", [1, 2])
def test_stay_noise_reads_later_frames_as_the_previous_frame(subtokens):
    from vidgpt.train.input_noise import stay_video_inputs

    t = 3
    lm, layout, recs, batch = _stay_batch(subtokens, t)
    assert stay_video_inputs(batch, lm.vocab, 0.0, noise_generator(0, 0, 0)) is batch
    out = stay_video_inputs(batch, lm.vocab, 1.0, noise_generator(0, 0, 0))
    assert torch.equal(out["input_ids"], batch["input_ids"])  # targets untouched
    changed = out["model_input_ids"] != batch["input_ids"]
    assert not (changed & ~(lm.vocab.is_visual(batch["input_ids"]) & (batch["weights"] > 0))).any()
    assert len(recs) == batch["input_ids"].shape[0]  # one document a row (the rows are sized so)
    for r, rec in enumerate(recs):
        turns = layout.parse(out["model_input_ids"][r, :rec["_length"]].tolist()).turns
        target = turns[-1].blocks()[0]
        for got, codes, shape in ((target.fine, rec["codes"], (t, 4, 4)), (target.blueprint, rec["blueprint_codes"], (t, 2, 2))):
            clean = torch.tensor(codes).reshape(shape)
            want = torch.cat([clean[:1], clean[:-1]])  # every later frame reads as the one before it (all 1.0)
            assert torch.equal(got, want)
        if rec.get("edit"):  # the source clip is given, not trained: read as it is
            source = turns[0].blocks()[0]
            assert source.fine.flatten().tolist() == rec["edit"]["source_codes"]
    half = stay_video_inputs(batch, lm.vocab, 0.5, noise_generator(0, 1, 0))
    half_changed = (half["model_input_ids"] != batch["input_ids"]).sum().item()
    assert 0.25 * changed.sum().item() < half_changed < 0.75 * changed.sum().item()
    assert torch.equal(stay_video_inputs(batch, lm.vocab, 0.5, noise_generator(0, 1, 0))["model_input_ids"],
                       half["model_input_ids"])  # a function of (seed, step, micro, rank): resumes exactly


def test_stay_noise_applies_on_top_of_random_noise_and_skips_cut_headers():
    from vidgpt.train.input_noise import stay_video_inputs, video_sections

    lm, _, _, batch = _stay_batch(1)
    noisy = corrupt_video_inputs(batch, lm.vocab, 0.3, noise_generator(0, 0, 0))
    both = stay_video_inputs(noisy, lm.vocab, 1.0, noise_generator(0, 0, 0))
    ids = batch["input_ids"][0].tolist()
    (bp_start, bp_shape), (fine_start, fine_shape) = video_sections(ids, lm.vocab)
    assert bp_shape == (3, 2, 2) and fine_shape == (3, 4, 4) and fine_start == bp_start + 12 + 1
    first_frame = slice(fine_start, fine_start + 16)  # frame 0 keeps its random noise; frames >= 1 are overwritten
    assert torch.equal(both["model_input_ids"][0, first_frame], noisy["model_input_ids"][0, first_frame])
    later = slice(fine_start + 16, fine_start + 48)
    assert torch.equal(both["model_input_ids"][0, later], batch["input_ids"][0, fine_start:fine_start + 32])
    assert video_sections(ids[bp_start:], lm.vocab) == []  # a block whose header is in an earlier row is skipped
