"""train.step_tokens: each process takes micro-batches until their documents hold a token budget, so data-parallel
processes of one-document rows do about the same work a step (vidgpt.train.lm_trainer.step_batches)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from vidgpt.config import load_config
from vidgpt.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "lm" / "tiny.yaml"
COMMON = ["data.packing=single", "train.seq_len=64", "train.micro_batch_size=1", "train.ckpt_every=0",
          "train.log_every=1", "train.grad_clip=0", "train.warmup_steps=0", "train.loss_norm=tokens"]


def _rows_of(lengths):
    """One-document rows whose weights cover `lengths` tokens (what `document_tokens` counts)."""
    for n in lengths:
        w = torch.zeros(16)
        w[:n] = 1.0
        yield {"input_ids": torch.zeros(16, dtype=torch.long), "weights": w}


def test_step_batches_take_rows_until_the_budget_is_held():
    from vidgpt.train.lm_trainer import step_batches

    rows = _rows_of([5, 3, 10, 2, 7, 7, 1])
    first = step_batches(rows, 1, 99, step_tokens=12)  # 5 + 3 = 8 < 12, + 10 = 18: three rows
    assert [int(b["weights"].sum()) for b in first] == [5, 3, 10]
    second = step_batches(rows, 1, 99, step_tokens=12)  # the stream goes on where the step left it: 2 + 7 + 7
    assert [int(b["weights"].sum()) for b in second] == [2, 7, 7]
    assert len(step_batches(_rows_of([4] * 9), 2, 3)) == 3  # no budget: grad_accum micro-batches of 2 rows
    assert [b["weights"].shape for b in step_batches(_rows_of([4] * 9), 2, 3)] == [torch.Size([2, 16])] * 3


def test_a_text_token_can_count_more_towards_the_budget():
    """train.text_token_cost: rows without a new-vocabulary id (here id < 1) count their tokens that many times."""
    from vidgpt.train.lm_trainer import step_batches

    def rows(spec):  # (length, visual?)
        for n, vis in spec:
            r = next(_rows_of([n]))
            r["input_ids"][0] = int(vis)  # one id >= new_from=1 marks a row with visual tokens
            yield r

    spec = [(5, False), (3, True), (4, False), (9, True)]
    same = step_batches(rows(spec), 1, 99, step_tokens=12, new_from=1)  # 5 + 3 + 4 = 12: three rows
    dear = step_batches(rows(spec), 1, 99, step_tokens=12, new_from=1, text_token_cost=2.0)  # 10 + 3 = 13: two
    assert [int(b["weights"].sum()) for b in same] == [5, 3, 4]
    assert [int(b["weights"].sum()) for b in dear] == [5, 3]
    with pytest.raises(ConfigError, match="text_token_cost"):
        from vidgpt.train.lm_trainer import LMTrainConfig, train_lm

        train_lm(load_config(LMTrainConfig, TINY, COMMON + ["train.text_token_cost=0"]), Path("/nonexistent/x"),
                 progress=False)


def _final_eval(tmp_path, *sets):
    from vidgpt.train.lm_trainer import LMTrainConfig, train_lm

    out = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    train_lm(load_config(LMTrainConfig, TINY, COMMON + list(sets)), out, progress=False)
    recs = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines() if x.strip()]
    return [r for r in recs if "loss" in r]


def test_a_budget_that_ends_after_four_rows_is_the_step_of_four_accumulated_rows(tmp_path):
    """step_tokens = (the first three train rows' tokens) + 1 takes exactly four rows in step 1: the same step (loss,
    eval loss after it) as grad_accum=4; a smaller budget takes fewer rows and gives another step."""
    from vidgpt.train.lm_trainer import LMTrainConfig, build_lm, document_tokens, packed_rows

    cfg = load_config(LMTrainConfig, TINY, COMMON)
    lm, _ = build_lm(cfg, torch.device("cpu"), None)
    rows = packed_rows(cfg.data, lm.vocab, lm.text_tokenizer, cfg.train.seq_len, cfg.train.seed, "train")
    lens = [document_tokens(next(rows)["weights"][None]) for _ in range(4)]
    assert all(n > 0 for n in lens)

    one = ["train.steps=1", "train.eval_every=1", "train.eval_batches=2"]
    accum = _final_eval(tmp_path, *one, "train.grad_accum=4")
    budget = _final_eval(tmp_path, *one, f"train.step_tokens={sum(lens[:3]) + 1}")
    fewer = _final_eval(tmp_path, *one, f"train.step_tokens={lens[0]}")  # one row
    assert abs(budget[0]["loss"] - accum[0]["loss"]) < 1e-6 and abs(budget[0]["eval_loss"] - accum[0]["eval_loss"]) < 1e-6
    assert budget[0]["rows"] == 4 and fewer[0]["rows"] == 1
    assert abs(fewer[0]["eval_loss"] - accum[0]["eval_loss"]) > 1e-5


def test_step_tokens_needs_token_weighting(tmp_path):
    from vidgpt.train.lm_trainer import LMTrainConfig, train_lm

    for bad in (["train.step_tokens=100", "train.loss_norm=micro"], ["train.step_tokens=-1"]):
        with pytest.raises(ConfigError, match="step_tokens"):
            train_lm(load_config(LMTrainConfig, TINY, COMMON + bad), tmp_path / "bad", progress=False)


def _launch(out: Path, cwd: Path, sets: list[str], resume: bool = False) -> subprocess.CompletedProcess:
    cmd = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
           "no", "--dynamo_backend", "no", "--main_process_port", str(29500 + (os.getpid() + 11) % 1000), "-m", "vidgpt",
           "lm", "train", "--config", str(TINY), "--out", str(out), "--no-progress"]
    for s in COMMON + sets:
        cmd += ["--set", s]
    if resume:
        cmd.append("--resume")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", ACCELERATE_USE_CPU="1")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not on PATH")
def test_two_processes_with_unequal_micro_batches_train_and_resume(tmp_path):
    """Two ranks under the fast head (engine dp), each taking as many one-document rows as its budget needs: the
    steps' row counts differ (odd totals: the ranks took different numbers), nothing hangs, and --resume from the
    step-3 checkpoint redoes steps 4-6 identically."""
    sets = ["train.steps=6", "train.ckpt_every=1", "train.keep_checkpoints=6", "train.eval_every=0", "train.lr=1e-2",
            "train.step_tokens=100", "loss.head=constrained", "model.bit_rows=true", "lora.enabled=true", "lora.r=4",
            "lora.alpha=8", "train.save_form=delta"]
    out = tmp_path / "dp"
    res = _launch(out, tmp_path, sets)
    assert res.returncode == 0, res.stderr[-3000:]
    recs = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert next(r for r in recs if r.get("event") == "start")["engine"] == "dp"
    steps = {r["step"]: r for r in recs if "loss" in r}
    assert sorted(steps) == list(range(1, 7))
    counts = [steps[s]["rows"] for s in range(1, 7)]
    assert len(set(counts)) > 1 and any(c % 2 for c in counts), counts
    assert all(0.0 <= steps[s]["sync_share"] < 1.0 for s in steps)  # the ranks' wait at each step's end, logged

    # every step saved the data position: the ranks' own row counts, unequal at some step (a checkpoint there once
    # failed: "processes disagree on the data position")
    taken = [json.loads((out / "checkpoints" / f"step-{s:07d}" / "trainer_state.json").read_text())["data"]["taken"]
             for s in range(1, 7)]
    assert any(t["0"] != t["1"] for t in taken), taken
    assert [t["0"] + t["1"] for t in taken] == [sum(counts[:s]) for s in range(1, 7)]

    shutil.rmtree(out / "model")
    for s in (4, 5, 6):
        shutil.rmtree(out / "checkpoints" / f"step-{s:07d}")
    res = _launch(out, tmp_path, sets, resume=True)
    assert res.returncode == 0, res.stderr[-3000:]
    again = {r["step"]: r for r in (json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()) if "loss" in r}
    for s in range(4, 7):
        assert abs(again[s]["loss"] - steps[s]["loss"]) < 1e-6 * abs(steps[s]["loss"]), (s, again[s], steps[s])
        assert again[s]["rows"] == steps[s]["rows"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not on PATH")
def test_ddp_with_unequal_micro_batches_does_not_hang(tmp_path):
    """The plain head runs under DDP proper: each rank's last micro-batch is its one synced backward, however many
    micro-batches came before it."""
    out = tmp_path / "ddp"
    res = _launch(out, tmp_path, ["train.steps=3", "train.eval_every=0", "train.step_tokens=100", "loss.head=plain"])
    assert res.returncode == 0, res.stderr[-3000:]
    recs = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert next(r for r in recs if r.get("event") == "start")["engine"] != "dp"
    counts = [r["rows"] for r in recs if "loss" in r]
    assert len(counts) == 3 and any(c % 2 for c in counts), counts

