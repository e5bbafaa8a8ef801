"""FSDP2 on two CPU processes (gloo) under `accelerate launch` with the committed FSDP config.

One straight single-process run is the reference. The FSDP run (2 ranks, gradient accumulation 2,
activation checkpointing on; the reference accumulates 4 micro-steps) is killed with SIGKILL on one rank after a sharded checkpoint, then resumed
with --resume: its loss curve equals the reference within tolerance, the steps it trained twice (after
the checkpoint, before the kill; and again after the resume) agree to float precision, the checkpoints
are per-rank DCP shards, and the final model is a full-state directory plain transformers loads, with
weights close to the reference's.
"""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_YAML = ROOT / "configs/lm/tiny.yaml"
FSDP_YAML = ROOT / "configs/accelerate/fsdp_8gpu.yaml"
STEPS, CKPT = 24, 8
COMMON = [f"train.steps={STEPS}", "train.seq_len=64", "train.micro_batch_size=1", f"train.ckpt_every={CKPT}",
          "train.eval_batches=1", "train.eval_every=0", "train.log_every=1", "train.keep_checkpoints=3",
          "loss.head=plain",  # the same (plain) LM head in every run; FSDP needs it (the fast heads read whole weights)
          "data.streams=2"]  # the same global rows on 1 and 2 processes

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("accelerate") is None, reason="no accelerate CLI")]


def launch(out: Path, sets: list[str], *, resume: bool = False, cwd: Path) -> subprocess.Popen:
    cmd = ["accelerate", "launch", "--config_file", str(FSDP_YAML), "--num_processes", "2", "--main_process_port",
           str(29500 + os.getpid() % 1000), "-m", "vidgpt", "lm", "train", "--config", str(TINY_YAML),
           "--out", str(out), "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    if resume:
        cmd.append("--resume")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", ACCELERATE_USE_CPU="1")
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def log_records(out: Path) -> list[dict]:
    p = out / "log.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip().endswith("}")]


def last_logged_step(out: Path) -> int:
    return max([r["step"] for r in log_records(out) if "loss" in r], default=0)


def rank_process(launcher: subprocess.Popen, rank: int) -> psutil.Process:
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "vidgpt" in " ".join(child.cmdline()):
                return child
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    raise AssertionError(f"no rank {rank} process under the launcher")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from vidgpt.config import load_config
    from vidgpt.train.lm_trainer import LMTrainConfig, train_lm

    out = tmp_path_factory.mktemp("single") / "run"
    cfg = load_config(LMTrainConfig, TINY_YAML, COMMON + ["train.grad_accum=4"])
    train_lm(cfg, out, progress=False)
    return out


def test_fsdp_kill9_resume_matches_single_process(reference, tmp_path):
    out = tmp_path / "fsdp"
    sets = COMMON + ["train.grad_accum=2", "model.gradient_checkpointing=true"]
    proc = launch(out, sets, cwd=tmp_path)
    deadline = time.time() + 150
    while last_logged_step(out) < CKPT + 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed:\n" + proc.stdout.read()[-3000:]
    victim = rank_process(proc, 1)
    victim.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    killed_at = last_logged_step(out)
    assert proc.returncode != 0 and killed_at < STEPS and not (out / "model").exists()
    before = {r["step"]: r["loss"] for r in log_records(out) if "loss" in r}

    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("step-"))
    last_ckpt = int(ckpts[-1].split("-")[1])
    assert CKPT <= last_ckpt < killed_at
    shards = sorted(f.name for f in (out / "checkpoints" / ckpts[-1] / "pytorch_model_fsdp_0").glob("*.distcp"))
    assert shards == ["__0_0.distcp", "__1_0.distcp"]  # one shard per rank (SHARDED_STATE_DICT)

    proc = launch(out, sets, resume=True, cwd=tmp_path)
    text, _ = proc.communicate(timeout=150)
    assert proc.returncode == 0, text[-3000:]
    recs = log_records(out)
    assert [r["engine"] for r in recs if r.get("event") == "start"] == ["fsdp2"]
    # one record per step: the resume dropped what the killed run logged after its last checkpoint
    assert [r["step"] for r in recs if "loss" in r] == list(range(1, STEPS + 1))
    after = {r["step"]: r["loss"] for r in recs if "loss" in r}
    # steps trained both before the kill and after the resume: the same numbers
    redone = [s for s in before if s > last_ckpt]
    assert redone
    for s in redone:
        assert abs(before[s] - after[s]) < 1e-5, (s, before[s], after[s])
    # against one process with the same global batch: 2 ranks x 2 micro-steps of 1 row = 1 process x 4
    ref = {r["step"]: r["loss"] for r in log_records(reference) if "loss" in r}
    for s in range(1, STEPS + 1):
        assert abs(after[s] - ref[s]) < 1e-4 * abs(ref[s]), (s, after[s], ref[s])
    assert ref[STEPS] < ref[1] - 0.5  # and it learns

    # the gathered full state loads in plain transformers and matches the reference's weights
    import torch
    from transformers import AutoModelForCausalLM

    got = AutoModelForCausalLM.from_pretrained(out / "model").state_dict()
    want = AutoModelForCausalLM.from_pretrained(reference / "model").state_dict()
    assert got.keys() == want.keys()
    worst = max(float((got[k] - want[k]).abs().max()) for k in want)
    assert worst < 5e-3, worst
    ids = torch.arange(5, 40).unsqueeze(0)
    assert torch.isfinite(AutoModelForCausalLM.from_pretrained(out / "model")(ids).logits).all()


