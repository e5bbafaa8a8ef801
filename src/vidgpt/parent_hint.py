"""Parent hints: every fine-section position is told the blueprint code of the cell it predicts next.

In a visual block the fine section follows its blueprint (vidgpt.layout): the fine cell (t, y, x) is the
upsampled detail of the blueprint cell (t, y // 2, x // 2), its *parent*. But the parent is a different distance
back for every cell (the blueprint sits before the whole fine section), so no fixed relative position points at
it, and measured on the CPU-trained models the fine section barely reads its blueprint
(`tools/fine_follow_probe.py`: ~0.01-0.04 nats a code). A parent hint puts it where the model cannot miss it:
the input of the position that predicts fine cell j gets, added to its token embedding,

    P @ row(parent id of cell j)          P [H, H], zeros at start (the model's function is unchanged)

where row() is the input embedding row of that blueprint id. The hint at a position depends only on ids at or
before it (the header and the blueprint come first), so training and decoding stay causal, and it is computed
from the ids alone: `hint_ids` for a batch of rows (the trainer), `HintTracker` one id at a time (decoding, with
truncation for speculative windows). With S sub-tokens a cell, the position that predicts sub-token g of a fine
cell is told sub-token g of its parent.

Previous-frame hints (optional, `model.prev_frame_hint`) do the same for the blueprint's motion: the input of the
position that predicts blueprint cell (t, y, x), t >= 1, also gets

    sum over d of Q_d @ row(id of cell (t - 1, y + dy, x + dx))     d in NEIGHBOURS: the cell itself, left, right,
                                                                    above, below; Q_d [H, H] zeros at start

so the codes a move copies (the object one cell to the left of a cell it arrives in, for "moving right") are at the
position's own input, not a direction-dependent distance back, and the motion word only has to pick among them.
Caption hints (optional, `model.caption_hint`) carry the prompt itself to the positions that draw the blueprint: the
input of every position that predicts a blueprint code also gets

    R @ mean(row(id) for the last CAPTION_WINDOW text ids before the visual block)     R [H, H], zeros at start

Measured on the CPU-trained models (tools/direction_probe.py), the caption's direction is held at the prompt's end
and at the blueprint marker and is gone by the end of the blueprint's first frame, where the moves are drawn; this
puts the words back at the input of each of those positions. The window is the text since the last visual block (or
the row's start), at most CAPTION_WINDOW ids, frozen at <vision_start>; with the chat layout it includes the
template's tail (the same in every document, which R learns as a constant). With `model.caption_center` R reads

    (mean - c) * k      c: the mean over held-out documents of their windows' means, k: to a row's norm

instead (CENTER_KEY, SCALE_KEY; set once when R starts from zero): the template is gone from R's input and what
changes between captions, the words, is all of it. With `model.caption_hint_form: diagonal` R is a gain vector g [H]
(zeros at start) and the hint is g * that mean, the words' own rows scaled dimension by dimension: H parameters
where Adam moves each of R's H x H by ~lr a step whatever its gradient, which grew R as noise (piece 33).

A copy read-out (optional, `model.copy_readout`, with caption hints) does not go through the layers at all: every
position that predicts a blueprint code of frame t >= 1 mixes into its distribution a copy of the codes of frame t - 1
around the cell (COPY_OFFSETS, the same sub-token)

    p = (1 - lam) p_LM + lam sum_o softmax_o(G[o] . B m + b[o]) [id of cell (t - 1, y + dy, x + dx)]

where m is the (centred) caption window mean R reads and B its whitened principal directions: the words pick which
neighbour each cell copies ("moving right": the one to the left), the choice pieces 35-36 showed the layers do not
make from a caption hint they can read (vidgpt.copy_readout).

Each position thus has `slots` hint ids (1, + 5 with previous-frame hints, + CAPTION_WINDOW with caption hints, +
len(COPY_OFFSETS) with the copy read-out; -1 where none): one projection a slot for the parent and the neighbours,
one for the caption slots' mean; the copy slots go to the logits, not the input.

P (and Q, R, G) ship beside the model as `parent_hint.safetensors` (keys "proj", "prev", "caption", "caption_center",
"caption_scale", "copy_gate", "copy_bias", "copy_mix", "copy_basis"; vidgpt.json "parent_hint": true); the backbone's own weights are untouched, so the fast decoder, the
light loader and the ready cache read the model as before and `HintedBackend` adds the hints around any backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .copy_readout import (COPY_BASIS_KEY, COPY_BIAS_KEY, COPY_DIMS, COPY_FORMS, COPY_KEY, COPY_KEYS, COPY_MIX_INIT,
                           COPY_MIX_KEY, COPY_OFFSETS, COPY_UNTIL_KEY, apply_copy, copy_form_of)
from .geometry import blueprint_shape
from .vocab import UnifiedVocab

ATTR = "vidgpt_parent_hint"  # the module's attribute on the base model (training)
FILE = "parent_hint.safetensors"
KEY = "proj"
PREV_KEY = "prev"  # the previous-frame projections Q [len(NEIGHBOURS), H, H]
CAPTION_KEY = "caption"  # the caption projection R [H, H], or a gain vector [H] (CAPTION_FORMS)
CAPTION_FORMS = ("matrix", "diagonal")  # R [H, H], or a gain vector [H] on the mean row itself
CAPTION_WINDOW = 32  # text ids a caption hint reads (the last ones before the visual block)
CENTER_KEY = "caption_center"  # [H]: the window mean's mean over documents, taken off before R (zeros: none)
SCALE_KEY = "caption_scale"  # []: what the centred mean is multiplied by, to a row's norm (1: none)
# (dy, dx) of the cells of blueprint frame t - 1 a blueprint position of frame t >= 1 is told: itself, left, right,
# above, below
NEIGHBOURS = ((0, 0), (0, -1), (0, 1), (-1, 0), (1, 0))

# tracker modes
_OUT, _HEADER, _MARKER, _BLUEPRINT, _FINE, _SKIP = range(6)


def slot_count(prev: bool = False, caption: bool = False, copy: bool = False) -> int:
    """Hint ids a position: the parent, the previous-frame neighbours (prev), the caption window (caption), the
    previous frame's cells the copy read-out scores (copy)."""
    return 1 + len(NEIGHBOURS) * bool(prev) + CAPTION_WINDOW * bool(caption) + len(COPY_OFFSETS) * bool(copy)


