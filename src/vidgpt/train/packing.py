"""Sequence packing: documents -> fixed-length rows without cross-document attention.

A document is token ids plus a per-token loss weight (the weight of *predicting* that token).
Documents are packed greedily in arrival order (streaming, deterministic); when the next document does
not fit in what is left of the row, the row is closed and padded. Each row carries `position_ids` that
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
class Packer:
    """Greedy streaming packer; `add` returns the rows it closed, `flush` the last partial row."""

    seq_len: int
    pad_id: int = 0
    long_docs: str = "split"  # or "drop"
    stats: PackStats = field(default_factory=PackStats)

    def __post_init__(self) -> None:
        if self.long_docs not in ("split", "drop"):
            raise ValueError(f"long_docs={self.long_docs!r}: expected 'split' or 'drop'")
        self._ids: list[int] = []
        self._w: list[float] = []
        self._lengths: list[int] = []

    def _close(self) -> dict:
        L = self.seq_len
        used = len(self._ids)
        pad = L - used
        ids = self._ids + [self.pad_id] * pad
        w = self._w + [0.0] * pad
        pos: list[int] = []
        for n in self._lengths:
            pos.extend(range(n))
        pos.extend(range(pad))
        self.stats.rows += 1
        self.stats.pad += pad
        self._ids, self._w, self._lengths = [], [], []
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "position_ids": torch.tensor(pos, dtype=torch.long),
            "weights": torch.tensor(w, dtype=torch.float32),
        }

    def add(self, doc: Document) -> list[dict]:
        rows: list[dict] = []
        if len(doc) < 2:
            self.stats.dropped += 1
            return rows
        self.stats.docs += 1
        if len(doc) > self.seq_len:
            if self.long_docs == "drop":
                self.stats.dropped += 1
                return rows
            self.stats.split += 1
            pieces = split_document(doc, self.seq_len)
        else:
            pieces = [doc]
        for piece in pieces:
            if len(self._ids) + len(piece) > self.seq_len:
                rows.append(self._close())
            w = list(piece.weights)
            w[0] = 0.0  # never train across a document start
            self._ids.extend(piece.input_ids)
            self._w.extend(w)
            self._lengths.append(len(piece))
            self.stats.tokens += len(piece)
            if len(self._ids) == self.seq_len:
                rows.append(self._close())
        return rows

    def flush(self) -> list[dict]:
        return [self._close()] if self._ids else []


def pack(docs: Iterable[Document], seq_len: int, pad_id: int = 0, long_docs: str = "split",
         stats: PackStats | None = None) -> Iterator[dict]:
    """Rows {input_ids, position_ids, weights} (each LongTensor/FloatTensor [seq_len]) from documents."""
    packer = Packer(seq_len, pad_id, long_docs)
    if stats is not None:
        packer.stats = stats
    for doc in docs:
        yield from packer.add(doc)
    yield from packer.flush()


def collate(rows: list[dict]) -> dict:
    """Stack rows into a batch: each field [B, seq_len]."""
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
