"""The `blueprint_mask` decode option: the fine section drawn only near what its blueprint shows, the rest given."""

import numpy as np
import pytest
import torch

from vidgpt.errors import GenerationError
from vidgpt.generate.tiny import tiny_pipeline
from vidgpt.geometry import blueprint_region_mask


pytestmark = pytest.mark.usefixtures("one_thread")


def test_region_is_the_non_background_cells_grown_by_the_margin_on_the_fine_grid():
    bp = np.full((2, 4, 4), 5)  # 0b0101
    bp[0, 1, 1] = 10  # the object in frame 0 (0b1010: 4 bits off the background) ...
    bp[1, 2, 3] = 10  # ... and at the right edge in frame 1
    bp[0, 3, 0] = bp[1, 0, 0] = 7  # 1 bit off: background whose bit sat near the sign flip
    tight = blueprint_region_mask(bp, (2, 8, 8), margin=0)
    assert tight.shape == (2, 8, 8) and tight.dtype == bool
    assert tight[0].sum() == 4 and tight[0, 2:4, 2:4].all()
    assert tight[1].sum() == 4 and tight[1, 4:6, 6:8].all()
    grown = blueprint_region_mask(bp, (2, 8, 8), margin=1)
    assert grown[0].sum() == 36 and grown[0, 0:6, 0:6].all()  # 3x3 blueprint cells
    assert grown[1].sum() == 24 and grown[1, 2:8, 4:8].all()  # 3x2: clipped at the edge
    assert blueprint_region_mask(bp, (2, 8, 8), margin=3)[0].all()
    # an odd fine side: the blueprint's last cell covers one fine cell
    assert blueprint_region_mask(bp[:, :3, :3], (2, 5, 5), margin=0)[0, 2:4, 2:4].all()
    # a frame whose codes are all one code has no region; the tolerance in bits is a parameter
    assert not blueprint_region_mask(np.full((1, 4, 4), 3), (1, 8, 8), margin=2).any()
    strict = blueprint_region_mask(bp, (2, 8, 8), margin=0, background_bits=0)
    assert strict[0].sum() == 8 and strict[0, 6:8, 0:2].all() and strict[1, 0:2, 0:2].all()
    assert not blueprint_region_mask(bp, (2, 8, 8), margin=0, background_bits=4).any()


def _sample(prompt):
    from vidgpt.layout import Sample, Turn

    return Sample([Turn("user", [prompt])])


def test_forced_ids_are_taken_and_the_rest_drawn_as_without_them(text_tok):
    """Ids given where the one-pass decode drew them change nothing (the noise is keyed by position); runs given in
    every row are fed several a pass."""
    from vidgpt.generate.constraints import StructureConstraint
    from vidgpt.generate.decoding import constrained_decode
    from vidgpt.generate.sampling import SamplingConfig, make_generator
    from vidgpt.geometry import block_length

    pipe = tiny_pipeline(text_tok, bits=6)
    ids = [pipe.layout.prompt_ids(_sample(p)) for p in ("a red circle moving right", "a blue star")]
    shape = pipe.latent_shape(9, 32, 32)
    total = block_length(shape, 1, True, True)
    sampling = SamplingConfig(cfg=1.0)

    def run(forced, stats):
        con = StructureConstraint(pipe.vocab, 2, shape=shape, sections=pipe.sections(), max_new_tokens=total + 1,
                                  pad_id=pipe.pad_id)
        return constrained_decode(pipe.backend, ids, con, sampling, make_generator(3), pad_id=pipe.pad_id,
                                  vocab_size=pipe.vocab.end, max_steps=total, forced=forced, stats=stats)

    free_stats, given_stats = {}, {}
    free = run(None, free_stats).tokens
    forced = torch.full_like(free, -1)
    forced[:, 20:40] = free[:, 20:40]          # a run given in both rows
    forced[0, 45:50] = free[0, 45:50]          # given in one row only: drawn in the other
    out = run(forced, given_stats).tokens
    assert torch.equal(out, free)
    assert free_stats["passes"] == total and given_stats["passes"] == total - 19
    # a given id other than the drawn one is taken, and what follows is drawn after it
    other = forced.clone()
    other[:, 20:40] = torch.where(free[:, 20:40] == free[0, 20], free[1, 20], free[0, 20])
    moved = run(other, {}).tokens
    assert torch.equal(moved[:, 20:40], other[:, 20:40]) and torch.equal(moved[:, :20], free[:, :20])


