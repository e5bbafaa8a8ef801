"""data.prompt_dropout and data.blueprint_only: text-to-video and text-to-image documents with an empty prompt
(CFG's unconditional branch) or cut to their blueprint section; off (0) leaves the document stream unchanged."""

import numpy as np

from vidgpt.backbone import extend
from vidgpt.layout import Layout
from vidgpt.train.lm_data import LMDataConfig, RecordFormatter


def _record(rng, t=2, h=4, w=4, bits=6):
    return {"codes": rng.integers(0, 2**bits, t * h * w).tolist(), "shape": [t, h, w],
            "blueprint_codes": rng.integers(0, 2**bits, t * 2 * 2).tolist(), "blueprint_shape": [t, 2, 2],
            "caption": "red circle, moving right", "captions": ["red circle, moving right", "A red circle moves right"],
            "kind": "video", "edit": None}


def _tiny_lm():
    return extend("tiny-llama", None, codebook_bits=6, tiny={"hidden_size": 32, "layers": 1, "heads": 2, "kv_heads": 1})


def _masked_record(seed, blueprint_mask):
    """A 2x4x4 record with a random ~30% fine object mask and the given 2x2x2 blueprint object mask."""
    rng = np.random.default_rng(seed)
    rec = _record(rng)
    rec["object_mask"] = (rng.random(2 * 4 * 4) < 0.3).astype(np.uint8).tolist()
    rec["blueprint_object_mask"] = list(blueprint_mask)
    return rec


def test_prompt_dropout_and_blueprint_only():
    lm = _tiny_lm()
    layout = Layout(lm.vocab, lm.text_tokenizer, chat=False)
    recs = [_record(np.random.default_rng(i)) for i in range(200)]

    def docs(**opts):
        fmt = RecordFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig(chat=False, **opts))
        rng = np.random.default_rng(0)
        return [fmt(r, rng) for r in recs]

    plain = docs()
    assert [d.input_ids for d in plain] == [d.input_ids for d in docs(prompt_dropout=0.0, blueprint_only=0.0)]
    for opts, key in (({"prompt_dropout": 0.25}, "empty"), ({"blueprint_only": 0.5}, "cut")):
        got = docs(**opts)
        empty = cut = 0
        for r, d in zip(recs, got):
            user, assistant = layout.parse(d.input_ids).turns
            block = assistant.blocks()[0]
            assert block.blueprint.flatten().tolist() == r["blueprint_codes"]  # the blueprint is always there
            if block.fine is None:
                cut += 1
                assert len(d) < len(plain[0])
            else:
                assert block.fine.flatten().tolist() == r["codes"]
            if user.text() == "":
                empty += 1
            else:
                assert user.text() in r["captions"]
        share = (empty if key == "empty" else cut) / len(recs)
        want = opts.get("prompt_dropout", opts.get("blueprint_only"))
        assert abs(share - want) < 0.1, (key, share)
        assert (cut if key == "empty" else empty) == 0  # each option changes only what it says


def test_image_documents_take_both_options():
    """An image is a 1-frame video: cut to its blueprint and prompt-dropped like one (piece 5 of the default model
    ran with blueprint_only 1.0 on images, and its documents kept their 256 fine codes before this)."""
    lm = _tiny_lm()
    layout = Layout(lm.vocab, lm.text_tokenizer, chat=False)
    rec = dict(_record(np.random.default_rng(0), t=1), kind="image")
    rec["blueprint_codes"] = rec["blueprint_codes"][:4]
    rec["blueprint_shape"] = [1, 2, 2]
    cut = RecordFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig(chat=False, blueprint_only=1.0))(
        rec, np.random.default_rng(0))
    block = layout.parse(cut.input_ids).turns[1].blocks()[0]
    assert block.fine is None and block.blueprint.flatten().tolist() == rec["blueprint_codes"]
    dropped = RecordFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig(chat=False, prompt_dropout=1.0))(
        rec, np.random.default_rng(0))
    user, assistant = layout.parse(dropped.input_ids).turns
    assert user.text() == "" and assistant.blocks()[0].fine is not None


