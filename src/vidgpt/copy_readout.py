"""The copy read-out: the caption picks which cell of the previous blueprint frame each blueprint code copies.

A move in the blueprint is a copy: for "moving right" the code that arrives at cell (t, y, x) is the one that was at
(t - 1, y, x - 1) or (t - 1, y, x - 2) (a straight move crosses 1-2 blueprint cells a latent frame at 9x128x128).
Measured on the CPU-trained models (pieces 35-36, model/README.md), a caption hint puts the words' direction where
the first move is drawn, readable through all 30 layers, and the blueprint still does not follow the motion word
(+0.09-0.12 nats a changed cell): the layers do not turn a direction they hold into "copy the cell to the left". The
read-out does that step outside them, on the logits of every position that predicts a blueprint code of frame
t >= 1:

    logit[id at (t - 1, y + dy, x + dx)] += G[o] . m + b[o]      o = (dy, dx) in COPY_OFFSETS, same sub-token

m is the caption window's mean row as the caption hint reads it (centred and scaled with `model.caption_center`),
G [len(COPY_OFFSETS), H] and b [len(COPY_OFFSETS)] start at zero (the model's function unchanged). An id that sits
at several offsets gets the sum of their scores. Where the ids come from (the hint tracker) and where the terms are
computed lives in vidgpt.parent_hint; this module holds the offsets, the keys and the one operation on the logits,
shared by the trainer's loss head and the decode backends.
"""

from __future__ import annotations

import torch

COPY_KEY = "copy_gate"  # G [len(COPY_OFFSETS), H]
COPY_BIAS_KEY = "copy_bias"  # b [len(COPY_OFFSETS)]
COPY_RADIUS = 2  # cells of frame t - 1 within this many rows and columns of the cell (a move crosses 1-2 a frame)
COPY_OFFSETS = tuple((dy, dx) for dy in range(-COPY_RADIUS, COPY_RADIUS + 1)
                     for dx in range(-COPY_RADIUS, COPY_RADIUS + 1))


def add_copy_logits(logits: torch.Tensor, ids: torch.Tensor, scores: torch.Tensor, lo: int = 0) -> torch.Tensor:
    """logits [..., V] over the rows [lo, lo + V) plus scores [..., C] at the rows ids [..., C] (ids outside the
    range or < 0 add nothing; repeated ids add up). Out of place, so it is differentiable in both."""
    j = ids - lo
    ok = (ids >= 0) & (j >= 0) & (j < logits.shape[-1])
    return logits.scatter_add(-1, torch.where(ok, j, 0), scores.to(logits.dtype) * ok.to(logits.dtype))
