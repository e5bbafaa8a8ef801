"""`vidgpt generate | edit | chat` through vidgpt.cli.main: outputs and one-line errors."""

import json

import numpy as np
import pytest

from vidgpt.cli import main
from vidgpt.errors import ModelError
from vidgpt.generate.pipeline import VidGPT
from vidgpt.generate.tiny import tiny_pipeline


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(text_tok):
    return tiny_pipeline(text_tok, bits=6, max_positions=600)


@pytest.fixture
def model_dir(tmp_path, monkeypatch, tiny):
    d = tmp_path / "model"
    d.mkdir()
    (d / "vidgpt.json").write_text(json.dumps({"format": "vidgpt-lm"}))
    monkeypatch.setattr(VidGPT, "from_pretrained", classmethod(lambda cls, *a, **k: tiny))
    return d


def one_line_error(capsys, argv, match):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 1, err
    assert err.count("\n") == 0 and err.startswith("vidgpt: error:") and match in err, err


def test_generate_writes_clip_and_grid(model_dir, tmp_path, capsys):
    out = tmp_path / "a.mp4"
    rc = main(["generate", "a red ball", "-o", str(out), "--model", str(model_dir), "--frames", "5", "--height", "32",
               "--width", "32", "--seed", "1", "--grid", "--gif", "--no-progress"])
    printed = capsys.readouterr().out.split()
    assert rc == 0 and printed == [str(tmp_path / "a.gif"), str(tmp_path / "a-grid.png")]
    assert (tmp_path / "a.gif").stat().st_size > 0


def test_edit_and_chat(model_dir, tmp_path, capsys, monkeypatch):
    from vidgpt.data.video_io import write_video

    src = write_video(tmp_path / "in.mp4", np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8))
    rc = main(["edit", str(src), "-o", str(tmp_path / "e.mp4"), "--task", "inpaint", "--mask", "0,0,16,16",
               "--model", str(model_dir), "--no-progress", "--cfg", "1"])
    assert rc == 0 and capsys.readouterr().out.strip() == str(tmp_path / "e.mp4")
    lines = iter(["/help", "make a red dot", "make it blue", "/save " + str(tmp_path / "s.mp4"), "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    rc = main(["chat", "--model", str(model_dir), "--frames", "1", "--height", "16", "--width", "16",
               "--out-dir", str(tmp_path / "c"), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "[clip 1]" in out and "[clip 2]" in out and (tmp_path / "s.png").exists()


def test_model_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VIDGPT_MODEL", str(tmp_path / "nothing"))
    one_line_error(capsys, ["generate", "x"], "vidgpt lm extend")
    (tmp_path / "plain").mkdir()
    one_line_error(capsys, ["generate", "x", "--model", str(tmp_path / "plain")], "no vidgpt.json")
    (tmp_path / "plain" / "vidgpt.json").write_text(json.dumps({"format": "vidgpt-lm"}))
    one_line_error(capsys, ["generate", "x", "--model", str(tmp_path / "plain"), "--speculative", "-1"],
                   "drafts per pass must be >= 0")


def test_missing_video_tokenizer_is_one_line(tmp_path, capsys):
    """A model directory moved without the tokenizer its vidgpt.json names: a ModelError naming the path, not a
    TypeError from deep inside the loader."""
    tok_dir = tmp_path / "vt"
    tok_dir.mkdir()
    (tok_dir / "config.json").write_text(json.dumps({"codebook_bits": 6}))
    (tok_dir / "model.safetensors").write_bytes(b"stub")
    assert main(["lm", "extend", "--backbone", "tiny-llama", "--tokenizer", str(tok_dir), "--out",
                 str(tmp_path / "lm"), "--form", "full"]) == 0
    capsys.readouterr()
    meta_path = tmp_path / "lm" / "vidgpt.json"
    meta = json.loads(meta_path.read_text())
    meta["video_tokenizer"] = "../elsewhere/tokenizer"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="elsewhere/tokenizer.*video tokenizer directory is missing"):
        VidGPT.from_pretrained(tmp_path / "lm")
    one_line_error(capsys, ["generate", "x", "--model", str(tmp_path / "lm"), "--frames", "1", "--height", "16",
                            "--width", "16", "--no-progress"], "video tokenizer directory is missing")


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--frames", "6"], "1+4n"),
        (["--height", "40"], "multiple of 16"),
        (["--frames", "29", "--height", "64", "--width", "64"], "positions"),
    ],
)
def test_bad_generate_requests(model_dir, capsys, extra, match):
    one_line_error(capsys, ["generate", "x", "--model", str(model_dir), "--frames", "5", "--height", "32",
                            "--width", "32", *extra], match)


def test_empty_prompt_and_unreadable_clip(model_dir, tmp_path, capsys):
    one_line_error(capsys, ["generate", "  ", "--model", str(model_dir)], "prompt is empty")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    one_line_error(capsys, ["edit", str(bad), "make it blue", "-o", str(tmp_path / "o.mp4"), "--model", str(model_dir)],
                   "bad.mp4")


