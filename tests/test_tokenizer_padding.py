"""model.space_pad_mode: replicate padding codes a flat region to one code; v1's hash is unchanged; warm starts."""

from pathlib import Path

import pytest
import torch

from vidgpt.config import load_config
from vidgpt.errors import TrainingError
from vidgpt.tokenizer import TokenizerConfig, VideoTokenizer
from vidgpt.train.tokenizer_trainer import TokenizerTrainConfig, TokenizerTrainer

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(codebook_bits=10, channels=8, norm_groups=4)


def _flat(size=32, rgb=(0.8, -0.2, 0.1)):
    return torch.tensor(rgb).view(3, 1, 1, 1).expand(3, 1, size, size).contiguous()


def test_replicate_padding_codes_a_flat_image_to_one_code():
    torch.manual_seed(0)
    zeros = VideoTokenizer(TokenizerConfig(**TINY)).eval()
    torch.manual_seed(0)
    rep = VideoTokenizer(TokenizerConfig(**TINY, space_pad_mode="replicate")).eval()
    assert rep.state_dict().keys() == zeros.state_dict().keys()  # same tensors, other padding
    assert all(v.shape == rep.state_dict()[k].shape for k, v in zeros.state_dict().items())
    assert len(rep.encode(_flat()).unique()) == 1
    assert len(zeros.encode(_flat()).unique()) > 1  # the border reaches the cells (what v1 does)
    out = rep.decode(rep.encode(_flat()))
    assert torch.allclose(out, out[:, :, :1, :1].expand_as(out), atol=1e-5)  # and decodes to a flat image


def test_v1_keeps_its_hash_and_v2_ships_with_replicate_padding():
    """v1 (checkpoints/tokenizer_v1, what model/ was trained on up to piece 7) keeps its zero padding and its config
    hash; v2 (checkpoints/tokenizer_v2, shipped 2026-12-02 to 2026-12-07) has replicate padding, another hash (codes of
    one never mix with the other's)."""
    from safetensors import safe_open

    v1 = VideoTokenizer.from_pretrained(ROOT / "checkpoints" / "tokenizer_v1")
    v2 = VideoTokenizer.from_pretrained(ROOT / "checkpoints" / "tokenizer_v2")
    assert v1.config.space_pad_mode == "zeros" and v2.config.space_pad_mode == "replicate"
    for tok, d in ((v1, ROOT / "checkpoints" / "tokenizer_v1"), (v2, ROOT / "checkpoints" / "tokenizer_v2")):
        with safe_open(str(d / "model.safetensors"), "pt") as f:
            assert f.metadata()["config_hash"] == tok.config_hash()
    import dataclasses

    assert dataclasses.replace(v1.config, space_pad_mode="replicate").architecture_hash() == v2.config_hash()
    assert v1.config_hash() != v2.config_hash()
    with pytest.raises(ValueError, match="space_pad_mode"):
        TokenizerConfig(space_pad_mode="reflect")


def test_warm_start_across_the_padding_and_not_for_a_decoder_only_run(tmp_path):
    base = ["train.steps=2", "train.log_every=1", "data.eval_clips=1"]
    first = TokenizerTrainer(load_config(TokenizerTrainConfig, ROOT / "configs/tokenizer/tiny.yaml", base), tmp_path / "a",
                             progress=False, log=lambda *a: None)
    first.run()
    logs = []
    warm = load_config(TokenizerTrainConfig, ROOT / "configs/tokenizer/tiny.yaml",
                       base + [f"train.init_from={tmp_path / 'a'}", "model.space_pad_mode=replicate"])
    second = TokenizerTrainer(warm, tmp_path / "b", progress=False, log=logs.append)
    src = VideoTokenizer.from_pretrained(tmp_path / "a").state_dict()
    assert all(torch.equal(v, second.model.state_dict()[k]) for k, v in src.items())
    assert any("space_pad_mode: zeros -> replicate" in str(m) for m in logs)
    second.run()
    assert VideoTokenizer.from_pretrained(tmp_path / "b").config.space_pad_mode == "replicate"
    dec = load_config(TokenizerTrainConfig, ROOT / "configs/tokenizer/tiny.yaml",
                      base + [f"train.init_from={tmp_path / 'a'}", "model.space_pad_mode=replicate",
                              "train.train_parts=decoder"])
    with pytest.raises(TrainingError, match="changes what its codes mean"):
        TokenizerTrainer(dec, tmp_path / "c", progress=False, log=lambda *a: None)
