"""The shipped default model (model/): it loads on the CPU and draws what a plain prompt asks for.

Skipped while no model ships (a fresh checkout before issue 11's first piece). With one, this is the guard
that the README's main job works: the model's default clip size, then full clips for fixed prompts and seeds,
judged by the project's judge (colour always; motion too), on the fast decode path.
"""

import json
from pathlib import Path

import pytest

from vidgpt.generate.pipeline import default_model_dir

MODEL = default_model_dir()
pytestmark = [pytest.mark.skipif(not (MODEL / "vidgpt.json").is_file(), reason=f"no shipped model at {MODEL}"),
              pytest.mark.usefixtures("one_thread")]

# (prompt, scene) pairs of the training split's kind of scene (one object), worded as a user would
CASES = [
    ("a red circle moving right", {"color": "red", "shape": "circle", "motion": "right"}),
    ("a blue square moving down", {"color": "blue", "shape": "square", "motion": "down"}),
]


@pytest.fixture(scope="module")
def pipe():
    from vidgpt.generate import VidGPT

    return VidGPT.from_pretrained(device="cpu")


def test_the_shipped_model_is_small_and_describes_itself():
    meta = json.loads((MODEL / "vidgpt.json").read_text())
    assert meta["form"] == "delta" and meta.get("default_clip")
    size = sum(p.stat().st_size for p in MODEL.rglob("*") if p.is_file())
    assert size <= 50 * 2**20, f"model/ holds {size / 2**20:.1f} MB"


@pytest.mark.parametrize("prompt,want", CASES)
def test_default_model_draws_the_prompt(pipe, prompt, want):
    from vidgpt.data.judge import judge_clip
    from vidgpt.data.synthetic import Scene

    out = pipe.generate(prompt, num=2, seed=0, progress=False)
    f, h, w = pipe.default_clip
    assert out.videos.shape[1:4] == (f, h, w)
    obj = {"color": want["color"], "shape": want["shape"], "size": "medium", "motion": want["motion"]}
    scene = Scene.from_dict({"objects": [obj], "background": {"kind": "solid", "color": "black", "color2": "black"}})
    verdicts = [judge_clip(v, scene).objects[0] for v in out.videos]
    assert any(v.color.passed for v in verdicts), [v.color for v in verdicts]
    assert any(v.color.passed and v.motion.passed for v in verdicts), [(v.color, v.motion) for v in verdicts]
