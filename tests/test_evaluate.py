"""Model evaluation harness: verdict logic on ground-truth renders, an oracle run, and a tiny random model."""

import json

import numpy as np
import pytest
import torch

from vidgpt import evaluate as ev
from vidgpt.data.judge import judge_clip
from vidgpt.data.synthetic import STYLES, WorldConfig, caption, make_edit_pair, render_scene, sample_scene


pytestmark = pytest.mark.usefixtures("one_thread")


def _pair(kind, seed=0):
    world = WorldConfig()
    for k in range(50):
        rng = np.random.default_rng([seed, k])
        try:
            return make_edit_pair(rng, sample_scene(rng, world, "train"), kind, config=world)
        except Exception:
            continue
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["color", "motion", "add", "remove"])
def test_edit_verdict_on_true_and_unedited_clips(kind):
    source, target, _, k = _pair(kind)
    what = ev.edited_object(source, target, kind)
    assert what  # the changed object is found
    right = judge_clip(render_scene(target, 17, 128, 128), target)
    unedited = judge_clip(render_scene(source, 17, 128, 128), target)
    v_right, v_un = ev.edit_verdict(right, what, kind), ev.edit_verdict(unedited, what, kind)
    assert v_right == {"edited": True, "rest": True, "pass": True}, right.summary()
    assert v_un["edited"] is False and v_un["pass"] is False, unedited.summary()


def test_attribute_shares_count_objects_and_clips():
    world = WorldConfig()
    scene = sample_scene(np.random.default_rng(3), world, "heldout")
    clip = render_scene(scene, 17, 128, 128)
    good = judge_clip(clip, scene)
    blank = judge_clip(np.zeros_like(clip), scene)
    s = ev.attribute_shares([good, blank])
    assert s["clips"] == 2 and s["objects"] == 2 * len(scene.objects)
    assert s["clip"] == 0.5 and s["color"] == 0.5 and s["object"] == 0.5


