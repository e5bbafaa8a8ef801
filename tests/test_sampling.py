"""CFG arithmetic, top-k / top-p filtering, seeded reproducibility."""

import pytest
import torch

from vidgpt.errors import GenerationError
from vidgpt.generate.constraints import StructureConstraint
from vidgpt.generate.decoding import constrained_decode
from vidgpt.generate.sampling import (SamplingConfig, apply_cfg, filter_logits, make_generator, negative_groups,
                                      sample)
from vidgpt.vocab import UnifiedVocab, VocabSpec


def test_cfg_combines_u_plus_s_times_c_minus_u():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 10, generator=g)
    out = apply_cfg(logits, 2.5, 3)
    c, u = logits[:3], logits[3:]
    assert torch.allclose(out, u + 2.5 * (c - u))
    assert torch.allclose(apply_cfg(logits, 1.0, 3), c)
    assert torch.allclose(apply_cfg(logits, 0.0, 3), u)


class FakeBackend:
    """Returns fixed conditional / unconditional logits whatever is fed."""

    device = torch.device("cpu")

    def __init__(self, cond, uncond):
        self.cond, self.uncond = cond, uncond

    def _state(self, rows):
        return torch.cat([self.cond.expand(rows // 2, -1), self.uncond.expand(rows // 2, -1)]) if rows % 2 == 0 else self.cond.expand(rows, -1)

    def prefill(self, ids, mask, max_len=None):
        self.rows = ids.shape[0]
        return self._state(self.rows)

    def step(self, tokens):
        assert tokens.shape[0] == self.rows
        return self._state(self.rows)

    def logits(self, state, lo, hi, positions=None):
        return state[:, lo:hi]


def test_decode_loop_applies_cfg_to_the_group_rows():
    vocab = UnifiedVocab(VocabSpec(2, 1, 2, 2), offset=10)
    V = vocab.end
    cond, uncond = torch.zeros(1, V), torch.zeros(1, V)
    lo, _ = vocab.group_range(0)
    # cond prefers code 1 a little; uncond dislikes code 2 a lot -> guidance picks code 2
    cond[0, lo + 1], cond[0, lo + 2] = 1.0, 0.5
    uncond[0, lo + 1], uncond[0, lo + 2] = 1.0, -3.0
    con = StructureConstraint(vocab, 1, shape=(1, 1, 1), sections=("fine",))
    out = constrained_decode(FakeBackend(cond, uncond), [[1, 2]], con, SamplingConfig(temperature=0, cfg=3.0),
                             uncond_prompts=[[3]], vocab_size=V)
    assert out.tokens[0, 5].item() == lo + 2
    con = StructureConstraint(vocab, 1, shape=(1, 1, 1), sections=("fine",))
    out = constrained_decode(FakeBackend(cond, uncond), [[1, 2]], con, SamplingConfig(temperature=0, cfg=1.0),
                             uncond_prompts=[[3]], vocab_size=V)
    assert out.tokens[0, 5].item() == lo + 1  # no guidance: the conditional argmax


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isfinite(filter_logits(logits, top_k=2)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.7)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.5)).tolist() == [[True, False, False, False]]
    g = make_generator(0)
    draws = {int(sample(logits, SamplingConfig(top_k=2), g)) for _ in range(50)}
    assert draws == {0, 1}


def test_seeds_reproduce_and_greedy_is_argmax():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(1))
    a = sample(logits, SamplingConfig(), make_generator(7))
    b = sample(logits, SamplingConfig(), make_generator(7))
    assert torch.equal(a, b)
    assert torch.equal(sample(logits, SamplingConfig(temperature=0)), logits.argmax(-1))


@pytest.mark.parametrize("kw", [{"temperature": -1}, {"top_k": 0}, {"top_p": 1.5}, {"cfg": -2}])
def test_bad_sampling_settings(kw):
    with pytest.raises(GenerationError):
        SamplingConfig(**kw)


def test_positional_draws_are_exact_and_keyed_by_position():
    from vidgpt.generate.sampling import PositionalNoise, sample_with_noise

    probs = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0])
    logits = probs.clamp_min(1e-30).log().expand(1, -1)
    noise = PositionalNoise(make_generator(3))
    draws = torch.cat([sample_with_noise(logits, SamplingConfig(), noise(i, 1)) for i in range(4000)])
    freq = torch.bincount(draws, minlength=5).float() / len(draws)
    assert torch.allclose(freq, probs, atol=0.03) and freq[4] == 0  # never a zero-probability id
    again = PositionalNoise(make_generator(3))
    assert torch.equal(noise(17, 2), again(17, 2)) and not torch.equal(noise(17, 2), noise(18, 2))
    top2 = {int(sample_with_noise(logits, SamplingConfig(top_k=2), noise(i, 1))) for i in range(200)}
    assert top2 == {0, 1}
    assert int(sample_with_noise(logits, SamplingConfig(temperature=0), noise(0, 1))) == 0


def test_cfg_with_several_negative_groups_guides_away_from_their_mean():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(8, 5, generator=g)  # 2 conditional rows, 3 groups of 2 negative rows
    c = logits[:2]
    u = (logits[2:4] + logits[4:6] + logits[6:8]) / 3
    assert torch.allclose(apply_cfg(logits, 3.0, 2), u + 3.0 * (c - u), atol=1e-6)
    with pytest.raises(GenerationError, match="whole groups"):
        apply_cfg(logits[:7], 3.0, 2)