def test_contrast_motion_passes_the_reversed_prompt_as_negative(model_dir, tmp_path, capsys, monkeypatch, tiny):
    seen = []
    real = tiny.generate
    monkeypatch.setattr(tiny, "generate", lambda prompt, **kw: seen.append(kw["negative_prompt"]) or real(prompt, **kw))
    common = ["--model", str(model_dir), "--frames", "1", "--height", "16", "--width", "16", "--seed", "0", "--no-progress"]
    assert main(["generate", "a red ball moving to the left", "-o", str(tmp_path / "a.png"), "--contrast-motion", *common]) == 0
    assert seen[-1] == "a red ball moving to the right" and "(motion contrast): a red ball moving to the right" in capsys.readouterr().err
    assert main(["generate", "a red ball", "-o", str(tmp_path / "b.png"), "--contrast-motion", *common]) == 0
    assert seen[-1] == "" and "none" in capsys.readouterr().err  # nothing to reverse: plain guidance
    one_line_error(capsys, ["generate", "a ball moving up", "--contrast-motion", "--negative", "blur", *common], "--contrast-motion")


def test_reversed_motion_words():
    from vidgpt.data.motion_words import reversed_motion

    assert reversed_motion("A purple star slides diagonally down and to the left") == "A purple star slides diagonally up and to the right"
    assert reversed_motion("a blue hexagon growing") == "a blue hexagon shrinking"
    assert reversed_motion("Spins Counterclockwise; GETS BIGGER") == "Spins Clockwise; GETS SMALLER"
    assert reversed_motion("moving up-left") == "moving down-right"
    assert reversed_motion("a red circle on a plain background") == ""
    assert reversed_motion("leftward, then upright") == "rightward, then upright"  # whole words only
    # both ends named: nothing to reverse (a negative that says the same thing would cancel the guidance)
    assert reversed_motion("A green hexagon bounces up and down like a ball") == ""
    assert reversed_motion("hops up and down, then slides left") == "hops up and down, then slides right"
    assert reversed_motion("spins clockwise", spin=False) == "" and reversed_motion("spins clockwise") == "spins counterclockwise"
    assert reversed_motion("spins clockwise and grows", spin=False) == "spins clockwise and shrinks"


def test_a_model_that_contrasts_motion_does_it_by_default(model_dir, tmp_path, capsys, monkeypatch, tiny):
    seen = []
    real = tiny.generate
    monkeypatch.setattr(tiny, "generate", lambda prompt, **kw: seen.append(kw["negative_prompt"]) or real(prompt, **kw))
    monkeypatch.setattr(tiny, "contrast_motion", True)
    common = ["--model", str(model_dir), "--frames", "1", "--height", "16", "--width", "16", "--seed", "0", "--no-progress"]
    out = str(tmp_path / "a.png")
    assert main(["generate", "a red ball moving up", "-o", out, *common]) == 0
    assert seen[-1] == "a red ball moving down" and "motion contrast" in capsys.readouterr().err
    assert main(["generate", "a red ball moving up", "-o", out, "--no-contrast-motion", *common]) == 0
    assert seen[-1] == ""
    assert main(["generate", "a red ball moving up", "-o", out, "--negative", "blur", *common]) == 0
    assert seen[-1] == "blur"  # an explicit negative prompt wins over the model's default
    assert main(["generate", "a red ball bouncing up and down", "-o", out, *common]) == 0
    assert seen[-1] == ""
    # the library: negative_prompt=None is the model's default, "" the empty prompt
    assert tiny.default_negative("a ball moving left") == "a ball moving right"
    assert tiny.default_negative("a ball moving left", contrast_motion=False) == ""
    kw = dict(frames=1, height=16, width=16, seed=3)
    by_default = real("a ball moving left", **kw).videos
    assert np.array_equal(by_default, real("a ball moving left", negative_prompt="a ball moving right", **kw).videos)
    monkeypatch.setattr(tiny, "contrast_motion", False)
    assert np.array_equal(real("a ball moving left", **kw).videos, real("a ball moving left", negative_prompt="", **kw).videos)
    assert tiny.default_negative("a ball moving left") == ""


def test_copy_gain_reaches_the_pipeline_and_a_model_without_a_read_out_refuses(tmp_path, capsys, monkeypatch, tiny):
    """`--copy-gain G` is the decode option copy_gain (absent without the flag: the model's own setting); on a model
    with no tilt read-out the pipeline refuses it in one line."""
    d = tmp_path / "model"
    d.mkdir()
    (d / "vidgpt.json").write_text(json.dumps({"format": "vidgpt-lm"}))
    seen = []

    def build(cls, *a, decode_options=None, **k):  # a real VidGPT over the tiny parts, with the CLI's decode options
        seen.append(dict(decode_options or {}))
        return VidGPT(tiny.model, tiny.text_tokenizer, tiny.vocab, tiny.video_tokenizer, chat=tiny.layout.chat, meta=tiny.meta,
                      decode_options={k: v for k, v in (decode_options or {}).items() if k in ("copy_gain", "cfg_fine")})

    monkeypatch.setattr(VidGPT, "from_pretrained", classmethod(build))
    common = ["--model", str(d), "--frames", "1", "--height", "16", "--width", "16", "--seed", "0", "--no-progress"]
    assert main(["generate", "a red ball", "-o", str(tmp_path / "a.png"), *common]) == 0
    assert "copy_gain" not in seen[-1]
    one_line_error(capsys, ["generate", "a red ball", "-o", str(tmp_path / "b.png"), "--copy-gain", "3", *common],
                   "copy_gain sets the copy read-out's tilt")
    assert seen[-1]["copy_gain"] == 3.0
