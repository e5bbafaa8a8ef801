"""The copy read-out: the caption picks which cell of the previous blueprint frame each blueprint code copies.

A move in the blueprint is a copy: for "moving right" the code that arrives at cell (t, y, x) is often the one that was
at (t - 1, y, x - 1) or (t - 1, y, x - 2) (a straight move crosses 1-2 blueprint cells a latent frame at 9x128x128;
on T2's held-out straight-move clips 39% of the blueprint cells that change between frames take a code from the two
cells the move comes from, 1% from the two on the other side). Measured on the CPU-trained models (pieces 35-36,
model/README.md), a caption hint puts the words' direction where the first move is drawn, readable through all 30
layers, and the blueprint still does not follow the motion word (+0.09-0.12 nats a changed cell): the layers do not
turn a direction they hold into "copy the cell to the left". The read-out does that step outside them, as a pointer
mixture on the distribution of every position that predicts a blueprint code of frame t >= 1:

    p(id) = (1 - lam) p_LM(id) + lam sum over o with id(o) = id of softmax_o(G[o] . f + b[o])

o = (dy, dx) in COPY_OFFSETS (the cells of frame t - 1 within COPY_RADIUS of the predicted one, the same sub-token;
off the grid: left out), f = B @ m the caption features: m the caption window's (centred) mean row as the caption
hint reads it, B [COPY_DIMS, H] its whitened principal directions over held-out documents (set once when the read-out
starts, `caption_basis`). Where every offset holds the same id (a plain region) the mixture gives it lam whatever the
caption says, so the scores only matter where the cells differ, at the moving object. G [len(COPY_OFFSETS),
COPY_DIMS] and b start at zero (copy uniformly), lam = sigmoid(a) with a at COPY_MIX_INIT (lam ~ 0.018: nearly the
model's own distribution). The first form (pieces 37a/37b: an additive G . m on the raw 576-dim m, repeated ids
summed) raised the held-out loss by 0.5 nats at a 5x lr: in a plain region 25 noisy scores added up on one id.

A second form, `tilt` (`model.copy_readout_form`), leaves the model's distribution in charge and only tilts it
between the cells around: at such a position

    logit[id] += beta sum over o with id(o) = id of (s[o] - mean over the valid o of s)

with the same scores s[o] = G[o] . f + b[o] and beta from zero (the model's function unchanged at start). The scores
are centred over the cells, so a plain region (every cell on one id) gets nothing, and where the cells differ the
caption shifts mass towards the ids on the side the move comes from: a product of the model and the copy's
preference, not a mixture, which pieces 38-39 showed the loss keeps at lam ~0.01 (the model's own distribution is
already better than the copy at most positions; what it lacks is the direction).

Where the ids come from (the hint tracker) and where the terms are computed lives in vidgpt.parent_hint; this module
holds the offsets, the keys, the basis and the one operation on the logits, shared by the trainer's loss head and
the decode backends.
"""

from __future__ import annotations

import math

import torch

COPY_KEY = "copy_gate"  # G [len(COPY_OFFSETS), COPY_DIMS]
COPY_BIAS_KEY = "copy_bias"  # b [len(COPY_OFFSETS)]
COPY_MIX_KEY = "copy_mix"  # a []: lam = sigmoid(a) (form "mixture")
COPY_GAIN_KEY = "copy_gain"  # beta [] (form "tilt")
COPY_BASIS_KEY = "copy_basis"  # B [COPY_DIMS, H] (a buffer: set once, not trained)
COPY_UNTIL_KEY = "copy_until_change"  # [] = 1 in a state: the read-out acts in a blueprint frame only until its first
#                                       cell that differs from the frame before (`HintTracker(copy_until_change=True)`)
COPY_KEYS = (COPY_KEY, COPY_BIAS_KEY, COPY_MIX_KEY, COPY_GAIN_KEY, COPY_BASIS_KEY)  # a read-out has one of mix / gain
COPY_FORMS = {"mixture": COPY_MIX_KEY, "tilt": COPY_GAIN_KEY}  # form -> the key only that form has
COPY_RADIUS = 2  # cells of frame t - 1 within this many rows and columns of the cell (a move crosses 1-2 a frame)
COPY_OFFSETS = tuple((dy, dx) for dy in range(-COPY_RADIUS, COPY_RADIUS + 1)
                     for dx in range(-COPY_RADIUS, COPY_RADIUS + 1))
