"""The synthetic world: determinism, JSON round trip, rendering, captions, held-out splits, synth CLI."""

import json
import time

import numpy as np
import pytest

from vidgpt.config import load_config
from vidgpt.data.synthetic import (
    MOTION_WORDS,
    ObjectSpec,
    Scene,
    SceneError,
    WorldConfig,
    captions,
    code_object_mask,
    is_heldout,
    random_training_clip,
    render_object_cover,
    render_scene,
    sample_scene,
)
from vidgpt.errors import ConfigError


def test_same_seed_same_world():
    a_rng, b_rng = np.random.default_rng(42), np.random.default_rng(42)
    a, b = sample_scene(a_rng), sample_scene(b_rng)
    assert a.to_dict() == b.to_dict()
    assert np.array_equal(render_scene(a, 9, 64, 64), render_scene(b, 9, 64, 64))
    assert captions(a, a_rng) == captions(b, b_rng)
    assert np.array_equal(random_training_clip(np.random.default_rng(3), 5, 32, 32), random_training_clip(np.random.default_rng(3), 5, 32, 32))
    assert sample_scene(np.random.default_rng(43)).to_dict() != a.to_dict()


def test_scene_json_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scene = sample_scene(rng)
        again = Scene.from_dict(json.loads(json.dumps(scene.to_dict())))
        assert again == scene


@pytest.mark.parametrize(
    "bad",
    [
        {"objects": [{"shape": "blob", "color": "red"}]},
        {"objects": [{"shape": "circle", "color": "mauve"}]},
        {"objects": [{"shape": "circle", "color": "red", "wobble": 1}]},
        {"background": {"kind": "lava"}},
    ],
)
def test_bad_scene_is_a_one_line_error(bad):
    with pytest.raises(SceneError) as e:
        Scene.from_dict(bad)
    assert "\n" not in str(e.value)


def test_render_any_size_and_fps_changes_sampling_not_motion():
    scene = sample_scene(np.random.default_rng(5))
    for frames, h, w in [(1, 32, 48), (9, 64, 96), (17, 40, 24)]:
        out = render_scene(scene, frames, h, w)
        assert out.shape == (frames, h, w, 3) and out.dtype == np.uint8
    fast = render_scene(scene, 17, 64, 64, fps=8)
    slow = render_scene(scene, 9, 64, 64, fps=4)
    assert np.array_equal(fast[::2], slow)  # same instants t = k / 4


def test_objects_are_where_the_scene_says_and_move():
    scene = Scene(objects=[ObjectSpec(shape="square", color="red", size="large", motion="right", x=0.3, y=0.5, speed=0.2)])
    clip = render_scene(scene, 9, 64, 64, fps=8)
    red = (clip[..., 0] > 200) & (clip[..., 1] < 80)
    xs = [np.nonzero(f)[1].mean() / 64 for f in red]
    assert abs(xs[0] - 0.3) < 0.02 and abs(xs[-1] - 0.5) < 0.02  # 0.2 per second for 1 s


def test_captions_name_colour_shape_motion():
    rng = np.random.default_rng(1)
    for _ in range(30):
        scene = sample_scene(rng)
        texts = captions(scene, rng)
        assert len(set(texts)) == len(texts) >= 3
        for text in texts:
            low = text.lower()
            for o in scene.objects:
                assert o.color in low and o.shape in low, text
                assert any(w in low for w in MOTION_WORDS[o.motion]), (o.motion, text)
    still = captions(scene, rng, image=True)
    assert all(scene.objects[0].shape in t for t in still)


def test_heldout_combinations_only_in_heldout_split():
    config = WorldConfig()
    rng = np.random.default_rng(7)
    train = [o for _ in range(300) for o in sample_scene(rng, config, "train").objects]
    held = [o for _ in range(100) for o in sample_scene(rng, config, "heldout").objects]
    assert not any(is_heldout(o, config) for o in train)
    assert all(is_heldout(o, config) for o in held)
    # the held-out objects cover several different combinations, and train still has their parts
    assert len({(o.color, o.shape) for o in held}) >= 4
    assert any(o.color == "purple" for o in train) and any(o.shape == "star" for o in train)


def test_heldout_split_draws_only_combinations_the_world_allows():
    """A world of straight moves (the default model's scope) draws no held-out "green hexagon bouncing" or "white
    cross rotating": only the combinations its own colours, shapes and motions allow; none left is an error."""
    import pytest
    from vidgpt.data.world.scene import heldout_in_scope
    from vidgpt.errors import ConfigError

    config = WorldConfig(max_objects=1, backgrounds=["solid"], motions=["left", "right", "up", "down"])
    assert [c.get("motion") for c in heldout_in_scope(config)] == [None, None, "left"]
    rng = np.random.default_rng(7)
    held = [o for _ in range(100) for o in sample_scene(rng, config, "heldout").objects]
    assert all(is_heldout(o, config) and o.motion in config.motions for o in held)
    assert {(o.color, o.shape) for o in held} == {("purple", "star"), ("orange", "ring"), ("cyan", "triangle")}
    assert heldout_in_scope(WorldConfig()) == WorldConfig().heldout  # the whole world: every combination, as before
    with pytest.raises(ConfigError, match="no heldout combination fits"):
        sample_scene(rng, WorldConfig(colors=["red", "blue"]), "heldout")


