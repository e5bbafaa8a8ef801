"""Speculative Jacobi decoding with the min(1, p/q) test (jacobi.sjd_decode) keeps the sampler's distribution.

The main check runs the decoder on a toy backend whose next-token distributions are a fixed table
(peaked, depending on the last two tokens, the position and the CFG row), so the exact law of a
whole sequence is known by enumeration; SJD samples must fit it (chi-square), and the same check
must reject a decoder that keeps every draft (so it cannot pass trivially).
"""

import itertools

import pytest
import torch

from vidgpt.generate import jacobi
from vidgpt.generate.jacobi import jacobi_decode
from vidgpt.generate.sampling import PositionalNoise, SamplingConfig, apply_cfg, filter_logits, make_generator
from vidgpt.generate.tiny import tiny_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")

V = 8  # toy vocabulary: 0 = start, 1 = marker (forced), 2..5 = the "visual" group, 6, 7 unused
GROUP = (2, 6)
PLAN = [(0, 1), GROUP, GROUP, (1, 2), GROUP, GROUP]  # 4 free positions: 256 sequences
COND, UNCOND = 7, 6  # the prompt's first id says which table a row reads


class ToyBackend:
    """Next-token logits from a table indexed by (row kind, generated position, last two tokens)."""

    device = torch.device("cpu")
    supports_step_many = True

    def __init__(self, seed: int = 0, spread: float = 2.5):
        g = torch.Generator().manual_seed(seed)
        self.table = torch.randn(2, len(PLAN) + 1, V, V, V, generator=g) * spread

    def prefill(self, ids, mask, max_len=None):
        R, L = ids.shape
        self.kind = (ids[:, 0] == UNCOND).long()
        self.L0 = L
        self.seq = torch.zeros(R, L + (max_len or 64) + 8, dtype=torch.long)
        self.seq[:, :L] = ids
        self._pos = L
        return self._hidden(L - 1)

    def _hidden(self, slot: int) -> torch.Tensor:
        """Logits [R, V] after the token at `slot` (for generated position slot + 1 - L0)."""
        g = slot + 1 - self.L0
        return self.table[self.kind, g, self.seq[:, slot], self.seq[:, slot - 1]]

    def step_many(self, tokens):
        R, L = tokens.shape
        s = self._pos
        self.seq[:, s : s + L] = tokens
        self._pos = s + L
        return torch.stack([self._hidden(s + j) for j in range(L)], dim=1)

    def truncate(self, n):
        assert 0 < n <= self._pos
        self._pos = n

    @property
    def position(self):
        return self._pos

    def logits(self, h, lo, hi, positions=None):  # positions: the window positions h holds (for hint wrappers)
        return h[..., lo:hi].float()


class PlanConstraint:
    lockstep = True

    def __init__(self, n):
        self.n = n

    def remaining_plan(self):
        return list(PLAN)

    def advance(self, tok):
        pass

    def finished(self):
        return [True] * self.n

    def kinds(self):
        return ["block"] * self.n


def exact_law(backend: ToyBackend, sampling: SamplingConfig, use_cfg: bool) -> dict[tuple, float]:
    """P(sequence) by enumeration, from the same guidance / temperature / filtering the sampler applies."""
    free = [j for j, (lo, hi) in enumerate(PLAN) if hi - lo > 1]
    law = {}
    for values in itertools.product(range(*GROUP), repeat=len(free)):
        seq = [lo for lo, _ in PLAN]
        for j, v in zip(free, values):
            seq[j] = v
        prob = 1.0
        for j in free:
            prev1 = seq[j - 1] if j >= 1 else 0  # the prompt ends with 0, 0
            prev2 = seq[j - 2] if j >= 2 else 0
            c = backend.table[0, j, prev1, prev2][None]
            u = backend.table[1, j, prev1, prev2][None]
            logits = torch.cat([c, u])[:, slice(*GROUP)] if use_cfg else c[:, slice(*GROUP)]
            logits = apply_cfg(logits, sampling.cfg, 1) if use_cfg else logits.float()
            p = filter_logits(logits / sampling.temperature, sampling.top_k, sampling.top_p).softmax(-1).double()[0]
            prob *= float(p[seq[j] - GROUP[0]])
        law[tuple(seq)] = prob
    return law


def sample_sequences(backend, sampling, use_cfg, N, k, calls, mode="sjd"):
    counts: dict[tuple, int] = {}
    stats_sum = {"passes": 0, "tokens": 0, "accepted": 0}
    for seed in range(calls):
        # prompt [COND, 0, 0] / [UNCOND, 0, 0]: the kind, then the two tokens before the first position
        rows = [[COND, 0, 0]] * N + ([[UNCOND, 0, 0]] * N if use_cfg else [])
        ids = torch.tensor(rows)
        state = backend.prefill(ids, torch.ones_like(ids), max_len=len(PLAN) + k + 2)
        st = {}
        out = jacobi_decode(backend, state, PlanConstraint(N), sampling, PositionalNoise(make_generator(seed)),
                            N, use_cfg, k, stats=st, mode=mode)
        for key in stats_sum:
            stats_sum[key] += st[key]
        for row in out.tokens.tolist():
            counts[tuple(row)] = counts.get(tuple(row), 0) + 1
    return counts, stats_sum


