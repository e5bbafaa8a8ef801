import json

import numpy as np
import pytest
import torch

from vidgpt.cli import main
from vidgpt.tokenizer import TokenizerConfig, VideoTokenizer


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tok")
    VideoTokenizer(TokenizerConfig(codebook_bits=10, channels=8, norm_groups=4)).save_pretrained(d)
    return d


@pytest.fixture()
def clips(tmp_path):
    rng = np.random.default_rng(0)
    a = tmp_path / "a.npy"
    np.save(a, (rng.random((9, 40, 48, 3)) * 255).astype(np.uint8))
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not an array")
    return a, bad


def test_eval_json_and_failures(tok_dir, clips, capsys):
    a, bad = clips
    rc = main(["tokenizer", "eval", str(a), str(bad), str(a), "--tokenizer", str(tok_dir), "--frames", "9", "--size", "32", "--json"])
    out, err = capsys.readouterr()
    assert rc == 1  # one file failed, the others were evaluated
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 2
    assert set(rows[0]) == {"file", "psnr", "ssim", "tokens", "codebook_usage"}
    assert rows[0]["tokens"] == 3 * 4 * 4 and 0 < rows[0]["codebook_usage"] <= 1
    assert "bad.npy" in err


def test_encode_decode_round_trip(tok_dir, clips, tmp_path, capsys):
    a, _ = clips
    for ext in ("safetensors", "npz"):
        codes_file = tmp_path / f"codes.{ext}"
        assert main(["tokenizer", "encode", str(a), "-o", str(codes_file), "--tokenizer", str(tok_dir), "--frames", "5", "--size", "32"]) == 0
        out = tmp_path / f"out_{ext}.npy"
        assert main(["tokenizer", "decode", str(codes_file), "-o", str(out), "--tokenizer", str(tok_dir)]) == 0
        assert np.load(out).shape == (5, 32, 32, 3)
    # a tokenizer with another K refuses the codes
    other = tmp_path / "other"
    VideoTokenizer(TokenizerConfig(codebook_bits=12, channels=8, norm_groups=4)).save_pretrained(other)
    capsys.readouterr()
    assert main(["tokenizer", "decode", str(tmp_path / "codes.npz"), "-o", str(tmp_path / "x.npy"), "--tokenizer", str(other)]) == 1
    err = capsys.readouterr().err
    assert "K=10" in err and err.count("\n") == 1


def test_missing_tokenizer_dir_is_one_line_error(clips, tmp_path, capsys):
    a, _ = clips
    assert main(["tokenizer", "eval", str(a), "--tokenizer", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vidgpt: error:") and "missing" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv,message", [
    ([], "give VIDEO files, or --synthetic N"),
    (["--synthetic", "-1"], "must be >= 0"),
    (["--synthetic", "2", "--size", "120"], "multiple of 16"),
])
def test_eval_synthetic_bad_input_is_one_line(argv, message, capsys):
    from vidgpt.cli import main

    assert main(["tokenizer", "eval", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("vidgpt: error:") and len(err.splitlines()) == 1


def test_eval_synthetic_prints_fine_and_blueprint_reports(capsys):
    import json

    from vidgpt.cli import main

    assert main(["tokenizer", "eval", "--synthetic", "2", "--seed", "1", "--frames", "9", "--size", "64", "--json"]) == 0
    fine, bp = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert (fine["mode"], fine["clip"], fine["clips"]) == ("fine", "9x64x64", 2)
    assert (bp["mode"], bp["clip"]) == ("blueprint", "9x32x32")
    assert fine["original_pass_rate"] == 1.0 and 0.0 <= fine["object_color"] <= 1.0


def test_eval_synthetic_draws_the_scenes_a_world_set_names(capsys):
    """--set narrows the scenes to a model's scope (one huge object here): the ceiling on what that model is asked."""
    import json

    from vidgpt.cli import main

    argv = ["tokenizer", "eval", "--synthetic", "3", "--seed", "2", "--frames", "5", "--size", "64", "--json"]
    assert main([*argv, "--set", "max_objects=1", "--set", "sizes=[huge]"]) == 0
    fine, bp = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert fine["objects"] == bp["objects"] == 3 and fine["original_pass_rate"] == 1.0
    assert main([*argv, "--set", "sizes=[gigantic]"]) == 1
    assert "gigantic" in capsys.readouterr().err