def test_negative_groups_weigh_every_samples_negatives_equally():
    groups = negative_groups(["a", ["b", "c", "d"], ["e", "f"]])
    assert len(groups) == 6 and all(len(g) == 3 for g in groups)  # lcm(1, 3, 2) groups of one prompt a sample
    assert [g[0] for g in groups] == ["a"] * 6
    assert sorted(g[1] for g in groups) == ["b", "b", "c", "c", "d", "d"]
    assert sorted(g[2] for g in groups) == ["e", "e", "e", "f", "f", "f"]
    assert negative_groups(["x", "y"]) == [["x", "y"]]
    with pytest.raises(GenerationError, match="empty list"):
        negative_groups(["x", []])


class GroupBackend(FakeBackend):
    """Conditional row first, then one fixed negative row per group; checks every row is fed each step."""

    def __init__(self, cond, negatives):
        self.cond, self.negatives = cond, negatives

    def _state(self, rows):
        return torch.cat([self.cond, *self.negatives])[:rows]


def test_decode_loop_feeds_and_averages_every_negative_group():
    vocab = UnifiedVocab(VocabSpec(2, 1, 2, 2), offset=10)
    V = vocab.end
    lo, _ = vocab.group_range(0)
    cond = torch.zeros(1, V)
    cond[0, lo + 1], cond[0, lo + 2], cond[0, lo + 3] = 1.0, 0.9, 0.8
    # negative A likes code 1, negative B likes code 2: only their mean makes code 3 the guided choice
    neg_a, neg_b = torch.zeros(1, V), torch.zeros(1, V)
    neg_a[0, lo + 1] = 3.0
    neg_b[0, lo + 2] = 3.0
    backend = GroupBackend(cond, [neg_a, neg_b])
    con = StructureConstraint(vocab, 1, shape=(1, 1, 1), sections=("fine",))
    out = constrained_decode(backend, [[1, 2]], con, SamplingConfig(temperature=0, cfg=2.0),
                             uncond_prompts=[[3], [4]], vocab_size=V)
    assert backend.rows == 3 and out.tokens[0, 5].item() == lo + 3
    backend = GroupBackend(cond, [neg_a])  # one group: away from code 1 only -> code 2
    con = StructureConstraint(vocab, 1, shape=(1, 1, 1), sections=("fine",))
    out = constrained_decode(backend, [[1, 2]], con, SamplingConfig(temperature=0, cfg=2.0),
                             uncond_prompts=[[3]], vocab_size=V)
    assert out.tokens[0, 5].item() == lo + 2
    con = StructureConstraint(vocab, 2, shape=(1, 1, 1), sections=("fine",))
    with pytest.raises(GenerationError, match="multiple"):
        constrained_decode(backend, [[1], [2]], con, SamplingConfig(temperature=0, cfg=2.0),
                           uncond_prompts=[[3]], vocab_size=V)


def test_late_cfg_guides_from_the_given_index_on():
    from vidgpt.generate.constraints import blueprint_frame_index, block_plan

    vocab = UnifiedVocab(VocabSpec(2, 1, 4, 4), offset=10)
    V = vocab.end
    lo, _ = vocab.group_range(0)
    cond, uncond = torch.zeros(1, V), torch.zeros(1, V)
    cond[0, lo + 1], cond[0, lo + 2] = 1.0, 0.5
    uncond[0, lo + 1], uncond[0, lo + 2] = 1.0, -3.0  # guided above 1.0 -> code 2; unguided -> code 1
    shape = (2, 2, 2)
    late = blueprint_frame_index(vocab, shape, 1)
    plan = block_plan(vocab, shape, ("blueprint",))
    # the blueprint is 2x1x1: <|blueprint|>, frame 0's one code, then frame 1's code at `late`
    assert plan[late - 2][0] == vocab.blueprint_id
    assert plan[late - 1] == plan[late] and plan[late][1] - plan[late][0] == 4
    con = StructureConstraint(vocab, 1, shape=shape, sections=("blueprint",))
    out = constrained_decode(FakeBackend(cond, uncond), [[1, 2]], con,
                             SamplingConfig(temperature=0, cfg=1.0, late_cfg=3.0),
                             uncond_prompts=[[3]], vocab_size=V, late_from=late)
    codes = out.tokens[0].tolist()
    assert codes[late - 1] == lo + 1 and codes[late] == lo + 2  # unguided before, guided from late_from on
    with pytest.raises(GenerationError, match="late_cfg"):
        SamplingConfig(late_cfg=-1)


def test_per_row_guidance_scales_replace_the_sampling_scale():
    vocab = UnifiedVocab(VocabSpec(2, 1, 2, 2), offset=10)
    V = vocab.end
    lo, _ = vocab.group_range(0)
    cond, uncond = torch.zeros(1, V), torch.zeros(1, V)
    cond[0, lo + 1], cond[0, lo + 2] = 1.0, 0.5
    uncond[0, lo + 1], uncond[0, lo + 2] = 1.0, -3.0  # guided -> code 2; unguided -> code 1
    con = StructureConstraint(vocab, 2, shape=(1, 1, 1), sections=("fine",))
    scales = torch.ones(2, 7)
    scales[1, 5] = 3.0  # the second sample guided at its code, the first not
    out = constrained_decode(FakeBackend(cond, uncond), [[1, 2], [1, 2]], con, SamplingConfig(temperature=0, cfg=3.0),
                             uncond_prompts=[[3], [3]], vocab_size=V, cfg_scales=scales)
    assert out.tokens[:, 5].tolist() == [lo + 1, lo + 2]
