"""tools/object_code_stats.py: what a caption's colour word tells about the object's codes in LM shards."""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import object_code_stats  # noqa: E402

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "cyan"]


def rows(code_of, n=400, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        colour = COLOURS[int(rng.integers(len(COLOURS)))]
        mask = np.zeros(16, np.uint8)
        mask[int(rng.integers(0, 8)):][:4] = 1
        codes = np.where(mask, [code_of(colour, rng) for _ in range(16)], 999)
        out.append({"caption": f"a {colour} circle moving right", "codes": codes.tolist(), "object_mask": mask.tolist()})
    return out


def test_colour_coded_objects_have_a_real_gain_and_random_codes_only_the_bias():
    pinned = object_code_stats.summarize(rows(lambda c, rng: COLOURS.index(c) * 10 + int(rng.integers(2))), "codes", "object_mask")
    assert pinned["cells"] == pytest.approx(4.0)
    b = pinned["all"]
    assert b["gain"] == pytest.approx(np.log(8), abs=0.1) and b["H|colour"] == pytest.approx(np.log(2), abs=0.05)
    assert b["shuffled"] < 0.1
    noise = object_code_stats.summarize(rows(lambda c, rng: int(rng.integers(200))), "codes", "object_mask")
    assert noise["all"]["gain"] - noise["all"]["shuffled"] < 0.1 < noise["all"]["shuffled"]  # the estimator's bias


def test_colour_word_and_missing_masks():
    assert object_code_stats.colour_of("A red star on a dark blue background") == "red"
    assert object_code_stats.colour_of("A blue star on a dark purple background") == "blue"
    assert object_code_stats.colour_of("a star") is None
    from vidgpt.errors import DataError

    with pytest.raises(DataError):
        object_code_stats.summarize([{"caption": "a red circle", "codes": [1, 2], "object_mask": [0, 0]}], "codes", "object_mask")


def test_bit_gain_finds_the_bit_the_colour_sets():
    # bit 0 is the colour's parity, bits 1-4 are random: only bit 0 is explained (ln 2 nats), the shuffle explains nothing
    s = object_code_stats.summarize(rows(lambda c, rng: COLOURS.index(c) % 2 + 2 * int(rng.integers(16))), "codes", "object_mask")
    b = s["all_bits"]
    assert b["per_bit"][0] == pytest.approx(np.log(2), abs=0.02) and max(b["per_bit"][1:5]) < 0.01
    assert b["gain"] == pytest.approx(np.log(2), abs=0.05) and b["shuffled"] < 0.01
    noise = object_code_stats.summarize(rows(lambda c, rng: int(rng.integers(32))), "codes", "object_mask")
    assert noise["all_bits"]["gain"] < 0.02
