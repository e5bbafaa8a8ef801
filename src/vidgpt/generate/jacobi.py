"""Speculative Jacobi decoding of the fixed-shape part of a turn: several tokens per forward pass, same tokens.

Decoding on the CPU is bound by reading the weights, and one pass over W drafted positions reads
them once (fast_decode packs them for a few rows), so accepted drafts are nearly free tokens. Each
iteration feeds the last accepted token and k drafted tokens in one `backend.step_many` call and
draws, at every fed position, the token the model would draw there (with that position's own
uniform, sampling.PositionalNoise). The draw after the accepted token is always right; a draw after
draft j is right when drafts 1..j equal the draws before them. So the accepted tokens are exactly
those of the one-token-a-step loop (greedy and seeded sampling alike: same seed, same tokens, up to
float rounding of the logits); the drafts only decide how many passes it takes. The draws past the
first mismatch become the next drafts (Jacobi iteration); forced positions (markers, header) are
drafted with their one legal id, so they are always accepted.

This is the lossless ("exact") variant: a draft is accepted when the model's own draw agrees with it
(the draft and the check invert their CDFs at the same uniform). `sjd_decode` is the other one, the
min(1, p/q) test of speculative Jacobi decoding (Teng et al. 2024): every token is still an exact
draw from the sampler's distribution, and a draft is kept with the largest probability any test
can give (1 - TV(p, q)), but the tokens are not the one-token loop's for the same seed. It is
opt-in: `mode="sjd"`, `decode_options={"speculative_mode": "sjd"}` on a pipeline, or
`vidgpt generate --speculative K --speculative-mode sjd`. Greedy decoding always takes the exact path
(the two tests agree there). On a random or untrained model almost nothing is accepted in
sampling mode; acceptance rates mean something only on a trained model (docs/DECODING.md).
"""

from __future__ import annotations

import torch

from ..errors import GenerationError
from .sampling import apply_cfg, filter_logits, sample_with_noise


class _NoiseCache:
    """Noise per position, kept while the position can still be re-drawn."""

    def __init__(self, noise):
        self.noise = noise
        self.store: dict[int, torch.Tensor] = {}

    def __call__(self, index: int, n: int) -> torch.Tensor | None:
        if self.noise is None:
            return None
        t = self.store.get(index)
        if t is None or t.shape[0] != n:
            t = self.store[index] = self.noise(index, n)
        return t

    def forget_before(self, index: int) -> None:
        for i in [i for i in self.store if i < index]:
            del self.store[i]


def _draw(backend, h, plan, first, N, use_cfg, sampling, noise, device) -> torch.Tensor:
    """Tokens [N, L] for positions first .. first+L-1 from hidden states h [R, L, D]."""
    L = h.shape[1]
    out = torch.empty(N, L, dtype=torch.long, device=device)
    by_range: dict[tuple[int, int], list[int]] = {}
    for j in range(L):
        by_range.setdefault(plan[first + j], []).append(j)
    for (lo, hi), js in by_range.items():
        if hi - lo == 1:
            out[:, js] = lo
            continue
        logits = backend.logits(h[:, js], lo, hi, js)  # [R, len(js), V]
        logits = apply_cfg(logits, sampling.cfg, N) if use_cfg else logits[:N].float()
        V = hi - lo
        u = None
        if noise.noise is not None:
            u = torch.stack([noise(first + j, N) for j in js], dim=1).reshape(N * len(js))
        tok = sample_with_noise(logits.reshape(N * len(js), V), sampling, u).view(N, len(js))
        out[:, js] = tok + lo
    return out


# With `give_up_below`, the window is judged after this many passes: drafts that are rarely right make every pass
# dearer than a one-token step (a pass over 5 positions costs ~1.4 one-token steps on the CPU, docs/DECODING.md).
PROBE_PASSES = 32


