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
    md = (tmp_path / "report.md").read_text()
    assert "Prompt adherence on held-out compositions (n = 6)" in md and "| colour |" in md
    from PIL import Image

    sheet = Image.open(tmp_path / "samples.png")
    assert sheet.size[1] >= 3 * 96  # three clips, one row each


def test_tiny_random_model_runs_every_section(tmp_path):
    from vidgpt.backbone import toy_text_tokenizer
    from vidgpt.generate.tiny import tiny_pipeline

    pipe = tiny_pipeline(text_tokenizer=toy_text_tokenizer(), bits=6, max_latent_t=4, max_latent_hw=4, hidden=32)
    cfg = ev.EvalConfig(n=2, edits=2, continuations=1, frames=5, size=32, batch_size=2, max_new_tokens=4,
                        text_prompts=["hi there"])
    rep = ev.evaluate_model(None, cfg, out=tmp_path, progress=False, pipe=pipe)
    assert rep["adherence"]["full"]["clips"] == 2 and rep["adherence"]["preview"]["clips"] == 2
    assert rep["editing"]["n"] == 2 and set(rep["editing"]["by_kind"]) == {"color", "motion", "add", "remove"}
    assert rep["continuation"]["n"] == 1 and rep["continuation"]["seam_psnr"] > 0
    lang = rep["language"]
    assert np.isfinite(lang["trained"]["perplexity"]) and lang["trained"]["tokens"] > 1000
    assert lang["base"] is None and "no backbone" in lang["base_error"]  # a pipeline made in memory names none
    assert [a["prompt"] for a in lang["answers"]] == ["hi there"]
    assert set(json.loads((tmp_path / "report.json").read_text())) >= {"adherence", "editing", "continuation", "language"}
