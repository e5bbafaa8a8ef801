"""Free-form prompts (vidgpt.data.world.freeform): deterministic, name every object, never a training caption."""

import re

import numpy as np

from vidgpt.data.synthetic import WorldConfig, captions, sample_scene
from vidgpt.data.world.freeform import COLOR_WORDS, MOTION_PHRASES, SHAPE_WORDS, freeform_prompt

WORLD = WorldConfig()


def _scenes(n, split="heldout"):
    return [sample_scene(np.random.default_rng([5, i]), WORLD, split) for i in range(n)]


def _mentions(text, words):
    return any(re.search(r"(^|[^a-z])" + re.escape(w) + r"([^a-z]|$)", text) for w in words)


def test_deterministic_and_names_every_object():
    for i, scene in enumerate(_scenes(40) + _scenes(20, "train")):
        p = freeform_prompt(scene, np.random.default_rng(i))
        assert p == freeform_prompt(scene, np.random.default_rng(i))
        low = p.lower()
        for o in scene.objects:
            assert _mentions(low, COLOR_WORDS[o.color]), (p, o.color)
            assert _mentions(low, SHAPE_WORDS[o.shape]), (p, o.shape)
            assert any(m in low for m in MOTION_PHRASES[o.motion]), (p, o.motion)


def test_never_a_training_caption_and_varied():
    prompts, train_leads = [], ("a video of", "a clip showing")
    for i, scene in enumerate(_scenes(60)):
        p = freeform_prompt(scene, np.random.default_rng(i))
        trained = {c for k in range(30) for c in captions(scene, np.random.default_rng(k))}
        assert p not in trained and not p.lower().startswith(train_leads), p
        prompts.append(p)
    assert len({p.split()[0] for p in prompts}) >= 4  # several sentence frames
    named = [p for p, s in zip(prompts, _scenes(60)) if "backdrop" in p or "background" in p or s.background.color in p]
    assert 0 < len(named) < len(prompts)  # a background named in some, not in all
    assert any("-coloured" in p for p in prompts) and any(" in " + w in p for p in prompts for w in ("red", "aqua", "violet", "white", "cyan"))
    # synonyms appear, and the palette names too
    assert any(w in " ".join(prompts) for w in ("scarlet", "violet", "aqua", "turquoise", "tangerine", "disc", "hoop"))
