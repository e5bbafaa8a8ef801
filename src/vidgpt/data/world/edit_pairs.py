"""Edit pairs in the synthetic world: one scene, one thing changed, and an instruction.

`make_edit_pair(rng, scene, kind)` returns (source_scene, target_scene, instruction, kind) where
the two scenes differ in exactly the named thing: one object's colour, shape or motion, one
object added or removed, or the background. Render both with the same size/fps to get the pair.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ...errors import DataError
from .captions import _DIRECTION_WORDS, _article
from .scene import (
    DIRECTIONS,
    ObjectSpec,
    Scene,
    WorldConfig,
    _random_object,
    feasible_motions,
    is_heldout,
    place,
    sample_background,
)
from .shapes import ROUND_SHAPES

EDIT_KINDS = ("color", "shape", "motion", "add", "remove", "background")


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _allowed(obj: ObjectSpec, config: WorldConfig, split: str) -> bool:
    """Train targets never create a held-out combination; held-out targets always do."""
    return is_heldout(obj, config) == (split == "heldout")


def _ref(obj: ObjectSpec, scene: Scene, rng: np.random.Generator) -> str:
    """How an instruction names an object: 'the red circle', or 'the circle' when unambiguous."""
    options = [f"the {obj.color} {obj.shape}"]
    if sum(o.shape == obj.shape for o in scene.objects) == 1:
        options.append(f"the {obj.shape}")
    return _pick(rng, options)


def _motion_verb(motion: str, rng: np.random.Generator) -> str:
    if motion in DIRECTIONS:
        return _pick(rng, [f"move {_DIRECTION_WORDS[motion][0]}", f"move {_DIRECTION_WORDS[motion][1]}"])
    return {
        "bounce": _pick(rng, ["bounce", "bounce up and down"]),
        "rotate": _pick(rng, ["spin", "rotate", "rotate in place"]),
        "grow": _pick(rng, ["grow", "grow larger"]),
        "shrink": _pick(rng, ["shrink", "get smaller"]),
        "stay": _pick(rng, ["stay still", "stop moving", "stay in place"]),
    }[motion]


def _with(scene: Scene, i: int, **changes) -> Scene:
    out = scene.copy()
    out.objects[i] = dataclasses.replace(out.objects[i], **changes)
    return out


def _edit_color(rng, scene: Scene, config: WorldConfig, split: str):
    used = {o.color for o in scene.objects}
    for i in rng.permutation(len(scene.objects)):
        obj = scene.objects[i]
        options = [c for c in config.colors if c not in used and _allowed(dataclasses.replace(obj, color=c), config, split)]
        if not options:
            continue
        new = _pick(rng, options)
        ref = _ref(obj, scene, rng)
        templates = [f"change {ref} to {new}", f"turn {ref} {new}", f"make {ref} {new}", f"paint {ref} {new}"]
        if len(scene.objects) == 1:
            templates += [f"make it {new}", f"change its colour to {new}", f"recolour it {new}"]
        return scene, _with(scene, i, color=new), _pick(rng, templates)
    return None


def _edit_shape(rng, scene: Scene, config: WorldConfig, split: str):
    for i in rng.permutation(len(scene.objects)):
        obj = scene.objects[i]
        options = [
            s
            for s in config.shapes
            if s != obj.shape
            and not (obj.motion == "rotate" and s in ROUND_SHAPES)
            and _allowed(dataclasses.replace(obj, shape=s), config, split)
        ]
        if not options:
            continue
        new = _pick(rng, options)
        ref = _ref(obj, scene, rng)
        a = _article(new)
        templates = [f"turn {ref} into {a} {new}", f"replace {ref} with {_article(obj.color)} {obj.color} {new}", f"change {ref} into {a} {new}"]
        if len(scene.objects) == 1:
            templates += [f"make it {a} {new}", f"turn it into {a} {new}"]
        return scene, _with(scene, i, shape=new), _pick(rng, templates)
    return None


def _edit_motion(rng, scene: Scene, config: WorldConfig, split: str):
    for i in rng.permutation(len(scene.objects)):
        obj = scene.objects[i]
        others = [o for j, o in enumerate(scene.objects) if j != i]
        options = [
            m
            for m in feasible_motions(obj, others, config.duration, config.motions)
            if m != obj.motion and _allowed(dataclasses.replace(obj, motion=m), config, split)
        ]
        if not options:
            continue
        new = _pick(rng, options)
        verb = _motion_verb(new, rng)
        ref = _ref(obj, scene, rng)
        templates = [f"make {ref} {verb} instead", f"have {ref} {verb}", f"now make {ref} {verb}"]
        if len(scene.objects) == 1:
            templates += [f"now make it {verb}", f"make it {verb} instead"]
        return scene, _with(scene, i, motion=new), _pick(rng, templates)
    return None


def _motion_clause(motion: str) -> str:
    """Third-person motion words for 'a red circle that ...'."""
    if motion in DIRECTIONS:
        return f"moves {_DIRECTION_WORDS[motion][1]}"
    return {"bounce": "bounces", "rotate": "spins", "grow": "grows", "shrink": "shrinks", "stay": "stays still"}[motion]


def _describe_new(obj: ObjectSpec, rng) -> str:
    base = f"{_article(obj.color)} {obj.color} {obj.shape}"
    return _pick(rng, [base, f"{_article(obj.size)} {obj.size} {obj.color} {obj.shape}", f"{base} that {_motion_clause(obj.motion)}"])


def _add_instruction(obj: ObjectSpec, rng) -> str:
    return _pick(rng, ["add {}", "put {} in the scene", "also show {}", "add {} to the scene"]).format(_describe_new(obj, rng))


def _remove_instruction(obj: ObjectSpec, scene: Scene, rng) -> str:
    return _pick(rng, ["remove {}", "take out {}", "delete {}", "get rid of {}"]).format(_ref(obj, scene, rng))


def _new_object(rng, scene: Scene, config: WorldConfig, split: str) -> ObjectSpec | None:
    used = {o.color for o in scene.objects}
    for _ in range(100):
        attrs = dict(config.heldout[int(rng.integers(len(config.heldout)))]) if split == "heldout" else {}
        obj = _random_object(rng, config, config.duration, attrs)
        if obj.color in used or not _allowed(obj, config, split):
            continue
        if place(rng, obj, scene.objects, config.duration, tries=20):
            return obj
    return None


def _edit_add(rng, scene: Scene, config: WorldConfig, split: str):
    if len(scene.objects) >= max(config.max_objects, 1):
        # the scene is full: the source is the scene without one object
        i = int(rng.integers(len(scene.objects)))
        if len(scene.objects) < 2 or not _allowed(scene.objects[i], config, split):
            return None
        source = scene.copy()
        obj = source.objects.pop(i)
        return source, scene, _add_instruction(obj, rng)
    obj = _new_object(rng, scene, config, split)
    if obj is None:
        return None
    target = scene.copy()
    target.objects.append(obj)
    return scene, target, _add_instruction(obj, rng)


def _edit_remove(rng, scene: Scene, config: WorldConfig, split: str):
    if len(scene.objects) >= 2:
        i = int(rng.integers(len(scene.objects)))
        target = scene.copy()
        target.objects.pop(i)
        return scene, target, _remove_instruction(scene.objects[i], scene, rng)
    # a single object: the source gets an extra object that the instruction removes
    obj = _new_object(rng, scene, config, "train")
    if obj is None:
        return None
    source = scene.copy()
    source.objects.append(obj)
    return source, scene, _remove_instruction(obj, source, rng)


def _edit_background(rng, scene: Scene, config: WorldConfig, split: str):
    old = scene.background
    for _ in range(50):
        bg = sample_background(rng, config)
        if bg.kind != old.kind or (bg.kind == "solid" and bg.color != old.color):
            break
    else:
        return None
    it = "it" if len(scene.objects) == 1 else "them"
    named = {
        "solid": [f"make the background {bg.color}", f"put {it} on a plain {bg.color} background"],
        "gradient": [f"put {it} on a {bg.color} to {bg.color2} gradient", "change the background to a gradient"],
        "stripes": [f"put {it} on a striped background", "change the background to stripes"],
        "checker": [f"put {it} on a checkerboard", "change the background to a checkerboard"],
        "dots": [f"put {it} on a dotted background", "change the background to dots"],
        "noise": [f"put {it} on a noisy texture", "make the background a noisy texture"],
        "photo": [f"put {it} over a photo"],
    }[bg.kind]
    target = scene.copy()
    target.background = bg
    return scene, target, _pick(rng, named)


_EDITORS = {
    "color": _edit_color,
    "shape": _edit_shape,
    "motion": _edit_motion,
    "add": _edit_add,
    "remove": _edit_remove,
    "background": _edit_background,
}


def make_edit_pair(
    rng: np.random.Generator, scene: Scene, kind: str | None = None, config: WorldConfig | None = None, split: str = "train"
) -> tuple[Scene, Scene, str, str]:
    """(source_scene, target_scene, instruction, kind); kind=None picks one that is possible.

    split="train" never creates a held-out combination in the target; "heldout" makes the edited
    object one (for colour/shape/motion/add edits).
    """
    config = config or WorldConfig()
    if kind is not None and kind not in _EDITORS:
        raise DataError(f"edit kind {kind!r} unknown (known: {', '.join(EDIT_KINDS)})")
    kinds = [kind] if kind else [str(k) for k in rng.permutation(list(EDIT_KINDS))]
    for k in kinds:
        out = _EDITORS[k](rng, scene, config, split)
        if out is not None:
            source, target, instruction = out
            return source, target, instruction, k
    raise DataError(f"no {kind or 'edit'} is possible for this scene (split={split})")
