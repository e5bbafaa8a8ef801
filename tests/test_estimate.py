"""`vidgpt estimate` reproduces the issue's numbers."""

import json

import pytest

from vidgpt.cli import main
from vidgpt.errors import ConfigError
from vidgpt.estimate import EstimateInputs, estimate


def test_default_numbers():
    r = estimate(EstimateInputs())
    assert r["tokens_per_clip"] == 1280 and r["latent_shape"] == [5, 16, 16]
    assert r["tokens_per_minute"] == pytest.approx(36_000, rel=0.01)
    assert r["tokens_per_hour"] == pytest.approx(2.16e6, rel=0.01)
    assert r["total_tokens"] == pytest.approx(216e9, rel=0.01)  # 100,000 hours
    assert r["tokens_per_image"] == 256
    per_token = 6 * 135e6 + 12 * 30 * 576 * 8192
    assert r["train_flops"] == pytest.approx(r["total_tokens"] * per_token)
    assert r["gpu_hours"] == pytest.approx(r["train_flops"] / (0.4 * 989e12) / 3600)
    assert r["cost_usd"] == pytest.approx(2.0 * r["gpu_hours"])
    assert r["inference_tokens_per_clip"] == 1280 + 320


def test_images_and_scaling():
    base = estimate(EstimateInputs(hours=0, images=1000))
    assert base["total_tokens"] == 256_000
    double = estimate(EstimateInputs(hours=0, images=1000, price_per_gpu_hour=4.0))
    assert double["cost_usd"] == pytest.approx(2 * base["cost_usd"])
    assert estimate(EstimateInputs(size=256))["tokens_per_clip"] == 5 * 32 * 32


def test_cli_json_and_errors(capsys):
    assert main(["estimate", "--json", "--hours", "1"]) == 0
    r = json.loads(capsys.readouterr().out)
    for key in ("tokens_per_clip", "tokens_per_hour", "total_tokens", "train_flops", "gpu_hours", "cost_usd"):
        assert key in r
    assert r["total_tokens"] == pytest.approx(r["tokens_per_hour"])
    assert main(["estimate"]) == 0
    assert "1,280 tokens" in capsys.readouterr().out
    assert main(["estimate", "--frames", "16"]) == 1
    assert "1 + 4k" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        estimate(EstimateInputs(mfu=0))