def chi2_pvalue(counts: dict, law: dict, min_expected: float = 5.0) -> float:
    """Pearson's chi-square of the counts against the law (cells with small expectation pooled)."""
    n = sum(counts.values())
    assert set(counts) <= {s for s, p in law.items() if p > 0}, "a sequence of probability 0 was drawn"
    obs, exp, pool_o, pool_e = [], [], 0.0, 0.0
    for s, p in sorted(law.items(), key=lambda kv: -kv[1]):
        e = n * p
        if e >= min_expected:
            obs.append(counts.get(s, 0))
            exp.append(e)
        else:
            pool_o += counts.get(s, 0)
            pool_e += e
    if pool_e > 0:
        obs.append(pool_o)
        exp.append(pool_e)
    o, e = torch.tensor(obs, dtype=torch.float64), torch.tensor(exp, dtype=torch.float64)
    stat = float(((o - e) ** 2 / e).sum())
    df = len(obs) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), torch.tensor(stat / 2, dtype=torch.float64)))


CASES = [
    (SamplingConfig(temperature=1.0, cfg=2.0), True, 1, 4),
    (SamplingConfig(temperature=1.0, cfg=2.0), True, 3, 2),
    (SamplingConfig(temperature=0.8, top_k=3, cfg=1.0), False, 2, 8),
]


