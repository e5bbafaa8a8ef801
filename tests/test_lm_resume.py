"""Kill-and-resume reproduces the uninterrupted loss curve."""

import json
from pathlib import Path


from vidgpt.config import load_config
from vidgpt.train.lm_trainer import LMTrainConfig, train_lm

TINY_YAML = Path(__file__).resolve().parents[1] / "configs" / "lm" / "tiny.yaml"
SETS = ["train.steps=12", "train.seq_len=64", "train.ckpt_every=6", "train.eval_batches=0", "train.grad_accum=2", "train.micro_batch_size=2"]


def losses(out):
    recs = [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in recs if "loss" in r}


def test_kill_and_resume_matches_straight_run(tmp_path, killed_lm_run):
    cfg = load_config(LMTrainConfig, TINY_YAML, SETS)
    train_lm(cfg, tmp_path / "straight", progress=False)
    straight = losses(tmp_path / "straight")

    killed_lm_run(load_config(LMTrainConfig, TINY_YAML, SETS), tmp_path / "resumed", kill_step=6)
    assert not (tmp_path / "resumed" / "model").exists()
    train_lm(load_config(LMTrainConfig, TINY_YAML, SETS), tmp_path / "resumed", resume=True, progress=False)
    resumed = losses(tmp_path / "resumed")
    assert sorted(resumed) == list(range(1, 13))
    for step in range(1, 13):
        assert abs(resumed[step] - straight[step]) < 1e-6, (step, resumed[step], straight[step])
    assert [p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()] == ["step-0000006", "step-0000012"] or \
        sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()) == ["step-0000006", "step-0000012"]
