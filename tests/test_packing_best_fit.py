"""Best-fit packing (`data.packing: best_fit`): greedy's row format, far less padding, deterministic, resumable."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from vidgpt.config import load_config
from vidgpt.errors import ConfigError, DataError, VidgptError, one_line
from vidgpt.layout import STRUCTURE, TEXT, VISUAL
from vidgpt.train.lm_data import LMDataConfig, PackedStream, RowStream, SourceConfig
from vidgpt.train.packing import BestFitPacker, Document, PackStats, Packer, pack
from vidgpt.vocab import UnifiedVocab, VocabSpec

ROOT = Path(__file__).resolve().parents[1]
VOCAB = UnifiedVocab(VocabSpec(6), offset=128)
SEQ = 64


def docs_of(lengths, w=1.0):
    """Documents with ids no other document has (doc j: 1000 * (j + 1) + t), so each can be found in the rows."""
    return [Document([1000 * (j + 1) + t for t in range(n)], [w] * n) for j, n in enumerate(lengths)]


def segments(row):
    """(ids, weights) of each run of a row that starts at position 0 (documents, then the padding)."""
    pos = row["position_ids"].tolist()
    starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
    return [(row["input_ids"][a:b].tolist(), row["weights"][a:b].tolist()) for a, b in zip(starts, starts[1:])]


def check_rows(rows, docs, seq_len, pad_id=0):
    """Every row in greedy's format; every document's tokens exactly once, in one row, contiguous."""
    by_first = {d.input_ids[0]: d for d in docs}
    seen = []
    for row in rows:
        assert set(row) == {"input_ids", "position_ids", "weights"}
        assert row["input_ids"].dtype == torch.long and row["position_ids"].dtype == torch.long
        assert row["weights"].dtype == torch.float32
        assert all(v.shape == (seq_len,) for v in row.values())
        segs = segments(row)
        padded = False
        for ids, w in segs:
            if ids[0] == pad_id:  # the padding: last, all pad, weight 0
                assert not padded and all(x == pad_id for x in ids) and not any(w)
                padded = True
                continue
            assert not padded, "a document after the padding"
            d = by_first[ids[0]]
            assert ids == d.input_ids  # whole and contiguous
            assert w == [0.0] + list(d.weights[1:])  # weight 0 at the document start only
            seen.append(ids[0])
    assert sorted(seen) == sorted(by_first)  # each document exactly once


def test_rows_have_the_greedy_format_and_hold_each_document_once():
    lengths = [(7 * j) % 23 + 2 for j in range(120)]  # 2..24 tokens, rows of 32
    docs = docs_of(lengths, w=0.5)
    stats = PackStats()
    rows = list(pack(docs, 32, packing="best_fit", stats=stats))
    check_rows(rows, docs, 32)
    greedy_stats = PackStats()
    greedy = list(pack(docs, 32, stats=greedy_stats))
    check_rows(greedy, docs, 32)
    assert stats.docs == greedy_stats.docs == 120 and stats.tokens == greedy_stats.tokens == sum(lengths)
    assert stats.rows == len(rows) and stats.rows * 32 == stats.tokens + stats.pad
    assert stats.pad < greedy_stats.pad
    # one document: the very same row from both packers (positions, weights, padding)
    one = docs_of([5])
    a, b = list(pack(one, 8, pad_id=3)), list(pack(one, 8, pad_id=3, packing="best_fit"))
    assert len(a) == len(b) == 1 and all(torch.equal(a[0][k], b[0][k]) for k in a[0])


def fill(t, n):
    return Document([t] * n, [1.0] * n)


def test_best_fit_places_into_the_tightest_open_row_and_evicts_the_fullest():
    for evict in ("fullest", "oldest"):
        p = BestFitPacker(20, open_rows=2, evict=evict)
        assert p.add(fill(11, 6)) == [] and p.add(fill(12, 10)) == []  # row A: 16 (4 left)
        assert p.add(fill(13, 8)) == []  # does not fit A: opens row B (12 left)
        out = p.add(fill(14, 3))  # fits A and B: goes to A, the tightest; A has 1 left: closed at once
        assert len(out) == 1 and out[0]["input_ids"].tolist() == [11] * 6 + [12] * 10 + [14] * 3 + [0]
        assert out[0]["position_ids"].tolist() == list(range(6)) + list(range(10)) + list(range(3)) + [0]
        assert p.add(fill(15, 9)) == []  # B: 17 (3 left)
        assert p.add(fill(16, 18)) == []  # row C: 18 (2 left)
        out = p.add(fill(17, 14))  # fits neither B nor C, 2 rows open: one is closed
        closed = out[0]["input_ids"].tolist()
        if evict == "fullest":
            assert closed == [16] * 18 + [0, 0]
        else:
            assert closed == [13] * 8 + [15] * 9 + [0] * 3
        rest = p.flush()  # the open rows, oldest first
        assert [r["input_ids"][0].item() for r in rest] == ([13, 17] if evict == "fullest" else [16, 17])
        assert p.stats.rows == 4 and p.stats.tokens == 68 and p.stats.pad == 4 * 20 - 68
    # a row exactly full is closed at once
    q = BestFitPacker(10)
    assert len(q.add(docs_of([10])[0])) == 1 and q.flush() == []


def test_long_documents_follow_the_same_rule():
    kinds = [TEXT] * 7 + [STRUCTURE] + [VISUAL] * 12
    long = Document(list(range(500, 520)), [1.0] * 20, kinds)
    short = docs_of([3, 4])
    for long_docs in ("split", "drop"):
        g, b = Packer(10, long_docs=long_docs), BestFitPacker(10, long_docs=long_docs)
        rows = {}
        for name, p in (("greedy", g), ("best_fit", b)):
            out = []
            for d in [short[0], long, short[1]]:
                out += p.add(d)
            rows[name] = out + p.flush()
        assert g.stats.docs == b.stats.docs and g.stats.split == b.stats.split
        assert g.stats.dropped == b.stats.dropped and g.stats.tokens == b.stats.tokens
        kept = [t for name in rows for r in rows[name] for t in r["input_ids"].tolist() if t >= 500]
        assert sorted(kept) == sorted(2 * ([] if long_docs == "drop" else list(range(500, 520))) +
                                      2 * (short[0].input_ids + short[1].input_ids))
    # the pieces of a split document are the greedy packer's pieces: [8, 10, 2]
    b = BestFitPacker(10)
    rows = b.add(long) + b.flush()
    assert sorted(sum(1 for p in r["position_ids"].tolist() if p == 0) for r in rows) == [1, 2]
    assert b.stats.split == 1 and b.stats.tokens == 20


def test_pad_share_on_the_gpu_mixture_is_far_below_greedy(load_tool):
    tool = load_tool("pack_fill")
    lengths = tool.mixture_lengths(2000, seed=0)  # ~270 / ~1,010 / ~2,000 and text 50-1,500; rows of 2,304
    greedy = tool.pad_share(Packer(2304), lengths)
    best = tool.pad_share(BestFitPacker(2304), lengths)
    assert greedy > 0.18  # like the last GPU run (21%)
    assert best < 0.05 and best < greedy / 4, (greedy, best)
    # determinism: the same documents, the same rows
    docs = docs_of(lengths[:300])
    a, b = list(pack(docs, 2304, packing="best_fit")), list(pack(docs, 2304, packing="best_fit"))
    assert len(a) == len(b) and all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)
    check_rows(a, docs, 2304)


def test_the_tool_prints_the_table(capsys, load_tool):
    assert load_tool("pack_fill").main(["--docs", "200", "--open-rows", "2", "8"]) == 0
    out = capsys.readouterr().out
    assert "| greedy | 1 |" in out and "| best_fit | 8 |" in out


# --- through PackedStream / RowStream ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    """2 Parquet files x 4 row groups x 30 token records of 3..50 tokens (rows of 64 hold 2-10 of them)."""
    d = tmp_path_factory.mktemp("bf_shards")
    r = 0
    for f in range(2):
        recs = []
        for _ in range(120):
            n = 3 + (r * 17) % 48
            recs.append({"input_ids": [int(3 + (r * 7 + k) % 120) for k in range(n)]})
            r += 1
        pq.write_table(pa.Table.from_pylist(recs), d / f"part-00000-{f:05d}.parquet", row_group_size=30)
    return d


def cfg_for(d, packing="best_fit", streams=2):
    return LMDataConfig(sources=[SourceConfig(kind="shards", paths=[str(d)])], streams=streams, holdout_every=0,
                        loss_on=["text"], packing=packing)


def rows(stream, n):
    return [next(stream) for _ in range(n)]


def same(a, b):
    return len(a) == len(b) and all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def test_resume_from_the_saved_state_gives_the_uninterrupted_rows(shard_dir):
    cfg = cfg_for(shard_dir)
    straight = rows(RowStream(cfg, VOCAB, None, SEQ, 0), 90)
    assert not same(straight, rows(RowStream(cfg_for(shard_dir, "greedy"), VOCAB, None, SEQ, 0), 90))
    for k in (1, 23, 40):
        parts = []
        for rank in range(2):  # consumed on 2 processes, k rows each
            s = RowStream(cfg, VOCAB, None, SEQ, 0, rank=rank, world_size=2)
            rows(s, k)
            parts.append(s.state_dict())
        state = json.loads(json.dumps(RowStream.merge(parts)))  # what trainer_state.json holds
        held = [len(st["open"]) for st in state["streams"].values()]
        assert all(st["packing"] == "best_fit" for st in state["streams"].values()) and max(held) > 1
        resumed = RowStream(cfg, VOCAB, None, SEQ, 0, skip=2 * k, state=state)  # ... resumed on 1 process
        assert same(rows(resumed, 90 - 2 * k), straight[2 * k:]), k
    # without a saved position it replays its streams to the same rows
    assert same(rows(RowStream(cfg, VOCAB, None, SEQ, 0, skip=30), 60), straight[30:])


def test_packed_stream_state_round_trip_and_packing_mismatch(shard_dir):
    from vidgpt.train.lm_data import DocumentStream

    cfg = cfg_for(shard_dir, streams=1)

    def stream(packing="best_fit"):
        return PackedStream(DocumentStream(cfg, VOCAB, None, 0), SEQ, 0, "split", None, packing)

    a = stream()
    for _ in range(17):
        a.next_row()
    st = json.loads(json.dumps(a.state()))
    b = stream()
    b.load(st)
    assert same([a.next_row() for _ in range(30)], [b.next_row() for _ in range(30)])
    with pytest.raises(DataError, match="data.packing"):
        stream("greedy").load(st)
    g = stream("greedy")
    g.next_row()
    gs = g.state()
    assert "partial" in gs and "open" not in gs and "packing" not in gs  # greedy states keep their old form
    b = stream()
    b.load(gs)  # greedy -> best_fit is allowed on resume: the partial row becomes an open row
    carried = [len(r) for r in g.packer.open_rows_state()]
    assert carried and [len(r) for r in b.packer.open_rows_state()] == carried


def test_config_switch_and_its_error():
    from vidgpt.train.lm_trainer import LMTrainConfig

    assert LMDataConfig().packing == "greedy"
    cfg = load_config(LMTrainConfig, None, ["data.packing=best_fit"])
    assert cfg.data.packing == "best_fit"
    with pytest.raises(ConfigError) as e:
        load_config(LMTrainConfig, None, ["data.packing=bestfit"])
    assert isinstance(e.value, VidgptError) and "\n" not in str(e.value)
    assert one_line(e.value) == "data.packing='bestfit': expected one of greedy, best_fit, single"
    with pytest.raises(ConfigError):
        LMDataConfig(packing="first_fit")
    gpu = load_config(LMTrainConfig, ROOT / "configs" / "lm" / "default_model_gpu.yaml")
    assert gpu.data.packing == "best_fit"
    assert load_config(LMTrainConfig, ROOT / "configs" / "lm" / "tiny.yaml").data.packing == "greedy"


# --- one document a row (`data.packing: single`) ------------------------------------------------------------------


def test_single_puts_each_document_alone_in_a_row_and_splits_long_ones():
    docs = docs_of([5, 64, 3, 80, 40])
    stats = PackStats()
    out = list(pack(docs, SEQ, stats=stats, packing="single"))
    pieces = [d for d in docs if len(d) <= SEQ]
    check_rows([r for r in out if int(r["input_ids"][0]) // 1000 != 4], pieces, SEQ)  # all but the split one
    for r in out:
        assert len([s for s in segments(r) if s[0][0] != 0]) == 1  # one document (or piece) a row, then padding
    assert len(out) == 6 and stats.split == 1 and stats.rows == 6  # the 80-token document in two pieces
    long_rows = [r for r in out if int(r["input_ids"][0]) // 1000 == 4]
    assert sum(int((r["weights"] > 0).sum()) + 1 for r in long_rows) == 80
    assert stats.tokens == 5 + 64 + 3 + 80 + 40 and stats.pad == 6 * SEQ - stats.tokens


def test_single_rows_make_one_causal_sequence_after_trimming():
    from vidgpt.train.lm_loss import trim_batch
    from vidgpt.train.packing import collate

    batch = trim_batch(collate(list(pack(docs_of([10, 30, 7]), SEQ, packing="single"))))
    assert batch["input_ids"].shape == (3, 30)  # the micro-batch cut after its longest document
    assert torch.equal(batch["position_ids"], torch.arange(30).expand(3, 30))  # no restart: sdpa's causal kernel


def test_single_resumes_and_refuses_another_packing(shard_dir):
    from vidgpt.train.lm_data import DocumentStream

    cfg = cfg_for(shard_dir, "single")
    straight = rows(RowStream(cfg, VOCAB, None, SEQ, 0), 60)
    parts = []
    for rank in range(2):
        s = RowStream(cfg, VOCAB, None, SEQ, 0, rank=rank, world_size=2)
        rows(s, 11)
        parts.append(s.state_dict())
    state = json.loads(json.dumps(RowStream.merge(parts)))
    assert all(st["packing"] == "single" and st["open"] == [] for st in state["streams"].values())
    assert same(rows(RowStream(cfg, VOCAB, None, SEQ, 0, skip=22, state=state), 38), straight[22:])
    one = cfg_for(shard_dir, "single", streams=1)
    a = PackedStream(DocumentStream(one, VOCAB, None, 0), SEQ, 0, "split", None, "single")
    a.next_row()
    with pytest.raises(DataError, match="data.packing"):
        PackedStream(DocumentStream(one, VOCAB, None, 0), SEQ, 0, "split", None, "best_fit").load(a.state())


def test_tokens_per_s_counts_document_tokens_not_padding():
    from vidgpt.train.lm_trainer import document_tokens
    from vidgpt.train.packing import collate

    docs = docs_of([10, 30, 7])
    single = collate(list(pack(docs, SEQ, packing="single")))
    packed = collate(list(pack(docs, SEQ, packing="greedy")))
    assert single["input_ids"].numel() == 3 * SEQ and packed["input_ids"].numel() == SEQ
    assert document_tokens(single["weights"]) == document_tokens(packed["weights"]) == 47


def test_token_normalised_accumulation_trains_like_one_micro_batch(tmp_path):
    """train.loss_norm=tokens: 4 single-document rows as 4 accumulated micro-batches of 1 give the step of one
    micro-batch of 4 (every trained token weighs the same); the default "micro" weighs each row's mean alike."""
    from vidgpt.train.lm_trainer import LMTrainConfig, train_lm

    tiny = ROOT / "configs" / "lm" / "tiny.yaml"
    common = ["data.packing=single", "train.seq_len=64", "train.steps=3", "train.eval_every=3", "train.ckpt_every=0",
              "train.log_every=1", "train.grad_clip=0", "train.warmup_steps=0"]

    def final_eval(*sets):
        out = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        train_lm(load_config(LMTrainConfig, tiny, common + list(sets)), out, progress=False)
        recs = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines() if x.strip()]
        return [r["eval_loss"] for r in recs if "eval_loss" in r][-1]

    one = final_eval("train.micro_batch_size=4", "train.grad_accum=1", "train.eval_batches=1")  # the same 4 eval rows
    tokens = final_eval("train.micro_batch_size=1", "train.grad_accum=4", "train.eval_batches=4", "train.loss_norm=tokens")
    micro = final_eval("train.micro_batch_size=1", "train.grad_accum=4", "train.eval_batches=4")
    assert abs(tokens - one) < 1e-5
    assert abs(micro - one) > 1e-4
    with pytest.raises(ConfigError, match="loss_norm"):
        train_lm(load_config(LMTrainConfig, tiny, common + ["train.loss_norm=rows"]), tmp_path / "bad", progress=False)
