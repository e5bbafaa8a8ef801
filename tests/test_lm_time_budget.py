"""train.max_minutes: a wall-clock budget that stops a run (checkpoint + model) with its cosine fully decayed."""

import json
from pathlib import Path

import pytest

from vidgpt.config import load_config
from vidgpt.train.lm_trainer import LMTrainConfig, train_lm
from vidgpt.train.schedule import WallClock, warmup_cosine

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_YAML = Path(__file__).resolve().parents[1] / "configs" / "lm" / "tiny.yaml"


class FakeTime:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_wall_clock_counts_earlier_pieces_and_says_when_it_is_out():
    now = FakeTime()
    clock = WallClock(60, spent=30, now=now)
    assert clock.done() == pytest.approx(0.5) and not clock.out()
    now.t += 29
    assert clock.done() == pytest.approx(59 / 60) and not clock.out()
    now.t += 1
    assert clock.out() and clock.done() == 1.0
    assert WallClock(0, now=now).done() == 0.0 and not WallClock(0, now=now).out()


def test_schedule_follows_time_when_time_runs_out_first():
    # step-wise the cosine is still near its top; time says half the budget is spent -> the cosine's middle
    assert warmup_cosine(10, 2, 10_000, 0.1) > 0.99
    assert warmup_cosine(10, 2, 10_000, 0.1, time_done=0.5) == pytest.approx(0.55)
    assert warmup_cosine(10, 2, 10_000, 0.1, time_done=1.0) == pytest.approx(0.1)
    assert warmup_cosine(1, 2, 10_000, 0.1, time_done=1.0) == 1.0  # warmup is counted in steps
    assert warmup_cosine(9_000, 2, 10_000, 0.1, time_done=0.1) == warmup_cosine(9_000, 2, 10_000, 0.1)


def test_a_spent_budget_stops_the_run_with_a_checkpoint_and_a_model(tmp_path):
    out = tmp_path / "run"
    cfg = load_config(LMTrainConfig, TINY_YAML, ["train.steps=1000", "train.max_minutes=0.000001", "train.ckpt_every=0",
                                                 "train.eval_every=0", "train.log_every=1000",
                                                 "train.warmup_steps=0"])
    last = train_lm(cfg, out, progress=False)
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in recs if "loss" in r]
    assert len(steps) == 1 and steps[0].get("event") == "time_budget"  # out of time after the first step
    assert steps[0]["lr"] == pytest.approx(cfg.train.lr * cfg.train.min_lr_ratio)  # the cosine has run its course
    assert "eval_loss" in last and "tokens_per_s" in last  # the final step evaluates and logs like the last of `steps`
    ckpts = sorted((out / "checkpoints").glob("step-*"))
    assert [c.name for c in ckpts] == ["step-0000001"]
    state = json.loads((ckpts[0] / "trainer_state.json").read_text())
    assert state["elapsed_s"] > 0
    assert (out / "model").is_dir() and any(r.get("event") == "done" for r in recs)
    # --resume of a run whose budget is spent takes no further step (and still writes the model)
    train_lm(cfg, out, progress=False, resume=True)
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    assert [r["step"] for r in recs if "loss" in r] == [1]
    assert [c.name for c in sorted((out / "checkpoints").glob("step-*"))] == ["step-0000001"]
