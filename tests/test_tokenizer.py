import json

import pytest
import torch

from vidgpt.errors import TokenizerError
from vidgpt.tokenizer import TokenizerConfig, VideoTokenizer, blueprint_input, default_tokenizer_dir


def tiny(**kw) -> VideoTokenizer:
    torch.manual_seed(0)
    cfg = TokenizerConfig(codebook_bits=kw.pop("codebook_bits", 10), channels=8, norm_groups=4, **kw)
    return VideoTokenizer(cfg).eval()


@pytest.mark.parametrize("shape,latent", [((17, 128, 128), (5, 16, 16)), ((1, 128, 128), (1, 16, 16)), ((9, 64, 96), (3, 8, 12))])
def test_shapes(shape, latent):
    tok = tiny()
    x = torch.rand(1, 3, *shape) * 2 - 1
    codes = tok.encode(x)
    assert codes.shape == (1, *latent) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < tok.codebook_size
    assert tok.latent_shape(*shape) == latent and tok.video_shape(*latent) == shape
    video = tok.decode(codes)
    assert video.shape == (1, 3, *shape)
    assert float(video.min()) >= -1 and float(video.max()) <= 1


def test_unbatched_and_k18():
    tok = tiny(codebook_bits=18)
    x = torch.rand(3, 5, 16, 24) * 2 - 1
    codes = tok.encode(x)
    assert codes.shape == (2, 2, 3) and tok.codebook_size == 2**18
    assert tok.decode(codes).shape == (3, 5, 16, 24)


def test_causality_later_frames_do_not_change_earlier_codes():
    tok = tiny(codebook_bits=14)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 13, 32, 32, generator=g) * 2 - 1
    codes = tok.encode(x)
    bits = ((codes.unsqueeze(-1) >> torch.arange(14)) & 1).float().mean()
    assert 0.2 < bits < 0.8  # a real mix of positive and negative channels
    y = x.clone()
    y[:, :, 5:] = torch.rand(1, 3, 8, 32, 32, generator=g) * 2 - 1  # frames 5.. feed latent frames 2..
    codes_y = tok.encode(y)
    assert torch.equal(codes[:, :2], codes_y[:, :2])
    assert not torch.equal(codes[:, 2:], codes_y[:, 2:])
    # an image is the first frame of a video
    assert torch.equal(tok.encode(x[:, :, :1])[:, 0], codes[:, 0])
    # decoder is causal too: later codes do not change earlier frames
    c2 = codes.clone()
    c2[:, 2:] = (c2[:, 2:] + 1) % tok.codebook_size
    assert torch.equal(tok.decode(codes)[:, :, :5], tok.decode(c2)[:, :, :5])


def test_save_load_identical(tmp_path):
    tok = tiny()
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    tok.save_pretrained(tmp_path / "tok")
    assert json.loads((tmp_path / "tok" / "config.json").read_text())["codebook_bits"] == 10
    again = VideoTokenizer.from_pretrained(tmp_path / "tok")
    codes = tok.encode(x)
    assert torch.equal(again.encode(x), codes)
    assert torch.equal(again.decode(codes), tok.decode(codes))
    assert again.weights_fingerprint() == tok.weights_fingerprint()


def test_bad_inputs_raise_tokenizer_error():
    tok = tiny()
    bad = [
        torch.rand(3, 16, 16),  # rank
        torch.rand(1, 3, 4, 16, 16),  # frames not 1+4n
        torch.rand(1, 3, 5, 12, 16),  # H not a multiple of 8
        torch.rand(1, 3, 5, 16, 16) * 255,  # uint8-range floats
        torch.randint(0, 255, (1, 3, 5, 16, 16), dtype=torch.uint8),
        torch.rand(1, 4, 5, 16, 16),  # channels
    ]
    for x in bad:
        with pytest.raises(TokenizerError):
            tok.encode(x)
    with pytest.raises(TokenizerError, match="codes span"):
        tok.decode(torch.full((1, 2, 2), 2**10))
    with pytest.raises(TokenizerError):
        tok.decode(torch.zeros(2, 2))
    with pytest.raises(TokenizerError):
        tok.decode(torch.zeros(1, 2, 2))  # float codes


def test_bad_tokenizer_dir_names_path(tmp_path):
    with pytest.raises(TokenizerError, match=str(tmp_path / "nope")):
        VideoTokenizer.from_pretrained(tmp_path / "nope")
    d = tmp_path / "broken"
    d.mkdir()
    (d / "config.json").write_text("{not json")
    (d / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(TokenizerError, match="config.json"):
        VideoTokenizer.from_pretrained(d)
    (d / "config.json").write_text(json.dumps({"codebook_bits": 10, "channels": 8, "norm_groups": 4}))
    with pytest.raises(TokenizerError, match="model.safetensors"):
        VideoTokenizer.from_pretrained(d)


def test_blueprint_input_and_default_dir(monkeypatch, tmp_path):
    x = torch.rand(2, 3, 17, 128, 128) * 2 - 1
    b = blueprint_input(x)
    assert b.shape == (2, 3, 17, 64, 64)
    assert torch.allclose(b[0, :, 0, 0, 0], x[0, :, 0, :2, :2].mean((-1, -2)))
    assert blueprint_input(x[0]).shape == (3, 17, 64, 64)
    assert VideoTokenizer().latent_shape(17, 64, 64) == (5, 8, 8)
    monkeypatch.setenv("VIDGPT_TOKENIZER", str(tmp_path))
    assert default_tokenizer_dir() == tmp_path
    monkeypatch.delenv("VIDGPT_TOKENIZER")
    assert default_tokenizer_dir().name == "tokenizer"
