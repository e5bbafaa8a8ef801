"""Progress, previews and cancellation from outside the pipeline: a watched decode backend.

`VidGPT.generate / edit / chat` take no progress callback or stop flag, so the server wraps the
pipeline's decode backend (the object `constrained_decode` calls once per token) while a job runs.
Every `step(tokens)` receives the tokens just sampled, so the wrapper can

- count tokens (progress: "blueprint 12/40", "fine 100/320"),
- spot the end of the blueprint section (the `<|fine|>` marker) and decode the blueprint codes
  into a preview clip at once, while the fine tokens are still being drawn,
- stop the decode loop between two tokens (cancel, time limit) by raising.

It reads token values only where needed (the block start, the 3 shape-header tokens and the
marker after the blueprint), so the lockstep path pays a handful of device syncs, not one a token.
"""

from __future__ import annotations

import time

import torch

from ..errors import VidgptError
from ..generate.constraints import fine_index
from ..layout import block_length


class JobCancelled(VidgptError):
    """The job was cancelled by its client."""


class JobTimeout(VidgptError):
    """The job ran past ServeSettings.job_timeout_s."""


class _Row:
    """Where one sample row is in its visual block."""

    def __init__(self):
        self.state = "seek"  # seek <|vision_start|> -> header -> wait for the marker after the blueprint -> off
        self.start = -1
        self.header: list[int] = []
        self.shape = None
        self.fine_at = -1


class Watch:
    """Tracks one running batch: `rows` sample rows, owned by `owners[row]` (the row's job)."""

    def __init__(self, pipe, owners, deadline: float | None, on_progress, on_preview, on_check):
        self.pipe = pipe
        self.owners = list(owners)
        self.deadline = deadline
        self.on_progress = on_progress  # (tokens, total, phase) -> None
        self.on_preview = on_preview  # (row, VisualBlock) -> None
        self.on_check = on_check  # () -> None, raises JobCancelled when every job of the batch is cancelled
        self.tokens = 0
        self.total = None
        self.phase = "starting"
        self._last_emit = 0.0
        self.new_call()

    def new_call(self) -> None:
        self.rows = [_Row() for _ in self.owners]
        self.history: list[torch.Tensor] = []

    def check(self) -> None:
        self.on_check()
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise JobTimeout("the job ran past the server's time limit (job_timeout_s); ask for a smaller clip")

    def tokens_in(self, tokens: torch.Tensor) -> None:
        """Record the tokens sampled at this step (rows [N] or [2N] with guidance twins)."""
        n = len(self.rows)
        tok = tokens.view(-1)[:n].detach().clone()
        i = len(self.history)
        self.history.append(tok)
        self.tokens += 1
        v = self.pipe.vocab
        vals = None
        phase_was = self.phase
        for r, row in enumerate(self.rows[: tok.numel()]):  # a text call (prompt expansion) has one row
            if row.state == "off":
                continue
            if row.state in ("seek", "header"):
                vals = tok.tolist() if vals is None else vals
                if row.state == "seek":
                    if vals[r] == v.vision_start_id:
                        row.state, row.start = "header", i
                    continue
                row.header.append(vals[r])
                if len(row.header) == 3:
                    shape = tuple(v.header_value(t, a) for t, a in zip(row.header, "thw"))
                    if None in shape:
                        row.state = "off"
                        continue
                    row.shape = shape
                    S = v.spec.subtokens
                    has_bp = "blueprint" in self.pipe.sections()
                    if r == 0:
                        self.total = block_length(shape, S, has_bp, True)
                        self.phase = "blueprint" if has_bp else "fine"
                    if not has_bp:
                        row.state = "off"
                        continue
                    row.fine_at = row.start + fine_index(v, shape)  # where <|fine|> comes (as pipeline's cfg_until)
                    row.state = "wait"
            elif row.state == "wait" and i == row.fine_at:
                row.state = "off"
                if r == 0:
                    self.phase = "fine"
                if int(tok[r]) == v.fine_id:
                    self._preview(r)
        now = time.monotonic()
        if phase_was != self.phase or now - self._last_emit > 0.2:  # every phase change, else 5 a second
            self._last_emit = now
            start = self.rows[0].start
            self.on_progress(len(self.history) - start if start >= 0 else 0, self.total, self.phase)

    def _preview(self, r: int) -> None:
        row = self.rows[r]
        v = self.pipe.vocab
        ids = torch.stack(self.history[row.start : row.fine_at], dim=1)[r].tolist() + [v.vision_end_id]
        block, _ = self.pipe.layout.decode_block(ids)
        self.on_preview(r, block)


class WatchedBackend:
    """Wraps a decode backend (prefill / step / logits): everything passes through to it."""

    def __init__(self, inner, watch: Watch):
        self._inner = inner
        self._watch = watch

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def prefill(self, ids, mask, *args, **kwargs):
        self._watch.check()
        self._watch.new_call()
        return self._inner.prefill(ids, mask, *args, **kwargs)

    def step(self, tokens):
        self._watch.tokens_in(tokens)
        self._watch.check()
        return self._inner.step(tokens)


class watched:
    """`with watched(pipe, watch):` runs the pipeline's decoding through a WatchedBackend."""

    def __init__(self, pipe, watch: Watch):
        self.pipe, self.watch = pipe, watch

    def __enter__(self):
        self._orig = self.pipe.backend
        self.pipe.backend = WatchedBackend(self._orig, self.watch)
        return self.watch

    def __exit__(self, *exc):
        self.pipe.backend = self._orig
        return False