def test_object_loss_weight_scales_only_the_object_codes():
    lm = _tiny_lm()
    rec = _masked_record(3, [1, 0, 0, 0, 0, 1, 1, 0])
    base = RecordFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig(chat=False))(rec, np.random.default_rng(0))
    heavy = RecordFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig(chat=False, object_loss_weight=4.0))(
        rec, np.random.default_rng(0))
    assert heavy.input_ids == base.input_ids
    want = np.array(rec["blueprint_object_mask"] + rec["object_mask"], dtype=bool)
    from vidgpt.layout import VISUAL
    vis = np.array([k == VISUAL for k in base.kinds])
    ratio = np.array(heavy.weights) / np.maximum(np.array(base.weights), 1e-9)
    assert np.allclose(ratio[vis][want], 4.0) and np.allclose(ratio[vis][~want], 1.0)
    assert np.allclose(np.array(heavy.weights)[~vis], np.array(base.weights)[~vis])  # text, structure untouched
    # cut to the blueprint: only the blueprint's mask applies
    cut = RecordFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig(chat=False, object_loss_weight=4.0,
                                                                   blueprint_only=1.0))(rec, np.random.default_rng(0))
    cv = [w for w, k in zip(cut.weights, cut.kinds) if k == VISUAL]
    assert [w > 1 for w in cv] == [bool(x) for x in rec["blueprint_object_mask"]]
    # a mask that does not match the codes is an error, not a silent misweighting
    bad = dict(rec, object_mask=rec["object_mask"][:-1])
    import pytest
    from vidgpt.errors import DataError
    with pytest.raises(DataError, match="object mask"):
        RecordFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig(chat=False, object_loss_weight=4.0))(
            bad, np.random.default_rng(0))


def _visual_weights(lm, rec):
    """weights(**data options) -> the loss weights of the record's video codes, in document order."""
    from vidgpt.layout import VISUAL

    def weights(**opts):
        d = RecordFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig(chat=False, **opts))(rec, np.random.default_rng(0))
        return np.array([w for w, k in zip(d.weights, d.kinds) if k == VISUAL])

    return weights


def test_first_object_codes_get_their_extra_weight_in_raster_order():
    rec = _masked_record(5, [0, 1, 0, 0, 0, 1, 1, 0])
    weights = _visual_weights(_tiny_lm(), rec)

    base, obj = weights(), weights(object_loss_weight=2.0)
    first = weights(object_loss_weight=2.0, first_object_codes=4, first_object_weight=5.0)
    mask = np.array(rec["blueprint_object_mask"] + rec["object_mask"], dtype=bool)
    firsts = np.flatnonzero(mask)[:4]  # blueprint cells 1, 5, 6, then the first fine object code
    assert firsts.tolist()[:3] == [1, 5, 6] and firsts[3] >= 8
    ratio = first / obj
    assert np.allclose(ratio[firsts], 5.0) and np.allclose(np.delete(ratio, firsts), 1.0)
    assert np.allclose(obj[mask] / base[mask], 2.0)
    # without object weighting the first codes alone are weighted; a factor of 1 leaves the weights as they were
    alone = weights(first_object_codes=2, first_object_weight=3.0)
    assert np.allclose((alone / base)[firsts[:2]], 3.0) and np.allclose(np.delete(alone / base, firsts[:2]), 1.0)
    assert np.allclose(weights(first_object_codes=4), base)


def test_motion_loss_weight_scales_the_cells_that_changed_since_the_previous_latent_frame():
    lm = _tiny_lm()
    # blueprint 2x2x2: the object sits in cell 0 of frame 0 and moves to cell 1 in frame 1
    rec = _masked_record(7, [1, 0, 0, 0, 0, 1, 0, 0])
    weights = _visual_weights(lm, rec)

    base, moved = weights(), weights(motion_loss_weight=3.0)
    fine = np.array(rec["object_mask"], dtype=bool).reshape(2, 4, 4)
    want = np.zeros(8 + 32, dtype=bool)
    want[[4, 5]] = True  # frame 1 of the blueprint: cell 0 (left) and cell 1 (arrived)
    want[8 + 16:] = (fine[1] != fine[0]).reshape(-1)
    assert want[8 + 16:].any()
    ratio = moved / base
    assert np.allclose(ratio[want], 3.0) and np.allclose(ratio[~want], 1.0)
    # on top of the object weight; frame 0 never counts as motion
    both = weights(motion_loss_weight=3.0, object_loss_weight=2.0)
    assert np.allclose(both / weights(object_loss_weight=2.0), ratio)
    assert np.allclose(ratio[:4], 1.0) and np.allclose(ratio[8:8 + 16], 1.0)
    import pytest
    from vidgpt.errors import ConfigError
    with pytest.raises(ConfigError, match="motion_loss_weight"):  # at config load, whatever reads it
        LMDataConfig(chat=False, motion_loss_weight=0.0)