COPY_DIMS = 16  # caption features: on T2's toy captions 16 principal directions hold 98% of the windows' variance
COPY_MIX_INIT = math.log(0.018 / (1 - 0.018))  # a at start: lam = 0.018


def caption_basis(means: torch.Tensor, dims: int = COPY_DIMS) -> torch.Tensor:
    """B [dims, H]: the top `dims` principal directions of the (centred, scaled) caption window means [N, H] of
    held-out documents, each divided by its standard deviation, so B @ m has ~unit variance a coordinate (Adam's
    ~lr a step then means the same on each). ValueError when the windows span fewer than `dims` directions."""
    X = means.detach().float()
    X = X - X.mean(0)
    _, S, V = torch.linalg.svd(X, full_matrices=False)
    sd = S / max(X.shape[0] - 1, 1) ** 0.5
    if X.shape[0] <= dims or float(sd[dims - 1]) <= 1e-6 * float(sd[0].clamp(min=1e-30)):
        raise ValueError(f"the caption windows of {X.shape[0]} documents span fewer than {dims} directions")
    return V[:dims] / sd[:dims, None]


def mix_copy(logits: torch.Tensor, ids: torch.Tensor, scores: torch.Tensor, mix: torch.Tensor,
             lo: int = 0) -> torch.Tensor:
    """logits [..., V] over the rows [lo, lo + V) -> log p of the pointer mixture (module docstring) where a position
    has copy ids (ids [..., C] >= 0 inside the range, scores [..., C]); elsewhere the logits as they are. Repeated ids
    add their copy mass. Differentiable in logits, scores and mix (a scalar: lam = sigmoid(mix))."""
    V = logits.shape[-1]
    j = ids - lo
    ok = (ids >= 0) & (j >= 0) & (j < V)
    has = ok.any(-1, keepdim=True)
    w = torch.softmax(scores.float().masked_fill(~ok, float("-inf")), -1)
    w = torch.where(ok, w, torch.zeros_like(w))  # rows without any id: nan -> 0
    dt = torch.promote_types(logits.dtype, torch.float32)
    pc = torch.zeros(logits.shape, dtype=dt, device=logits.device).scatter_add(-1, torch.where(ok, j, 0), w.to(dt))
    lp = torch.log_softmax(logits.to(dt), -1)
    mix = mix.to(dt)
    # log((1 - lam) p + lam pc), computed so that pc = 0 has a finite gradient
    mixed = torch.logaddexp(lp + torch.nn.functional.logsigmoid(-mix),
                            torch.log((torch.sigmoid(mix) * pc).clamp_min(1e-30)))
    return torch.where(has, mixed, logits.to(dt)).to(logits.dtype)


def tilt_copy(logits: torch.Tensor, ids: torch.Tensor, scores: torch.Tensor, gain: torch.Tensor,
              lo: int = 0) -> torch.Tensor:
    """logits [..., V] over the rows [lo, lo + V) plus gain x (score - its mean over the valid cells) at each valid
    cell's id (ids [..., C] >= 0 inside the range); repeated ids add up, so a position whose valid cells all hold one
    id gets nothing. Out of place, differentiable in logits, scores and gain."""
    V = logits.shape[-1]
    j = ids - lo
    ok = (ids >= 0) & (j >= 0) & (j < V)
    okf = ok.to(torch.float32)
    s = scores.float() * okf
    centred = (s - s.sum(-1, keepdim=True) / okf.sum(-1, keepdim=True).clamp(min=1)) * okf
    add = (gain.float() * centred).to(logits.dtype)
    return logits.scatter_add(-1, torch.where(ok, j, 0), add)


def copy_form_of(params) -> str:
    """"tilt" when the read-out's tensors (a state or `copy_params`) hold a gain, else "mixture"."""
    return "tilt" if COPY_GAIN_KEY in params else "mixture"


def apply_copy(logits: torch.Tensor, ids: torch.Tensor, scores: torch.Tensor, params: dict, lo: int = 0) -> torch.Tensor:
    """The read-out of `params` (its form from the keys) on logits [..., V] over the rows [lo, lo + V)."""
    if COPY_GAIN_KEY in params:
        return tilt_copy(logits, ids, scores, params[COPY_GAIN_KEY], lo)
    return mix_copy(logits, ids, scores, params[COPY_MIX_KEY], lo)
