import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vidgpt.commands.data_pipeline import register_pipeline_commands
from vidgpt.data.captions import MediaItem
from vidgpt.data.ingest import (
    DEFAULT_BUCKETS,
    Bucket,
    IngestConfig,
    choose_bucket,
    detect_scene_cuts,
    gather_items,
    ingest,
    item_clips,
    parse_buckets,
    slice_items,
)
from vidgpt.data.shards import load_shards
from vidgpt.data.video_io import write_video
from vidgpt.errors import DataError
from vidgpt.tokenizer import TokenizerConfig, VideoTokenizer

BUCKETS = "5x32x32,5x32x64,5x64x32"
BAD = ("empty.mp4", "fake.mp4", "trunc.mp4")


@pytest.fixture(scope="module")
def tok():
    torch.manual_seed(0)
    return VideoTokenizer(TokenizerConfig(codebook_bits=10, channels=8, norm_groups=4)).eval()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A folder with a wide and a tall video, an image, three bad files and captions of all three kinds."""
    d = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    write_video(d / "wide.mp4", rng.integers(0, 255, (12, 48, 96, 3), dtype=np.uint8), fps=8)
    write_video(d / "tall.mp4", rng.integers(0, 255, (9, 96, 48, 3), dtype=np.uint8), fps=8)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(d / "img.png")
    (d / "fake.mp4").write_text("this is not a video")
    (d / "empty.mp4").write_bytes(b"")
    good = (d / "wide.mp4").read_bytes()
    (d / "trunc.mp4").write_bytes(good[: len(good) // 2])
    (d / "wide.txt").write_text("a wide clip from a sidecar\n")
    (d / "caps.jsonl").write_text(json.dumps({"path": "tall.mp4", "caption": "a tall clip from jsonl"}) + "\n")
    (d / "caps.csv").write_text("path,caption\nimg.png,an image from csv\n")
    return d


def records(out: Path, cache: Path) -> list[dict]:
    return list(load_shards(out, cache_dir=cache))


def key(r: dict):
    return (r["source"], tuple(r["codes"]))


def run_cli(argv):
    parser = argparse.ArgumentParser()
    register_pipeline_commands(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_ingest_cli_good_and_bad_files(media, tok, tmp_path, capsys):
    tok.save_pretrained(tmp_path / "tok")
    out = tmp_path / "shards"
    rc = run_cli(["ingest", str(media), "--out", str(out), "--tokenizer", str(tmp_path / "tok"), "--buckets", BUCKETS,
                  "--captions", str(media / "caps.jsonl"), "--captions", str(media / "caps.csv"), "--no-progress",
                  "--records-per-chunk", "2", "--device", "cpu"])
    assert rc == 0
    line = capsys.readouterr().out
    assert "3 files ok, 3 skipped, 4 records, 2 shards written" in line
    recs = records(out, tmp_path / "cache")
    by_source = {r["source"].split("/")[-1]: r for r in recs}
    assert set(by_source) == {"wide.mp4#frames=0-5", "wide.mp4#frames=5-10", "tall.mp4#frames=0-5", "img.png"}
    wide, tall, img = by_source["wide.mp4#frames=0-5"], by_source["tall.mp4#frames=0-5"], by_source["img.png"]
    assert (wide["kind"], wide["shape"], wide["blueprint_shape"]) == ("video", [2, 4, 8], [2, 2, 4])
    assert (tall["kind"], tall["shape"], tall["blueprint_shape"]) == ("video", [2, 8, 4], [2, 4, 2])
    assert (img["kind"], img["shape"], img["blueprint_shape"]) == ("image", [1, 4, 4], [1, 2, 2])
    for r in recs:
        t, h, w = r["shape"]
        assert len(r["codes"]) == t * h * w and 0 <= min(r["codes"]) and max(r["codes"]) < tok.codebook_size
        bt, bh, bw = r["blueprint_shape"]
        assert len(r["blueprint_codes"]) == bt * bh * bw and max(r["blueprint_codes"]) < tok.codebook_size
        assert r["edit"] is None
    assert wide["caption"] == "a wide clip from a sidecar"
    assert tall["caption"] == "a tall clip from jsonl" and img["captions"] == ["an image from csv"]
    # the codes are the tokenizer's codes of the clip
    from vidgpt.data.video_io import frames_to_tensor, read_video, resize_and_crop

    frames = resize_and_crop(read_video(media / "img.png"), 32, 32)
    assert tok.encode(frames_to_tensor(frames)).flatten().tolist() == img["codes"]
    report = json.loads((out / "report.json").read_text())
    assert sorted(Path(s["file"]).name for s in report["skipped"]) == sorted(BAD)
    assert all(s["reason"] for s in report["skipped"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["records"] == 4 and manifest["counts"]["files_skipped"] == 3
    assert manifest["tokenizer"]["codebook_bits"] == 10


class Crash(Exception):
    pass


def test_resume_after_interrupt_matches_uninterrupted_run(media, tok, tmp_path):
    items = gather_items([media])
    cfg = IngestConfig(buckets=BUCKETS, records_per_chunk=1, batch_size=2)
    full = ingest(items, tmp_path / "full", tok, cfg, progress=False)
    assert full.records == 4

    def crash(path):
        raise Crash(path)

    with pytest.raises(Crash):
        ingest(items, tmp_path / "resumed", tok, cfg, progress=False, on_chunk=crash)
    assert len(list((tmp_path / "resumed").glob("*.parquet"))) == 1
    again = ingest(items, tmp_path / "resumed", tok, cfg, progress=False)
    assert again.files_already_done >= 1 and again.records < 4
    a, b = records(tmp_path / "full", tmp_path / "c1"), records(tmp_path / "resumed", tmp_path / "c2")
    assert len(b) == len({key(r) for r in b}) == 4  # no duplicates
    assert sorted(map(key, a)) == sorted(map(key, b))
    report = json.loads((tmp_path / "resumed" / "report.json").read_text())
    assert sorted(Path(s["file"]).name for s in report["skipped"]) == sorted(BAD)
    # a third run finds nothing to do
    third = ingest(items, tmp_path / "resumed", tok, cfg, progress=False)
    assert third.records == 0 and third.files_ok == 0 and third.files_already_done == 6


def test_two_slices_are_disjoint_and_cover_everything(media, tok, tmp_path):
    items = gather_items([media])
    parts = [slice_items(items, 2, i) for i in range(2)]
    keys = [{it.key for it in p} for p in parts]
    assert not keys[0] & keys[1] and keys[0] | keys[1] == {it.key for it in items}
    many = [MediaItem(Path(f"/data/v{i}.mp4")) for i in range(200)]
    sizes = [len(slice_items(many, 2, i)) for i in range(2)]
    assert sum(sizes) == 200 and min(sizes) > 60
    with pytest.raises(DataError, match="shard-index"):
        slice_items(items, 2, 2)
    cfg = IngestConfig(buckets=BUCKETS)
    out = tmp_path / "sliced"
    for i in range(2):
        ingest(items, out, tok, cfg, num_shards=2, shard_index=i, progress=False)
    recs = records(out, tmp_path / "c")
    assert len(recs) == 4 and len({r["source"] for r in recs}) == 4
    assert sorted(p.name for p in out.glob("progress-*.json")) == ["progress-00000.json", "progress-00001.json"]
    report = json.loads((out / "report.json").read_text())
    assert sorted(Path(s["file"]).name for s in report["skipped"]) == sorted(BAD)


def test_buckets_wide_tall_short_and_images():
    buckets = parse_buckets(DEFAULT_BUCKETS)
    assert choose_bucket(1080, 1920, 40, buckets) == Bucket(17, 128, 224)
    assert choose_bucket(1920, 1080, 40, buckets) == Bucket(17, 224, 128)
    assert choose_bucket(480, 500, 40, buckets) == Bucket(17, 128, 128)
    assert choose_bucket(1080, 1920, 12, buckets) == Bucket(9, 128, 224)  # 17 does not fit, 9 does
    assert choose_bucket(1080, 1920, 3, buckets) == Bucket(9, 128, 224)  # nothing fits: shortest, padded
    assert choose_bucket(300, 1000, 1, buckets, image=True) == Bucket(1, 128, 224)
    two_sizes = parse_buckets("17x128x128,17x256x256")
    assert choose_bucket(200, 200, 17, two_sizes) == Bucket(17, 128, 128)  # do not upscale
    assert choose_bucket(720, 720, 17, two_sizes) == Bucket(17, 256, 256)
    with pytest.raises(DataError, match="1\\+4n"):
        parse_buckets("16x128x128")
    with pytest.raises(DataError, match="multiples of 16"):
        parse_buckets("17x120x128")
    assert parse_buckets("17x120x128", blueprint=False) == [Bucket(17, 120, 128)]
    with pytest.raises(DataError, match="FRAMESxHEIGHTxWIDTH"):
        parse_buckets("17x128")


def test_scene_cuts(tmp_path):
    frames = np.zeros((14, 32, 32, 3), np.uint8)
    frames[7:] = 255
    assert detect_scene_cuts(frames, 0.3) == [(0, 7), (7, 14)]
    write_video(tmp_path / "cut.mp4", frames, fps=8)
    item = MediaItem(tmp_path / "cut.mp4")
    plain = item_clips(item, IngestConfig(buckets="5x32x32"), parse_buckets("5x32x32"))
    cut = item_clips(item, IngestConfig(buckets="5x32x32", scene_cuts=True), parse_buckets("5x32x32"))
    assert [c.source.split("#")[1] for c in plain] == ["frames=0-5", "frames=5-10"]
    assert [c.source.split("#")[1] for c in cut] == ["frames=0-5", "frames=7-12"]


def test_synthetic_manifest_with_edit_pairs(tok, tmp_path):
    from vidgpt.cli import main

    synth = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(synth), "--num", "1", "--edits", "1", "--frames", "5",
                 "--height", "32", "--width", "32", "--no-progress"]) == 0
    manifest = [json.loads(x) for x in (synth / "manifest.jsonl").read_text().splitlines()]
    res = ingest(gather_items([synth / "manifest.jsonl"]), tmp_path / "out", tok, IngestConfig(buckets="5x32x32"), progress=False)
    assert res.records == 2 and res.files_skipped == 0
    recs = {r["kind"]: r for r in records(tmp_path / "out", tmp_path / "c")}
    assert set(recs) == {"video", "edit"}
    edit, src = recs["edit"], manifest[1]
    assert edit["edit"]["instruction"] == src["instruction"] and edit["edit"]["edit_kind"] == src["edit_kind"]
    assert edit["edit"]["source_shape"] == edit["shape"] == [2, 4, 4]
    assert len(edit["edit"]["source_codes"]) == 32 and edit["edit"]["source_blueprint_shape"] == [2, 2, 2]
    assert edit["edit"]["source_codes"] != edit["codes"]
    assert edit["caption"] == src["caption"] == edit["captions"][0]
    assert sorted(recs["video"]["captions"]) == sorted(set(manifest[0]["captions"]))


def test_accelerate_launch_gives_one_slice_per_process(monkeypatch):
    from vidgpt.data.ingest import distributed_slice

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert distributed_slice() == (1, 0)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert distributed_slice() == (4, 2)
