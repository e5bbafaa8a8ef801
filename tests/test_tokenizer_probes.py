"""tools/tokenizer_probes.py: the degradations the judge is measured on, and the shape classifier's inputs."""

from __future__ import annotations

import pytest
import torch

from vidgpt.tokenizer import TokenizerConfig, VideoTokenizer
from vidgpt.tokenizer_ceiling import heldout_scenes, roundtrip_judge
from vidgpt.data.synthetic import WorldConfig


@pytest.fixture(scope="module")
def probes(load_tool):
    return load_tool("tokenizer_probes")


def test_blur_and_pooling_keep_shape_and_mean(probes):
    x = torch.rand(2, 3, 3, 32, 32) * 2 - 1
    assert torch.equal(probes.blur(x, 0), x)
    for y in (probes.blur(x, 1.5), probes.pool_up(x, 8)):
        assert y.shape == x.shape
        assert abs(y.mean() - x.mean()) < 0.02  # both move detail, not brightness
        assert y.std() < x.std()
    flat = torch.full((1, 3, 2, 16, 16), 0.3)
    assert torch.allclose(probes.pool_up(flat, 4), flat, atol=1e-6) and torch.allclose(probes.blur(flat, 2.0), flat, atol=1e-6)


def test_the_judge_sees_shapes_through_a_light_blur_and_not_through_a_coarse_thumbnail(probes):
    scenes = heldout_scenes(6, seed=0, config=WorldConfig(**probes.ONE_OBJECT))
    fns = dict(probes.degradations())
    clean = roundtrip_judge(probes.Degrader(fns["none"]), scenes, frames=1, size=128)
    coarse = roundtrip_judge(probes.Degrader(lambda x: probes.pool_up(x, 32)), scenes, frames=1, size=128)
    assert clean.clips_passed == 6 and clean.rates()["shape"] == 1.0
    assert coarse.rates()["shape"] < 0.5  # a 4x4 thumbnail of a 128 px frame keeps no shape


def test_shape_images_and_classifier_run_on_a_tiny_tokenizer(probes):
    torch.manual_seed(0)
    tok = VideoTokenizer(TokenizerConfig(codebook_bits=6, channels=8, norm_groups=4)).eval()
    bits, pooled, label = probes.shape_images(tok, n=20, size=64, seed=1)
    assert bits.shape == (20, 6, 8, 8) and set(bits.unique().tolist()) <= {-1.0, 1.0}
    assert pooled.shape == (20, 3, 8, 8) and label.shape == (20,) and int(label.max()) < 8
    acc = probes.classifier_accuracy(pooled, label, epochs=1, width=8)
    assert 0.0 <= acc <= 1.0


def test_oracle_takes_the_quantizer_out_and_puts_it_back(probes):
    torch.manual_seed(0)
    tok = VideoTokenizer(TokenizerConfig(codebook_bits=6, channels=8, norm_groups=4)).eval()
    x = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    with torch.no_grad():
        signed = tok(x).lfq.quantized
        with probes.without_quantizer():
            out = tok(x)
        after = tok(x).lfq.quantized
    assert set(signed.unique().tolist()) == {-1.0, 1.0} and torch.equal(after, signed)
    z = tok.quantizer.normalize(tok.encoder(x))
    assert torch.allclose(out.lfq.quantized, z) and out.lfq.quantized.unique().numel() > 2
    assert float(out.lfq.commitment_loss) == 0.0 and float(out.lfq.entropy_loss) == 0.0
    net = probes.Unquantized(tok)
    assert torch.allclose(net.encode(x), z, atol=1e-6)
    assert net.decode(net.encode(x)).shape == x.shape and not torch.allclose(net.decode(z), tok.decode(tok.encode(x)))


def test_widen_keeps_the_source_and_starts_the_new_bits_unread(probes):
    torch.manual_seed(0)
    src = VideoTokenizer(TokenizerConfig(codebook_bits=6, channels=8, norm_groups=4)).eval()
    dst = probes.widened(src, 8).eval()
    assert dst.codebook_bits == 8 and dst.encoder.conv_out.weight.shape[0] == 8
    assert torch.equal(dst.encoder.conv_out.weight[:6], src.encoder.conv_out.weight)
    assert not dst.encoder.conv_out.weight[6:].any() and not dst.encoder.conv_out.bias[6:].any()
    x = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    with torch.no_grad():
        codes = src.encode(x)
        # the decoder reads only the source's bits: any value of the two new bits decodes the same
        for high in (0, 1, 3):
            assert torch.allclose(dst.decode(codes + high * 2**6), src.decode(codes), atol=1e-5)
        # the encoder writes the source's latent into the first channels (the new ones are 0 before normalising)
        assert torch.allclose(dst.encoder(x)[:, :6], src.encoder(x), atol=1e-6) and not dst.encoder(x)[:, 6:].any()
    with pytest.raises(SystemExit, match="below"):
        probes.widened(src, 5)


def test_blobs_prints_a_row_per_split(probes, tmp_path, capsys):
    torch.manual_seed(0)
    VideoTokenizer(TokenizerConfig(codebook_bits=6, channels=8, norm_groups=4)).save_pretrained(tmp_path / "tok")
    probes.main(["blobs", str(tmp_path / "tok"), "--n", "2", "--size", "32"])
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(f"| {tmp_path / 'tok'}")]
    assert [r.split(" | ")[1:3] for r in rows] == [["train", "1x32x32"], ["heldout", "1x32x32"], ["heldout", "9x32x32"]]
    assert all(0 <= int(r.split(" | ")[3]) <= 2 and 0 <= int(r.split(" | ")[-1].rstrip(" |")) <= 2 for r in rows)


def test_agree_finds_a_tokenizer_alike_itself_and_not_another(probes, tmp_path, capsys):
    torch.manual_seed(0)
    VideoTokenizer(TokenizerConfig(codebook_bits=6, channels=8, norm_groups=4)).save_pretrained(tmp_path / "a")
    torch.manual_seed(1)
    VideoTokenizer(TokenizerConfig(codebook_bits=6, channels=8, norm_groups=4)).save_pretrained(tmp_path / "b")
    probes.main(["agree", str(tmp_path / "a"), str(tmp_path / "a"), str(tmp_path / "b"), "--n", "2", "--size", "32"])
    rows = [ln.split(" | ") for ln in capsys.readouterr().out.splitlines() if ln.startswith(f"| {tmp_path}")]
    assert len(rows) == 3  # the source against itself (first), then a against a, then a against b
    assert rows[1][1] == "1.000 / 1.000" and rows[1][2] == "1.000 / 1.000"  # itself: every bit and code alike
    assert rows[1][3:] == rows[0][3:]  # decoded by its own decoder: its plain round trip
    bits_b = [float(v) for v in rows[2][1].split(" / ")]
    assert all(0.2 < b < 0.8 for b in bits_b)  # an unrelated random encoder agrees on about half the bits


def test_stability_counts_background_codes_that_change(probes, tmp_path, capsys):
    torch.manual_seed(0)
    VideoTokenizer(TokenizerConfig(codebook_bits=6, channels=8, norm_groups=4)).save_pretrained(tmp_path / "a")
    probes.main(["stability", str(tmp_path / "a"), "--n", "2", "--size", "32", "--away", "1"])
    rows = [ln.split(" | ") for ln in capsys.readouterr().out.splitlines() if ln.startswith(f"| {tmp_path}")]
    assert [r[1] for r in rows] == ["fine", "blueprint"]
    for r in rows:
        assert 0.0 <= float(r[2].split()[0]) <= 1.0 and 0.0 <= float(r[3].split()[0]) <= 1.0