def test_two_simulated_nodes_fsdp_lora_on_qwen3(tmp_path):
    """configs/accelerate/fsdp_multi_node.yaml as written, two "machines" of one rank each on localhost
    (static rendezvous): LoRA on a tiny Qwen3 with a tied head (peft wraps the shared embedding; see
    distributed.prepare), extended on the fly; same losses and weights as one process, delta form."""
    from vidgpt.backbone import load_vidgpt_lm
    from vidgpt.config import load_config
    from vidgpt.train.lm_trainer import LMTrainConfig, train_lm

    sets = ["train.steps=4", "train.seq_len=64", "train.micro_batch_size=2", "train.ckpt_every=0", "train.eval_batches=1",
            "train.log_every=1", "loss.head=plain", "data.streams=2", "model.backbone=tiny-qwen3", "model.tiny.tied=true", "lora.enabled=true",
            "lora.r=4", "train.save_form=delta"]
    ref_out = tmp_path / "single"
    train_lm(load_config(LMTrainConfig, TINY_YAML, sets + ["train.grad_accum=2", "train.micro_batch_size=1"]),
             ref_out, progress=False)
    sets = sets + ["train.micro_batch_size=1"]
    out = tmp_path / "nodes"
    port = str(29500 + (os.getpid() + 7) % 1000)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", ACCELERATE_USE_CPU="1")
    procs = []
    for node in (1, 0):
        cmd = ["accelerate", "launch", "--config_file", str(ROOT / "configs/accelerate/fsdp_multi_node.yaml"),
               "--num_processes", "2", "--machine_rank", str(node), "--main_process_ip", "127.0.0.1",
               "--main_process_port", port, "-m", "vidgpt", "lm", "train", "--config", str(TINY_YAML), "--out", str(out),
               "--no-progress"] + [x for s in sets for x in ("--set", s)]
        procs.append(subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    texts = [p.communicate(timeout=200)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], texts[1][-3000:] + texts[0][-3000:]
    recs = log_records(out)
    start = next(r for r in recs if r.get("event") == "start")
    assert start["engine"] == "fsdp2" and start["world_size"] == 2
    got = {r["step"]: r["loss"] for r in recs if "loss" in r}
    ref = {r["step"]: r["loss"] for r in log_records(ref_out) if "loss" in r}
    assert sorted(got) == [1, 2, 3, 4]
    for s in got:
        assert abs(got[s] - ref[s]) < 1e-4 * abs(ref[s]), (s, got[s], ref[s])
    a, b = load_vidgpt_lm(out / "model"), load_vidgpt_lm(ref_out / "model")  # delta form: base + new rows + adapter
    assert a.meta["form"] == "delta" and a.model.config.model_type == "qwen3" and a.model.config.tie_word_embeddings
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert max(float((sa[k] - sb[k]).abs().max()) for k in sb) < 1e-3
