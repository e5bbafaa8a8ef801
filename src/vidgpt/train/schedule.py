"""The learning-rate schedule both trainers use: linear warmup, then cosine decay."""

from __future__ import annotations

import math


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier for optimizer step `step` (0-based).

    (step + 1) / warmup for the first `warmup` steps (none when warmup <= 0), then a cosine from 1
    down to `min_ratio` at step `total`, flat at `min_ratio` after it.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