@torch.inference_mode()
def jacobi_decode(backend, state, constraint, sampling, noise, N: int, use_cfg: bool, k: int,
                  progress=None, max_steps: int | None = None, stats: dict | None = None, mode: str | None = None,
                  give_up_below: float = 0.0, cfg_until: int | None = None):
    """Decode the rest of a lockstep constraint from the prefill `state` with windows of k drafts.

    mode: "exact" (the one-token loop's tokens; the default) or "sjd" (the min(1, p/q) test,
    sjd_decode); None reads `backend.speculative_mode` (default "exact"). Greedy is always exact.
    give_up_below: after PROBE_PASSES passes, if fewer tokens than this came per pass (e.g. an untrained model,
    whose drafts are never right), go on one token a pass (the same tokens; `stats["gave_up_at"]` = the pass).
    cfg_until: with CFG, guide the positions before this index of the remaining plan only; from there the
    unconditional rows are dropped (`backend.keep_rows`) and the rest is drawn from the conditional rows alone
    (decoding.constrained_decode). No window crosses that index.
    """
    from .decoding import DecodeOutput, _choose, still_guided

    mode = mode or getattr(backend, "speculative_mode", None) or "exact"
    if mode not in MODES:
        raise GenerationError(f"speculative mode {mode!r}: expected one of {MODES}")
    if mode == "sjd" and noise is not None:
        return sjd_decode(backend, state, constraint, sampling, noise, N, use_cfg, k,
                          progress=progress, max_steps=max_steps, stats=stats, cfg_until=cfg_until)

    plan = constraint.remaining_plan()
    total = len(plan) if max_steps is None else min(len(plan), max_steps)
    device = backend.device
    state_rows = state.shape[0]  # N conditional rows and, with guidance, whole groups of N negative rows
    cache = _NoiseCache(noise)
    first = _choose(backend, state, *plan[0], N, use_cfg, sampling, cache, 0, None, device)
    out = [first.view(N, 1)]
    done = 1
    constraint.advance(first)
    if progress is not None:
        progress.update(1)
    tok = first
    drafts = torch.empty(N, 0, dtype=torch.long, device=device)
    passes, accepted, gave_up_at = 0, 0, None
    while done < total:
        if give_up_below > 0 and gave_up_at is None and passes == PROBE_PASSES and \
                (done - 1) / passes < give_up_below:
            gave_up_at, done_at_give_up, k = passes, done, 0
        use_cfg = still_guided(backend, N, use_cfg, cfg_until, done)
        w = min(k, total - done - 1)
        if use_cfg and cfg_until is not None:
            w = min(w, cfg_until - done - 1)  # the guided part ends with a pass of its own
        # drafts for positions done .. done+w-1: last draws past the mismatch, then repeats; forced ids as they are
        d = drafts[:, :w].clone()
        if d.shape[1] < w:
            fill = (d[:, -1:] if d.shape[1] else tok.view(N, 1)).expand(N, w - d.shape[1])
            d = torch.cat([d, fill], dim=1)
        for j in range(w):
            lo, hi = plan[done + j]
            if hi - lo == 1:
                d[:, j] = lo
        feed = torch.cat([tok.view(N, 1), d], dim=1)  # [N, w + 1]
        p0 = backend.position
        h = backend.step_many(feed.repeat(state_rows // N, 1) if use_cfg else feed)
        passes += 1
        y = _draw(backend, h, plan, done, N, use_cfg, sampling, cache, device)  # [N, w + 1]
        match = (d == y[:, :w]).all(0)  # draft j was drawn there too
        a = 1
        while a <= w and bool(match[a - 1]):
            a += 1
        if a < w + 1:
            backend.truncate(p0 + a)  # keep tok and the a-1 drafts that were right
        out.append(y[:, :a])
        accepted += a - 1
        for j in range(a):
            constraint.advance(y[:, j])
        done += a
        if progress is not None:
            progress.update(a)
        tok = y[:, a - 1]
        drafts = y[:, a:]
        cache.forget_before(done)
    tokens = torch.cat(out, dim=1).cpu()
    if stats is not None:
        stats.update(passes=passes + 1, tokens=done, accepted=accepted, mode="exact")
        if gave_up_at is not None:
            stats.update(gave_up_at=gave_up_at, tokens_at_give_up=done_at_give_up)
    return DecodeOutput(tokens, constraint.finished(), constraint.kinds(), done)


# --- the distribution-preserving variant (SJD acceptance test) -----------------------------------

MODES = ("exact", "sjd")


def _probs(backend, h, plan, first, N, use_cfg, sampling) -> list:
    """The sampler's distributions at positions first .. first+L-1 from hidden states h [R, L, D].

    One entry per position: a float64 [N, hi - lo] tensor (softmax of the guided, tempered, filtered
    logits: what the one-token loop draws from), or None where the position is forced (one legal id).
    """
    L = h.shape[1]
    out: list = [None] * L
    by_range: dict[tuple[int, int], list[int]] = {}
    for j in range(L):
        by_range.setdefault(plan[first + j], []).append(j)
    for (lo, hi), js in by_range.items():
        if hi - lo == 1:
            continue
        logits = backend.logits(h[:, js], lo, hi, js)  # [R, len(js), V]
        logits = apply_cfg(logits, sampling.cfg, N) if use_cfg else logits[:N].float()
        V = hi - lo
        flat = filter_logits(logits.reshape(N * len(js), V) / sampling.temperature, sampling.top_k, sampling.top_p)
        p = flat.softmax(-1).double().view(N, len(js), V)
        for i, j in enumerate(js):
            out[j] = p[:, i]
    return out


def _invert(p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Indices [N] drawn from the rows of p [N, V] (need not be normalised) by inverting the CDF at u [N]."""
    cdf = p.cumsum(-1)
    x = (u.to(cdf.dtype).view(-1, 1) * cdf[:, -1:]).contiguous()
    return torch.searchsorted(cdf, x, right=True).view(-1).clamp_(max=p.shape[-1] - 1)


def sjd_accept(p: torch.Tensor, q: torch.Tensor | None, d: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Which rows keep their draft: d [N] (indices into the range) drawn from q [N, V] (None: d was
    set, not drawn -- a point mass), checked against the target p [N, V] with uniforms u [N]:
    accept with probability min(1, p(d) / q(d))."""
    pd = p.gather(1, d.view(-1, 1)).view(-1)
    qd = torch.ones_like(pd) if q is None else q.gather(1, d.view(-1, 1)).view(-1)
    return u.to(pd.dtype) * qd < pd


def sjd_residual(p: torch.Tensor, q: torch.Tensor | None, d: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The token [N] for rows whose draft was rejected: a draw from max(0, p - q), renormalised
    (a point-mass q: p without the draft). Together with sjd_accept the token is an exact draw from p."""
    if q is None:
        r = p.scatter(1, d.view(-1, 1), 0.0)
    else:
        r = (p - q).clamp_(min=0)
    empty = r.sum(-1) <= 0  # p == q up to rounding: a rejection had probability ~0; draw from p
    if bool(empty.any()):
        r[empty] = p[empty]
    return _invert(r, u)


class _Uniforms:
    """The SJD path's random numbers: a stream seeded from the decode's seed (PositionalNoise.base),
    so the same seed gives the same tokens (but not the one-token loop's: each draw and test takes
    its own numbers, in the order they are needed)."""

    def __init__(self, noise, device):
        self.gen = torch.Generator(device="cpu")
        self.gen.manual_seed(int(noise.stream_seed))
        self.device = device

    def __call__(self, n: int) -> torch.Tensor:
        return torch.rand(int(n), generator=self.gen, dtype=torch.float64).to(self.device)


@torch.inference_mode()
def sjd_decode(backend, state, constraint, sampling, noise, N: int, use_cfg: bool, k: int,
               progress=None, max_steps: int | None = None, stats: dict | None = None, cfg_until: int | None = None):
    """Speculative Jacobi decoding with the min(1, p/q) acceptance test (Teng et al. 2024).

    Every token is an exact draw from the distribution the one-token loop draws from (given the
    tokens before it), but not the same draw: a seed gives its own tokens, which also depend on k.
    A draft for a position is drawn from the model's distribution there at the pass before (its q,
    kept); the pass with the accepted prefix gives p; the draft is kept with probability
    min(1, p/q), else the token is drawn from max(0, p - q) and the rest of the window is redrafted
    from this pass's distributions. Drafts that were set rather than drawn (repeats of the last
    token past the window's known part) count as point masses (accepted with probability p(d)).
    The rows of a batch move in lockstep: a pass keeps as many positions as the row that kept the
    fewest (a row's later accepted drafts are drawn again; that changes which draw, not its law).
    Needs sampling (temperature > 0; greedy decoding has nothing to gain and takes the exact path).
    """
    from .decoding import DecodeOutput, still_guided

    plan = constraint.remaining_plan()
    total = len(plan) if max_steps is None else min(len(plan), max_steps)
    device = backend.device
    state_rows = state.shape[0]  # N conditional rows and, with guidance, whole groups of N negative rows
    rand = _Uniforms(noise, device)

    def fresh(P, lo):  # a new draw at one position: (token ids [N], its q or None)
        if P is None:
            return torch.full((N,), lo, dtype=torch.long, device=device), None
        return _invert(P, rand(N)) + lo, P

    P0 = _probs(backend, state.view(state.shape[0], 1, -1), plan, 0, N, use_cfg, sampling)[0]
    tok, _ = fresh(P0, plan[0][0])
    out = [tok.view(N, 1)]
    done = 1
    constraint.advance(tok)
    if progress is not None:
        progress.update(1)
    drafts: list[tuple[torch.Tensor, torch.Tensor | None]] = []  # (ids [N], q) for positions done, done+1, ...
    passes, accepted = 0, 0
    while done < total:
        use_cfg = still_guided(backend, N, use_cfg, cfg_until, done)
        w = min(k, total - done - 1)
        if use_cfg and cfg_until is not None:
            w = min(w, cfg_until - done - 1)  # as in jacobi_decode
        window = drafts[:w]
        while len(window) < w:  # past what was drafted: repeat the last token, a point mass
            window.append(((window[-1][0] if window else tok).clone(), None))
        for j in range(w):
            lo, hi = plan[done + j]
            if hi - lo == 1:
                window[j] = (torch.full((N,), lo, dtype=torch.long, device=device), None)
            elif window[j][1] is None:  # a repeat from another range (after a marker): the range's first id
                t = window[j][0]
                window[j] = (torch.where((t >= lo) & (t < hi), t, torch.full_like(t, lo)), None)
        d = torch.stack([t for t, _ in window], dim=1) if w else tok.new_empty(N, 0)
        feed = torch.cat([tok.view(N, 1), d], dim=1)  # [N, w + 1]
        p0 = backend.position
        h = backend.step_many(feed.repeat(state_rows // N, 1) if use_cfg else feed)
        passes += 1
        P = _probs(backend, h, plan, done, N, use_cfg, sampling)  # w + 1 entries
        # test the drafts in order; a row stops at its first rejection
        alive = torch.ones(N, dtype=torch.bool, device=device)
        reject_at = torch.full((N,), w, dtype=torch.long, device=device)
        for j in range(w):
            if P[j] is None:  # forced: the draft is the one legal id
                continue
            lo = plan[done + j][0]
            ok = sjd_accept(P[j], window[j][1], d[:, j] - lo, rand(N))
            reject_at[alive & ~ok] = j
            alive &= ok
            if not bool(alive.any()):
                break
        m = int(reject_at.min())  # positions every row kept
        lo = plan[done + m][0]
        if m == w:  # all kept: the pass's last position is a free draw from p
            last, _ = fresh(P[w], lo)
        else:
            last = d[:, m].clone()
            rej = reject_at == m
            last[rej] = sjd_residual(P[m][rej], None if window[m][1] is None else window[m][1][rej],
                                     d[rej, m] - lo, rand(int(rej.sum()))) + lo
        a = m + 1
        if a < w + 1:
            backend.truncate(p0 + a)  # keep tok and the m kept drafts
        y = torch.cat([d[:, :m], last.view(N, 1)], dim=1)
        out.append(y)
        accepted += m
        for j in range(a):
            constraint.advance(y[:, j])
        done += a
        if progress is not None:
            progress.update(a)
        tok = last
        # the next drafts: fresh draws from this pass's distributions at the positions past the kept ones
        drafts = [fresh(P[j], plan[done - a + j][0]) for j in range(a, w + 1) if done - a + j < total]
    tokens = torch.cat(out, dim=1).cpu()
    if stats is not None:
        stats.update(passes=passes + 1, tokens=done, accepted=accepted, mode="sjd")
    return DecodeOutput(tokens, constraint.finished(), constraint.kinds(), done)
