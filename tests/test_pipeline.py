"""VidGPT.generate on a tiny random model: shapes, previews, seeds, long videos, bad input."""

import numpy as np
import pytest
import torch

from vidgpt.errors import GenerationError
from vidgpt.generate.tiny import tiny_pipeline


pytestmark = pytest.mark.usefixtures("one_thread")


def test_video_image_and_nonsquare(pipe, tmp_path):
    out = pipe.generate("a red circle", frames=9, height=32, width=64, num=2, seed=0)
    assert out.videos.shape == (2, 9, 32, 64, 3) and out.videos.dtype == np.uint8
    assert out.tensors.shape == (2, 3, 9, 32, 64)
    assert [b.shape for b in out.blocks] == [(3, 4, 8)] * 2
    assert out.blocks[0].blueprint.shape == (3, 2, 4)
    assert out.codes[0].shape == (3, 4, 8)
    img = pipe.generate("a star", frames=1, height=16, width=48, seed=1)
    assert img.videos.shape == (1, 1, 16, 48, 3)
    paths = out.save(tmp_path / "clip.mp4", grid=True)
    assert [p.name for p in paths] == ["clip-0.mp4", "clip-0-grid.png", "clip-1.mp4", "clip-1-grid.png"]
    assert img.save(tmp_path / "img.mp4")[0].suffix == ".png"


def test_blueprint_preview_is_half_size_upsampled(pipe):
    out = pipe.generate("a square", frames=5, height=32, width=32, seed=0, blueprint_only=True)
    assert out.preview and out.blocks[0].fine is None and out.blocks[0].blueprint.shape == (2, 2, 2)
    assert out.videos.shape == (1, 5, 32, 32, 3)
    half = pipe.video_tokenizer.decode(out.blocks[0].blueprint[None])
    assert half.shape[-2:] == (16, 16)


def test_seeds_reproduce_and_differ(pipe):
    a = pipe.generate("x", frames=5, height=16, width=16, seed=3)
    b = pipe.generate("x", frames=5, height=16, width=16, seed=3)
    c = pipe.generate("x", frames=5, height=16, width=16, seed=4)
    assert a.token_ids == b.token_ids and np.array_equal(a.videos, b.videos)
    assert a.token_ids != c.token_ids


def test_long_video_continues_from_last_latent_frames(pipe):
    out = pipe.generate("a ball", frames=13, height=16, width=16, clip_frames=5, context_frames=1, seed=0)
    clips = out.extra["clips"][0]
    assert len(clips) == 3 and out.videos.shape == (1, 13, 16, 16, 3)
    first = pipe.decode_blocks(clips[:1])[0]
    assert torch.allclose(out.tensors[0, :, :5], first)


def test_prompt_expansion_follows_metadata(pipe, monkeypatch):
    import vidgpt.generate.prompt_expansion as pe

    calls = []
    monkeypatch.setattr(pe, "expand_prompt", lambda p, text, seed=None: calls.append(text) or text + ", in detail")
    assert pipe.generate("a dot", frames=1, height=16, width=16, seed=0, decode=False).prompt == "a dot"
    pipe.prompt_expansion = True
    try:
        out = pipe.generate("a dot", frames=1, height=16, width=16, seed=0, decode=False)
        assert out.prompt == "a dot, in detail" and calls == ["a dot"]
        assert pipe.generate("a dot", frames=1, height=16, width=16, seed=0, expand=False, decode=False).prompt == "a dot"
    finally:
        pipe.prompt_expansion = False
    assert "in detail" in pipe.layout._text(out.prompt_ids)


def test_clean_caption():
    from vidgpt.generate.prompt_expansion import clean_caption

    assert clean_caption('  "A red circle moves right."\n\nmore', "p") == "A red circle moves right."
    assert clean_caption("", "p") == "p"


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"prompt": "  "}, "empty"),
        ({"frames": 6}, "1\\+4n"),
        ({"height": 40}, "multiple of 16"),
        ({"width": 12}, "multiple of 16"),
        ({"frames": 33}, "at most"),
        ({"height": 128}, "at most"),
        ({"num": 0}, "num"),
    ],
)
def test_bad_requests(pipe, kw, match):
    args = {"prompt": "x", "frames": 5, "height": 16, "width": 16, **kw}
    with pytest.raises(GenerationError, match=match):
        pipe.generate(args.pop("prompt"), **args)


def test_too_long_for_context(text_tok):
    small = tiny_pipeline(text_tok, bits=6, max_positions=200)
    with pytest.raises(GenerationError, match="positions"):
        small.generate("x", frames=9, height=64, width=64)


