"""tools/eval_checkpoints.py on a tiny LoRA run that keeps training between two looks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vidgpt.config import load_config
from vidgpt.train.lm_trainer import LMTrainConfig, train_lm

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
TINY_YAML = ROOT / "configs" / "lm" / "tiny.yaml"


@pytest.fixture(scope="module")
def ec(load_tool):
    return load_tool("eval_checkpoints")


def sets(tok, steps):
    return [f"model.tokenizer={tok}", "lora.enabled=true", "lora.r=4", "lora.alpha=8", "train.save_form=delta",
            "train.seq_len=64", "train.micro_batch_size=2", "train.eval_batches=1", "train.eval_every=2",
            "train.ckpt_every=2", "train.keep_checkpoints=2", "train.log_every=1", f"train.steps={steps}"]


def snapshot(ckpts: Path) -> dict:
    return {str(p.relative_to(ckpts)): (p.stat().st_mtime_ns, p.stat().st_size) for p in ckpts.rglob("*")}


def test_curve_of_a_run_that_keeps_training(ec, tmp_path):
    from vidgpt.tokenizer import TokenizerConfig, VideoTokenizer

    torch.manual_seed(0)
    tok = tmp_path / "tok"
    VideoTokenizer(TokenizerConfig(codebook_bits=6, channels=8, norm_groups=4)).save_pretrained(tok)
    run = tmp_path / "run"
    train_lm(load_config(LMTrainConfig, TINY_YAML, sets(tok, 4)), run, progress=False)  # checkpoints 2, 4
    import shutil

    shutil.rmtree(run / "model")  # as if the run were still going
    argv = [str(run), "--n", "3", "--heldout", "2", "--frames", "5", "--size", "32", "--set", "max_objects=1"]
    before = snapshot(run / "checkpoints")
    assert ec.main(argv) == 0
    assert snapshot(run / "checkpoints") == before  # read only
    curve = json.loads((run / "curve.json").read_text())
    assert [p["step"] for p in curve["points"]] == [2, 4]
    assert curve["settings"]["world_set"] == ["max_objects=1"] and curve["settings"]["frames"] == 5
    p2, p4 = curve["points"]
    assert 0 < p2["tokens"] < p4["tokens"] and not p4["tokens_estimated"]
    assert 0 < p2["wall_s"] < p4["wall_s"]
    assert p4["trainer_eval_step"] == 4 and p4["train_loss"] > 0
    for p in (p2, p4):
        assert p["preview"]["clips"] == 3 and p["preview"]["objects"] == 3  # one object per held-out scene
        assert 0 <= p["preview"]["color_motion"] <= 1 and p["heldout_visual_tokens"] > 0
    assert p2["heldout_visual_loss"] != p4["heldout_visual_loss"]  # each checkpoint's own weights
    md = (run / "curve.md").read_text()
    assert "| 4 |" in md and "max_objects=1" in md and (run / "curve.png").stat().st_size > 0
    heldout = next((run / "curve_data").iterdir()) / "heldout.jsonl"
    assert len(heldout.read_text().splitlines()) == 2

    # the run goes on (resume to step 6; keep_checkpoints drops step 2): only step 6 is new
    train_lm(load_config(LMTrainConfig, TINY_YAML, sets(tok, 6)), run, resume=True, progress=False)
    assert ec.main(argv) == 0
    again = json.loads((run / "curve.json").read_text())
    assert [p["step"] for p in again["points"]] == [2, 4, 6]
    assert again["points"][:2] == curve["points"]  # cached, not measured again
    p6 = again["points"][2]
    assert p6["tokens_estimated"] and p6["tokens"] > p4["tokens"]  # the resumed piece's stats restart
    assert p6["wall_s"] > p4["wall_s"]

    # the last checkpoint is the saved model: the same held-out loss through learning_curve's own loader
    ref = ec.lc.heldout_visual_loss(run / "model", heldout, False)
    assert abs(ref["heldout_visual_loss"] - p6["heldout_visual_loss"]) < 1e-4

    # --watch on a finished run (model/ present) with nothing new: one look, no re-measuring, done
    assert ec.main(argv + ["--watch", "0.001"]) == 0
    assert json.loads((run / "curve.json").read_text())["points"] == again["points"]

    with pytest.raises(SystemExit, match="other settings"):
        ec.main(argv[:2] + ["4"] + argv[3:])


def test_wall_time_sums_pieces_and_tokens_per_resume(ec):
    recs = [{"event": "start", "time": 100.0}, {"step": 1, "loss": 1.0, "time": 110.0},
            {"step": 2, "loss": 1.0, "time": 120.0},
            {"event": "resume", "step": 2, "time": 1000.0}, {"step": 3, "loss": 1.0, "time": 1015.0},
            {"step": 4, "loss": 1.0, "time": 1030.0}]
    assert ec.wall_seconds(recs, 2) == 20.0 and ec.wall_seconds(recs, 4) == 50.0 and ec.wall_seconds(recs, 3) == 35.0
    assert ec.wall_seconds([{"step": 1, "loss": 1.0}], 1) is None  # a log without times
    assert ec.checkpoint_tokens({"rows": 8, "stats": {"rows": 8, "tokens": 800}}) == (800, False)
    assert ec.checkpoint_tokens({"rows": 8, "stats": {"rows": 4, "tokens": 360}}) == (720, True)
