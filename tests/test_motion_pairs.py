"""The contrastive motion loss (vidgpt.train.motion_pairs): pairs, per-row likelihoods, its gradient, the trainer."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidgpt.backbone import extend
from vidgpt.config import load_config
from vidgpt.layout import VISUAL, Layout
from vidgpt.train.lm_data import LMDataConfig, write_records_jsonl
from vidgpt.train.lm_loss import LossHead, LossSettings, allowed_mask
from vidgpt.train.motion_pairs import MotionPairs, PairFormatter, contrast_loss, pair_batch, pair_margins

TINY_YAML = Path(__file__).resolve().parents[1] / "configs" / "lm" / "tiny.yaml"
DIRS = {"right": [1, 2, 3, 4], "left": [5, 6, 7, 8]}  # the blueprint's latent frame 1 says where the object went


def _record(i, direction="right", t=2):
    rng = np.random.default_rng(i)
    bp = rng.integers(0, 64, 4).tolist() + (DIRS[direction] if t > 1 else [])
    return {"codes": rng.integers(0, 64, t * 16).tolist(), "shape": [t, 4, 4], "blueprint_codes": bp,
            "blueprint_shape": [t, 2, 2], "caption": f"red circle, moving {direction}",
            "captions": [f"red circle, moving {direction}", f"A red circle slides to the {direction}"],
            "kind": "video", "edit": None}


def _tiny_lm():
    torch.manual_seed(0)
    return extend("tiny-llama", None, codebook_bits=6, tiny={"hidden_size": 32, "layers": 1, "heads": 2, "kv_heads": 1})


def test_pair_documents():
    lm = _tiny_lm()
    layout = Layout(lm.vocab, lm.text_tokenizer, chat=False)
    fmt = PairFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig(chat=False, prompt_dropout=1.0, object_loss_weight=4.0))
    rec = _record(0)
    pair = fmt(rec, np.random.default_rng(0))
    assert pair.other == pair.caption.replace("right", "left")
    for doc, cap in ((pair.better, pair.caption), (pair.worse, pair.other)):
        user, assistant = layout.parse(doc.input_ids).turns
        assert user.text() == cap  # never prompt-dropped
        block = assistant.blocks()[0]
        assert block.fine is None and block.blueprint.flatten().tolist() == rec["blueprint_codes"]
        vis = [i for i, k in enumerate(doc.kinds) if k == VISUAL]
        trained = [i for i, w in enumerate(doc.weights) if w > 0]
        assert trained == vis[4:] and all(doc.weights[i] == 1.0 for i in trained)  # latent frame 1 only, weight 1
    # no pair: an edit, an image, a record without a motion word or without a blueprint
    still = dict(rec, caption="red circle", captions=["red circle", "A red circle on black"])
    image = dict(_record(1, t=1), caption="red circle, moving right")
    for bad in (dict(rec, edit={"instruction": "make it blue"}), image, still, dict(rec, blueprint_codes=None)):
        assert fmt(bad, np.random.default_rng(0)) is None


@pytest.mark.parametrize("head", ["constrained", "full", "plain"])
def test_row_nll_is_the_per_row_sum(head):
    lm = _tiny_lm()
    fmt = PairFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig(chat=False))
    pairs = [fmt(_record(i, d), np.random.default_rng(i)) for i, d in enumerate(["right", "left", "right"])]
    batch = pair_batch(pairs)
    lh = LossHead(lm.vocab, LossSettings(head=head))
    with torch.no_grad():
        got = lh.row_nll(lm.model, batch)
        logits = lm.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[:, :-1].float()
    tgt, w = batch["input_ids"][:, 1:], batch["weights"][:, 1:]
    if head == "constrained":
        mask = allowed_mask(tgt.reshape(-1), lm.vocab, logits.shape[-1], head).view(*tgt.shape, -1)
        logits = logits.masked_fill(~mask, float("-inf"))
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="none").view_as(w)
    want = (ce * (w > 0)).sum(1)
    assert got.shape == (6,) and torch.allclose(got, want, atol=1e-4), (got, want)
    assert torch.allclose(pair_margins(lh, lm.model, batch), want[1::2] - want[0::2], atol=1e-4)


def test_contrast_gradient_raises_the_margin():
    lm = _tiny_lm()
    fmt = PairFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig(chat=False))
    batch = pair_batch([fmt(_record(i, d), np.random.default_rng(i)) for i, d in enumerate(["right", "left"] * 2)])
    lh = LossHead(lm.vocab, LossSettings(head="constrained"))
    opt = torch.optim.Adam([p for p in lm.model.parameters() if p.requires_grad], lr=3e-3)
    m0 = pair_margins(lh, lm.model, batch).detach()
    for _ in range(10):
        loss = contrast_loss(pair_margins(lh, lm.model, batch), beta=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m1 = pair_margins(lh, lm.model, batch).detach()
    assert float(m1.min()) > float(m0.max()) + 1.0, (m0, m1)  # every pair, from ~0 nats
    assert float(contrast_loss(m1, 1.0)) < float(contrast_loss(m0, 1.0))


def _shards(tmp_path, n=64):
    recs = [_record(i, "right" if i % 2 else "left") for i in range(n)]
    write_records_jsonl(tmp_path / "t2v" / "part-00000-00000.jsonl", recs)
    return str(tmp_path / "t2v")


def _cfg(tmp_path, weight, *extra):
    sets = ["data.sources=[{kind: shards, paths: [" + _shards(tmp_path) + "]}]", "data.holdout_every=8",
            "train.steps=12", "train.seq_len=96", "train.ckpt_every=6", "train.eval_every=6", "train.eval_batches=1",
            "train.micro_batch_size=2", "train.grad_accum=2", f"loss.motion_contrast_weight={weight}",
            "loss.motion_contrast_pairs=2", *extra]
    return load_config(LMTrainConfig, TINY_YAML, sets)


def _log(out):
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]


from vidgpt.train.lm_trainer import LMTrainConfig, train_lm  # noqa: E402


def test_trainer_logs_margins_and_resumes_exactly(tmp_path, killed_lm_run):
    train_lm(_cfg(tmp_path, 1.0), tmp_path / "straight", progress=False)
    log = _log(tmp_path / "straight")
    steps = [r for r in log if "loss" in r]
    assert len(steps) == 12 and all("contrast_margin" in r and "motion_contrast" in r for r in steps)
    evals = [r for r in log if "eval_contrast_margin" in r]
    assert [r["step"] for r in evals] == [6, 12] and all(0 <= r["eval_contrast_true_lower"] <= 1 for r in evals)
    # the direction is all the frame-1 codes depend on: the held-out margin grows (from ~0 at random init)
    assert evals[-1]["eval_contrast_margin"] > 1.0, evals

    killed_lm_run(_cfg(tmp_path, 1.0), tmp_path / "resumed", kill_step=6)
    train_lm(_cfg(tmp_path, 1.0), tmp_path / "resumed", resume=True, progress=False)
    resumed = {r["step"]: (r["loss"], r["contrast_margin"]) for r in _log(tmp_path / "resumed") if "loss" in r}
    for r in steps:
        assert resumed[r["step"]] == pytest.approx((r["loss"], r["contrast_margin"]), abs=1e-5), r["step"]

    train_lm(_cfg(tmp_path, 0.0), tmp_path / "off", progress=False)  # off: no pair stream, no extra keys
    assert not any("contrast_margin" in r or "eval_contrast_margin" in r for r in _log(tmp_path / "off"))


def test_pairs_need_shards_and_one_process(tmp_path):
    from vidgpt.errors import ConfigError
    from vidgpt.train.lm_trainer import pair_objectives

    cfg = load_config(LMTrainConfig, TINY_YAML, ["loss.motion_contrast_weight=1.0"])  # synthetic source only
    lm = _tiny_lm()
    with pytest.raises(ConfigError, match="shards"):
        pair_objectives(cfg, lm, 1, {})
    with pytest.raises(ConfigError, match="one process"):
        pair_objectives(_cfg(tmp_path, 1.0), lm, 2, {})
    with pytest.raises(ConfigError, match="motion_contrast_beta"):
        LossSettings(motion_contrast_beta=0.0).check()
    eval_only = MotionPairs(LMDataConfig(chat=False, holdout_every=1), [_shards(tmp_path)], lm.vocab, lm.text_tokenizer,
                            0, "eval")
    assert len({p.caption for p in eval_only.take(20)}) > 1