@pytest.mark.parametrize("sampling,use_cfg,N,k", CASES)
def test_sjd_draws_the_samplers_law_of_whole_sequences(sampling, use_cfg, N, k):
    backend = ToyBackend()
    law = exact_law(backend, sampling, use_cfg)
    counts, st = sample_sequences(backend, sampling, use_cfg, N, k, calls=4000 // N)
    assert chi2_pvalue(counts, law) > 1e-3
    assert st["accepted"] > 0 and st["passes"] < st["tokens"]  # drafts were kept, so the test saw kept drafts


def test_the_law_check_rejects_a_decoder_that_keeps_every_draft(monkeypatch):
    sampling, use_cfg, N, k = CASES[0]
    backend = ToyBackend()
    law = exact_law(backend, sampling, use_cfg)
    monkeypatch.setattr(jacobi, "sjd_accept", lambda p, q, d, u: torch.ones(d.shape[0], dtype=torch.bool))
    counts, _ = sample_sequences(backend, sampling, use_cfg, N, k, calls=3000)
    assert chi2_pvalue(counts, law) < 1e-6


def test_the_law_check_rejects_a_rejection_drawn_from_p_instead_of_the_residual(monkeypatch):
    """The classic slip: on rejection draw from p, not from max(0, p - q); the law check must see it."""
    sampling, use_cfg, N, k = CASES[0]
    backend = ToyBackend()
    law = exact_law(backend, sampling, use_cfg)
    monkeypatch.setattr(jacobi, "sjd_residual", lambda p, q, d, u: jacobi._invert(p, u))
    counts, _ = sample_sequences(backend, sampling, use_cfg, N, k, calls=4000)
    assert chi2_pvalue(counts, law) < 1e-6


def test_exact_mode_on_the_toy_backend_gives_the_one_token_tokens():
    """The same harness through the exact variant: k drafts or none, the same tokens for a seed."""
    sampling, use_cfg, N, _ = CASES[1]
    backend = ToyBackend()
    ref, _ = sample_sequences(backend, sampling, use_cfg, N, 1, calls=40, mode="exact")
    for k in (2, 5):
        got, _ = sample_sequences(backend, sampling, use_cfg, N, k, calls=40, mode="exact")
        assert got == ref


# --- through the pipeline, on a tiny random model ------------------------------------------------


def _sjd(text_tok, bits, k):
    """A tiny pipeline in SJD mode through its public decode_options (what `--speculative-mode sjd` passes)."""
    return tiny_pipeline(text_tok, bits=bits, decode_options={"speculative": k, "speculative_mode": "sjd"})


def test_generate_cli_passes_the_speculative_mode(monkeypatch):
    import argparse

    from vidgpt.commands import generate as cmd
    from vidgpt.generate import pipeline

    seen = {}

    class Stop(Exception):
        pass

    def fake(cls, d, device=None, fast=True, decode_options=None, light=False):
        seen.update(decode_options)
        raise Stop

    monkeypatch.setattr(pipeline, "resolve_model_dir", lambda m: m)
    monkeypatch.setattr(pipeline.VidGPT, "from_pretrained", classmethod(fake))
    p = argparse.ArgumentParser()
    cmd._model_args(p)
    for argv, mode in ((["--speculative", "3", "--speculative-mode", "sjd"], "sjd"), (["--speculative", "3"], "exact")):
        with pytest.raises(Stop):
            cmd._load(p.parse_args(["--model", "m", *argv]))
        assert seen == {"speculative": 3, "speculative_mode": mode, "dtype": "auto", "cfg_fine": False}  # auto: bf16 weights where native
    for argv, want in (([], {"speculative": cmd.AUTO_SPECULATIVE, "speculative_mode": "exact",
                             "speculative_give_up": cmd.AUTO_GIVE_UP}),  # the default: drafts while they pay
                       (["--speculative-mode", "sjd"], {"speculative": cmd.AUTO_SPECULATIVE, "speculative_mode": "sjd",
                                                        "speculative_give_up": 0.0}),
                       (["--speculative", "0"], {"speculative": 0, "speculative_mode": "exact"})):
        seen.clear()
        with pytest.raises(Stop):
            cmd._load(p.parse_args(["--model", "m", *argv]))
        assert seen == {**want, "dtype": "auto", "cfg_fine": False}
    with pytest.raises(SystemExit):
        p.parse_args(["--speculative-mode", "fast"])


def test_sjd_in_the_pipeline_is_seeded_and_greedy_is_exact(text_tok):
    pipe = _sjd(text_tok, bits=6, k=4)
    kw = dict(frames=5, height=32, width=32, decode=False)
    a = pipe.generate("a red ball", seed=3, cfg=2.0, **kw)
    assert pipe.last_stats["mode"] == "sjd"
    assert pipe.last_stats["tokens"] == len(a.token_ids[0]) - len(pipe.tail_ids)
    b = pipe.generate("a red ball", seed=3, cfg=2.0, **kw)
    assert a.token_ids == b.token_ids  # same seed, same tokens
    assert pipe.generate("a red ball", seed=4, cfg=2.0, **kw).token_ids != a.token_ids
    plain = tiny_pipeline(text_tok, bits=6, fast=False)
    g = pipe.generate("a red ball", temperature=0.0, cfg=3.0, **kw)
    assert pipe.last_stats["mode"] == "exact"  # greedy: both tests agree, the exact path runs
    assert g.token_ids == plain.generate("a red ball", temperature=0.0, cfg=3.0, **kw).token_ids


def test_sjd_in_the_pipeline_matches_the_one_token_samplers_marginals(text_tok):
    """Tiny random model, a 1x2x2 fine grid + 1x1x1 blueprint: per-position histograms of SJD and of the
    one-token loop over 600 samples each agree (two-sample chi-square), and a keep-every-draft decoder does not."""
    one = tiny_pipeline(text_tok, bits=3)
    spec = _sjd(text_tok, bits=3, k=3)
    kw = dict(frames=1, height=16, width=16, decode=False, cfg=2.0, num=30)

    def hist(pipe, seeds):
        rows = []
        for s in seeds:
            rows += pipe.generate("a red ball", seed=s, **kw).token_ids
        return torch.tensor(rows)

    a, b = hist(one, range(20)), hist(spec, range(100, 120))
    assert spec.last_stats["accepted"] > 0
    varying = [j for j in range(a.shape[1]) if len(set(a[:, j].tolist())) > 1]
    assert len(varying) >= 4

    def min_p(x, y):
        ps = []
        for j in varying:
            vals = sorted(set(x[:, j].tolist()) | set(y[:, j].tolist()))
            o = torch.tensor([[(x[:, j] == v).sum().item(), (y[:, j] == v).sum().item()] for v in vals], dtype=torch.float64)
            e = o.sum(1, keepdim=True) * o.sum(0, keepdim=True) / o.sum()
            keep = e.min(1).values >= 5
            o = torch.cat([o[keep], o[~keep].sum(0, keepdim=True)]) if (~keep).any() else o
            e = o.sum(1, keepdim=True) * o.sum(0, keepdim=True) / o.sum()
            stat = float(((o - e) ** 2 / e.clamp(min=1e-12)).sum())
            df = o.shape[0] - 1
            ps.append(float(torch.special.gammaincc(torch.tensor(df / 2.0, dtype=torch.float64),
                                                    torch.tensor(stat / 2, dtype=torch.float64))))
        return min(ps) * len(ps)  # Bonferroni

    assert min_p(a, b) > 1e-3
    old = jacobi.sjd_accept
    try:
        jacobi.sjd_accept = lambda p, q, d, u: torch.ones(d.shape[0], dtype=torch.bool)
        bad = hist(spec, range(100, 120))
    finally:
        jacobi.sjd_accept = old
    assert min_p(a, bad) < 1e-6
