"""tools/copy_scores.py: which previous-frame cells the copy read-out favours for each motion word."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import copy_scores  # noqa: E402
import direction_probe as dp  # noqa: E402
import prompt_sensitivity  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_scores_follow_G_and_b_and_the_way_is_read_from_the_right_side(tiny_shards_and_lm):
    import torch

    from vidgpt.backbone import base_model
    from vidgpt.copy_readout import COPY_BIAS_KEY, COPY_KEY, COPY_OFFSETS
    from vidgpt.errors import ConfigError
    from vidgpt.parent_hint import attach_parent_hint, caption_center

    shards, lm = tiny_shards_and_lm(frames=9)
    recs = prompt_sensitivity.held_out_records(str(shards), 1, 4, need_blueprint=True)
    recs = [{**r, "caption": dp.with_direction("red circle, moving right", k % 4)} for k, r in enumerate(recs)]
    with pytest.raises(ConfigError, match="no copy read-out"):
        copy_scores.copy_scores(lm, recs)
    hint = attach_parent_hint(base_model(lm.model), caption=True, copy=True)
    W = lm.model.get_input_embeddings().weight
    words = [[int(i) for i in lm.text_tokenizer(dp.with_direction("red circle, moving right", k))["input_ids"]]
             for k in range(4)]
    hint.set_caption_center(*caption_center(words, W))
    zero = copy_scores.copy_scores(lm, recs)
    assert zero["n"] == len(recs) and zero["form"] == "mixture" and zero["weight"] == pytest.approx(0.018, abs=1e-4)
    assert all(zero[k] == 0 for k in ("way margin", "caption part", "self"))
    G, b = getattr(hint, COPY_KEY), getattr(hint, COPY_BIAS_KEY)
    with torch.no_grad():  # "always copy the cell to the left": right for "moving right" only, whatever the words
        b[COPY_OFFSETS.index((0, -1))] = 1.0
    left = copy_scores.copy_scores(lm, recs)
    assert left["way right"] == pytest.approx(0.25) and left["way margin"] == pytest.approx(0.0, abs=1e-6)
    assert left["caption part"] == pytest.approx(0.0, abs=1e-6) and left["self"] == pytest.approx(-1 / 25)
    with torch.no_grad():  # G reads each direction's own window through B: its source cells score highest for it
        from vidgpt.parent_hint import caption_mean

        b.zero_()
        m = torch.stack([caption_mean(torch.tensor(w), lambda x: W[x], hint.centering()) for w in words]).float()
        m = m - m.mean(0)
        basis = torch.zeros(getattr(hint, "copy_basis").shape)
        basis[:4] = m / m.norm(dim=-1, keepdim=True)
        hint.set_copy_basis(basis)
        for k, way in enumerate(dp.DIRECTIONS):
            dy, dx = copy_scores.SOURCE[way]
            for d in (1, 2):
                G[COPY_OFFSETS.index((dy * d, dx * d)), k] = 50.0
    read = copy_scores.copy_scores(lm, recs)
    # (the documents' windows hold the chat template too, so the four are not read apart perfectly: well above chance)
    assert read["way right"] > 0.5 and read["way margin"] > 0 and read["caption part"] > 0
    with pytest.raises(ConfigError, match="straight move"):
        copy_scores.copy_scores(lm, [{**recs[0], "caption": "red circle, rotating"}])
