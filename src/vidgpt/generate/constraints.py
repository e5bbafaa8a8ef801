"""Structure-constrained decoding: a state machine over the layout that allows only legal tokens.

At every step each sequence of the batch may take the ids of one contiguous range `[lo, hi)`.
The unified vocabulary is laid out so that every legal set is a range:

    text or a clip          [0, offset + 1)          text ids and <|vision_start|> (= offset)
    text                    [0, offset)              stops at the end-of-turn id
    header t / h / w        <|t_1|>..<|t_max|> etc.  one value when the shape is fixed
    section marker          <|blueprint|> or <|fine|> (fixed by the request)
    visual id i             vocab.group_range(i % S) the right sub-token group at each position
    end                     <|vision_end|>

so a step's mask is a cheap comparison against two numbers, and when every row shares the range
(always inside the visual sections of a fixed shape) the decoder samples from the logits of those
rows only (a sliced lm_head). After <|vision_end|> (or the end-of-turn id in text) a row is done;
the caller appends the layout's tail (end of turn / EOS), which needs no model call.

`StructureConstraint` takes the sampled tokens after each step; with a fixed shape and no text the
rows move in lockstep and the state never looks at the token values (no device sync per step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import GenerationError
from ..geometry import block_length, blueprint_shape
from ..vocab import UnifiedVocab

SECTIONS = ("blueprint", "fine")


def section_plan(vocab: UnifiedVocab, shape: Sequence[int], sections: Sequence[str]) -> list[tuple[int, int]]:
    """Ranges for every id after the shape header: markers, visual ids by group, <|vision_end|>."""
    S = vocab.spec.subtokens
    groups = [vocab.group_range(g) for g in range(S)]
    plan: list[tuple[int, int]] = []
    for name in SECTIONS:
        if name not in sections:
            continue
        marker = vocab.blueprint_id if name == "blueprint" else vocab.fine_id
        t, h, w = blueprint_shape(shape) if name == "blueprint" else tuple(shape)
        plan.append((marker, marker + 1))
        plan.extend(groups * (t * h * w))
    plan.append((vocab.vision_end_id, vocab.vision_end_id + 1))
    return plan


def block_plan(vocab: UnifiedVocab, shape: Sequence[int], sections: Sequence[str]) -> list[tuple[int, int]]:
    """Ranges for a whole block of a fixed shape, <|vision_start|> to <|vision_end|>."""
    start = vocab.vision_start_id
    head = [(start, start + 1)] + [(i, i + 1) for i in vocab.header_ids(shape)]
    return head + section_plan(vocab, shape, sections)


def fine_index(vocab: UnifiedVocab, shape: Sequence[int]) -> int:
    """Where <|fine|> comes in a blueprint + fine block of a fixed shape, counted from <|vision_start|> (0)."""
    return [lo for lo, _ in block_plan(vocab, shape, SECTIONS)].index(vocab.fine_id)


def blueprint_frame_index(vocab: UnifiedVocab, shape: Sequence[int], t: int) -> int:
    """Where the blueprint's latent frame t begins in a block of a fixed shape with a blueprint, counted from
    <|vision_start|> (0)."""
    from ..geometry import blueprint_shape

    _, bh, bw = blueprint_shape(tuple(shape))
    start = [lo for lo, _ in block_plan(vocab, shape, ("blueprint",))].index(vocab.blueprint_id) + 1
    return start + t * bh * bw * vocab.spec.subtokens


@dataclass
class ShapeLimits:
    """What a free header may choose: latent t up to max_t, h/w in [min_hw, max_hw].

    `fixed` pins single axes (None = free), e.g. (None, 16, 16) lets the model pick the duration.
    """

    max_t: int
    max_hw: int
    min_hw: int = 1
    fixed: tuple[int | None, int | None, int | None] = (None, None, None)


class _Row:
    """The state of one sequence: which phase it is in and what it may take next."""

    def __init__(self, owner: "StructureConstraint"):
        self.c = owner
        self.phase = "text" if owner.text_only else ("open" if owner.allow_text else "start")
        self.kind = "text" if owner.text_only else None
        self.shape: list[int] = [] if owner.shape is None else list(owner.shape)
        self.plan: list[tuple[int, int]] = []
        self.pos = 0
        self.text_len = 0

    def allowed(self) -> tuple[int, int]:
        c, v = self.c, self.c.vocab
        p = self.phase
        if p == "done":
            return c.pad_id, c.pad_id + 1
        if p == "open":
            return 0, v.vision_start_id + 1
        if p == "text":
            if self.text_len >= c.max_text_tokens:
                return c.stop_id, c.stop_id + 1
            return 0, v.offset
        if p == "start":
            return v.vision_start_id, v.vision_start_id + 1
        if p == "header":
            return c.header_range(self.shape)
        return self.plan[self.pos]

    def advance(self, tok: int) -> None:
        c, v = self.c, self.c.vocab
        p = self.phase
        if p == "open":
            if tok == v.vision_start_id:
                self._enter_block()
            else:
                self.kind, self.phase = "text", "text"
                self._text(tok)
        elif p == "text":
            self._text(tok)
        elif p == "start":
            self._enter_block()
        elif p == "header":
            axis = "thw"[len(self.shape)]
            self.shape.append(v.header_value(tok, axis))
            if len(self.shape) == 3:
                self._enter_body()
        elif p == "body":
            self.pos += 1
            if self.pos == len(self.plan):
                self.phase = "done"

    def _text(self, tok: int) -> None:
        self.text_len += 1
        if tok == self.c.stop_id:
            self.phase = "done"

    def _enter_block(self) -> None:
        self.kind = "block"
        if self.c.shape is None:
            self.phase, self.shape = "header", []
        else:
            self.plan = [(i, i + 1) for i in self.c.vocab.header_ids(self.c.shape)]
            self.plan += self.c.body_plan
            self.phase, self.pos = "body", 0

    def _enter_body(self) -> None:
        self.plan = section_plan(self.c.vocab, self.shape, self.c.sections)
        self.phase, self.pos = "body", 0


class StructureConstraint:
    """Legal-token ranges for a batch of `batch` sequences writing one assistant turn.

    shape: fixed latent (t, h, w) of the block, or None for a free header within `limits`.
    sections: which sections to write, in layout order ("blueprint", "fine").
    allow_text: the turn may be text (ending at `stop_id`) instead of a block (chat).
    text_only: the turn is text (prompt expansion, chat answers).
    """

    def __init__(
        self,
        vocab: UnifiedVocab,
        batch: int,
        *,
        shape: Sequence[int] | None = None,
        sections: Sequence[str] = SECTIONS,
        limits: ShapeLimits | None = None,
        allow_text: bool = False,
        text_only: bool = False,
        stop_id: int | None = None,
        max_text_tokens: int = 256,
        max_new_tokens: int | None = None,
        pad_id: int = 0,
    ):
        self.vocab = vocab
        self.batch = batch
        self.sections = tuple(s for s in SECTIONS if s in sections)
        if not self.sections or len(self.sections) != len(tuple(sections)):
            raise GenerationError(f"sections={tuple(sections)}: choose from {SECTIONS}")
        self.shape = None if shape is None else tuple(int(x) for x in shape)
        if self.shape is None and limits is None:
            limits = ShapeLimits(vocab.spec.max_latent_t, vocab.spec.max_latent_hw)
        self.limits = limits
        self.allow_text = allow_text or text_only
        self.text_only = text_only
        if self.allow_text and stop_id is None:
            raise GenerationError("a turn that may be text needs the end-of-turn id (stop_id)")
        self.stop_id = stop_id
        self.max_text_tokens = max_text_tokens
        self.max_new_tokens = max_new_tokens
        self.pad_id = pad_id
        S = vocab.spec.subtokens
        if self.shape is not None:
            n = block_length(self.shape, S, "blueprint" in self.sections, "fine" in self.sections)
            if max_new_tokens is not None and n > max_new_tokens:
                raise GenerationError(
                    f"a {self.shape[0]}x{self.shape[1]}x{self.shape[2]} latent block takes {n} tokens but only "
                    f"{max_new_tokens} positions are left in the model's context"
                )
            self.body_plan = section_plan(vocab, self.shape, self.sections)
        self.lockstep = self.shape is not None and not self.allow_text
        if self.lockstep:
            full = block_plan(vocab, self.shape, self.sections)
            self._lo = [a for a, _ in full]
            self._hi = [b for _, b in full]
            self._step = 0
        else:
            self.rows = [_Row(self) for _ in range(batch)]

    # --- free header ranges ---------------------------------------------------------------
    def _fits(self, shape: Sequence[int]) -> bool:
        if self.max_new_tokens is None:
            return True
        S = self.vocab.spec.subtokens
        return block_length(shape, S, "blueprint" in self.sections, "fine" in self.sections) <= self.max_new_tokens

    def header_range(self, chosen: list[int]) -> tuple[int, int]:
        """The legal ids for the next header token given the values chosen so far."""
        v, lim = self.vocab, self.limits
        axis = len(chosen)
        lo_val = 1 if axis == 0 else lim.min_hw
        hi_val = lim.max_t if axis == 0 else lim.max_hw
        if lim.fixed[axis] is not None:
            lo_val = hi_val = int(lim.fixed[axis])
        smallest = [lim.fixed[a] or (1 if a == 0 else lim.min_hw) for a in range(3)]
        # largest value for which the block still fits with the smallest choices for the rest
        while hi_val > lo_val:
            trial = chosen + [hi_val] + smallest[axis + 1 :]
            if self._fits(trial):
                break
            hi_val -= 1
        trial = chosen + [lo_val] + smallest[axis + 1 :]
        if not self._fits(trial):
            raise GenerationError(f"not even a {trial} latent block fits in the {self.max_new_tokens} positions left")
        base = (v.t_offset, v.h_offset, v.w_offset)[axis]
        return base + lo_val - 1, base + hi_val

    # --- per-step API ---------------------------------------------------------------------
    @property
    def done(self) -> bool:
        if self.lockstep:
            return self._step >= len(self._lo)
        return all(r.phase == "done" for r in self.rows)

    def ranges(self) -> tuple[int, int] | tuple[list[int], list[int]]:
        """(lo, hi) ints when every row shares the range, else per-row lists."""
        if self.lockstep:
            return self._lo[self._step], self._hi[self._step]
        pairs = [r.allowed() for r in self.rows]
        first = pairs[0]
        if all(p == first for p in pairs):
            return first
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def remaining_plan(self) -> list[tuple[int, int]]:
        """The ranges of every position still to come (lockstep only: a fixed shape, no text)."""
        if not self.lockstep:
            raise GenerationError("the plan ahead is known only for a fixed shape without text")
        return list(zip(self._lo[self._step :], self._hi[self._step :]))

    def advance(self, tokens: torch.Tensor) -> None:
        """Record the tokens [batch] chosen at this step."""
        if self.lockstep:
            self._step += 1
            return
        for r, t in zip(self.rows, tokens.tolist()):
            r.advance(int(t))

    def finished(self) -> list[bool]:
        if self.lockstep:
            return [self.done] * self.batch
        return [r.phase == "done" for r in self.rows]

    def kinds(self) -> list[str]:
        """'block' or 'text' per row (what each row chose to write)."""
        if self.lockstep:
            return ["block"] * self.batch
        return [r.kind or "block" for r in self.rows]


def range_mask(lo: Sequence[int], hi: Sequence[int], vocab_size: int, device) -> torch.Tensor:
    """Bool mask [B, vocab_size]: True where lo[b] <= id < hi[b]."""
    ar = torch.arange(vocab_size, device=device)
    lo_t = torch.as_tensor(lo, device=device)[:, None]
    hi_t = torch.as_tensor(hi, device=device)[:, None]
    return (ar >= lo_t) & (ar < hi_t)