def test_huge_size_is_opt_in_and_fits_every_motion_it_draws():
    rng = np.random.default_rng(3)
    default = [o.size for _ in range(200) for o in sample_scene(rng, WorldConfig()).objects]
    assert "huge" not in default and {"small", "medium", "large"} <= set(default)
    config = WorldConfig(max_objects=1, sizes=["huge"], backgrounds=["solid"])
    scenes = [sample_scene(rng, config) for _ in range(150)]
    assert all(s.objects[0].size == "huge" for s in scenes)
    assert len({s.objects[0].motion for s in scenes}) >= 10  # linear moves still fit half-frame-wide objects
    t = np.linspace(0.0, config.duration, 9)
    for s in scenes:
        x, y, r, _ = s.objects[0].state(t)
        assert np.all(x - r >= 0) and np.all(x + r <= 1) and np.all(y - r >= 0) and np.all(y + r <= 1)
    disc = Scene(objects=[ObjectSpec(shape="circle", color="red", size="huge")])
    frame = render_scene(disc, frames=1, height=64, width=64)[0]
    covered = (np.abs(frame.astype(int) - frame[0, 0].astype(int)).sum(-1) > 30).mean()
    assert 0.17 < covered < 0.22  # pi * 0.25^2 of the frame


def test_world_yaml_matches_defaults_and_bad_config_fails(tmp_path):
    assert load_config(WorldConfig, "configs/data/world.yaml") == WorldConfig()
    bad = tmp_path / "w.yaml"
    bad.write_text("heldout:\n  - {color: red, shape: circle, motion: rotate}\n")
    with pytest.raises(ConfigError):
        load_config(WorldConfig, bad)
    with pytest.raises(ConfigError):
        WorldConfig(colors=["red", "mauve"])


def test_random_training_clip_is_varied_and_fast():
    rng = np.random.default_rng(0)
    photo = np.random.default_rng(1).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    clips = [random_training_clip(rng, 17, 128, 128, photos=[photo]) for _ in range(6)]
    assert all(c.shape == (17, 128, 128, 3) and c.dtype == np.uint8 for c in clips)
    assert len({c.tobytes()[:4096] for c in clips}) == 6
    assert random_training_clip(rng, 1, 64, 32).shape == (1, 64, 32, 3)
    t = time.perf_counter()
    for _ in range(10):
        random_training_clip(rng, 17, 128, 128)
    per_clip = (time.perf_counter() - t) / 10
    assert per_clip < 0.25, per_clip  # ~20 ms on a free core; generous for shared CI machines


def test_synth_cli_writes_clips_and_manifest(tmp_path):
    pytest.importorskip("av")
    from vidgpt.cli import main
    from vidgpt.data.judge import judge_clip
    from vidgpt.data.video_io import read_video

    out = tmp_path / "syn"
    rc = main(["data", "synth", "--out", str(out), "--num", "3", "--edits", "2", "--frames", "17", "--seed", "3", "--no-progress"])
    assert rc == 0
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["video"] * 3 + ["edit"] * 2
    for r in records:
        assert {"path", "caption", "captions", "scene", "split"} <= set(r)
        assert (out / r["path"]).is_file()
    edit = records[-1]
    assert edit["instruction"] and (out / edit["source_path"]).is_file()
    assert Scene.from_dict(edit["source_scene"]) != Scene.from_dict(edit["scene"])
    clip = read_video(out / records[0]["path"])
    assert clip.shape == (17, 128, 128, 3)
    assert judge_clip(clip, records[0]["scene"]).passed  # survives mp4 compression at 128x128


def test_object_cover_is_where_render_paints_and_pools_to_the_code_grid():
    scene = Scene(objects=[ObjectSpec(shape="square", color="red", x=0.3, y=0.4, size="large", motion="right", speed=0.2)])
    clip = render_scene(scene, 9, 64, 64).astype(np.float32)
    cover = render_object_cover(scene, 9, 64, 64)
    assert cover.shape == (9, 64, 64) and 0.0 <= cover.min() and cover.max() <= 1.0
    red = (clip[..., 0] - clip[..., 1:].max(-1)) > 100  # the red object's pixels, from the video itself
    assert (cover[red] > 0.5).mean() > 0.99 and (red[cover > 0.99]).mean() > 0.99
    m = code_object_mask(cover, (3, 8, 8))  # causal 4x time, 8x space
    assert m.shape == (3, 8, 8) and 0 < m.sum() < m.size
    want0 = cover[0].reshape(8, 8, 8, 8).max(axis=(1, 3)) > 0.05
    want2 = cover[5:9].reshape(4, 8, 8, 8, 8).max(axis=(0, 2, 4)) > 0.05
    assert np.array_equal(m[0], want0) and np.array_equal(m[2], want2)
    cols = np.arange(8)
    assert (m[2].sum(0) * cols).sum() / m[2].sum() > (m[0].sum(0) * cols).sum() / m[0].sum()  # moving right
    assert np.array_equal(code_object_mask(cover, (3, 4, 4)), m.reshape(3, 4, 2, 4, 2).any(axis=(2, 4)))  # coarser cells
    with pytest.raises(SceneError):
        code_object_mask(cover, (4, 8, 8))  # 8 frames after the first do not split into 3 slices


def test_synth_lays_the_world_out_over_the_clip(tmp_path):
    """`data synth --frames 9` moves objects over its 9 frames (1.125 s at 8 fps), not the built-in 17-frame 2.125 s;
    an explicit --set duration wins."""
    import yaml

    from vidgpt.cli import main

    for extra, want in (([], 9 / 8), (["--set", "duration=3"], 3.0)):
        out = tmp_path / f"s{len(extra)}"
        assert main(["data", "synth", "--out", str(out), "--num", "1", "--frames", "9", "--height", "32", "--width", "32",
                     "--no-progress", *extra]) == 0
        assert yaml.safe_load((out / "world.yaml").read_text())["duration"] == want
