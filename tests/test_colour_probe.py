"""tools/colour_probe.py: the probe scores what is decodable, and the tool runs end to end on a tiny model."""

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import colour_probe  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_colour_word_is_found():
    assert colour_probe.colour_of("A huge yellow ring over a plain dark blue background.") == colour_probe.COLORS.index("yellow")
    assert colour_probe.colour_of("a ring") is None


def test_probe_reads_a_linear_signal_and_not_noise():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 9, (300,), generator=g)
    centres = 3 * torch.randn(9, 16, generator=g)
    x = centres[y] + torch.randn(300, 16, generator=g)
    assert colour_probe.fit_probe(x[:200], y[:200], x[200:], y[200:], 9) > 0.9
    noise = torch.randn(300, 16, generator=g)
    assert colour_probe.fit_probe(noise[:200], y[:200], noise[200:], y[200:], 9) < 0.35


def test_runs_on_a_tiny_model(tmp_path, capsys):
    from vidgpt.backbone import extend, save_vidgpt_lm
    from vidgpt.data.lm_dataset import BuildLMConfig, build_lm_shards
    from vidgpt.data.world.scene import WorldConfig
    from vidgpt.tokenizer import TokenizerConfig, VideoTokenizer

    torch.manual_seed(0)
    tok = VideoTokenizer(TokenizerConfig(codebook_bits=6, channels=8, norm_groups=4)).eval()
    world = WorldConfig(max_objects=1, sizes=["huge"])
    build_lm_shards(tmp_path / "s", tok, BuildLMConfig(num=0, images=12, height=32, width=32, batch_size=8,
                                                       records_per_chunk=6), world, progress=False)
    lm = extend("tiny-llama", None, codebook_bits=6, tiny={"hidden_size": 32, "layers": 1, "heads": 2, "kv_heads": 1})
    save_vidgpt_lm(lm, tmp_path / "m")
    assert colour_probe.main([str(tmp_path / "m"), "--shards", str(tmp_path / "s"), "--n", "12", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["records"] >= 6 and res["train"] + res["test"] == res["records"]
    assert [r["layer"] for r in res["layers"]] == [0, 1]  # the embeddings, then the one decoder layer
    assert all(0.0 <= r["before_object"] <= 1.0 and 0.0 <= r["prompt_end"] <= 1.0 for r in res["layers"])
