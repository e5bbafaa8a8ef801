"""Packing: fixed-length rows, restarting positions, no training across document starts, long docs."""

import torch

from vidgpt.layout import STRUCTURE, TEXT, VISUAL
from vidgpt.train.packing import Document, PackStats, Packer, collate, pack, split_document


def doc(n, start=10, w=1.0, kinds=None):
    return Document(list(range(start, start + n)), [w] * n, kinds)


def test_rows_have_fixed_length_and_restarting_positions():
    stats = PackStats()
    rows = list(pack([doc(4), doc(5, 100), doc(6, 200)], seq_len=10, pad_id=0, stats=stats))
    assert len(rows) == 2
    r0, r1 = rows
    assert r0["input_ids"].tolist() == [10, 11, 12, 13, 100, 101, 102, 103, 104, 0]
    assert r0["position_ids"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 4, 0]
    assert r0["weights"].tolist() == [0, 1, 1, 1, 0, 1, 1, 1, 1, 0]
    assert r1["input_ids"][:6].tolist() == list(range(200, 206)) and r1["weights"][6:].sum() == 0
    assert stats.docs == 3 and stats.rows == 2 and stats.tokens == 15 and stats.pad == 5
    batch = collate(rows)
    assert batch["input_ids"].shape == (2, 10) and batch["weights"].dtype == torch.float32


def test_long_documents_split_at_safe_boundary_or_drop():
    kinds = [TEXT] * 7 + [STRUCTURE] + [VISUAL] * 12
    d = doc(20, kinds=kinds)
    pieces = split_document(d, 10)
    assert [len(p) for p in pieces] == [8, 10, 2]  # cut after the structure token, then hard cuts
    assert sum((p.input_ids for p in pieces), []) == d.input_ids
    rows = list(pack([d], seq_len=10))
    assert all(len(r["input_ids"]) == 10 for r in rows)
    p = Packer(10, long_docs="drop")
    assert p.add(d) == [] and p.flush() == [] and p.stats.dropped == 1
    p = Packer(10, long_docs="split")
    p.add(d)
    assert p.stats.split == 1


def test_exactly_full_row_is_emitted_at_once():
    p = Packer(6)
    rows = p.add(doc(6))
    assert len(rows) == 1 and rows[0]["position_ids"].tolist() == list(range(6))
    assert p.flush() == []
