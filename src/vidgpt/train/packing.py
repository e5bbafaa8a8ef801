"""Sequence packing: documents -> fixed-length rows without cross-document attention.

A document is token ids plus a per-token loss weight (the weight of *predicting* that token).
Three packers, all streaming and deterministic:
- `Packer` (greedy, `data.packing: greedy`): documents in arrival order; when the next document does not
  fit in what is left of the row, the row is closed and padded.
- `BestFitPacker` (`data.packing: best_fit`): up to `open_rows` partially filled rows; each document goes
  into the open row with the least space left that still holds it; when none does, the fullest open row
  is closed (padded) and a new one opened. `flush` closes the rest, oldest first. On a mixture of ~270,
  ~1,010 and ~2,000-token documents plus text of 50-1,500 in rows of 2,304 this cuts the padding from
  21% to ~4% (docs/TRAINING_CPU.md, "Packing: best fit"; tools/pack_fill.py).
- `SinglePacker` (`data.packing: single`): one document (or piece of a long one) a row, padded. For short
  documents on the CPU: a packed row of several documents needs a block-diagonal mask, and there sdpa takes its
  masked path over the whole row (a 2,304-token row of nine 256-token documents trains at ~0.45x the speed of
  the same documents as nine rows; docs/TRAINING_CPU.md, "One document a row"); a single-document row stays
  one causal sequence (the fast heads' `trim_batch`) and the micro-batch's trailing padding is cut. Set
  `train.seq_len` above the longest document; with `train.micro_batch_size: 1` no padding is computed at all
  (the micro-batch size moves the speed by ~10%, padding a short document to a long neighbour by far more).
All build rows the same way (`_PackerBase._emit`). Each row carries `position_ids` that
restart at 0 at every document start (see vidgpt.attention: that is all the model needs to keep
documents apart) and `weights` with 0 at document starts and on padding, so no token is trained to
follow the end of another document.

Documents longer than the row: `long_docs="split"` cuts them into pieces of at most `seq_len` at a
safe boundary — the last change of token kind (text/visual/structure) or the last structure token in
the second half of the window, else a hard cut at `seq_len` — each piece a document of its own;
`long_docs="drop"` drops them and counts them in `stats["dropped"]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch

from ..layout import STRUCTURE


@dataclass
class Document:
    input_ids: list[int]
    weights: list[float]  # loss weight of predicting each token (0 = not trained)
    kinds: list[int] | None = None  # layout kinds, used to find safe split points

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class PackStats:
    docs: int = 0
    rows: int = 0
    tokens: int = 0  # document tokens placed in rows
    pad: int = 0
    split: int = 0  # documents cut into pieces
    dropped: int = 0  # documents dropped (too long with long_docs="drop", or shorter than 2 tokens)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def safe_cut(doc: Document, limit: int) -> int:
    """Where to cut `doc` so the first piece has <= limit tokens (> limit // 2 when a boundary exists)."""
    if doc.kinds is None:
        return limit
    kinds = doc.kinds
    for c in range(limit, limit // 2, -1):
        if kinds[c - 1] == STRUCTURE or kinds[c] != kinds[c - 1]:
            return c
    return limit


def split_document(doc: Document, limit: int) -> list[Document]:
    pieces = []
    while len(doc) > limit:
        c = safe_cut(doc, limit)
        pieces.append(Document(doc.input_ids[:c], doc.weights[:c], doc.kinds[:c] if doc.kinds else None))
        doc = Document(doc.input_ids[c:], doc.weights[c:], doc.kinds[c:] if doc.kinds else None)
    pieces.append(doc)
    return pieces


@dataclass
class OpenRow:
    """A row being filled: token ids, weights (0 at each document start) and document lengths so far."""

    ids: list[int] = field(default_factory=list)
    w: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def put(self, piece: Document) -> None:
        w = list(piece.weights)
        w[0] = 0.0  # never train across a document start
        self.ids.extend(piece.input_ids)
        self.w.extend(w)
        self.lengths.append(len(piece))


PACKINGS = ("greedy", "best_fit", "single")


@dataclass
class _PackerBase:
    """What both packers share: the long-document rule, the row format and the stats."""

    seq_len: int
    pad_id: int = 0
    long_docs: str = "split"  # or "drop"
    stats: PackStats = field(default_factory=PackStats)

    def __post_init__(self) -> None:
        if self.long_docs not in ("split", "drop"):
            raise ValueError(f"long_docs={self.long_docs!r}: expected 'split' or 'drop'")

    def _pieces(self, doc: Document) -> list[Document]:
        """The pieces of `doc` to place (none when it is dropped), counted in the stats."""
        if len(doc) < 2:
            self.stats.dropped += 1
            return []
        self.stats.docs += 1
        if len(doc) > self.seq_len:
            if self.long_docs == "drop":
                self.stats.dropped += 1
                return []
            self.stats.split += 1
            return split_document(doc, self.seq_len)
        return [doc]

    def _put(self, row: OpenRow, piece: Document) -> None:
        row.put(piece)
        self.stats.tokens += len(piece)

    def _emit(self, row: OpenRow) -> dict:
        """The row padded to seq_len: {input_ids, position_ids, weights}."""
        pad = self.seq_len - len(row)
        ids = row.ids + [self.pad_id] * pad
        w = row.w + [0.0] * pad
        pos: list[int] = []
        for n in row.lengths:
            pos.extend(range(n))
        pos.extend(range(pad))
        self.stats.rows += 1
        self.stats.pad += pad
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "position_ids": torch.tensor(pos, dtype=torch.long),
            "weights": torch.tensor(w, dtype=torch.float32),
        }

    # the partial rows, for a resumable state (vidgpt.train.lm_data.PackedStream serialises them)
    def open_rows_state(self) -> list[OpenRow]:
        raise NotImplementedError

    def load_open_rows(self, rows: list[OpenRow]) -> None:
        raise NotImplementedError


@dataclass
class Packer(_PackerBase):
    """Greedy streaming packer; `add` returns the rows it closed, `flush` the last partial row."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._row = OpenRow()

    def _close(self) -> dict:
        row, self._row = self._row, OpenRow()
        return self._emit(row)

    def add(self, doc: Document) -> list[dict]:
        rows: list[dict] = []
        for piece in self._pieces(doc):
            if len(self._row) + len(piece) > self.seq_len:
                rows.append(self._close())
            self._put(self._row, piece)
            if len(self._row) == self.seq_len:
                rows.append(self._close())
        return rows

    def flush(self) -> list[dict]:
        return [self._close()] if len(self._row) else []

    def open_rows_state(self) -> list[OpenRow]:
        return [self._row] if len(self._row) else []

    def load_open_rows(self, rows: list[OpenRow]) -> None:
        if len(rows) > 1:
            raise ValueError(f"the greedy packer holds one partial row, the state has {len(rows)}")
        self._row = rows[0] if rows else OpenRow()


@dataclass
class BestFitPacker(_PackerBase):
    """Best-fit streaming packer over up to `open_rows` partial rows (kept oldest first).

    A piece goes into the open row with the least space left that still holds it (the oldest on a tie).
    When none holds it and `open_rows` rows are open, the fullest open row (`evict="fullest"`, the oldest
    on a tie) or the oldest one (`evict="oldest"`) is closed first; then the piece opens a new row. A row
    that is exactly full, or has less space left than the shortest document (2 tokens), is closed at once.
    """

    open_rows: int = 8
    evict: str = "fullest"  # or "oldest"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.open_rows < 1:
            raise ValueError(f"open_rows={self.open_rows}: expected >= 1")
        if self.evict not in ("fullest", "oldest"):
            raise ValueError(f"evict={self.evict!r}: expected 'fullest' or 'oldest'")
        self._open: list[OpenRow] = []

    def _pop(self, i: int) -> dict:
        return self._emit(self._open.pop(i))

    def add(self, doc: Document) -> list[dict]:
        rows: list[dict] = []
        L = self.seq_len
        for piece in self._pieces(doc):
            n = len(piece)
            best, best_free = -1, L + 1
            for i, r in enumerate(self._open):
                free = L - len(r)
                if n <= free < best_free:
                    best, best_free = i, free
            if best < 0:
                if len(self._open) >= self.open_rows:
                    if self.evict == "oldest":
                        victim = 0
                    else:
                        victim = min(range(len(self._open)), key=lambda i: (L - len(self._open[i]), i))
                    rows.append(self._pop(victim))
                self._open.append(OpenRow())
                best = len(self._open) - 1
            self._put(self._open[best], piece)
            if L - len(self._open[best]) < 2:  # nothing more can go in (documents have >= 2 tokens)
                rows.append(self._pop(best))
        return rows

    def flush(self) -> list[dict]:
        rows = [self._emit(r) for r in self._open]
        self._open = []
        return rows

    def open_rows_state(self) -> list[OpenRow]:
        return list(self._open)

    def load_open_rows(self, rows: list[OpenRow]) -> None:
        if len(rows) > self.open_rows:
            raise ValueError(f"open_rows={self.open_rows}, the state has {len(rows)} partial rows")
        self._open = list(rows)


@dataclass
class SinglePacker(_PackerBase):
    """One document a row: every piece is emitted at once, padded to seq_len; nothing is ever open."""

    def add(self, doc: Document) -> list[dict]:
        rows = []
        for piece in self._pieces(doc):
            row = OpenRow()
            self._put(row, piece)
            rows.append(self._emit(row))
        return rows

    def flush(self) -> list[dict]:
        return []

    def open_rows_state(self) -> list[OpenRow]:
        return []

    def load_open_rows(self, rows: list[OpenRow]) -> None:
        if rows:
            raise ValueError(f"packing=single keeps no partial rows, the state has {len(rows)}")


def make_packer(packing: str, seq_len: int, pad_id: int = 0, long_docs: str = "split",
                open_rows: int = 8) -> _PackerBase:
    """A greedy `Packer`, a `BestFitPacker` or a `SinglePacker` by name (`data.packing`)."""
    if packing == "greedy":
        return Packer(seq_len, pad_id, long_docs)
    if packing == "best_fit":
        return BestFitPacker(seq_len, pad_id, long_docs, open_rows=open_rows)
    if packing == "single":
        return SinglePacker(seq_len, pad_id, long_docs)
    raise ValueError(f"packing={packing!r}: expected one of {', '.join(PACKINGS)}")


def pack(docs: Iterable[Document], seq_len: int, pad_id: int = 0, long_docs: str = "split",
         stats: PackStats | None = None, packing: str = "greedy", open_rows: int = 8) -> Iterator[dict]:
    """Rows {input_ids, position_ids, weights} (each LongTensor/FloatTensor [seq_len]) from documents."""
    packer = make_packer(packing, seq_len, pad_id, long_docs, open_rows)
    if stats is not None:
        packer.stats = stats
    for doc in docs:
        yield from packer.add(doc)
    yield from packer.flush()


def collate(rows: list[dict]) -> dict:
    """Stack rows into a batch: each field [B, seq_len]."""
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
