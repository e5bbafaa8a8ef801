"""The rule-based judge: accuracy on rendered clips, rejection of mismatched scenes, `vidgpt data check`."""

import json

import numpy as np
import pytest

from vidgpt.cli import main
from vidgpt.data.judge import judge_accuracy, judge_clip
from vidgpt.data.synthetic import ObjectSpec, Scene, render_scene, sample_scene


def test_judge_accuracy_on_rendered_clips_64():
    r = judge_accuracy(60, np.random.default_rng(0), frames=9, height=64, width=64)
    for attr in ("color", "shape", "motion"):
        assert r["accuracy"][attr] >= 0.98, r
        assert r["false_accept"][attr] <= 0.05, r


def test_judge_accuracy_on_rendered_clips_128():
    r = judge_accuracy(8, np.random.default_rng(1), frames=17, height=128, width=128)
    assert min(r["accuracy"][a] for a in ("color", "shape", "motion")) >= 0.95, r
    assert max(r["false_accept"].values()) == 0.0, r


def test_judge_names_what_is_wrong():
    scene = Scene(objects=[ObjectSpec(shape="star", color="yellow", size="large", motion="right", x=0.3, y=0.5, speed=0.15)])
    clip = render_scene(scene, 9, 64, 64)
    assert judge_clip(clip, scene).passed
    wrong = scene.copy()
    wrong.objects[0].motion = "left"
    v = judge_clip(clip, wrong).objects[0]
    assert not v.motion.passed and v.motion.observed == "right" and v.color.passed and v.shape.passed
    wrong = scene.copy()
    wrong.objects[0].shape = "triangle"
    v = judge_clip(clip, wrong).objects[0]
    assert not v.shape.passed and v.shape.observed == "star"
    wrong = scene.copy()
    wrong.objects[0].color = "blue"
    res = judge_clip(clip, wrong)
    assert not res.objects[0].color.passed and res.extra_colors == ["yellow"] and not res.passed


def test_judge_rejects_missing_and_extra_objects():
    rng = np.random.default_rng(3)
    scene = next(s for s in (sample_scene(rng) for _ in range(50)) if len(s.objects) >= 2)
    clip = render_scene(scene, 9, 64, 64)
    fewer = scene.copy()
    fewer.objects.pop()
    assert not judge_clip(clip, fewer).passed  # an unexplained object
    fewer_clip = render_scene(fewer, 9, 64, 64)
    assert not judge_clip(fewer_clip, scene).passed  # a missing object


def test_judge_images_skip_motion():
    scene = Scene(objects=[ObjectSpec(shape="ring", color="cyan", size="large")])
    res = judge_clip(render_scene(scene, 1, 64, 64), scene.to_dict())
    assert res.passed and res.objects[0].motion.observed is None


@pytest.fixture
def clip_and_scene(tmp_path):
    scene = sample_scene(np.random.default_rng(11))
    clip_path = tmp_path / "clip.npy"
    np.save(clip_path, render_scene(scene, 9, 64, 64))
    scene_path = tmp_path / "scene.json"
    scene_path.write_text(json.dumps(scene.to_dict()))
    return clip_path, scene_path, scene


def test_check_cli_exit_codes(clip_and_scene, tmp_path, capsys):
    clip_path, scene_path, scene = clip_and_scene
    assert main(["data", "check", str(clip_path), "--scene", str(scene_path)]) == 0
    assert "PASS" in capsys.readouterr().out
    wrong = scene.to_dict()
    wrong["objects"][0]["motion"] = "stay" if wrong["objects"][0]["motion"] != "stay" else "grow"
    assert main(["data", "check", str(clip_path), "--scene", json.dumps(wrong), "--json"]) == 3
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["passed"] is False and verdict["objects"][0]["motion"]["passed"] is False
    record = tmp_path / "record.json"
    record.write_text(json.dumps({"path": "clip.npy", "scene": scene.to_dict(), "fps": 8}))
    assert main(["data", "check", str(clip_path), "--scene", str(record)]) == 0


@pytest.mark.parametrize(
    "scene_arg, clip_name, message",
    [
        ("{not json", "clip.npy", "not valid JSON"),
        ("missing.json", "clip.npy", "no such file"),
        ('{"objects": [{"shape": "blob", "color": "red"}]}', "clip.npy", "unknown 'blob'"),
        (None, "nope.npy", "nope.npy"),
        (None, "garbage.npy", "garbage.npy"),
    ],
)
def test_check_cli_errors_are_one_line(clip_and_scene, tmp_path, capsys, scene_arg, clip_name, message):
    clip_path, scene_path, _ = clip_and_scene
    (tmp_path / "garbage.npy").write_bytes(b"this is not numpy")
    rc = main(["data", "check", str(tmp_path / clip_name), "--scene", scene_arg or str(scene_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and message in err and "\n" not in err and err.startswith("vidgpt: error:")
