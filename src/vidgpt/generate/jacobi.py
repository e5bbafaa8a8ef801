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

This is the lossless variant: a draft is accepted when the model's own draw agrees with it
(the draft and the check invert their CDFs at the same uniform), not with the min(1, p/q) test of speculative
Jacobi decoding (Teng et al. 2024), which accepts more often but gives different tokens than the
sequential sampler for the same seed. On a random or untrained model almost nothing is accepted in
sampling mode; acceptance rates mean something only on a trained model (docs/DECODING.md).
"""

from __future__ import annotations

import torch

from .sampling import apply_cfg, sample_with_noise


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
        logits = backend.logits(h[:, js], lo, hi)  # [R, len(js), V]
        logits = apply_cfg(logits, sampling.cfg, N) if use_cfg else logits[:N].float()
        V = hi - lo
        u = None
        if noise.noise is not None:
            u = torch.stack([noise(first + j, N) for j in js], dim=1).reshape(N * len(js))
        tok = sample_with_noise(logits.reshape(N * len(js), V), sampling, u).view(N, len(js))
        out[:, js] = tok + lo
    return out


@torch.inference_mode()
def jacobi_decode(backend, state, constraint, sampling, noise, N: int, use_cfg: bool, k: int,
                  progress=None, max_steps: int | None = None, stats: dict | None = None):
    """Decode the rest of a lockstep constraint from the prefill `state` with windows of k drafts."""
    from .decoding import DecodeOutput, _choose

    plan = constraint.remaining_plan()
    total = len(plan) if max_steps is None else min(len(plan), max_steps)
    device = backend.device
    cache = _NoiseCache(noise)
    first = _choose(backend, state, *plan[0], N, use_cfg, sampling, cache, 0, None, device)
    out = [first.view(N, 1)]
    done = 1
    constraint.advance(first)
    if progress is not None:
        progress.update(1)
    tok = first
    drafts = torch.empty(N, 0, dtype=torch.long, device=device)
    passes, accepted = 0, 0
    while done < total:
        w = min(k, total - done - 1)
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
        h = backend.step_many(torch.cat([feed, feed]) if use_cfg else feed)
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
        stats.update(passes=passes + 1, tokens=done, accepted=accepted)
    return DecodeOutput(tokens, constraint.finished(), constraint.kinds(), done)