def test_blueprint_mask_draws_the_region_and_gives_the_rest_from_the_recoded_blueprint(text_tok, decode_calls):
    plain = tiny_pipeline(text_tok, bits=6)
    masked = tiny_pipeline(text_tok, bits=6, decode_options={"blueprint_mask": 0})
    a = plain.generate("a red circle moving right", frames=9, height=32, width=32, seed=5, num=2)
    del decode_calls[:]
    b = masked.generate("a red circle moving right", frames=9, height=32, width=32, seed=5, num=2)
    seen = [kw.get("forced") for _, kw in decode_calls]
    assert seen[0] is None and seen[1].shape == (2, 3 * 4 * 4 + 1)
    recoded = masked.recode_blueprints(b.blocks)
    for i, (x, y) in enumerate(zip(a.blocks, b.blocks)):
        assert torch.equal(x.blueprint, y.blueprint)  # the blueprint pass is the one-pass decode's
        region = torch.from_numpy(blueprint_region_mask(y.blueprint.numpy(), y.shape, 0))
        assert 0 < int(region.sum()) < region.numel()
        assert torch.equal(y.fine[~region], recoded[i][~region])  # outside: the re-encoded preview's codes
        assert bool((seen[1][i, :-1] >= 0).reshape(region.shape).eq(~region).all())
    assert masked.last_stats["fine_given"] + masked.last_stats["fine_drawn"] == 2 * 48
    assert masked.last_stats["fine_passes"] < 48
    assert tiny_pipeline(text_tok, bits=6, meta={"blueprint_mask": 2}).blueprint_mask == 2
    assert plain.blueprint_mask is None  # off unless asked
    with pytest.raises(GenerationError, match="blueprint_mask"):
        tiny_pipeline(text_tok, bits=6, decode_options={"blueprint_mask": -1})
    with pytest.raises(GenerationError, match="choose one"):
        tiny_pipeline(text_tok, bits=6, decode_options={"blueprint_mask": 1, "follow_blueprint": 2.0})


def test_fine_follow_probe_scores_the_fine_codes_after_the_true_and_an_altered_blueprint(text_tok, load_tool):
    from types import SimpleNamespace

    from vidgpt.data.world.scene import ObjectSpec, Scene

    probe = load_tool("fine_follow_probe")
    codes = torch.arange(2 * 4 * 4).view(2, 4, 4)
    rolled = probe.shifted_blueprint(codes)
    assert torch.equal(rolled[0, 2, 2], codes[0, 0, 0]) and torch.equal(rolled[1, 0, 0], codes[1, 2, 2])
    pipe = tiny_pipeline(text_tok, bits=6, fast=False)
    scene = Scene(objects=[ObjectSpec(shape="circle", color="red", motion="right")])
    args = SimpleNamespace(frames=9, size=32)
    block, same, other = probe.scored_against(pipe, scene, "a red circle moving right", args, 8.0, lambda b: b.clone())
    assert block.shape == (3, 4, 4) and same.shape == (48,) and bool(torch.isfinite(same).all())
    assert torch.allclose(same, other)  # the blueprint left as it is scores the same
    _, _, shifted = probe.scored_against(pipe, scene, "a red circle moving right", args, 8.0, probe.shifted_blueprint)
    assert float((same - shifted).abs().max()) > 0  # the tiny random model reads the blueprint a little