def test_follow_blueprint_guides_the_fine_codes_against_a_still_blueprint(text_tok, decode_calls):
    from vidgpt.generate import pipeline as pl

    plain = tiny_pipeline(text_tok, bits=6)
    guided = tiny_pipeline(text_tok, bits=6, decode_options={"follow_blueprint": 3.0})
    a = plain.generate("a red circle moving right", frames=9, height=32, width=32, seed=5, cfg=3.0)
    del decode_calls[:]
    b = guided.generate("a red circle moving right", frames=9, height=32, width=32, seed=5, cfg=3.0)
    seen = [(list(map(list, args[1])), kw.get("uncond_prompts"), args[3].cfg) for args, kw in decode_calls]
    # the blueprint pass draws with the same noise as the one-pass decode: the same blueprint
    assert torch.equal(a.blocks[0].blueprint, b.blocks[0].blueprint) and b.blocks[0].fine.shape == (3, 4, 4)
    assert [cfg for _, _, cfg in seen] == [3.0, 3.0]
    (cond, neg, _) = seen[1]
    bp = b.blocks[0].blueprint
    v = guided.vocab
    head = cond[0][-(len(guided.layout.encode_block(pl.VisualBlock(b.blocks[0].shape, blueprint=bp)))):]
    assert head[-1] == v.fine_id and v.codes_to_ids(bp).flatten().tolist() == head[-1 - bp.numel():-1]
    still = pl.still_blueprint(bp)
    assert torch.equal(still[2], bp[0]) and torch.equal(still[0], bp[0])
    assert neg[0][:-1 - bp.numel()] == cond[0][:-1 - bp.numel()]  # same prompt and header ...
    assert neg[0][-1 - bp.numel():-1] == v.codes_to_ids(still).flatten().tolist()  # ... over the still blueprint
    # the ids returned are the whole block: prompt + them parses back to the blocks
    assert b.token_ids[0][: len(head)] == head
    with pytest.raises(GenerationError, match="follow_blueprint"):
        tiny_pipeline(text_tok, bits=6, decode_options={"follow_blueprint": -1})
    assert tiny_pipeline(text_tok, bits=6, decode_options={"follow_blueprint": 0}).follow_blueprint == 0.0
    assert tiny_pipeline(text_tok, bits=6, meta={"follow_blueprint": 2}).follow_blueprint == 2.0
    assert plain.follow_blueprint == 1.0  # off unless asked


def test_guidance_on_the_fine_section_is_the_models_choice_else_off(text_tok):
    """cfg_fine: the decode option, else the model's vidgpt.json "cfg_fine", else False (what `vidgpt generate`
    draws with), so the library, the eval and the web page draw as the CLI does."""
    assert tiny_pipeline(text_tok, bits=6).cfg_fine is False
    assert tiny_pipeline(text_tok, bits=6, meta={"cfg_fine": True}).cfg_fine is True
    assert tiny_pipeline(text_tok, bits=6, meta={"cfg_fine": True}, decode_options={"cfg_fine": False}).cfg_fine is False


def test_the_two_pass_decode_draws_what_the_one_pass_decode_draws(text_tok):
    """follow_blueprint's passes share one positional noise: at scale 1 they give the one-pass tokens exactly (so a
    run with the guidance on is paired, clip for clip, with one without it)."""
    from vidgpt.generate.sampling import SamplingConfig, make_generator

    pipe = tiny_pipeline(text_tok, bits=6, decode_options={"cfg_fine": False})
    ids = [pipe.layout.prompt_ids(pl_sample(p)) for p in ("a red circle moving right", "a blue star")]
    neg = [pipe.layout.prompt_ids(pl_sample(p)) for p in ("a red circle moving left", "")]
    shape = pipe.latent_shape(9, 32, 32)
    sampling = SamplingConfig(cfg=3.0)
    one, rows_one = pipe.sample_blocks(ids, neg, shape, pipe.sections(), sampling, make_generator(7))
    pipe.follow_blueprint = 1.0
    two, rows_two = pipe._sample_following_blueprint(ids, neg, shape, sampling, make_generator(7), False, "x")
    assert rows_one == rows_two and all(a == b for a, b in zip(one, two))


def pl_sample(prompt):
    from vidgpt.layout import Sample, Turn

    return Sample([Turn("user", [prompt])])


def test_follow_cells_moved_guides_only_under_the_blueprint_cells_that_changed(text_tok, decode_calls):
    from vidgpt.generate import pipeline as pl

    pipe = tiny_pipeline(text_tok, bits=6, decode_options={"follow_blueprint": 2.5, "follow_cells": "moved"})
    out = pipe.generate("a red circle moving right", frames=9, height=32, width=32, seed=2, num=2)
    seen = [kw.get("cfg_scales") for _, kw in decode_calls]
    scales = seen[1]
    assert seen[0] is None and scales.shape == (2, 3 * 4 * 4 + 1)  # the fine codes, then <|vision_end|>
    for i, b in enumerate(out.blocks):
        moved = b.blueprint != pl.still_blueprint(b.blueprint)  # [3, 2, 2]
        want = moved.repeat_interleave(2, 1).repeat_interleave(2, 2).reshape(-1)
        assert torch.equal(scales[i, :-1] == 2.5, want) and bool((scales[i][~torch.cat([want, torch.tensor([False])])] == 1).all())
        assert not moved[0].any()  # the first latent frame is the still blueprint's own
    with pytest.raises(GenerationError, match="follow_cells"):
        tiny_pipeline(text_tok, bits=6, decode_options={"follow_cells": "some"})
