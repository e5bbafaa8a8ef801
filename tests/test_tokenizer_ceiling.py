"""The round-trip judge (the ceiling a tokenizer puts on adherence): right on ground truth, low on a
broken decoder."""

import torch
import torch.nn.functional as F

from vidgpt.tokenizer_ceiling import heldout_scenes, roundtrip_judge


class IdentityTokenizer:
    """Stands in for a perfect tokenizer: the 'codes' are the clip itself."""

    space_factor = 8

    def encode(self, x):
        return x

    def decode(self, codes):
        return codes


def test_ground_truth_passes_everything():
    scenes = heldout_scenes(3, seed=1)
    rep = roundtrip_judge(IdentityTokenizer(), scenes, frames=9, size=64)
    assert rep.clips == 3 and rep.clip_pass_rate == 1.0 and rep.original_pass_rate == 1.0
    assert rep.rates() == {"color": 1.0, "shape": 1.0, "motion": 1.0}
    assert not rep.failures and "3/3 clips" in rep.summary()
    shapes = [o.shape for sc in scenes for o in sc.objects]
    assert rep.shape_rates() == {k: 1.0 for k in set(shapes)} and sum(n for n, _ in rep.by_shape.values()) == len(shapes)
    assert "shape kept: " in rep.summary() and set(rep.to_dict()["shape_kept"]) == set(shapes)
    bp = roundtrip_judge(IdentityTokenizer(), scenes, frames=9, size=128, blueprint=True)
    assert bp.clip_size == "9x64x64" and bp.clip_pass_rate == 1.0


def test_broken_decoders_fail():
    scenes = heldout_scenes(3, seed=1)
    grey = roundtrip_judge(IdentityTokenizer(), scenes, frames=9, size=64, decode_fn=lambda c: torch.zeros_like(c))
    assert grey.clip_pass_rate == 0.0 and grey.rates()["color"] == 0.0 and grey.original_pass_rate == 1.0
    assert len(grey.failures) == 3

    def blur(c):  # a decoder that loses all detail below 16 px
        b, ch, t, h, w = c.shape
        small = F.avg_pool3d(c, (1, 16, 16))
        return F.interpolate(small, size=(t, h, w), mode="nearest")

    blurred = roundtrip_judge(IdentityTokenizer(), scenes, frames=9, size=64, decode_fn=blur)
    assert blurred.clip_pass_rate < 0.5 and blurred.rates()["shape"] < 0.5
    kept = sum(k for _, k in blurred.by_shape.values())  # the per-shape tally adds up to the shape rate
    assert kept == round(blurred.rates()["shape"] * blurred.objects) and min(blurred.shape_rates().values()) < 1.0
    d = blurred.to_dict()
    assert d["clips"] == 3 and 0 <= d["object_shape"] < 0.5


def test_shipped_tokenizer_round_trip_guard():
    """A guard on the shipped weights, not the measurement (that is tools/eval_tokenizer.py, n=100, in the card).
    Measured on these 6 scenes when T2 shipped (2026-12-07): colour 13/13 objects, shape 6/13, motion 10/13, 1/6 whole
    clips (v2, shipped before it: 13/13, 7/13, 13/13, 1/6)."""
    from vidgpt.tokenizer import VideoTokenizer, default_tokenizer_dir

    tok = VideoTokenizer.from_pretrained(default_tokenizer_dir())
    rep = roundtrip_judge(tok, heldout_scenes(6, seed=0), frames=17, size=128)
    assert rep.original_pass_rate == 1.0
    rates = rep.rates()
    assert rates["color"] >= 11 / 13 and rates["motion"] >= 8 / 13 and rates["shape"] >= 4 / 13, rep.summary()


def test_extra_colour_blobs_are_counted():
    """A decoder that adds a patch of named colours no object has: every clip fails, counted as an extra colour."""
    from vidgpt.data.synthetic import WorldConfig
    from vidgpt.data.world.palette import object_palette

    names, palette = object_palette()
    scenes = heldout_scenes(3, seed=1, config=WorldConfig(max_objects=1))
    clean = roundtrip_judge(IdentityTokenizer(), scenes, frames=5, size=64)
    assert clean.clips_with_extra == 0 and clean.to_dict()["clips_with_extra_colour"] == 0

    def painted(c):  # two 12x12 patches (yellow, cyan) inside the frame: a one-object scene cannot own both
        out = c.clone()
        for row, name in ((4, "yellow"), (48, "cyan")):
            rgb = torch.tensor(palette[names.index(name)], dtype=c.dtype) / 127.5 - 1.0
            out[:, :, :, row : row + 12, 4:16] = rgb.view(1, 3, 1, 1, 1)
        return out

    rep = roundtrip_judge(IdentityTokenizer(), scenes, frames=5, size=64, decode_fn=painted)
    assert rep.clips_with_extra == 3 and rep.clip_pass_rate == 0.0 and rep.original_pass_rate == 1.0
    assert "3 with an extra colour" in rep.summary()
