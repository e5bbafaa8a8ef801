import json

import pytest

from vidgpt.data.captions import read_caption_csv, read_caption_jsonl, read_captions, read_jsonl, sidecar_caption
from vidgpt.errors import DataError


def test_jsonl_relative_paths_extra_captions_and_edit_pairs(tmp_path):
    f = tmp_path / "m.jsonl"
    lines = [
        {"path": "clips/a.mp4", "caption": "a dog", "captions": ["a dog", "a dog runs"], "split": "train"},
        {"path": "/abs/b.png", "text": "a photo"},
        {"path": "edits/t.mp4", "source_path": "edits/s.mp4", "instruction": "make it red", "edit_kind": "color",
         "caption": "a red ball", "kind": "edit"},
    ]
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    a, b, e = read_caption_jsonl(f)
    assert a.path == tmp_path / "clips/a.mp4" and a.all_captions() == ["a dog", "a dog runs"]
    assert a.meta == {"split": "train"} and a.kind is None
    assert str(b.path) == "/abs/b.png" and b.caption == "a photo"
    assert e.kind == "edit" and e.source_path == tmp_path / "edits/s.mp4" and e.instruction == "make it red"
    assert e.meta["edit_kind"] == "color" and e.key != a.key


def test_jsonl_errors_name_file_and_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"path": "a.mp4", "caption": "x"}\n{"path": "b.mp4", "caption": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: bad JSON"):
        read_captions(f)
    with pytest.raises(DataError, match=r"bad\.jsonl:2: bad JSON"):
        read_jsonl(f)
    f.write_text('{"caption": "no path"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:1: no path"):
        read_captions(f)
    f.write_text('{"path": "t.mp4", "kind": "edit", "source_path": "s.mp4"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:1: an edit pair needs a non-empty 'instruction'"):
        read_captions(f)
    with pytest.raises(DataError, match="no such file"):
        read_captions(tmp_path / "missing.jsonl")


def test_csv_and_tsv(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text('path,caption,source\nv/a.mp4,"a cat, sleeping",web\nb.png,a tree,web\n')
    a, b = read_caption_csv(f)
    assert a.path == tmp_path / "v/a.mp4" and a.caption == "a cat, sleeping" and a.meta == {"source": "web"}
    assert b.caption == "a tree" and a.kind is None
    t = tmp_path / "c.tsv"
    t.write_text("file\ttext\nx.mp4\thello\n")
    (x,) = read_captions(t)
    assert x.path == tmp_path / "x.mp4" and x.caption == "hello"


def test_csv_errors(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("path,description\na.mp4,x\n")
    with pytest.raises(DataError, match=r"c\.csv: missing column 'caption' \(have: path, description\)"):
        read_captions(f)
    f.write_text("name,caption\na.mp4,x\n")
    with pytest.raises(DataError, match=r"c\.csv: missing column 'path'"):
        read_captions(f)
    f.write_text("path,caption\n,x\n")
    with pytest.raises(DataError, match=r"c\.csv:2: empty 'path'"):
        read_captions(f)
    f.write_text("")
    with pytest.raises(DataError, match="empty file"):
        read_captions(f)
    with pytest.raises(DataError, match="unknown caption file type"):
        read_captions(tmp_path / "c.xml")


def test_sidecar(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "a.txt").write_text("  a sidecar caption\n")
    (tmp_path / "b.txt").write_text("   ")
    assert sidecar_caption(tmp_path / "a.mp4") == "a sidecar caption"
    assert sidecar_caption(tmp_path / "b.mp4") is None
    assert sidecar_caption(tmp_path / "c.mp4") is None
