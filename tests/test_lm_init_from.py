"""train.init_from: a new training piece from a trained model (delta form) or a run checkpoint, at tiny size."""

import json
from pathlib import Path

import pytest
import torch

from vidgpt.config import load_config
from vidgpt.errors import ConfigError
from vidgpt.train.lm_trainer import LMTrainConfig, build_lm, train_lm

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_YAML = Path(__file__).resolve().parents[1] / "configs" / "lm" / "tiny.yaml"
LORA = ["lora.enabled=true", "lora.r=4", "lora.alpha=8", "train.save_form=delta", "train.seq_len=64",
        "train.micro_batch_size=2", "train.log_every=1", "train.eval_batches=1", "train.warmup_steps=2"]


def cfg_of(*sets):
    return load_config(LMTrainConfig, TINY_YAML, LORA + list(sets))


def log(out):
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines() if line.strip()]


def eval_losses(out):
    return {r["step"]: r["eval_loss"] for r in log(out) if "eval_loss" in r}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A LoRA run of 6 steps (eval and checkpoint every 3), saved in delta form."""
    out = tmp_path_factory.mktemp("init") / "source"
    train_lm(cfg_of("train.steps=6", "train.eval_every=3", "train.ckpt_every=3"), out, progress=False)
    return out


@pytest.mark.parametrize("what", ["model", "checkpoint"])
def test_new_piece_starts_at_the_source_loss_and_trains_on(source, tmp_path, what):
    src, step = (source / "model", 6) if what == "model" else (source / "checkpoints" / "step-0000003", 3)
    out = tmp_path / "piece"
    train_lm(cfg_of("train.steps=4", "train.eval_every=4", "train.ckpt_every=0", f"train.init_from={src}"), out,
             progress=False)
    recs = log(out)
    start = [r for r in recs if r.get("event") == "start"][0]
    assert start["init_from"]["kind"] == what and start["init_from"]["source"] == str(src)
    if what == "model":
        assert start["init_from"]["adapter"] and start["init_from"]["new_rows"] > 0
    first = eval_losses(out)
    assert abs(first[0] - eval_losses(source)[step]) < 1e-5  # the same eval batch, the same weights
    train = [r for r in recs if "loss" in r]
    assert [r["step"] for r in train] == [1, 2, 3, 4]  # a fresh run: step 0, warmup from the start
    from vidgpt.train.schedule import warmup_cosine

    assert [r["lr"] for r in train] == pytest.approx([3e-3 * warmup_cosine(s, 2, 4, 0.1) for s in (1, 2, 3, 4)])
    assert first[4] < first[0]  # and it keeps learning
    assert (out / "model" / "adapter").is_dir()  # still a delta on the same base


def test_delta_rows_and_adapter_give_the_source_function(source):
    """Another seed draws other new rows and LoRA matrices; init_from replaces both: logits equal the saved model's."""
    from vidgpt.backbone import load_vidgpt_lm
    from vidgpt.train.lm_init import init_from

    cfg = cfg_of("train.seed=5")
    torch.manual_seed(5)
    lm, _ = build_lm(cfg, torch.device("cpu"), None)
    ref = load_vidgpt_lm(source / "model")
    ids = torch.randint(0, ref.vocab.total_size, (2, 24))
    with torch.no_grad():
        want = ref.model(input_ids=ids).logits
        lm.model.eval()
        assert (lm.model(input_ids=ids).logits - want).abs().max() > 1e-3
        init_from(lm, source / "model", cfg)
        assert torch.allclose(lm.model(input_ids=ids).logits, want, atol=1e-5)


def test_run_dir_means_its_newest_checkpoint(source):
    from vidgpt.train.lm_init import resolve_source

    assert resolve_source(source) == ("checkpoint", source / "checkpoints" / "step-0000006")
    assert resolve_source(source / "model") == ("model", source / "model")
    with pytest.raises(ConfigError, match="neither a vidgpt model"):
        resolve_source(source / "checkpoints")


