"""The fine section's own temperature (decode option / vidgpt.json fine_temperature): the header and blueprint drawn
first, the fine codes after them at that temperature (VidGPT.sample_blocks)."""

import pytest
import torch

from vidgpt.errors import GenerationError
from vidgpt.generate.sampling import SamplingConfig, make_generator
from vidgpt.generate.tiny import tiny_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")


def spy_fine(pipe):
    """Record the sampling config of every fine pass."""
    seen = []
    real = pipe._fine_pass

    def spy(*a, **k):
        seen.append(a[6])
        return real(*a, **k)

    pipe._fine_pass = spy
    return seen


def test_two_passes_draw_what_one_pass_draws_when_greedy(text_tok):
    """Greedy everywhere: the blueprint pass and then the fine pass give the one-pass decode's ids."""
    one = tiny_pipeline(text_tok, bits=6, decode_options={"cfg_fine": False})
    two = tiny_pipeline(text_tok, bits=6, decode_options={"cfg_fine": False, "fine_temperature": 0.0})
    seen = spy_fine(two)
    kw = dict(frames=9, height=32, width=32, seed=1, temperature=0.0, cfg=3.0, decode=False)
    a = one.generate("a blue star", **kw)
    b = two.generate("a blue star", **kw)
    assert len(seen) == 1 and seen[0].temperature == 0.0 and seen[0].late_cfg is None
    assert a.token_ids == b.token_ids
    assert b.blocks[0].fine is not None


def test_the_fine_pass_draws_at_its_own_temperature(text_tok):
    pipe = tiny_pipeline(text_tok, bits=6, decode_options={"cfg_fine": False, "fine_temperature": 0.0})
    seen = spy_fine(pipe)
    shape = pipe.latent_shape(9, 32, 32)
    clips = [pipe.generate("a red circle", frames=9, height=32, width=32, seed=s, temperature=1.0, decode=False)
             for s in (2, 3)]
    assert [s.temperature for s in seen] == [0.0, 0.0]
    # the blueprints are drawn at temperature 1 (two seeds, two blueprints), the fine codes greedily after them;
    # a seed still gives its clip
    again = pipe.generate("a red circle", frames=9, height=32, width=32, seed=2, temperature=1.0, decode=False)
    assert again.token_ids == clips[0].token_ids
    assert not torch.equal(clips[0].blocks[0].blueprint, clips[1].blocks[0].blueprint)
    assert tuple(clips[0].blocks[0].fine.shape) == tuple(shape)


def test_fine_temperature_under_best_of(text_tok):
    from vidgpt.verifier import MotionVerifier

    pipe = tiny_pipeline(text_tok, bits=6, decode_options={"cfg_fine": False, "fine_temperature": 0.5,
                                                           "verifier": MotionVerifier(6, width=4), "best_of": 2})
    seen = spy_fine(pipe)
    pipe.generate("a red circle moving right", frames=9, height=32, width=32, seed=0, decode=False)
    assert [s.temperature for s in seen] == [0.5] and pipe.last_stats["best_of"] == 2


def test_no_fine_temperature_is_one_pass(text_tok):
    pipe = tiny_pipeline(text_tok, bits=6, decode_options={"cfg_fine": False})
    seen = spy_fine(pipe)
    pipe.generate("a red circle", frames=9, height=32, width=32, seed=0, decode=False)
    assert seen == [] and pipe.fine_temperature is None


@pytest.mark.parametrize("value", [-0.5, "0.5", True, float("nan"), float("inf")])
def test_bad_fine_temperature(text_tok, value):
    with pytest.raises(GenerationError, match="fine_temperature"):
        tiny_pipeline(text_tok, bits=6, decode_options={"fine_temperature": value})
