"""tools/direction_probe.py: where an LM holds the caption's direction (a linear probe of its hidden states)."""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import direction_probe as dp  # noqa: E402
import prompt_sensitivity  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_directions_are_read_from_and_written_into_captions():
    assert dp.direction_of("red circle, moving right") == 1
    assert dp.direction_of("red circle, moving up and left") is None  # two named: not a straight move
    assert dp.direction_of("red circle, rotating") is None
    assert dp.with_direction("red circle, moving right", 3) == "red circle, moving down"
    assert dp.with_direction("A red circle moves left, on black", 2) == "A red circle moves up, on black"


def test_the_probed_document_holds_frame_1_still_up_to_its_first_change():
    from vidgpt.vocab import UnifiedVocab, VocabSpec

    v = UnifiedVocab(VocabSpec(6, 1, 8, 8), offset=100)
    t, h, w = 3, 2, 2
    codes = [[v.visual_offset + 10 * f + c for c in range(h * w)] for f in range(t)]
    ids = [5, 6, 7, v.vision_start_id, 90, 91, 92, v.blueprint_id] + sum(codes, [])
    mask = np.zeros((t, h * w), dtype=bool)
    mask[0, 0] = mask[1, 0] = mask[1, 3] = True  # the object grows into cell 3 in frame 1: its only changed cell
    rec = {"blueprint_shape": [t, h, w], "blueprint_object_mask": mask.reshape(-1).tolist()}
    probed, at = dp.probe_document(ids, v, rec)
    bp = ids.index(v.blueprint_id)
    assert at == [2, bp, bp + 4, bp + 4 + 3]  # caption end, marker, frame 0's last code, first changed cell (3)
    assert probed[: bp + 5] == ids[: bp + 5]
    assert probed[bp + 5:] == codes[0][:3]  # frame 1 before its first change: frame 0's codes
    assert len(probed) == at[-1] + 1
    still = {"blueprint_shape": [t, h, w], "blueprint_object_mask": [True, False, False, False] * t}
    assert dp.probe_document(ids, v, still) is None  # nothing moved in frame 1


def test_the_cross_validated_probe_finds_a_linear_direction_and_not_a_random_one():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 120)
    x = rng.normal(size=(120, 16))
    x[np.arange(120), y] += 4.0  # the label in one feature each
    assert dp.cv_accuracy(x, y, folds=4) > 0.95
    assert dp.cv_accuracy(x, rng.integers(0, 4, 120), folds=4) < 0.5


def test_hidden_states_at_the_probed_positions_with_true_and_random_captions(tiny_shards_and_lm):
    import torch

    shards, lm = tiny_shards_and_lm(frames=9)
    recs = prompt_sensitivity.held_out_records(str(shards), 1, 6, need_blueprint=True)
    # the tiny world's captions name all sorts of motions: make them straight moves, and the object fill blueprint
    # cell 0 in frame 0 only, so that cell changes in frame 1
    def still_after_0(r):
        m = np.zeros((int(r["blueprint_shape"][0]), len(r["blueprint_codes"]) // int(r["blueprint_shape"][0])), bool)
        m[0, 0] = True
        return m.reshape(-1).tolist()

    recs = [{**r, "caption": dp.with_direction("red circle, moving right", k % 4), "blueprint_object_mask": still_after_0(r)}
            for k, r in enumerate(recs)]
    x, y, named = dp.hidden_at(lm, recs)
    layers = lm.model.config.num_hidden_layers + 1
    assert x.shape == (len(recs), len(dp.POSITIONS), layers, lm.model.config.hidden_size)
    assert y.tolist() == [k % 4 for k in range(len(recs))] and (named == y).all()
    xs, ys, named_r = dp.hidden_at(lm, recs, random_caption=True, seed=1)
    assert (ys == y).all() and not (named_r == y).all()
    # a caption naming another way changes the states from the caption on
    assert not np.allclose(xs[named_r != y][:, 0], x[named_r != y][:, 0])
    assert np.isfinite(x).all() and torch.get_num_threads() == 1
