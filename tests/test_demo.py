"""The README's main job (`vidgpt demo`) on the shipped tokenizer, end to end on the CPU."""

import re

import pytest

from vidgpt.cli import main
from vidgpt.data import video_io
from vidgpt.tokenizer import VideoTokenizer, default_tokenizer_dir


def test_shipped_tokenizer_is_there_and_loads():
    d = default_tokenizer_dir()
    assert (d / "config.json").is_file() and (d / "model.safetensors").is_file(), d
    assert (d / "README.md").is_file(), "the shipped tokenizer needs its card"
    tok = VideoTokenizer.from_pretrained(d)
    assert tok.codebook_bits == 14
    assert tok.latent_shape(17, 128, 128) == (5, 16, 16)


def test_demo_round_trip_writes_clips_and_reports_quality(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--frames", "9", "--height", "64", "--width", "64", "--seed", "3"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "tokens: 3x8x8 = 192 fine + 48 blueprint, K=14" in text
    m = re.search(r"PSNR ([\d.]+) dB, SSIM ([\d.]+)", text)
    assert m, text
    # a regression guard on the shipped weights (measured: 19.2 dB, SSIM 0.72 for this clip; an
    # untrained tokenizer gives 7-9 dB): the clip must come back recognisably
    assert float(m.group(1)) > 17.0 and float(m.group(2)) > 0.5, text
    assert str(out / "roundtrip.mp4") in text
    frames = video_io.read_video(out / "roundtrip.mp4")
    assert frames.shape == (9, 64, 192, 3)  # original | reconstruction | blueprint preview
    assert (out / "roundtrip.gif").stat().st_size > 0 and (out / "frames.png").stat().st_size > 0


@pytest.mark.parametrize("args,msg", [
    (["--frames", "8"], "must be 1 + 4n"),
    (["--height", "68"], "multiples of 8"),
    (["--tokenizer", "/nonexistent/tok"], "/nonexistent/tok"),
])
def test_demo_bad_input_is_one_line(tmp_path, capsys, args, msg):
    rc = main(["demo", "--out", str(tmp_path), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and msg in err and len(err.splitlines()) == 1, err


def test_gallery_draws_each_prompt_under_its_clip(tmp_path, capsys, monkeypatch):
    """`vidgpt demo --gallery`: one clip per prompt from the model, side by side with the prompt under it."""
    import json

    import numpy as np
    from PIL import Image

    from vidgpt.backbone import toy_text_tokenizer
    from vidgpt.commands.demo import gallery_frames
    from vidgpt.generate import VidGPT
    from vidgpt.generate.tiny import tiny_pipeline

    tiny = tiny_pipeline(toy_text_tokenizer(), bits=6, max_positions=600)
    tiny.default_clip = (5, 32, 32)
    model = tmp_path / "model"
    model.mkdir()
    (model / "vidgpt.json").write_text(json.dumps({"format": "vidgpt-lm"}))
    monkeypatch.setattr(VidGPT, "from_pretrained", classmethod(lambda cls, *a, **k: tiny))
    out = tmp_path / "g"
    assert main(["demo", "--gallery", "--model", str(model), "--prompts", "a red ball|a blue box", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "'a red ball' ->" in text and "'a blue box' ->" in text
    assert (out / "a_red_ball.mp4").is_file() and (out / "a_blue_box.mp4").is_file() and (out / "gallery.png").is_file()
    gif = Image.open(out / "gallery.gif")
    assert gif.n_frames >= 2 and gif.size[0] > 2 * 32  # both clips side by side, animated
    # the layout itself: clips placed unchanged, a white band with the prompt's text under them
    clips = [np.full((3, 16, 16, 3), c, np.uint8) for c in (10, 200)]
    f = gallery_frames(clips, ["first", "second prompt"], gap=4)
    assert f.shape[0] == 3 and (f[:, 4:20, 4:20] == 10).all() and (f[:, 4:20, 24:40] == 200).all()
    band = f[0, 22:, :]
    assert (band < 128).any() and (band == 255).mean() > 0.5  # dark text on white
    assert main(["demo", "--gallery", "--model", str(model), "--prompts", " | ", "--out", str(out)]) == 1
