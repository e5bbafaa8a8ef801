"""Fit the copy read-out's scores on the training data's blueprints before the LM trains with it.

Inside the LM's loss the read-out's G and b learn slowly: their gradient is scaled by the mixture's weight lam (0.018
at start) and by how much the copy adds where the model is unsure, and pieces 37-38 moved the way margin (the score of
the cells a move comes from over those on the other side, tools/copy_scores.py) only to 0.07 nats in 40 steps. The
copy distribution on its own (softmax over the 25 cells of G . B m + b) is a small classifier that can be fitted
directly: for every blueprint position of frame t >= 1 of the given rows whose next id is among its copy cells and not
all of them (a plain region says nothing about the direction), maximise log sum over the cells holding the next id of
softmax(scores), full batch, Adam. On T2's toy clips (offline, 20k such positions, 300 steps) this takes the held-out
cells' copy NLL from 0.94 nats (b alone) to 0.64 and the way margin to 0.9-3.8 nats a direction. The fitted G and b are
the read-out's start; the LM's loss then trains them and lam with everything else.
"""

from __future__ import annotations

import torch

from ..copy_readout import COPY_BASIS_KEY, COPY_BIAS_KEY, COPY_KEY, COPY_OFFSETS
from ..parent_hint import copy_features


def copy_examples(hint, rows, vocab, lookup) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features [N, D], hit [N, C], valid [N, C]) of the informative copy positions of `rows` (token id lists): the
    caption features B m, which copy cells hold the next id, which hold any id."""
    C = len(COPY_OFFSETS)
    feats, hits, valids = [], [], []
    basis = getattr(hint, COPY_BASIS_KEY).detach()
    for row in rows:
        ids = torch.tensor([list(row)], dtype=torch.long)
        h = hint.ids_of(ids, vocab)[0]  # [L, slots]
        cands = h[:-1, -C:]
        at = torch.nonzero((cands >= 0).any(-1)).flatten()
        if at.numel() == 0:
            continue
        nxt = ids[0, at + 1]
        hit = cands[at] == nxt[:, None]
        valid = cands[at] >= 0
        keep = hit.any(-1) & ~((hit | ~valid).all(-1))  # the next id is there, and not in every cell
        if not bool(keep.any()):
            continue
        with torch.no_grad():
            feats.append(copy_features(h[at[keep]], lookup, basis, hint.centering()))
        hits.append(hit[keep])
        valids.append(valid[keep])
    if not feats:
        raise ValueError("no blueprint position of frame >= 1 whose next id is among some, not all, of its copy cells")
    return torch.cat(feats), torch.cat(hits), torch.cat(valids)


def copy_nll(feats, hit, valid, gate, bias) -> torch.Tensor:
    """Mean over positions of -log sum over the cells holding the next id of softmax(scores) (valid cells only)."""
    s = (feats @ gate.t() + bias).masked_fill(~valid, float("-inf"))
    lp = s.log_softmax(-1).masked_fill(~hit, float("-inf"))
    return -lp.logsumexp(-1).mean()


def fit_copy_readout(hint, rows, vocab, lookup, steps: int = 300, lr: float = 3e-2) -> dict:
    """Fit the module `hint`'s G and b (in place, from where they are) on `rows`; returns {"positions", "nll_start",
    "nll_end"} (the copy NLL before and after, nats)."""
    feats, hit, valid = copy_examples(hint, rows, vocab, lookup)
    G0, b0 = getattr(hint, COPY_KEY), getattr(hint, COPY_BIAS_KEY)
    G = G0.detach().float().clone().requires_grad_(True)
    b = b0.detach().float().clone().requires_grad_(True)
    opt = torch.optim.Adam([G, b], lr=lr)
    with torch.no_grad():
        start = float(copy_nll(feats, hit, valid, G, b))
    for _ in range(steps):
        opt.zero_grad()
        loss = copy_nll(feats, hit, valid, G, b)
        loss.backward()
        opt.step()
    with torch.no_grad():
        end = float(copy_nll(feats, hit, valid, G, b))
        G0.copy_(G.to(G0.dtype))
        b0.copy_(b.to(b0.dtype))
    return {"positions": int(feats.shape[0]), "nll_start": start, "nll_end": end}

