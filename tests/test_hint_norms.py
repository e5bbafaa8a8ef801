"""tools/hint_norms.py: the caption hint's size at the blueprint marker and the part of it the motion word moves."""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import direction_probe as dp  # noqa: E402
import hint_norms  # noqa: E402
import prompt_sensitivity  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_hint_is_the_gain_times_the_window_and_its_direction_part_follows_the_motion_word(tiny_shards_and_lm):
    import torch

    from vidgpt.backbone import base_model
    from vidgpt.errors import ConfigError
    from vidgpt.parent_hint import CAPTION_KEY, attach_parent_hint, caption_center

    shards, lm = tiny_shards_and_lm(frames=9)
    recs = prompt_sensitivity.held_out_records(str(shards), 1, 6, need_blueprint=True)
    recs = [{**r, "caption": dp.with_direction("red circle, moving right", k % 4)} for k, r in enumerate(recs)]
    with pytest.raises(ConfigError, match="no caption hint"):
        hint_norms.hint_norms(lm, recs)
    hint = attach_parent_hint(base_model(lm.model), caption=True, caption_form="diagonal")
    W = lm.model.get_input_embeddings().weight
    words = [[int(i) for i in lm.text_tokenizer(dp.with_direction("red circle, moving right", k))["input_ids"]]
             for k in range(4)] + [[int(i) for i in lm.text_tokenizer("blue square, moving up")["input_ids"]]]
    hint.set_caption_center(*caption_center(words, W))
    zero = hint_norms.hint_norms(lm, recs)
    assert zero["n"] == len(recs) and zero["R form"] == "diagonal"
    assert zero["hint"] == 0 and zero["direction part"] == 0
    assert zero["window"] > 0 and 0 < zero["window direction"] < zero["window"] and zero["visual row"] > 0
    with torch.no_grad():
        getattr(hint, CAPTION_KEY).fill_(0.5)
    half = hint_norms.hint_norms(lm, recs)
    assert half["hint"] == pytest.approx(0.5 * zero["window"], rel=1e-4)
    assert half["direction part"] == pytest.approx(0.5 * zero["window direction"], rel=1e-4)
    assert half["R norm"] == pytest.approx(0.5 * np.sqrt(hint.hidden), rel=1e-4)
    # a caption that names no straight move is skipped; none at all is an error
    assert hint_norms.hint_norms(lm, recs[:2] + [{**recs[2], "caption": "red circle, rotating"}])["n"] == 2
    with pytest.raises(ConfigError, match="straight move"):
        hint_norms.hint_norms(lm, [{**recs[0], "caption": "red circle, rotating"}])
