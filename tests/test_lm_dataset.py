"""build-lm: synthetic LM shards (kinds, shapes, train split only, resume, recaptions) that the LM trainer reads."""

import json

import numpy as np
import pytest
import torch

from vidgpt.data.lm_dataset import (
    BuildLMConfig,
    build_lm_shards,
    caption_manifest,
    load_recaptions,
    make_unit,
    planned_units,
    text_corpus,
)
from vidgpt.data.shards import load_shards
from vidgpt.data.synthetic import WorldConfig, is_heldout
from vidgpt.errors import DataError

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(frames=5, height=32, width=32, batch_size=8, records_per_chunk=4)


@pytest.fixture(scope="module")
def tok():
    from vidgpt.tokenizer import TokenizerConfig, VideoTokenizer

    torch.manual_seed(0)
    return VideoTokenizer(TokenizerConfig(codebook_bits=6, channels=8, norm_groups=4)).eval()


def test_units_are_train_split_deterministic_and_mixed():
    cfg = BuildLMConfig(num=8, images=2, edits=8, continuations=4, **SMALL)
    world = WorldConfig()
    plan = planned_units(cfg)
    assert len(plan) == 22 and {k for k, _ in plan} == {"video", "image", "edit", "continuation"}
    assert {k for k, _ in plan[:6]} >= {"video", "edit"}  # interleaved, not one kind after another
    for kind, i in plan:
        u = make_unit(kind, i, cfg, world)
        again = make_unit(kind, i, cfg, world)
        assert all(np.array_equal(a, b) for a, b in zip(u.clips, again.clips)) and u.captions == again.captions
        if kind == "video":
            assert u.clips[0].shape == (5, 32, 32, 3) and len(u.captions) == 4
        if kind == "image":
            assert u.clips[0].shape == (1, 32, 32, 3)
        if kind == "continuation":
            assert u.edit_kind == "continue" and len(u.clips) == 2 and u.clips[1].shape == (5, 32, 32, 3)
    # never a held-out composition in a training scene
    from vidgpt.data.lm_dataset import unit_rng
    from vidgpt.data.synthetic import sample_scene

    for i in range(40):
        scene = sample_scene(unit_rng(0, "video", i), world, "train")
        assert not any(is_heldout(o, world) for o in scene.objects)


def test_build_writes_records_the_trainer_formats(tok, tmp_path):
    cfg = BuildLMConfig(num=4, images=2, edits=4, continuations=2, **SMALL)
    res = build_lm_shards(tmp_path / "s", tok, cfg, progress=False)
    assert res.units_done + res.units_skipped == 12 and res.records == res.units_done
    ds = load_shards(tmp_path / "s")
    recs = list(ds)
    assert len(recs) == res.records
    kinds = [r["kind"] for r in recs]
    assert kinds.count("video") == 4 and kinds.count("image") == 2
    assert sum(1 for r in recs if r["edit"] and r["edit"]["edit_kind"] == "continue") == 2
    for r in recs:
        assert len(r["codes"]) == int(np.prod(r["shape"])) and max(r["codes"]) < 64
        assert r["shape"][1:] == [4, 4] and r["blueprint_shape"] == [r["shape"][0], 2, 2]
        if r["kind"] == "image":
            assert r["shape"][0] == 1 and r["edit"] is None
        if r["kind"] == "video":
            assert r["shape"][0] == 2 and len(r["captions"]) == 4 and r["caption"] == r["captions"][0]
        if r["edit"]:
            e = r["edit"]
            assert len(e["source_codes"]) == int(np.prod(e["source_shape"]))
            if e["edit_kind"] == "continue":
                assert e["source_shape"][0] in (1, 2)  # full first part (2 latent frames) or its last 2
            else:
                assert e["instruction"]
        # scene records carry which codes show an object; general edits (no scene) carry none
        general = r["edit"] and r["edit"]["edit_kind"] in ("inpaint", "outpaint", "interpolate", "reverse", "mirror",
                                                          "greyscale")
        if general:
            assert r["object_mask"] is None
        else:
            assert len(r["object_mask"]) == len(r["codes"]) and len(r["blueprint_object_mask"]) == len(r["blueprint_codes"])
            assert 0 < sum(r["object_mask"]) < len(r["codes"])  # objects are there, and not everywhere
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["tokenizer"]["codebook_bits"] == 6 and manifest["counts"]["records"] == res.records

    # every record goes through the trainer's formatter and parses back as the right task layout
    from vidgpt.backbone import extend
    from vidgpt.layout import Layout, VisualBlock
    from vidgpt.train.lm_data import LMDataConfig, RecordFormatter

    lm = extend("tiny-llama", None, codebook_bits=6, tiny={"hidden_size": 32, "layers": 1, "heads": 2, "kv_heads": 1})
    fmt = RecordFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig())
    layout = Layout(lm.vocab, lm.text_tokenizer)
    rng = np.random.default_rng(0)
    for r in recs:
        sample = layout.parse(fmt(r, rng).input_ids)
        user, assistant = sample.turns
        target = assistant.blocks()[0]
        assert target.fine.flatten().tolist() == r["codes"] and target.blueprint is not None
        if r["edit"]:
            assert isinstance(user.content[0], VisualBlock)
            assert user.content[0].fine.flatten().tolist() == r["edit"]["source_codes"]
            want = r["edit"]["instruction"] or "Continue the video."
            assert user.text() == want
        else:
            assert user.text() in r["captions"]