class HintTracker:
    """Reads one row's ids one at a time; `feed` returns the hint ids of each position: a tuple of `slots` ids
    (the parent; then, with `prev`, the previous-frame neighbours; then, with `caption`, the caption window; then,
    with `copy` (needs `caption`), the ids of the previous blueprint frame at COPY_OFFSETS), -1 where none.

    The state after every position is kept, so `truncate(n)` goes back to the state after the first n ids.
    """

    def __init__(self, vocab: UnifiedVocab, prev: bool = False, caption: bool = False, copy: bool = False,
                 copy_until_change: bool = False):
        if copy and not caption:
            raise ValueError("the copy read-out reads the caption window: caption=True too")
        self.v = vocab
        self.S = vocab.spec.subtokens
        self.caption = bool(caption)
        self.copy = bool(copy)
        # copy slots only at the positions of a blueprint frame t >= 1 whose ids so far all equal frame t - 1's: the
        # move's way is not in the frame yet; once a cell changed the frame shows it and the read-out steps aside
        self.copy_until_change = bool(copy_until_change)
        self._no_copy = (-1,) * (len(COPY_OFFSETS) * self.copy)
        self.slots = slot_count(prev, caption, copy)
        self._none = (-1,) * slot_count(prev)  # what _next gives: the parent and neighbour slots
        self._no_caption = (-1,) * (CAPTION_WINDOW * self.caption)
        self.ids: list[int] = []
        self.states: list[tuple] = []  # (block state, text window, caption window) after each position
        self.state: tuple = (_OUT,)
        self.text: tuple[int, ...] = ()  # the last CAPTION_WINDOW text ids since the last visual block
        self.words: tuple[int, ...] = self._no_caption  # the window frozen at the last <vision_start>, padded

    def __len__(self) -> int:
        return len(self.ids)

    def truncate(self, n: int) -> None:
        del self.ids[n:], self.states[n:]
        self.state, self.text, self.words = self.states[-1] if self.states else ((_OUT,), (), self._no_caption)

    def feed(self, tok: int) -> tuple[int, ...]:
        tok = int(tok)
        pos = len(self.ids)
        self.ids.append(tok)
        self.state, hint = self._next(self.state, tok, pos)
        if self.caption:
            if tok == self.v.vision_start_id:
                self.words = self.text + (-1,) * (CAPTION_WINDOW - len(self.text))
                self.text = ()
            elif tok < self.v.offset and self.state[0] == _OUT:
                self.text = (self.text + (tok,))[-CAPTION_WINDOW:]
            # the positions that predict a blueprint code (the marker's, then every blueprint id's but the last)
            hint = hint + (self.words if self.state[0] == _BLUEPRINT else self._no_caption)
        if self.copy:
            hint = hint + (self._copies() if self.state[0] == _BLUEPRINT else self._no_copy)
        self.states.append((self.state, self.text, self.words))
        return hint

    def feed_many(self, toks: Sequence[int]) -> list[tuple[int, ...]]:
        return [self.feed(t) for t in toks]

    def _visual(self, tok: int) -> bool:
        return self.v.visual_offset <= tok < self.v.end

    def _next(self, st: tuple, tok: int, pos: int) -> tuple[tuple, tuple[int, ...]]:
        v, mode, none = self.v, st[0], self._none
        if tok == v.vision_start_id:
            return (_HEADER, ()), none
        if mode == _HEADER:
            dims = st[1]
            val = v.header_value(tok, "thw"[len(dims)])
            if val is None:
                return (_OUT,), none
            dims = dims + (val,)
            return ((_MARKER, dims, None) if len(dims) == 3 else (_HEADER, dims)), none
        if mode == _MARKER:
            dims, bp_start = st[1], st[2]
            if tok == v.blueprint_id and bp_start is None:
                return (_BLUEPRINT, dims, pos + 1), none  # it predicts the blueprint's first id: frame 0
            if tok == v.fine_id:
                if bp_start is None:
                    return (_SKIP,), none  # a fine section without a blueprint: nothing to hint
                return (_FINE, dims, bp_start, 0), self._parent(dims, bp_start, 0)
            return (_OUT,), none
        if mode == _BLUEPRINT:
            dims, bp_start = st[1], st[2]
            if not self._visual(tok):
                return (_OUT,), none
            bt, bh, bw = blueprint_shape(dims)
            k = pos + 1 - bp_start  # the blueprint id this position predicts
            if k == bt * bh * bw * self.S:
                return (_MARKER, dims, bp_start), none  # blueprint complete: the fine marker may come
            return st, self._prev(dims, bp_start, k)
        if mode == _FINE:
            dims, bp_start, k = st[1], st[2], st[3] + 1
            if not self._visual(tok):
                return (_OUT,), none
            if k >= dims[0] * dims[1] * dims[2] * self.S:
                return (_SKIP,), none  # the last fine id: nothing after it to predict
            return (_FINE, dims, bp_start, k), self._parent(dims, bp_start, k)
        if mode == _SKIP and self._visual(tok):
            return st, none
        return (_OUT,), none

    def _parent(self, dims: tuple, bp_start: int, k: int) -> tuple[int, ...]:
        """Slot 0: the blueprint id of the parent of fine id k (cell k // S, sub-token k % S)."""
        t, h, w = dims
        _, bh, bw = blueprint_shape(dims)
        cell, g = divmod(k, self.S)
        tt, r = divmod(cell, h * w)
        y, x = divmod(r, w)
        pc = (tt * bh + y // 2) * bw + x // 2
        return (self.ids[bp_start + pc * self.S + g],) + self._none[1:]

    def _frame_before(self, dims: tuple, bp_start: int, k: int, offsets) -> tuple[int, ...] | None:
        """For blueprint id k of frame t >= 1, the same sub-token of the cells at `offsets` (dy, dx) around its cell
        in frame t - 1 (all fed already: frame t - 1 is complete), -1 off the grid; None in frame 0."""
        _, bh, bw = blueprint_shape(dims)
        cell, g = divmod(k, self.S)
        t, r = divmod(cell, bh * bw)
        if t == 0:
            return None
        y, x = divmod(r, bw)
        base = bp_start + (t - 1) * bh * bw * self.S + g
        return tuple(self.ids[base + ((y + dy) * bw + x + dx) * self.S] if 0 <= y + dy < bh and 0 <= x + dx < bw
                     else -1 for dy, dx in offsets)

    def _copies(self) -> tuple[int, ...]:
        """The copy slots of the position just fed (state _BLUEPRINT: it predicts blueprint id k): the cells of frame
        t - 1 at COPY_OFFSETS around k's cell; -1 off the grid and in frame 0."""
        _, dims, bp_start = self.state
        k = len(self.ids) - bp_start
        if self.copy_until_change and self._changed_in_frame(dims, bp_start, k):
            return self._no_copy
        return self._frame_before(dims, bp_start, k, COPY_OFFSETS) or self._no_copy

    def _changed_in_frame(self, dims: tuple, bp_start: int, k: int) -> bool:
        """Whether an id of blueprint id k's frame (t >= 1) drawn before it differs from frame t - 1's id there."""
        _, bh, bw = blueprint_shape(dims)
        n = bh * bw * self.S
        start = bp_start + (k // n) * n
        if start == bp_start:
            return False
        ids = self.ids
        return any(ids[i] != ids[i - n] for i in range(start, bp_start + k))

    def _prev(self, dims: tuple, bp_start: int, k: int) -> tuple[int, ...]:
        """Slots 1..: for blueprint id k of frame t >= 1, the same sub-token of the NEIGHBOURS of its cell in frame
        t - 1; -1 off the grid, in frame 0 and without `prev`."""
        if len(self._none) == 1:  # no previous-frame slots
            return self._none
        cells = self._frame_before(dims, bp_start, k, NEIGHBOURS)
        return self._none if cells is None else (-1,) + cells


def hint_ids(ids: torch.Tensor, vocab: UnifiedVocab, prev: bool = False, caption: bool = False,
             copy: bool = False, copy_until_change: bool = False) -> torch.Tensor:
    """[B, L] ids -> [B, L, slots] hint ids (-1 where a position has none; slots: `slot_count(prev, caption, copy)`)."""
    out = [HintTracker(vocab, prev, caption, copy, copy_until_change).feed_many(row) for row in ids.tolist()]
    return torch.tensor(out, dtype=torch.long, device=ids.device).view(*ids.shape, slot_count(prev, caption, copy))


def projections_t(proj: torch.Tensor, prev: torch.Tensor | None = None, caption: torch.Tensor | None = None) -> torch.Tensor:
    """[P, Q_d..., R] each transposed, stacked (the order of a tracker's slots; R serves all the caption slots). A
    diagonal R (a gain vector [H], `caption_form` "diagonal") is made the matrix diag(R)."""
    mats = [proj] + (list(prev) if prev is not None else [])
    if caption is not None:
        mats.append(caption if caption.dim() == 2 else torch.diag(caption))
    return torch.stack([m.t() for m in mats])


def caption_form_of(caption: torch.Tensor | Sequence[int]) -> str:
    """"matrix" for an R of [H, H], "diagonal" for a gain vector [H] (R itself, or its shape)."""
    return "matrix" if (caption.dim() if isinstance(caption, torch.Tensor) else len(caption)) == 2 else "diagonal"


def state_projections_t(state: dict) -> torch.Tensor:
    """`projections_t` of a saved state ({"proj": P} and maybe {"prev": Q}, {"caption": R})."""
    return projections_t(state[KEY], state.get(PREV_KEY), state.get(CAPTION_KEY))


def caption_mean(window: torch.Tensor, lookup, center: tuple[torch.Tensor, torch.Tensor] | None = None,
                 dtype: torch.dtype | None = None) -> torch.Tensor:
    """[..., H]: the mean of lookup() over the ids >= 0 of `window` [..., W] (zeros where none); with `center` (c, k)
    (mean - c) * k where there is a window. What R and the copy read-out read."""
    has = window >= 0
    rows = lookup(torch.where(has, window, 0))
    dtype = dtype or rows.dtype
    rows = rows.to(dtype) * has.unsqueeze(-1).to(dtype)
    count = has.sum(-1, keepdim=True)
    pooled = rows.sum(-2) / count.clamp(min=1).to(dtype)
    if center is not None:  # only where there is a window: elsewhere it stays nothing
        c, k = center
        pooled = (pooled - c.to(dtype)) * k.to(dtype) * (count > 0).to(dtype)
    return pooled


def hint_part(hints: torch.Tensor, lookup, proj_t: torch.Tensor, caption: bool = False,
              center: tuple[torch.Tensor, torch.Tensor] | None = None, copy: bool = False) -> torch.Tensor:
    """[..., H]: the sum over the parent / neighbour slots s of lookup(hints[..., s]) @ proj_t[s], and with `caption`
    the mean of lookup() over the caption slots @ proj_t[-1], where hints >= 0 (nothing elsewhere); `center` (c, k)
    makes that mean (mean - c) * k first. `lookup` embeds ids (the input embedding rows), proj_t from
    `projections_t`; with `copy` the hints' last len(COPY_OFFSETS) slots (the copy read-out's) are left out. What
    the trainer, the teacher-forced probe and the decode backends add."""
    if copy:
        hints = hints[..., : -len(COPY_OFFSETS)]
    n = proj_t.shape[0] - int(caption)  # the parent and neighbour slots
    own = hints[..., :n]
    has = own >= 0
    rows = lookup(torch.where(has, own, 0))
    rows = rows * has.unsqueeze(-1).to(rows.dtype)  # [..., n, H]
    out = torch.einsum("...sh,shk->...k", rows, proj_t[:n].to(rows.dtype))
    if not caption:
        return out
    return out + caption_mean(hints[..., n:], lookup, center, rows.dtype) @ proj_t[n].to(rows.dtype)


def copy_features(hints: torch.Tensor, lookup, basis: torch.Tensor,
                  center: tuple[torch.Tensor, torch.Tensor] | None = None, dtype=torch.float32) -> torch.Tensor:
    """The copy read-out's caption features [..., COPY_DIMS] of positions with hints [..., slots] (the copy slots last,
    the caption window before them): B @ the (centred) caption window mean."""
    C = len(COPY_OFFSETS)
    return caption_mean(hints[..., -C - CAPTION_WINDOW : -C], lookup, center, dtype) @ basis.to(dtype).t()


def copy_terms(hints: torch.Tensor, lookup, params: dict,
               center: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The copy read-out of positions with hints [..., slots]: (ids [..., C], scores [..., C]) for `apply_copy`:
    score o = G[o] . `copy_features` + b[o], id -1 where copy slot o holds none. params: {COPY_KEY: G, COPY_BIAS_KEY:
    b, COPY_BASIS_KEY: B} (a module's or a saved state's)."""
    gate, bias = params[COPY_KEY], params[COPY_BIAS_KEY]
    ids = hints[..., -len(COPY_OFFSETS):]
    scores = copy_features(hints, lookup, params[COPY_BASIS_KEY], center, gate.dtype) @ gate.t() + bias
    return torch.where(ids >= 0, ids, -1), scores


def caption_center_of(state: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(c, k) of a saved state when it has a centred caption window, else None."""
    return (state[CENTER_KEY], state[SCALE_KEY]) if CENTER_KEY in state and SCALE_KEY in state else None


def caption_windows(rows: Sequence[Sequence[int]], vocab: UnifiedVocab) -> list[tuple[int, ...]]:
    """The caption windows (text ids) of the visual blocks of `rows` (token id lists), one per block."""
    out = []
    for row in rows:
        last = None
        for h in HintTracker(vocab, caption=True).feed_many(row):
            w = tuple(i for i in h[1:] if i >= 0)
            if w and w != last:
                out.append(w)
            last = w
    return out


def caption_center(windows: Sequence[Sequence[int]], embed_weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c, k) for `center=`: c the mean over `windows` of each window's mean row, k the scale that gives the centred
    means the rows' own mean norm, so R (from zero, Adam) sees only what changes between captions (the words) at the
    size of a row. Without it R's input is mostly the template's tail, which R learns as a constant (piece 31)."""
    if len(windows) < 2:
        raise ValueError(f"a caption centre needs the windows of at least 2 documents with a visual block, got {len(windows)}")
    W = embed_weight.detach().float()
    means = torch.stack([W[list(w)].mean(0) for w in windows])
    c = means.mean(0)
    spread = (means - c).norm(dim=-1).mean()
    row_norm = torch.cat([W[list(w)] for w in windows]).norm(dim=-1).mean()
    if float(spread) <= 0:
        raise ValueError("every caption window has the same mean: nothing to centre")
    return c, row_norm / spread


class ParentHint(nn.Module):
    """The projection P [H, H] (zeros at start) of the parent's embedding row into the hinted position's input; with
    `prev`, also Q [len(NEIGHBOURS), H, H] (zeros at start) for the previous-frame neighbours; with `caption`, R
    (zeros at start) for the caption window's mean row: [H, H] (`caption_form` "matrix") or a gain vector [H]
    ("diagonal": the mean row itself, scaled dimension by dimension); with `copy` (needs `caption`), the copy
    read-out's G [len(COPY_OFFSETS), COPY_DIMS] and b (zeros at start), its mix a (COPY_MIX_INIT) and its caption
    basis B [COPY_DIMS, H] (a buffer, zeros until `set_copy_basis`; vidgpt.copy_readout); `copy_form` "tilt" holds a
    gain beta (zero at start) in place of the mix."""

    def __init__(self, hidden: int, prev: bool = False, caption: bool = False, caption_form: str = "matrix",
                 copy: bool = False, copy_form: str = "mixture"):
        super().__init__()
        setattr(self, KEY, nn.Parameter(torch.zeros(hidden, hidden)))
        if prev:
            self.add_prev()
        if caption:
            self.add_caption(caption_form)
        if copy:
            self.add_copy(copy_form)

    @property
    def has_prev(self) -> bool:
        return hasattr(self, PREV_KEY)

    @property
    def has_caption(self) -> bool:
        return hasattr(self, CAPTION_KEY)

    def add_prev(self) -> None:
        """Q at zero (the function unchanged), e.g. on a module loaded from a model trained without it."""
        self._add_zeros(PREV_KEY, len(NEIGHBOURS), self.hidden, self.hidden)

    @property
    def caption_form(self) -> str | None:
        return caption_form_of(getattr(self, CAPTION_KEY)) if self.has_caption else None

    def add_caption(self, form: str = "matrix") -> None:
        """R at zero (the function unchanged), the same; with the plain window mean until `set_caption_center`. An R
        the module already has stays as it is: a form other than `form` is refused (ValueError)."""
        if form not in CAPTION_FORMS:
            raise ValueError(f"caption hint form {form!r}: one of {', '.join(CAPTION_FORMS)}")
        if self.has_caption and self.caption_form != form:
            raise ValueError(f"the caption hint R is {self.caption_form}, asked for {form}")
        self._add_zeros(CAPTION_KEY, *((self.hidden,) * (2 if form == "matrix" else 1)))
        if not hasattr(self, CENTER_KEY):
            P = getattr(self, KEY)
            self.register_buffer(CENTER_KEY, P.new_zeros(self.hidden))
            self.register_buffer(SCALE_KEY, P.new_ones(()))

    @property
    def has_copy(self) -> bool:
        return hasattr(self, COPY_KEY)

    def add_copy(self, form: str = "mixture") -> None:
        """G and b at zero (a uniform copy), the mix a at COPY_MIX_INIT (form "mixture") or the gain beta at zero
        ("tilt"), B at zero until `set_copy_basis`. It reads the caption window: ValueError without R, or for a form
        other than the read-out the module has already (which stays as it is)."""
        if form not in COPY_FORMS:
            raise ValueError(f"copy read-out form {form!r}: one of {', '.join(COPY_FORMS)}")
        if not self.has_caption:
            raise ValueError("the copy read-out reads the caption window: add the caption hint first")
        if self.has_copy:
            if self.copy_form != form:
                raise ValueError(f"the copy read-out is a {self.copy_form}, asked for {form}")
            return
        self._add_zeros(COPY_KEY, len(COPY_OFFSETS), COPY_DIMS)
        self._add_zeros(COPY_BIAS_KEY, len(COPY_OFFSETS))
        self._add_zeros(COPY_FORMS[form])
        if form == "mixture":
            with torch.no_grad():
                getattr(self, COPY_MIX_KEY).fill_(COPY_MIX_INIT)
        self.register_buffer(COPY_BASIS_KEY, getattr(self, KEY).new_zeros(COPY_DIMS, self.hidden))

    @property
    def copy_form(self) -> str | None:
        return copy_form_of(self.copy_params()) if self.has_copy else None

    @property
    def has_copy_basis(self) -> bool:
        return self.has_copy and bool(getattr(self, COPY_BASIS_KEY).any())

    def set_copy_basis(self, basis: torch.Tensor) -> None:
        """The read-out's caption features from now on: B @ (centred) window mean (B from `caption_basis`)."""
        with torch.no_grad():
            getattr(self, COPY_BASIS_KEY).copy_(basis)

    def copy_params(self) -> dict:
        """{key: tensor} of the read-out (G, b, the mix a or the gain beta, B), as `copy_terms` and `apply_copy` take
        them."""
        return {k: getattr(self, k) for k in COPY_KEYS if hasattr(self, k)}

    def copy_terms(self, hints: torch.Tensor, lookup) -> tuple[torch.Tensor, torch.Tensor]:
        """`copy_terms` of hints [..., slots] from `ids_of` with this module's read-out and centre."""
        return copy_terms(hints, lookup, self.copy_params(), self.centering())

    @property
    def has_caption_center(self) -> bool:
        return self.has_caption and bool(getattr(self, CENTER_KEY).any())

    def set_caption_center(self, c: torch.Tensor, k: torch.Tensor) -> None:
        """R reads (window mean - c) * k from now on (c, k from `caption_center`)."""
        with torch.no_grad():
            getattr(self, CENTER_KEY).copy_(c)
            getattr(self, SCALE_KEY).copy_(k)

    def centering(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(c, k) for `hint_part` when the module has caption hints ((0, 1) until `set_caption_center`)."""
        return (getattr(self, CENTER_KEY), getattr(self, SCALE_KEY)) if self.has_caption else None

    @property
    def hidden(self) -> int:
        return int(getattr(self, KEY).shape[0])

    def _add_zeros(self, key: str, *shape: int) -> None:
        if not hasattr(self, key):
            P = getattr(self, KEY)
            setattr(self, key, nn.Parameter(P.new_zeros(tuple(shape)), requires_grad=P.requires_grad))

    def projections_t(self) -> torch.Tensor:
        return projections_t(getattr(self, KEY), getattr(self, PREV_KEY, None), getattr(self, CAPTION_KEY, None))

    def ids_of(self, ids: torch.Tensor, vocab: UnifiedVocab) -> torch.Tensor:
        """`hint_ids` of [B, L] ids with this module's slots."""
        return hint_ids(ids, vocab, self.has_prev, self.has_caption, self.has_copy)

    def add(self, emb: torch.Tensor, hints: torch.Tensor, lookup) -> torch.Tensor:
        """emb [B, L, H] + the hints' projections (hints [B, L, slots] from `ids_of`). The projections always take
        part in the graph (a zero gradient when no position is hinted), so every rank of a data-parallel step has a
        gradient for them."""
        has = hints >= 0
        if not bool(has.any()):
            return emb + 0.0 * sum(p.sum() for p in self.parameters()).to(emb.dtype)
        return emb + hint_part(hints, lookup, self.projections_t(), self.has_caption, self.centering(),
                               self.has_copy).to(emb.dtype)


def attach_parent_hint(base, state: dict | None = None, prev: bool = False, caption: bool = False,
                       caption_form: str = "matrix", copy: bool = False, copy_form: str = "mixture") -> ParentHint:
    """Give the HF model `base` (under any peft wrapper: backbone.base_model) a ParentHint module (trainable; from
    `state` when given; with previous-frame / caption projections / the copy read-out when asked or the state has
    them, R of the state's form, else `caption_form`); returns it."""
    p = next(base.parameters())
    state_has = set(state) if state is not None else set()
    form = caption_form_of(state[CAPTION_KEY]) if CAPTION_KEY in state_has else caption_form
    mod = ParentHint(int(base.config.hidden_size), prev=prev or PREV_KEY in state_has,
                     caption=caption or CAPTION_KEY in state_has, caption_form=form,
                     copy=copy or COPY_KEY in state_has,
                     copy_form=copy_form_of(state_has) if COPY_KEY in state_has else copy_form).to(p.device)
    if state is not None:
        own = mod.state_dict()
        mod.load_state_dict({k: state[k].float() if k in state else own[k] for k in own})  # none saved: zeros
    base.add_module(ATTR, mod)
    return mod


def parent_hint_of(base) -> ParentHint | None:
    """The ParentHint module of the HF model `base` (backbone.base_model), or None."""
    return getattr(base, ATTR, None) if base is not None else None


def save_parent_hint(module: ParentHint, directory: str | Path, dtype=torch.bfloat16) -> Path:
    from safetensors.torch import save_file

    f = Path(directory) / FILE
    save_file({k: v.detach().to(dtype).cpu().contiguous() for k, v in module.state_dict().items()}, str(f))
    return f


def load_parent_hint_state(directory: str | Path) -> dict | None:
    """{"proj": P (, "prev": Q)} from a model directory's parent_hint.safetensors, or None when it has none."""
    from safetensors.torch import load_file

    f = Path(directory) / FILE
    return load_file(str(f)) if f.is_file() else None


def saved_hint_shapes(directory: str | Path) -> dict[str, tuple[int, ...]]:
    """{key: shape} of a model directory's parent_hint.safetensors (no tensors read); empty when it has none."""
    from safetensors import safe_open

    f = Path(directory) / FILE
    if not f.is_file():
        return {}
    with safe_open(str(f), framework="pt") as fh:
        return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}


def embed_with_hints(model, ids: torch.Tensor, vocab: UnifiedVocab, state: dict | None) -> torch.Tensor:
    """The input embeddings of `ids` [B, L] for a plain HF forward (`inputs_embeds=`), hints added (teacher-forced
    scoring, e.g. tools/fine_follow_probe.py)."""
    W = model.get_input_embeddings().weight
    emb = F.embedding(ids, W)
    if state is None:
        return emb
    hints = hint_ids(ids, vocab, PREV_KEY in state, CAPTION_KEY in state, COPY_KEY in state)
    return emb + hint_part(hints, lambda x: F.embedding(x, W), state_projections_t(state), CAPTION_KEY in state,
                           caption_center_of(state), COPY_KEY in state)


def copy_until_of(state: dict) -> bool:
    """Whether a state's copy read-out acts only until a blueprint frame's first change (COPY_UNTIL_KEY)."""
    return COPY_UNTIL_KEY in state and bool(state[COPY_UNTIL_KEY].item())


def copy_logits(logits: torch.Tensor, model, ids: torch.Tensor, vocab: UnifiedVocab, state: dict | None,
                lo: int = 0) -> torch.Tensor:
    """Teacher-forced logits [B, L, V] (rows [lo, lo + V)) of `ids` [B, L] with the copy read-out of `state` mixed in
    (themselves when the state has none): what the decode backends give at each position."""
    if state is None or COPY_KEY not in state:
        return logits
    W = input_embedding_weight(model)
    hints = hint_ids(ids, vocab, PREV_KEY in state, CAPTION_KEY in state, True, copy_until_of(state))
    params = {k: state[k].float() for k in COPY_KEYS if k in state}
    cids, scores = copy_terms(hints, lambda x: F.embedding(x, W), params, caption_center_of(state))
    return apply_copy(logits, cids, scores, params, lo)


class HintedBackend:
    """A decode backend (decoding.HFBackend, fast_decode.FastDecoder) whose every fed position gets its parent hint.

    The inner backend takes `extra` [R, L, H] input embeddings in prefill / step / step_many; this wrapper tracks
    each row's ids (HintTracker), so speculative windows (`truncate`) and dropped guidance rows (`keep_rows`) keep
    the hints right. With the copy read-out `logits` adds it to the logits of the last fed position, or of the
    window positions `positions` names (indices into the last `step_many`'s window: what the speculative decoders
    read), whose copy cells come from the ids fed up to each of them.
    """

    def __init__(self, inner, vocab: UnifiedVocab, state: dict, embed_weight: torch.Tensor):
        self.inner = inner
        self.vocab = vocab
        self.device = inner.device
        self.name = inner.name
        self.embed_weight = embed_weight
        self.prev = PREV_KEY in state
        self.caption = CAPTION_KEY in state
        self.copy = COPY_KEY in state
        self.copy_until = copy_until_of(state)
        self.proj_t = state_projections_t(state).to(device=embed_weight.device, dtype=embed_weight.dtype).contiguous()
        center = caption_center_of(state)
        self.center = tuple(t.to(device=embed_weight.device, dtype=embed_weight.dtype) for t in center) if center else None
        if self.copy:
            self.copy_params = {k: state[k].to(device=embed_weight.device, dtype=torch.float32) for k in COPY_KEYS
                                if k in state}
        self.trackers: list[HintTracker] = []
        self.window: list[list[tuple[int, ...]]] | None = None  # the hint ids of every position of the last call

    def __getattr__(self, name):  # everything else (fallback_reason, cache, speculative_mode, ...) from the inner one
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _extra(self, hints: list[list[tuple[int, ...]]]) -> torch.Tensor | None:
        self.window = hints
        h = torch.tensor(hints, dtype=torch.long, device=self.embed_weight.device)
        if not bool((h >= 0).any()):  # copy slots come only with caption slots: they add no position here
            return None
        return hint_part(h, lambda x: F.embedding(x, self.embed_weight), self.proj_t, self.caption,
                         self.center, self.copy).to(self.device)

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, max_len: int | None = None):
        self.trackers = [HintTracker(self.vocab, self.prev, self.caption, self.copy, self.copy_until)
                         for _ in range(ids.shape[0])]
        hints = [tr.feed_many(row) for tr, row in zip(self.trackers, ids.tolist())]
        return self.inner.prefill(ids, mask, max_len=max_len, extra=self._extra(hints))

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor):
        hints = [[tr.feed(t)] for tr, t in zip(self.trackers, tokens.view(-1).tolist())]
        return self.inner.step(tokens, extra=self._extra(hints))

    @torch.inference_mode()
    def step_many(self, tokens: torch.Tensor):
        hints = [tr.feed_many(row) for tr, row in zip(self.trackers, tokens.tolist())]
        return self.inner.step_many(tokens, extra=self._extra(hints))

    def truncate(self, n: int) -> None:
        self.inner.truncate(n)
        for tr in self.trackers:
            tr.truncate(n)
        self.window = None  # the next fed position sets it

    def keep_rows(self, n: int) -> None:
        self.inner.keep_rows(n)
        self.trackers = self.trackers[:n]
        self.window = self.window[:n] if self.window is not None else None

    def logits(self, state, lo: int, hi: int, positions: Sequence[int] | None = None):
        """The inner backend's logits of state [R, H] (each row's last fed position) or [R, L, H] (the positions
        `positions` of the last call's window, L of them), plus the copy read-out's terms at those positions."""
        out = self.inner.logits(state, lo, hi, positions)
        if not self.copy:
            return out
        if state.dim() == 2 and self.window is not None and state.shape[0] == len(self.window):
            hints = [row[-1] for row in self.window]  # each row's last fed position
        elif (state.dim() == 3 and positions is not None and self.window is not None
              and state.shape[0] == len(self.window) and state.shape[1] == len(positions)):
            hints = [[row[j] for j in positions] for row in self.window]
        else:
            raise RuntimeError("the copy read-out needs the state of each row's last fed position, or the window "
                               "positions it holds")
        h = torch.tensor(hints, dtype=torch.long, device=self.embed_weight.device)
        ids, scores = copy_terms(h, lambda x: F.embedding(x, self.embed_weight), self.copy_params,
                                 tuple(t.float() for t in self.center) if self.center else None)
        return apply_copy(out, ids.to(out.device), scores.to(out.device),
                          {k: v.to(out.device) for k, v in self.copy_params.items()}, lo)

    @property
    def supports_step_many(self) -> bool:
        return bool(getattr(self.inner, "supports_step_many", False)) and callable(getattr(self.inner, "step_many", None))

    @property
    def position(self) -> int:
        return self.inner.position


def input_embedding_weight(model) -> torch.Tensor:
    """The input embedding matrix of an HF model or of light_model.LightLlama."""
    if hasattr(model, "tensor") and hasattr(model, "embed_tokens"):
        return model.tensor("model.embed_tokens.weight")
    return model.get_input_embeddings().weight.detach()


def wrap_backend(backend, model, vocab: UnifiedVocab, state: dict | None):
    """`backend` with parent hints when the model has them (state from `load_parent_hint_state`), else itself."""
    if state is None:
        return backend
    return HintedBackend(backend, vocab, state, input_embedding_weight(model))