@pytest.mark.parametrize("sets, target, match", [
    (["lora.r=8"], "model", r"LoRA layout differs .*\(r: 4 vs 8"),
    (["lora.layers_from=1"], "model", r"LoRA layout differs .*target_modules"),
    (["lora.enabled=false", "train.save_form=full"], "model", "lora.enabled=false"),
    (["lora.r=8"], "checkpoint", r"shape .*another LoRA r"),
    (["lora.alpha=16"], "checkpoint", "lora.alpha=8, this config 16"),
    (["lora.layers_from=1"], "checkpoint", "do not match this config's layout"),
])
def test_a_layout_that_differs_is_one_clear_error(source, tmp_path, sets, target, match):
    src = source / "model" if target == "model" else source / "checkpoints" / "step-0000006"
    with pytest.raises(ConfigError, match=match):
        train_lm(cfg_of("train.steps=2", f"train.init_from={src}", *sets), tmp_path / "bad", progress=False)


def test_cli_prints_one_line(source, tmp_path, capsys):
    from vidgpt.cli import main

    rc = main(["lm", "train", "--config", str(TINY_YAML), "--out", str(tmp_path / "x"), "--no-progress",
               *[a for s in LORA + ["lora.r=2", f"train.init_from={source / 'model'}"] for a in ("--set", s)]])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and "train.init_from=" in err and "r: 4 vs 2" in err


@pytest.mark.parametrize("what", ["model", "checkpoint"])
def test_the_next_piece_may_widen_the_adapter_to_more_layers(tmp_path, what):
    """A piece with LoRA on the upper layer only, then one with LoRA on every layer: the source's tensors go where
    they were, the new layers' LoRA starts at B = 0, so the first eval loss is the source's."""
    src_run = tmp_path / "upper"
    train_lm(cfg_of("train.steps=3", "train.eval_every=3", "train.ckpt_every=3", "lora.layers_from=1"), src_run,
             progress=False)
    src = src_run / "model" if what == "model" else src_run / "checkpoints" / "step-0000003"
    out = tmp_path / "wide"
    train_lm(cfg_of("train.steps=2", "train.eval_every=2", "train.ckpt_every=0", "lora.layers_from=0",
                    f"train.init_from={src}"), out, progress=False)
    start = [r for r in log(out) if r.get("event") == "start"][0]
    assert start["init_from"]["widened"] > 0
    first = eval_losses(out)
    assert abs(first[0] - eval_losses(src_run)[3]) < 1e-5


@pytest.mark.parametrize("what", ["model", "checkpoint"])
def test_fresh_visual_rows_keep_this_runs_init_and_take_the_rest(source, what):
    """train.init_rows=fresh (a run on another tokenizer with the same K): the visual code rows (input, head, their
    trainable deltas, the bit rows' A) are this run's own init; the structure rows and the adapter are the source's."""
    from vidgpt.train.lm_init import init_from, visual_row_state

    src = source / "model" if what == "model" else source / "checkpoints" / "step-0000006"
    cfg = cfg_of("train.seed=5", "model.bit_rows=true", "train.init_rows=fresh")
    torch.manual_seed(5)
    own, _ = build_lm(cfg, torch.device("cpu"), None)
    mine = {k: v.clone() for k, v in own.model.state_dict().items()}
    rows = visual_row_state(own)
    assert any("trainable_tokens_delta" in k for k in rows) and any("bit_rows" in k for k in rows)
    torch.manual_seed(5)
    whole, _ = build_lm(cfg_of("train.seed=5", "model.bit_rows=true"), torch.device("cpu"), None)
    info = init_from(own, src, cfg)
    init_from(whole, src, cfg_of("train.seed=5", "model.bit_rows=true"))
    assert info["fresh_visual_rows"] == len(rows)
    after, took = own.model.state_dict(), whole.model.state_dict()
    vis, off = own.vocab.visual_offset, own.vocab.offset
    for k, (start, saved) in rows.items():
        assert torch.equal(after[k][start:], mine[k][start:])  # this run's init, untouched
    moved = 0
    for k, v in after.items():
        if "lora_" in k:
            assert torch.equal(v, took[k])  # the adapter is the source's
            moved += int(not torch.equal(v, mine[k]))
        elif "trainable_tokens_delta" in k:
            assert torch.equal(v[: vis - off], took[k][: vis - off])  # structure rows: the source's
    assert moved > 0
    with pytest.raises(ConfigError, match="init_rows"):
        init_from(own, src, cfg_of("train.init_rows=new"))


def test_a_bad_init_rows_is_refused_without_init_from(tmp_path):
    with pytest.raises(ConfigError, match="init_rows"):
        train_lm(cfg_of("train.init_rows=new"), tmp_path / "bad", progress=False)
