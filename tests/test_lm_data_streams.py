"""Data at scale: per-rank slices of the shards, a row order independent of the process count, resume from
the saved position without replaying the stream, and a shard format `datasets` streams."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from vidgpt.errors import DataError
from vidgpt.train import lm_data
from vidgpt.train.lm_data import LMDataConfig, RowStream, SourceConfig
from vidgpt.vocab import UnifiedVocab, VocabSpec

VOCAB = UnifiedVocab(VocabSpec(6), offset=128)
SEQ = 32


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    """4 Parquet files x 3 row groups x 10 token records; record r holds ids [r+3, ...] of length 5..14."""
    d = tmp_path_factory.mktemp("shards")
    r = 0
    for f in range(4):
        recs = []
        for _ in range(30):
            n = 5 + r % 10
            recs.append({"input_ids": [int(3 + (r * 7 + k) % 120) for k in range(n)], "rid": r})
            r += 1
        pq.write_table(pa.Table.from_pylist(recs), d / f"part-00000-{f:05d}.parquet", row_group_size=10)
    return d


def cfg_for(d, streams=4, **kw):
    return LMDataConfig(sources=[SourceConfig(kind="shards", paths=[str(d)])], streams=streams, holdout_every=0,
                        loss_on=["text"], **kw)


def rows(stream, n):
    return [next(stream) for _ in range(n)]


def same(a, b):
    return all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x) and len(a) == len(b)


@pytest.fixture
def reads(monkeypatch):
    """Which (file, row group) units each RecordTable.read call touches."""
    seen = []
    real = lm_data.RecordTable.read

    def spy(self, unit):
        seen.append((unit.file, unit.row_group))
        return real(self, unit)

    monkeypatch.setattr(lm_data.RecordTable, "read", spy)
    return seen


def test_each_rank_reads_only_its_own_row_groups(shard_dir, reads):
    cfg = cfg_for(shard_dir)
    per_rank = []
    for rank in range(2):
        reads.clear()
        rows(RowStream(cfg, VOCAB, None, SEQ, 0, rank=rank, world_size=2), 60)  # several epochs of its slice
        per_rank.append(set(reads))
    assert per_rank[0] and per_rank[1] and not per_rank[0] & per_rank[1]
    assert len(per_rank[0] | per_rank[1]) == 12  # together: every row group


def test_global_row_order_depends_on_streams_not_processes(shard_dir):
    cfg = cfg_for(shard_dir)
    one = rows(RowStream(cfg, VOCAB, None, SEQ, 0), 24)
    r0 = rows(RowStream(cfg, VOCAB, None, SEQ, 0, rank=0, world_size=2), 12)
    r1 = rows(RowStream(cfg, VOCAB, None, SEQ, 0, rank=1, world_size=2), 12)
    assert same(one[0::2], r0) and same(one[1::2], r1)
    four = [rows(RowStream(cfg, VOCAB, None, SEQ, 0, rank=r, world_size=4), 6) for r in range(4)]
    assert all(same(one[r::4], four[r]) for r in range(4))
    with pytest.raises(DataError, match="multiple of the 3 processes"):
        RowStream(cfg, VOCAB, None, SEQ, 0, rank=0, world_size=3)


def test_resume_from_the_saved_position_reads_one_row_group(shard_dir, reads):
    cfg = cfg_for(shard_dir)
    straight = rows(RowStream(cfg, VOCAB, None, SEQ, 0), 80)
    parts = []
    for rank in range(2):  # consumed on 2 processes, 25 rows each
        s = RowStream(cfg, VOCAB, None, SEQ, 0, rank=rank, world_size=2)
        rows(s, 25)
        parts.append(s.state_dict())
    state = RowStream.merge(parts)
    import json

    state = json.loads(json.dumps(state))  # what trainer_state.json holds
    reads.clear()
    resumed = RowStream(cfg, VOCAB, None, SEQ, 0, skip=50, state=state)  # ... resumed on 1 process
    first = next(resumed)
    assert len(reads) <= 1  # the row group under the cursor, not the 50 rows before it
    assert same([first] + rows(resumed, 29), straight[50:80])
    # without a saved position it still lands on the same rows, by replaying its own streams
    reads.clear()
    replayed = RowStream(cfg, VOCAB, None, SEQ, 0, skip=50)
    assert same(rows(replayed, 30), straight[50:80]) and len(reads) > 4


def test_fewer_row_groups_than_streams_split_records(shard_dir, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    pq.write_table(pq.read_table(shard_dir / "part-00000-00000.parquet"), small / "a.parquet", row_group_size=100)
    cfg = cfg_for(small, streams=2)
    seen = []
    for rank in range(2):
        s = RowStream(cfg, VOCAB, None, SEQ, 0, rank=rank, world_size=2)
        ids = {int(x) for r in rows(s, 8) for x in r["input_ids"][r["weights"] > 0]}
        seen.append(ids)
    assert seen[0] and seen[1]


def test_synthetic_and_text_sources_resume_too(tmp_path):
    (tmp_path / "t.txt").write_text("\n\n".join(f"paragraph {i} " * (1 + i % 4) for i in range(40)))
    from vidgpt.backbone import toy_text_tokenizer

    tok = toy_text_tokenizer(128)
    cfg = LMDataConfig(sources=[SourceConfig(kind="synthetic", weight=1.0),
                                SourceConfig(kind="text", paths=[str(tmp_path / "t.txt")], weight=1.0)],
                       streams=2, holdout_every=10, chat=False)
    straight = rows(RowStream(cfg, VOCAB, tok, SEQ, 3), 40)
    s = RowStream(cfg, VOCAB, tok, SEQ, 3)
    rows(s, 17)
    resumed = RowStream(cfg, VOCAB, tok, SEQ, 3, skip=17, state=s.state_dict())
    assert same(rows(resumed, 23), straight[17:])
    # the eval split is another stream of records (the held-out ones)
    ev = rows(RowStream(cfg, VOCAB, tok, SEQ, 3, split="eval"), 4)
    assert not same(ev, straight[:4])


def test_shards_stream_through_datasets_per_rank(tmp_path):
    from vidgpt.data.shards import ShardWriter, load_shards

    with ShardWriter(tmp_path, records_per_chunk=5) as w:
        for g in range(4):
            w.add([{"codes": [g * 10 + i] * 4, "shape": [1, 2, 2], "caption": f"clip {g}-{i}", "kind": "image"}
                   for i in range(5)], group=f"g{g}")
    every = [r["caption"] for r in load_shards(tmp_path, streaming=True)]
    assert len(every) == 20
    parts = [[r["caption"] for r in load_shards(tmp_path, streaming=True, rank=k, world_size=2)] for k in range(2)]
    assert sorted(parts[0] + parts[1]) == sorted(every) and not set(parts[0]) & set(parts[1])
    halves = [load_shards(tmp_path, rank=k, world_size=2, cache_dir=tmp_path / "cache") for k in range(2)]
    assert [len(h) for h in halves] == [10, 10]
    assert sorted(list(halves[0]["caption"]) + list(halves[1]["caption"])) == sorted(every)


def docs_of(row_list):
    """The documents in packed rows (a document starts where position_ids restarts; padding is all pad ids)."""
    out = []
    for r in row_list:
        ids, pos = r["input_ids"].tolist(), r["position_ids"].tolist()
        starts = [i for i, p in enumerate(pos) if p == 0] + [len(ids)]
        out += [tuple(ids[a:b]) for a, b in zip(starts, starts[1:]) if any(ids[a:b])]
    return out


def test_a_greedy_state_resumes_under_best_fit_and_not_back(shard_dir):
    """A later piece may switch greedy -> best_fit (less padding): the partial row is carried, nothing is lost."""
    greedy, best = cfg_for(shard_dir, streams=1), cfg_for(shard_dir, streams=1, packing="best_fit")
    s = RowStream(greedy, VOCAB, None, SEQ, 0)
    rows(s, 10)
    state = s.state_dict()
    partial = docs_of([next(RowStream(greedy, VOCAB, None, SEQ, 0, skip=10, state=state))])[0]
    resumed = rows(RowStream(best, VOCAB, None, SEQ, 0, skip=10, state=state), 30)
    on = rows(RowStream(greedy, VOCAB, None, SEQ, 0, skip=10, state=state), 60)
    got, want = docs_of(resumed), docs_of(on)
    assert partial in got  # the saved partial row is carried
    assert all(got.count(d) <= want.count(d) for d in set(got))  # only documents the stream holds, none twice
    assert sum(map(len, got)) > sum(map(len, docs_of(on[:30])))  # the same 30 rows hold more of them
    b = RowStream(best, VOCAB, None, SEQ, 0)
    rows(b, 10)
    with pytest.raises(DataError, match="only greedy -> best_fit"):
        RowStream(greedy, VOCAB, None, SEQ, 0, skip=10, state=b.state_dict())
