"""The learning-rate schedule both trainers use: linear warmup, then cosine decay.

A run may also have a wall-clock budget (`WallClock`): its cosine then follows whichever of steps and time is further
along, so a run stopped by its budget has decayed fully, whatever the step rate of the machine turned out to be.
"""

from __future__ import annotations

import math
import time


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float, time_done: float = 0.0) -> float:
    """LR multiplier for optimizer step `step` (0-based).

    (step + 1) / warmup for the first `warmup` steps (none when warmup <= 0), then a cosine from 1
    down to `min_ratio` at step `total`, flat at `min_ratio` after it. `time_done` (0..1, a wall-clock
    budget's spent share) moves the cosine on when time runs out before the steps do.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, max((step - warmup) / max(1, total - warmup), time_done))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class WallClock:
    """A run's wall-clock budget in seconds (0 = none), counted across resumed pieces.

    `spent` holds the seconds of earlier pieces (saved in the trainer state); `done()` is the spent share
    (0..1) that the schedule reads, and `out()` says the budget is used up.
    """

    def __init__(self, budget_s: float, spent: float = 0.0, now=None):
        self.budget_s = float(budget_s)
        self.spent = float(spent)
        self._now = now or time.monotonic
        self._start = self._now()

    def elapsed(self) -> float:
        return self.spent + self._now() - self._start

    def done(self) -> float:
        return min(1.0, self.elapsed() / self.budget_s) if self.budget_s > 0 else 0.0

    def out(self) -> bool:
        return self.budget_s > 0 and self.elapsed() >= self.budget_s
