"""Structure-constrained decoding always yields parseable, decodable blocks (tiny random models)."""

import random

import pytest

from vidgpt.generate.constraints import ShapeLimits, StructureConstraint, block_plan
from vidgpt.generate.decoding import constrained_decode
from vidgpt.generate.sampling import SamplingConfig, make_generator
from vidgpt.generate.tiny import tiny_pipeline
from vidgpt.layout import Sample, Turn, block_length


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pipes(text_tok):
    return {
        (6, 1): tiny_pipeline(text_tok, bits=6, subtokens=1),
        (8, 2): tiny_pipeline(text_tok, bits=8, subtokens=2, chat=False),
    }


def test_block_plan_follows_the_layout(pipes):
    vocab = pipes[(8, 2)].vocab
    plan = block_plan(vocab, (2, 4, 6), ("blueprint", "fine"))
    assert len(plan) == block_length((2, 4, 6), 2)
    assert plan[0] == (vocab.vision_start_id, vocab.vision_start_id + 1)
    assert plan[4] == (vocab.blueprint_id, vocab.blueprint_id + 1)
    assert plan[5] == vocab.group_range(0) and plan[6] == vocab.group_range(1)
    assert plan[-1] == (vocab.vision_end_id, vocab.vision_end_id + 1)


@pytest.mark.parametrize("key", [(6, 1), (8, 2)])
def test_random_settings_always_parse_and_decode(pipes, key):
    pipe = pipes[key]
    rng = random.Random(key[0])
    for trial in range(4):
        frames = rng.choice([1, 5, 9])
        h, w = rng.choice([16, 32, 48]), rng.choice([16, 32, 64])
        bp_only = trial == 3
        out = pipe.generate(
            "a shape", frames=frames, height=h, width=w, num=2, seed=trial, blueprint_only=bp_only,
            temperature=rng.choice([0.0, 0.7, 1.5]), top_k=rng.choice([None, 3]), top_p=rng.choice([None, 0.9]),
            cfg=rng.choice([1.0, 3.0]),
        )
        t, lh, lw = 1 + (frames - 1) // 4, h // 8, w // 8
        for ids, block in zip(out.token_ids, out.blocks):
            sample = pipe.layout.parse(out.prompt_ids + ids)  # parses as a whole sequence
            assert sample.turns[-1].blocks() == [block]
            assert block.shape == (t, lh, lw)
            assert (block.fine is None) == bp_only and block.blueprint is not None
        assert out.videos.shape == (2, frames, h, w, 3)


def test_free_header_stays_within_limits_and_context(pipes):
    pipe = pipes[(6, 1)]
    prompt = pipe.layout.prompt_ids(Sample([Turn("user", ["anything"])]))
    budget = 60
    for seed in range(3):
        con = StructureConstraint(pipe.vocab, 3, shape=None, limits=ShapeLimits(4, 6, min_hw=2),
                                  max_new_tokens=budget, pad_id=pipe.pad_id)
        out = constrained_decode(pipe.backend, [prompt] * 3, con, SamplingConfig(temperature=1.5),
                                 make_generator(seed), pad_id=pipe.pad_id, vocab_size=pipe.vocab.end, max_steps=budget)
        for row in out.tokens.tolist():
            ids = [i for i in row if i != pipe.pad_id] + pipe.tail_ids
            block = pipe.layout.parse(prompt + ids).turns[-1].blocks()[0]
            t, h, w = block.shape
            assert t <= 4 and 2 <= h <= 6 and 2 <= w <= 6
            assert block_length(block.shape, 1) <= budget
            assert pipe.decode_blocks([block]).shape[2:] == (1 + 4 * (t - 1), 8 * h, 8 * w)


def test_fixed_axes_in_free_header(pipes):
    vocab = pipes[(6, 1)].vocab
    con = StructureConstraint(vocab, 1, shape=None, limits=ShapeLimits(8, 8, fixed=(None, 3, 5)))
    assert con.header_range([2]) == (vocab.h_offset + 2, vocab.h_offset + 3)
    assert con.header_range([2, 3]) == (vocab.w_offset + 4, vocab.w_offset + 5)


def test_text_or_block_turn_parses(pipes):
    pipe = pipes[(6, 1)]
    prompt = pipe.layout.prompt_ids(Sample([Turn("user", ["hello"])]))
    con = StructureConstraint(pipe.vocab, 4, shape=(1, 2, 2), allow_text=True, stop_id=pipe.stop_id,
                              max_text_tokens=6, pad_id=pipe.pad_id)
    # bias the first choice: make <|vision_start|> likely for some rows by a high temperature
    out = constrained_decode(pipe.backend, [prompt] * 4, con, SamplingConfig(temperature=1.0), make_generator(0),
                             pad_id=pipe.pad_id, vocab_size=pipe.vocab.end, max_steps=40)
    assert all(out.finished)
    for row, kind in zip(out.tokens.tolist(), out.kinds):
        if kind == "text":
            cut = row.index(pipe.stop_id) if pipe.stop_id in row else 6
            assert cut <= 6 and all(i < pipe.vocab.offset for i in row[:cut])
            ids = row[:cut] + pipe.tail_ids
        else:
            end = row.index(pipe.vocab.vision_end_id) + 1
            ids = row[:end] + pipe.tail_ids
        turn = pipe.layout.parse(prompt + ids).turns[-1]
        assert (len(turn.blocks()) == 1) == (kind == "block")


def test_block_too_long_for_context_raises(pipes):
    from vidgpt.errors import GenerationError

    with pytest.raises(GenerationError, match="positions"):
        StructureConstraint(pipes[(6, 1)].vocab, 1, shape=(8, 8, 8), max_new_tokens=100)
