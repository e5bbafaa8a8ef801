"""LM trainer: a tiny random Llama learns, non-finite losses are skipped then stop the run, records format."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vidgpt.config import load_config
from vidgpt.errors import TrainingError
from vidgpt.train import lm_trainer
from vidgpt.train.lm_trainer import LMTrainConfig, train_lm

TINY_YAML = Path(__file__).resolve().parents[1] / "configs" / "lm" / "tiny.yaml"


def log_of(out):
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]


def test_tiny_llama_trains_30_steps_with_falling_loss(tmp_path):
    cfg = load_config(LMTrainConfig, TINY_YAML, ["train.ckpt_every=0", "train.eval_every=0"])
    last = train_lm(cfg, tmp_path / "run", progress=False)
    losses = [r["loss"] for r in log_of(tmp_path / "run") if "loss" in r]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.75 * np.mean(losses[:5])
    assert last["eval_loss"] < losses[0]
    from vidgpt.backbone import load_vidgpt_lm

    lm = load_vidgpt_lm(tmp_path / "run" / "model")
    assert lm.vocab.spec.codebook_bits == 6
    assert len(list((tmp_path / "run" / "checkpoints").iterdir())) == 1  # the final checkpoint


def test_nonfinite_loss_is_skipped_then_stops(tmp_path, monkeypatch):
    real = lm_trainer.weighted_lm_loss
    calls = {"n": 0}

    def flaky(logits, ids, w):
        calls["n"] += 1
        loss, n = real(logits, ids, w)
        return (loss * float("nan"), n) if calls["n"] in (2, 4, 5, 6) else (loss, n)

    monkeypatch.setattr(lm_trainer, "weighted_lm_loss", flaky)
    cfg = load_config(LMTrainConfig, TINY_YAML, ["train.steps=10", "train.eval_batches=0", "train.max_nonfinite=3",
                                                 "train.ckpt_every=0", "loss.head=plain"])  # plain: the head that calls weighted_lm_loss
    with pytest.raises(TrainingError, match="3 non-finite losses"):
        train_lm(cfg, tmp_path / "run", progress=False)
    log = log_of(tmp_path / "run")
    skipped = [r["step"] for r in log if r.get("event") == "nonfinite_loss"]
    assert skipped == [2, 4, 5]
    # a skipped step does not move the weights: the step after it continues from the same params
    steps = [r for r in log if "loss" in r]
    assert all(np.isfinite(r["loss"]) for r in steps if r["step"] not in skipped)


def test_record_sources_format_through_the_layout(tmp_path):
    """Code records (t2v, image, edit) and text records mix with the chat layout on the toy tokenizer."""
    from vidgpt.backbone import extend
    from vidgpt.layout import Layout
    from vidgpt.train.lm_data import LMDataConfig, SourceConfig, mixed_documents, write_records_jsonl

    lm = extend("tiny-llama", None, codebook_bits=6, tiny={"hidden_size": 32, "layers": 1, "heads": 2, "kv_heads": 1})
    rng = np.random.default_rng(0)
    recs = []
    for i in range(6):
        t = 1 if i % 2 else 2
        rec = {"codes": rng.integers(0, 64, t * 16).tolist(), "shape": [t, 4, 4],
               "blueprint_codes": rng.integers(0, 64, t * 4).tolist(), "blueprint_shape": [t, 2, 2],
               "caption": "a red ball", "captions": ["a red ball", "red ball bouncing"], "source": "test",
               "kind": "image" if t == 1 else "video", "edit": None}
        if i == 4:
            rec["kind"] = "edit"
            rec["edit"] = {"instruction": "make it blue", "source_codes": rng.integers(0, 64, 32).tolist(), "source_shape": [2, 4, 4]}
        recs.append(rec)
    write_records_jsonl(tmp_path / "codes" / "part-00000-00000.jsonl", recs)
    (tmp_path / "text.txt").write_text("hello world\n\nsecond paragraph here\n\nthird one")
    cfg = LMDataConfig(sources=[SourceConfig(kind="shards", paths=[str(tmp_path / "codes")], weight=1.0),
                                SourceConfig(kind="text", paths=[str(tmp_path / "text.txt")], weight=1.0)],
                       chat=True, holdout_every=0, loss_on=["visual", "structure"], visual_loss_weight=2.0)
    docs = mixed_documents(cfg, lm.vocab, lm.text_tokenizer, seed=0)
    layout = Layout(lm.vocab, lm.text_tokenizer, chat=True)
    seen_visual = seen_text = 0
    for _ in range(20):
        d = next(docs)
        if lm.vocab.vision_start_id in d.input_ids:
            sample = layout.parse(d.input_ids)  # well-formed chat sequence
            assert sample.turns[-1].role == "assistant"
            w = np.array(d.weights)
            vis = lm.vocab.is_visual(torch.tensor(d.input_ids)).numpy()
            prompt_len = d.input_ids.index(lm.vocab.vision_start_id)
            assert (w[:prompt_len] == 0).all()  # the prompt is never trained on
            assert set(w[vis]) <= {0.0, 2.0} and 2.0 in set(w[vis])  # visual weight applied
            assert set(w[~vis]) <= {0.0, 1.0}
            seen_visual += 1
        else:
            assert set(d.weights) == {0.0}  # text kind not in loss_on
            seen_text += 1
    assert seen_visual and seen_text


def test_cpu_bf16_autocast_trains_close_to_fp32(tmp_path, monkeypatch):
    import torch

    seen = []
    real = torch.autocast

    def spy(*a, **k):
        seen.append((k.get("device_type", a[0] if a else None), k.get("dtype"), k.get("enabled", True)))
        return real(*a, **k)

    overrides = ["train.ckpt_every=0", "train.eval_every=0", "train.steps=8"]
    fp32 = train_lm(load_config(LMTrainConfig, TINY_YAML, overrides), tmp_path / "fp32", progress=False)
    monkeypatch.setattr(torch, "autocast", spy)
    monkeypatch.setenv("VIDGPT_CPU_BF16", "1")  # autocast even where this CPU would fall back (no native bf16)
    bf16 = train_lm(load_config(LMTrainConfig, TINY_YAML, overrides + ["train.cpu_bf16=true"]), tmp_path / "bf16", progress=False)
    assert any(d == "cpu" and t == torch.bfloat16 and en for d, t, en in seen)  # the step ran under bf16 autocast
    a = [r["loss"] for r in log_of(tmp_path / "fp32") if "loss" in r]
    b = [r["loss"] for r in log_of(tmp_path / "bf16") if "loss" in r]
    assert len(a) == len(b) == 8 and abs(a[0] - b[0]) < 0.02 * a[0]
    assert np.mean(b[-3:]) < np.mean(b[:3]) and abs(fp32["eval_loss"] - bf16["eval_loss"]) < 0.1 * fp32["eval_loss"]
    # a CPU without native bf16: the setting falls back to fp32, with a note (emulated bf16 is ~4x slower)
    seen.clear()
    monkeypatch.setenv("VIDGPT_CPU_BF16", "0")
    train_lm(load_config(LMTrainConfig, TINY_YAML, overrides + ["train.cpu_bf16=true"]), tmp_path / "fallback", progress=False)
    assert not any(d == "cpu" and t == torch.bfloat16 and en for d, t, en in seen)
    assert [r["loss"] for r in log_of(tmp_path / "fallback") if "loss" in r] == a  # exactly the fp32 run