def test_oracle_generations_score_high(monkeypatch, tmp_path):
    """A 'model' that returns the true render of each prompt's scene: adherence near 100%, report files written."""
    cfg = ev.EvalConfig(n=6, edits=0, continuations=0, frames=17, size=96, batch_size=4, language=False, sheet_clips=3)
    world = WorldConfig()
    scenes = {}
    for i in range(cfg.n):  # the same stream eval_adherence draws from
        rng = ev._rng(cfg.seed, 1, i)
        scene = sample_scene(rng, world, "heldout")
        scenes[caption(scene, rng, STYLES[i % 4])] = scene
    free = ev.freeform_items(cfg.resolved(), world)
    assert len(free) == 3 and [s.to_dict() for s, _, _ in free] == [s.to_dict() for s in list(scenes.values())[:3]]
    scenes.update({p: s for s, _, p in free})

    def oracle(pipe, prompts, c, gen):
        full = np.stack([render_scene(scenes[p], c.frames, c.size, c.size) for p in prompts])
        half = np.stack([render_scene(scenes[p], c.frames, c.size // 2, c.size // 2) for p in prompts])
        return None, full, half

    monkeypatch.setattr(ev, "generate_batch", oracle)

    class Pipe:
        device = torch.device("cpu")

    rep = ev.evaluate_model(None, cfg, out=tmp_path, progress=False, pipe=Pipe(), world=world)
    assert rep["adherence"]["n"] == 6 and rep["adherence"]["full"]["objects"] >= 6
    assert rep["adherence"]["full"]["object"] >= 0.8 and rep["adherence"]["full"]["color"] == 1.0
    assert rep["adherence"]["preview"]["color"] >= 0.8
    assert all(s["scene"]["objects"] for s in rep["adherence"]["samples"])
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["adherence"]["full"] == rep["adherence"]["full"]
    f = rep["freeform"]
    assert f["n"] == 3 and f["full"]["color"] == 1.0 and f["full"]["object"] >= 0.8
    assert all(s["style"] == "freeform" and s["prompt"] not in captions_of(s) for s in f["samples"])
    assert f["same_scenes_template"]["clips"] == 3
    assert f["same_scenes_template"] == ev.attribute_shares(
        [judge_clip(render_scene(s, 17, 96, 96), s) for s, _, _ in free])  # the first 3 oracle clips, judged again
    md = (tmp_path / "report.md").read_text()
    assert "Prompt adherence on held-out compositions (n = 6)" in md and "| colour |" in md
    assert "Free-form prompts on the same held-out scenes (n = 3)" in md and "World: built-in world config" in md
    from PIL import Image

    sheet = Image.open(tmp_path / "samples.png")
    assert sheet.size[1] >= 3 * 96  # three clips, one row each


def captions_of(sample):
    from vidgpt.data.synthetic import Scene, captions

    scene = Scene.from_dict(sample["scene"])
    return {c for k in range(20) for c in captions(scene, np.random.default_rng(k))}


def test_world_overrides_narrow_every_section(monkeypatch, tmp_path):
    """--set max_objects=1: held-out prompts, free-form prompts, edit pairs and continuations all have one-object
    scenes (edit sources may hold the object a `remove` takes away); the overrides are in report.json/md."""
    cfg = ev.EvalConfig(n=4, freeform=2, edits=4, continuations=2, frames=5, size=32, batch_size=4, language=False,
                        world_set=["max_objects=1"])
    world = cfg.world()
    assert world.max_objects == 1

    def blank(pipe, prompts, c, gen):
        return None, np.zeros((len(prompts), c.frames, c.size, c.size, 3), np.uint8), None

    def blank_edits(pipe, clips, instructions, task, c, gen):
        return [(np.zeros_like(x), np.zeros_like(x)) for x in clips]

    monkeypatch.setattr(ev, "generate_batch", blank)
    monkeypatch.setattr(ev, "edit_batch", blank_edits)

    class Pipe:
        device = torch.device("cpu")

    rep = ev.evaluate_model(None, cfg, out=tmp_path, progress=False, pipe=Pipe())
    assert rep["world"]["max_objects"] == 1 and rep["config"]["world_set"] == ["max_objects=1"]
    scenes = [s["scene"] for s in rep["adherence"]["samples"] + rep["freeform"]["samples"] + rep["continuation"]["samples"]]
    scenes += [s["target_scene"] for s in rep["editing"]["samples"]]
    assert len(scenes) == 4 + 2 + 2 + rep["editing"]["n"] and all(len(s["objects"]) == 1 for s in scenes)
    assert all(len(s["source_scene"]["objects"]) <= 2 for s in rep["editing"]["samples"])
    assert rep["editing"]["not_made"] == {"add": 1}  # a one-object world admits no add edit
    assert rep["adherence"]["full"]["clip"] == 0.0  # blank clips fail
    md = (tmp_path / "report.md").read_text()
    assert "World: built-in world config, `max_objects=1`" in md and "add (1 asked)" in md
    # the default world draws several objects somewhere in the same stream
    wide = ev.heldout_items(ev.EvalConfig(n=8).resolved(), WorldConfig())
    assert max(len(s.objects) for s, _, _ in wide) > 1


def test_eval_cli_passes_world_overrides(monkeypatch, tmp_path, capsys):
    from vidgpt.cli import main
    from vidgpt.generate import VidGPT

    model = tmp_path / "model"
    model.mkdir()
    (model / "vidgpt.json").write_text("{}")
    seen = {}

    def fake_eval(model_dir, cfg, out=None, progress=True, pipe=None, world=None):
        seen.update(cfg=cfg, world=world, out=out)
        return {"model": str(model_dir), "config": {}, "timing": {}}

    from types import SimpleNamespace

    fake = SimpleNamespace(default_clip=(9, 64, 64))  # the clip size the model was trained on
    monkeypatch.setattr(VidGPT, "from_pretrained", classmethod(lambda cls, d, device=None: seen.setdefault("loaded", fake)))
    monkeypatch.setattr(ev, "evaluate_model", fake_eval)
    monkeypatch.setattr(ev, "markdown_report", lambda rep: "report")
    argv = ["eval", "model", "--model", str(model), "--n", "3", "--freeform", "2", "--set", "max_objects=1",
            "--set", "camera_prob=0", "--out", str(tmp_path / "ev"), "--no-progress"]
    assert main(argv) == 0
    assert seen["cfg"].world_set == ["max_objects=1", "camera_prob=0"] and seen["cfg"].freeform == 2
    assert seen["world"].max_objects == 1 and seen["world"].camera_prob == 0
    assert (seen["cfg"].frames, seen["cfg"].size) == (9, 64)  # the model's default clip unless told
    seen.clear()
    assert main(argv + ["--frames", "5", "--size", "32"]) == 0
    assert (seen["cfg"].frames, seen["cfg"].size) == (5, 32)
    capsys.readouterr()
    seen.clear()
    assert main(["eval", "model", "--model", str(model), "--set", "max_objjects=1", "--no-progress"]) == 1
    assert not seen  # a bad key: one line, before the model loads
    err = capsys.readouterr().err.strip()
    assert "max_objjects" in err and len(err.splitlines()) == 1
    # no --set: the scenes of the model's own scope (vidgpt.json scope.world_set, as tools/ship_model.py writes it)
    (model / "vidgpt.json").write_text('{"scope": {"world_set": ["max_objects=1", "backgrounds=[solid]"]}}')
    seen.clear()
    assert main(["eval", "model", "--model", str(model), "--n", "2", "--no-progress", "--out", str(tmp_path / "ev")]) == 0
    assert seen["cfg"].world_set == ["max_objects=1", "backgrounds=[solid]"]
    assert seen["world"].max_objects == 1 and seen["world"].backgrounds == ["solid"]
    assert "model's scope" in capsys.readouterr().err
    seen.clear()  # --set wins over the scope
    assert main(["eval", "model", "--model", str(model), "--n", "2", "--set", "max_objects=2", "--no-progress",
                 "--out", str(tmp_path / "ev")]) == 0
    assert seen["cfg"].world_set == ["max_objects=2"]
    seen.clear()  # the kinds of edit pair, in turn
    assert main(["eval", "model", "--model", str(model), "--n", "2", "--edit-kinds", "motion, color", "--no-progress",
                 "--out", str(tmp_path / "ev")]) == 0
    assert seen["cfg"].edit_kinds == ["motion", "color"]
    capsys.readouterr()
    for bad in ("motion,jump", "", "motion,motion"):
        seen.clear()
        assert main(["eval", "model", "--model", str(model), "--edit-kinds", bad, "--no-progress"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert not seen and len(err) == 2 and "edit kinds" in err[-1]  # the scope note, then one error line


def test_tiny_random_model_runs_every_section(tmp_path):
    from vidgpt.backbone import toy_text_tokenizer
    from vidgpt.generate.tiny import tiny_pipeline

    pipe = tiny_pipeline(text_tokenizer=toy_text_tokenizer(), bits=6, max_latent_t=4, max_latent_hw=4, hidden=32)
    cfg = ev.EvalConfig(n=2, edits=2, continuations=1, frames=5, size=32, batch_size=2, max_new_tokens=4,
                        text_prompts=["hi there"])
    rep = ev.evaluate_model(None, cfg, out=tmp_path, progress=False, pipe=pipe)
    assert rep["adherence"]["full"]["clips"] == 2 and rep["adherence"]["preview"]["clips"] == 2
    assert rep["freeform"]["full"]["clips"] == 1 and rep["freeform"]["preview"]["clips"] == 1
    assert rep["editing"]["n"] == 2 and set(rep["editing"]["by_kind"]) == {"color", "motion", "add", "remove"}
    assert rep["continuation"]["n"] == 1 and rep["continuation"]["seam_psnr"] > 0
    lang = rep["language"]
    assert np.isfinite(lang["trained"]["perplexity"]) and lang["trained"]["tokens"] > 1000
    # over fewer rows each softmax keeps at least as much of the target's mass: never a higher perplexity
    assert lang["trained"]["text_rows"] <= lang["trained"]["perplexity"] * (1 + 1e-5)
    assert lang["base"] is None and "no backbone" in lang["base_error"]  # a pipeline made in memory names none
    assert [a["prompt"] for a in lang["answers"]] == ["hi there"]
    assert set(json.loads((tmp_path / "report.json").read_text())) >= {"adherence", "editing", "continuation", "language"}


def test_opposite_motion_prompts_differ_from_the_prompts_in_the_motion_only():
    cfg = ev.EvalConfig(n=40).resolved()
    world = WorldConfig()
    items = ev.heldout_items(cfg, world)
    negatives = ev.opposite_motion_prompts(cfg, world)
    assert len(negatives) == len(items)
    flipped = 0
    for (scene, _, prompt), neg in zip(items, negatives):
        if all(o.motion in ev.OPPOSITE_MOTION for o in scene.objects):
            assert neg and neg != prompt
            flipped += 1
        else:
            assert neg == ""  # bounce, rotate and stay have no opposite
    assert flipped >= 5
    assert all(ev.OPPOSITE_MOTION[ev.OPPOSITE_MOTION[m]] == m for m in ev.OPPOSITE_MOTION)
    # one object moving right: the negative names the same object moving left, in the same words otherwise
    one = ev.EvalConfig(n=60, world_set=["max_objects=1", "backgrounds=[solid]"]).resolved()
    w1 = one.world()
    pairs = [(s, p, n) for (s, _, p), n in zip(ev.heldout_items(one, w1), ev.opposite_motion_prompts(one, w1)) if n]
    assert pairs
    for scene, prompt, neg in pairs:
        same = sum(a == b for a, b in zip(prompt.split(), neg.split()))
        assert same >= len(prompt.split()) - 4, (prompt, neg)


def test_other_motion_prompts_turn_every_direction_a_quarter_at_a_time():
    assert [ev.turned_motion("right", q) for q in range(4)] == ["right", "down", "left", "up"]
    assert [ev.turned_motion("up-left", q) for q in (1, 2, 3)] == ["up-right", "down-right", "down-left"]
    assert [ev.turned_motion("grow", q) for q in (1, 2, 3)] == [None, "shrink", None]
    assert ev.turned_motion("rotate", 2) is None and ev.turned_motion("stay", 1) is None
    one = ev.EvalConfig(n=60, world_set=["max_objects=1", "backgrounds=[solid]"]).resolved()
    w1 = one.world()
    items, others = ev.heldout_items(one, w1), ev.other_motion_prompts(one, w1)
    opposite = ev.opposite_motion_prompts(one, w1)
    assert len(others) == len(items)
    straight = 0
    for (scene, _, prompt), negs, opp in zip(items, others, opposite):
        motion = scene.objects[0].motion
        if motion in ev._COMPASS:
            straight += 1
            assert len(negs) == 3 and len(set(negs)) == 3 and prompt not in negs
            assert negs[1] == opp  # the half turn is the reversed caption
        elif motion in ("grow", "shrink"):
            assert negs == [opp]
        else:
            assert negs == [""]
    assert straight >= 10


def test_generate_batch_guides_with_the_models_default_negative(monkeypatch):
    """`vidgpt eval model` measures what `vidgpt generate` does: negative "default" = VidGPT.default_negative."""
    from vidgpt.backbone import toy_text_tokenizer
    from vidgpt.generate.tiny import tiny_pipeline

    pipe = tiny_pipeline(text_tokenizer=toy_text_tokenizer(), bits=6, max_latent_t=4, max_latent_hw=4, hidden=32)
    seen = []
    real = pipe.layout.prompt_ids
    monkeypatch.setattr(pipe.layout, "prompt_ids", lambda sample: seen.append(sample.turns[0].content[0]) or real(sample))
    prompts = ["a red ball moving left", "a red ball bouncing up and down"]
    for negative, contrast, expected in (("default", True, ["a red ball moving right", ""]), ("default", False, ["", ""]),
                                         ("empty", True, ["", ""])):
        monkeypatch.setattr(pipe, "contrast_motion", contrast)
        seen.clear()
        cfg = ev.EvalConfig(frames=1, size=32, negative=negative)
        ev.generate_batch(pipe, prompts, cfg, torch.Generator().manual_seed(0), blueprint_only=True)
        assert seen == prompts + expected, (negative, contrast, seen)
    with pytest.raises(ev.ConfigError, match="negative"):
        ev.generate_batch(pipe, prompts, ev.EvalConfig(frames=1, size=32, negative="opposite"), torch.Generator())
    # several negatives for a prompt: each is one group of rows, the other prompt's negative repeated in every group
    seen.clear()
    ev.generate_batch(pipe, prompts, ev.EvalConfig(frames=1, size=32), torch.Generator().manual_seed(0),
                      negatives=[["a red ball moving up", "a red ball moving right", "a red ball moving down"], ""],
                      blueprint_only=True)
    assert seen == prompts + ["a red ball moving up", "", "a red ball moving right", "", "a red ball moving down", ""]