def test_follow_loss_weight_scales_the_fine_codes_under_moved_blueprint_cells():
    import pytest
    from vidgpt.errors import DataError
    from vidgpt.train.lm_data import blueprint_moved_fine

    lm = _tiny_lm()
    rec = _record(np.random.default_rng(3))
    bp = np.array(rec["blueprint_codes"]).reshape(2, 2, 2)
    bp[1] = bp[0]
    bp[1, 0, 1] = (bp[0, 0, 1] + 1) % 64  # only the top-right blueprint cell of latent frame 1 changed
    rec["blueprint_codes"] = bp.reshape(-1).tolist()
    weights = _visual_weights(lm, rec)

    base, follow = weights(), weights(follow_loss_weight=5.0)
    want = np.zeros(8 + 32, dtype=bool)
    want[8 + 16:] = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=bool).reshape(-1)
    ratio = follow / base
    assert np.allclose(ratio[want], 5.0) and np.allclose(ratio[~want], 1.0)  # blueprint and frame 0 untouched
    assert np.allclose(weights(follow_loss_weight=1.0), base)
    # the same cells as the probe's (and generation's) definition, cropped to an odd fine grid
    assert blueprint_moved_fine(bp, (2, 3, 3))[1].tolist() == [[False, False, True]] * 2 + [[False] * 3]
    # a still blueprint moves nothing; a blueprint that does not cover the fine grid is an error
    assert not blueprint_moved_fine(bp[:1].repeat(2, 0), (2, 4, 4)).any()
    with pytest.raises(DataError, match="does not cover"):
        blueprint_moved_fine(bp, (2, 6, 4))
    from vidgpt.errors import ConfigError
    with pytest.raises(ConfigError, match="follow_loss_weight"):
        LMDataConfig(chat=False, follow_loss_weight=0.0)


def test_first_move_cells_are_frame_1_near_the_object_up_to_its_first_change():
    from vidgpt.train.lm_data import first_move_cells

    def cells(frame1_at):
        m = np.zeros((3, 5, 5), dtype=bool)
        m[0, 2, 2] = True
        if frame1_at is not None:
            m[1][frame1_at] = True
            m[2][frame1_at] = True  # frame 2 never counts
        return np.flatnonzero(first_move_cells(m.reshape(-1), (3, 5, 5))).tolist()

    f1 = 25  # frame 1 starts at flat index 25
    # the object's 3x3 neighbourhood in frame 1 is cells 6, 7, 8, 11, 12, 13, 16, 17, 18
    assert cells((2, 3)) == [f1 + i for i in (6, 7, 8, 11, 12)]  # right: (2,2) is left first
    assert cells((2, 1)) == [f1 + i for i in (6, 7, 8, 11)]  # left: (2,1) is arrived at first
    assert cells((1, 2)) == [f1 + i for i in (6, 7)]  # up
    assert cells((3, 2)) == [f1 + i for i in (6, 7, 8, 11, 12)]  # down: (2,2) is left first
    assert cells((2, 2)) == []  # it stayed
    far = np.zeros((2, 5, 5), dtype=bool)
    far[0, 0, 0] = far[1, 0, 0] = far[1, 4, 4] = True  # a change far from the object is not its move
    assert not first_move_cells(far.reshape(-1), (2, 5, 5)).any()
    assert not first_move_cells(np.zeros(25, dtype=bool), (1, 5, 5)).any()


def test_first_move_weight_scales_the_blueprints_first_move_cells():
    import pytest
    from vidgpt.errors import ConfigError

    lm = _tiny_lm()
    # blueprint 2x2x2: the object sits in cell 0 of frame 0 and moves to cell 1 in frame 1; cell 0 of frame 1
    # (flat 4) is the first changed cell, so it alone is weighted
    rec = _masked_record(7, [1, 0, 0, 0, 0, 1, 0, 0])
    weights = _visual_weights(lm, rec)
    base, first = weights(), weights(first_move_weight=6.0)
    ratio = first / base
    assert np.allclose(ratio[4], 6.0) and np.allclose(np.delete(ratio, 4), 1.0)
    both = weights(first_move_weight=6.0, motion_loss_weight=3.0)  # multiplies the motion weight
    assert np.allclose(both / weights(motion_loss_weight=3.0), ratio)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="first_move_weight"):
            LMDataConfig(chat=False, first_move_weight=bad)