def test_resume_skips_done_units_and_extends(tok, tmp_path):
    cfg = BuildLMConfig(num=3, **SMALL)
    first = build_lm_shards(tmp_path / "s", tok, cfg, progress=False)
    assert first.units_done == 3
    again = build_lm_shards(tmp_path / "s", tok, cfg, progress=False)
    assert again.units_done == 0 and again.units_already_done == 3
    more = build_lm_shards(tmp_path / "s", tok, BuildLMConfig(num=5, **SMALL), progress=False)
    assert more.units_done == 2
    srcs = [r["source"] for r in load_shards(tmp_path / "s")]
    assert sorted(srcs) == [f"synthetic:video/{i:07d}" for i in range(5)]  # no duplicates
    with pytest.raises(DataError, match="other settings"):
        build_lm_shards(tmp_path / "s", tok, BuildLMConfig(num=5, **{**SMALL, "frames": 9}), progress=False)


def test_recaptions_add_rewrites_to_matching_clips(tok, tmp_path):
    cfg = BuildLMConfig(num=2, images=1, **SMALL)
    caps = caption_manifest(cfg)
    assert len(caps) == 3 and all(c["caption"] in c["captions"] for c in caps)
    rewritten = []
    for i, c in enumerate(caps):  # what `vidgpt data recaption` leaves: the rewrites appended
        rewritten.append({**c, "captions": c["captions"] + [f"rewrite number {i}"]})
    path = tmp_path / "re.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rewritten))
    index = load_recaptions(path)
    assert index[caps[0]["caption"]] == ["rewrite number 0"]
    build_lm_shards(tmp_path / "s", tok, cfg, recaptions_path=path, progress=False)
    got = {r["source"]: r["captions"] for r in load_shards(tmp_path / "s")}
    assert got["synthetic:video/0000000"][-1] == "rewrite number 0"
    assert sum(c[-1].startswith("rewrite number") for c in got.values()) == 3
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(DataError, match="bad.jsonl:1"):
        load_recaptions(tmp_path / "bad.jsonl")


def test_bad_settings_are_one_line_errors():
    with pytest.raises(DataError, match="frames"):
        BuildLMConfig(frames=6)
    with pytest.raises(DataError, match="multiple of 16"):
        BuildLMConfig(height=40)
    with pytest.raises(DataError, match="nothing to do"):
        BuildLMConfig(num=0)


def test_text_corpus_is_prose():
    docs = text_corpus(max_docs=50)
    assert len(docs) == 50
    assert all(len(d) >= 160 and ">>>" not in d and ":func:" not in d for d in docs)


def test_objects_cross_the_frame_within_the_clip_whatever_its_length():
    """A linear move crosses 28-42% of the frame in the clip itself: the world's fixed 2.125 s made a 9-frame
    clip's object move only ~16% of the frame (1 s of 2.125), about one cell of the 8x8 blueprint."""
    from vidgpt.data.synthetic import clip_world, sample_scene
    from vidgpt.data.world.scene import DIRECTIONS

    for frames, fps in ((9, 8.0), (17, 8.0), (5, 4.0)):
        world = clip_world(WorldConfig(max_objects=1), frames, fps)
        assert world.duration == pytest.approx(frames / fps)
        span = (frames - 1) / fps  # seconds from the first frame to the last
        moved = []
        for seed in range(60):
            obj = sample_scene(np.random.default_rng(seed), world, "train").objects[0]
            if obj.motion in DIRECTIONS:
                moved.append(obj.speed * span)
        assert len(moved) > 10
        lo, hi = 0.28 * span / world.duration, 0.42 * span / world.duration
        assert all(lo - 1e-3 <= m <= hi + 1e-3 for m in moved), (frames, min(moved), max(moved))
    assert min(moved) > 0.2  # 5 frames at 4 fps: 1.0 s of 1.25
    assert clip_world(WorldConfig(), 9, 8.0, duration=2.125).duration == 2.125
    with pytest.raises(DataError, match="duration"):
        BuildLMConfig(num=1, duration=0)


def test_build_lm_cli_takes_the_duration_as_its_own_flag(tmp_path, capsys):
    from vidgpt.cli import main

    assert main(["data", "build-lm", "--out", str(tmp_path / "s"), "--num", "1", "--set", "duration=3"]) == 1
    assert "--duration SECONDS" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
