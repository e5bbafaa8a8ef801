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
        "--set", "loss.head=plain",  # DDP proper (the fast heads run data parallel as engine `dp`, below)
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


# --- the fast (constrained) head on two processes: gradients averaged by distributed.average_gradients ------------

DP_SETS = ["train.steps=8", "train.seq_len=64", "train.micro_batch_size=1", "train.ckpt_every=4",
           "train.keep_checkpoints=3", "train.eval_every=0", "train.log_every=1", "train.lr=1e-2",
           "loss.head=constrained", "model.bit_rows=true", "lora.enabled=true", "lora.r=4", "lora.alpha=8",
           "lora.train_new_rows=true", "train.save_form=delta",
           "data.streams=2"]  # the same global rows on 1 and 2 processes


def _dp_launch(out: Path, cwd: Path, resume: bool = False) -> subprocess.CompletedProcess:
    cmd = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
           "no", "--dynamo_backend", "no", "--main_process_port", str(29500 + (os.getpid() + 7) % 1000), "-m", "vidgpt",
           "lm", "train", "--config", str(ROOT / "configs/lm/tiny.yaml"), "--out", str(out), "--no-progress"]
    for s in DP_SETS + ["train.grad_accum=2"]:
        cmd += ["--set", s]
    if resume:
        cmd.append("--resume")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", ACCELERATE_USE_CPU="1")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _losses(out: Path) -> dict[int, float]:
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in recs if "loss" in r}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not on PATH")
def test_constrained_head_data_parallel_matches_one_process_and_resumes(tmp_path):
    """LoRA + bit rows + the constrained head on 2 ranks x 2 micro-steps = 1 process x 4 micro-steps: the same
    losses step by step and the same trained weights (without the gradient average each rank would follow its own
    half of the batch from step 2 on); then --resume from the step-4 checkpoint redoes steps 5-8 identically."""
    from safetensors.torch import load_file

    from vidgpt.config import load_config
    from vidgpt.train.lm_trainer import LMTrainConfig, train_lm

    ref = tmp_path / "one"
    train_lm(load_config(LMTrainConfig, ROOT / "configs/lm/tiny.yaml", DP_SETS + ["train.grad_accum=4"]), ref,
             progress=False)
    out = tmp_path / "dp"
    res = _dp_launch(out, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    start = next(json.loads(x) for x in (out / "log.jsonl").read_text().splitlines() if '"event": "start"' in x)
    assert start["world_size"] == 2 and start["engine"] == "dp"
    want, got = _losses(ref), _losses(out)
    assert sorted(got) == list(range(1, 9))
    for s in got:
        assert abs(got[s] - want[s]) < 1e-4 * abs(want[s]), (s, got[s], want[s])
    assert want[8] < want[1] - 0.2  # and it learns

    files = sorted(p.name for p in (ref / "model").glob("*.safetensors"))
    assert files and files == sorted(p.name for p in (out / "model").glob("*.safetensors"))
    for name in files:
        a, b = load_file(ref / "model" / name), load_file(out / "model" / name)
        assert a.keys() == b.keys()
        assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) < 1e-4, name

    # resume: drop what came after the step-4 checkpoint, run again, the same steps 5-8
    shutil.rmtree(out / "model")
    shutil.rmtree(out / "checkpoints" / "step-0000008")
    res = _dp_launch(out, tmp_path, resume=True)
    assert res.returncode == 0, res.stderr[-3000:]
    again = _losses(out)
    assert sorted(again) == list(range(1, 9))
    for s in range(5, 9):
        assert abs(again[s] - got[s]) < 1e-6 * abs(got[s]), (s, again[s], got[s])
