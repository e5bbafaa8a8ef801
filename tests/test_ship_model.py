"""tools/ship_model.py: a run -> the repository's shipped model form (bf16 delta, one copy of the rows)."""

import json
import sys
from pathlib import Path

import pytest
import torch

from vidgpt.config import load_config
from vidgpt.train.lm_trainer import LMTrainConfig, build_lm, train_lm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import ship_model  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SETS = ["lora.enabled=true", "lora.r=4", "lora.alpha=8", "lora.train_new_rows=true", "train.save_form=delta",
        "train.seq_len=64", "train.micro_batch_size=2", "train.eval_batches=1", "train.warmup_steps=2",
        "train.steps=4", "train.ckpt_every=2", "train.eval_every=0"]


def test_ship_a_checkpoint_then_start_the_next_piece_from_it(tmp_path):
    from safetensors import safe_open

    from vidgpt.backbone import load_vidgpt_lm
    from vidgpt.train.lm_init import init_from

    run = tmp_path / "run"
    cfg = load_config(LMTrainConfig, ROOT / "configs" / "lm" / "tiny.yaml", SETS)
    train_lm(cfg, run, progress=False)
    out = tmp_path / "shipped"
    res = ship_model.ship(run / "checkpoints" / "step-0000004", out, ["max_objects=1"], None, note="test")
    rep = ship_model.check(out, res.pop("fp32_model"))
    assert rep["max_logit_diff"] < 0.05 * max(1.0, rep["logit_scale"])  # bf16 rounding only

    meta = json.loads((out / "vidgpt.json").read_text())
    assert meta["form"] == "delta" and meta["scope"] == {"world_set": ["max_objects=1"]}
    assert meta["trained"]["from"] == "checkpoint" and meta["trained"]["step"] == 4
    assert "contrast_motion" not in meta  # recorded only when asked for (a measured choice)
    with safe_open(str(out / "adapter" / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
        assert keys and all("lora_" in k for k in keys)  # the trained rows live in new_rows only
        assert all(f.get_tensor(k).dtype == torch.bfloat16 for k in keys)
    with safe_open(str(out / "new_rows.safetensors"), "pt") as f:
        assert f.get_tensor("embed_tokens").dtype == torch.bfloat16
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["trainable_token_indices"] is None

    # the next piece starts from the shipped form: the same function (up to the bf16 rounding of the weights)
    shipped = load_vidgpt_lm(out)
    piece, _ = build_lm(load_config(LMTrainConfig, ROOT / "configs" / "lm" / "tiny.yaml", SETS + ["train.seed=3"]),
                        torch.device("cpu"), None)
    init_from(piece, out, cfg)
    ids = torch.randint(0, shipped.vocab.total_size, (1, 20))
    with torch.no_grad():
        piece.model.eval()
        want = shipped.model(input_ids=ids).logits
        assert torch.allclose(piece.model(input_ids=ids).logits, want, atol=1e-4)

    # --contrast-motion records the generation default that VidGPT reads
    again = tmp_path / "shipped_contrast"
    ship_model.ship(run / "checkpoints" / "step-0000004", again, ["max_objects=1"], None, contrast_motion=True)
    assert json.loads((again / "vidgpt.json").read_text())["contrast_motion"] is True

    # re-shipping over a directory keeps its card and its motion verifier (it reads the tokenizer's codes, not the
    # LM); --best-of needs that verifier
    with pytest.raises(SystemExit, match="no motion_verifier"):
        ship_model.ship(run / "checkpoints" / "step-0000004", again, ["max_objects=1"], None, best_of=4)
    (again / "README.md").write_text("card")
    (again / "motion_verifier.safetensors").write_bytes(b"verifier bytes")
    ship_model.ship(run / "checkpoints" / "step-0000004", again, ["max_objects=1"], None, best_of=4)
    assert (again / "README.md").read_text() == "card"
    assert (again / "motion_verifier.safetensors").read_bytes() == b"verifier bytes"
    assert json.loads((again / "vidgpt.json").read_text())["best_of"] == 4
    assert "fine_temperature" not in json.loads((again / "vidgpt.json").read_text())
    ship_model.ship(run / "checkpoints" / "step-0000004", again, ["max_objects=1"], None, fine_temperature=0.7)
    assert json.loads((again / "vidgpt.json").read_text())["fine_temperature"] == 0.7
