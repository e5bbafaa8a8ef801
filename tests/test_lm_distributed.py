"""Two CPU processes under `accelerate launch` train a few steps (DDP over gloo)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not on PATH")
def test_two_processes_train_a_few_steps(tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        # `--cpu` alone runs one process in this accelerate version; `--multi_gpu` + ACCELERATE_USE_CPU=1
        # launches 2 processes through torchrun and the Accelerator runs DDP over gloo on the CPU
        "accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "-m", "vidgpt", "lm", "train", "--config", str(ROOT / "configs/lm/tiny.yaml"),
        "--out", str(out), "--no-progress",
        "--set", "train.steps=3", "--set", "train.seq_len=64", "--set", "train.micro_batch_size=2",
        "--set", "train.eval_batches=1", "--set", "train.ckpt_every=0",
        "--set", "loss.head=plain",  # tiny.yaml's fast `full` head is single-process only
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", ACCELERATE_USE_CPU="1")
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    start = next(r for r in log if r.get("event") == "start")
    assert start["world_size"] == 2
    steps = [r for r in log if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]  # one log line per step (main process only)
    assert "eval_loss" in steps[-1]
    assert (out / "model" / "vidgpt.json").is_file() and (out / "checkpoints" / "step-0000003").is_dir()
