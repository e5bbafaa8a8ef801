import argparse
import json

import pytest

from vidgpt.commands.data_pipeline import register_pipeline_commands
from vidgpt.data.shards import ShardWriter, load_shards, shard_stats
from vidgpt.errors import DataError


def rec(i, kind="video", shape=(2, 2, 2), edit=None):
    n = shape[0] * shape[1] * shape[2]
    return {"codes": [i % 7] * n, "shape": list(shape), "blueprint_codes": None, "blueprint_shape": None,
            "caption": f"clip {i}", "captions": [f"clip {i}"], "source": f"f{i}.mp4", "kind": kind, "edit": edit}


def groups(tmp_path):
    return {f"g{i}": [rec(10 * i + j) for j in range(i + 1)] for i in range(4)}  # 1,2,3,4 records


def test_chunks_hold_whole_groups_and_progress_lists_them(tmp_path):
    seen = []
    with ShardWriter(tmp_path, slice_index=3, records_per_chunk=2, on_chunk=seen.append) as w:
        for g, recs in groups(tmp_path).items():
            w.add(recs, group=g)
        w.skip("bad.mp4", "bad.mp4: empty file")
    names = sorted(p.name for p in tmp_path.glob("*.parquet"))
    assert names == ["part-00003-00000.parquet", "part-00003-00001.parquet", "part-00003-00002.parquet"]
    assert [p.name for p in seen] == names
    progress = json.loads((tmp_path / "progress-00003.json").read_text())
    assert progress["done"] == ["g0", "g1", "g2", "g3"] and progress["failed"] == {"bad.mp4": "bad.mp4: empty file"}
    assert progress["records"] == 10 and progress["by_kind"] == {"video": 10}
    import pyarrow.parquet as pq

    sizes = [pq.read_metadata(tmp_path / n).num_rows for n in names]
    assert sizes == [3, 3, 4]  # g0+g1, g2, g3: never a group split across chunks
    assert not list(tmp_path.glob(".*tmp"))


def test_resume_skips_done_groups_removes_orphans_and_checks_settings(tmp_path):
    w = ShardWriter(tmp_path, 0, records_per_chunk=1, info={"tokenizer": "abc"})
    w.add([rec(1)], group="a")
    w.add([rec(2)], group="b")  # not closed: "b" was flushed (chunk 1), that's all
    (tmp_path / "part-00000-00007.parquet").write_bytes(b"orphan: renamed but never recorded")
    w2 = ShardWriter(tmp_path, 0, records_per_chunk=1, info={"tokenizer": "abc"})
    assert w2.completed == {"a", "b"}
    assert not (tmp_path / "part-00000-00007.parquet").exists()
    with pytest.raises(DataError, match="already written"):
        w2.add([rec(1)], group="a")
    w2.add([rec(3)], group="c")
    w2.close()
    assert sorted(p.name for p in tmp_path.glob("*.parquet"))[-1] == "part-00000-00002.parquet"
    with pytest.raises(DataError, match="other settings \\(tokenizer differ\\)"):
        ShardWriter(tmp_path, 0, info={"tokenizer": "xyz"})


def test_load_shards_and_stats(tmp_path):
    edit = {"instruction": "make it red", "edit_kind": "color", "source_codes": [1] * 8, "source_shape": [2, 2, 2],
            "source_blueprint_codes": None, "source_blueprint_shape": None, "source": "s.mp4"}
    with ShardWriter(tmp_path / "a", 0, records_per_chunk=2) as w:
        w.add([rec(0, "image", (1, 2, 2)), rec(1)], group="x")
    with ShardWriter(tmp_path / "b", 0, records_per_chunk=2) as w:
        w.add([rec(2, "edit", edit=edit)], group="y")
    ds = load_shards([tmp_path / "a", tmp_path / "b"], cache_dir=tmp_path / "cache")
    assert len(ds) == 3 and ds[0]["shape"] == [1, 2, 2] and ds[0]["edit"] is None
    assert ds[2]["edit"]["instruction"] == "make it red" and ds[2]["edit"]["source_codes"] == [1] * 8
    assert [r["kind"] for r in load_shards(tmp_path / "a", streaming=True)] == ["image", "video"]
    stats = shard_stats(tmp_path / "a")
    assert stats["records"] == 2 and stats["by_kind"] == {"image": 1, "video": 1}
    assert stats["by_shape"] == {"1x2x2": 1, "2x2x2": 1} and stats["visual_tokens"] == 12
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no Parquet shards"):
        load_shards(tmp_path / "empty")
    with pytest.raises(DataError, match="shard directory not found"):
        shard_stats(tmp_path / "nope")


def test_stats_command(tmp_path, capsys):
    with ShardWriter(tmp_path, 0) as w:
        w.add([rec(0), rec(1, "image", (1, 2, 2))], group="x")
    parser = argparse.ArgumentParser()
    register_pipeline_commands(parser.add_subparsers())
    args = parser.parse_args(["stats", str(tmp_path), "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["records"] == 2 and out["by_kind"] == {"image": 1, "video": 1}
