"""Captions for scenes, in varied wording from terse to detailed.

Every caption names each object's colour and shape and (for videos) its motion; detailed ones
add size, background and camera move. `captions(scene, rng)` gives one of each style.
"""

from __future__ import annotations

import numpy as np

from .scene import DIRECTIONS, ObjectSpec, Scene

STYLES = ("terse", "short", "medium", "detailed")

# motion -> (terse phrase, verb phrase, detailed phrase); {dir} words come from the direction name
_LINEAR_TERSE = "moving {d}"
_LINEAR_VERB = ["moves {d}", "drifts {d}", "slides {d}", "travels {d}"]
_LINEAR_DETAIL = ["glides steadily {d}", "moves smoothly {d}", "travels slowly {d}"]
_DIRECTION_WORDS = {
    "left": ("left", "to the left", "from the right toward the left"),
    "right": ("right", "to the right", "from the left toward the right"),
    "up": ("up", "upward", "from the bottom toward the top"),
    "down": ("down", "downward", "from the top toward the bottom"),
    "up-left": ("up-left", "diagonally up and to the left", "up and to the left on a diagonal"),
    "up-right": ("up-right", "diagonally up and to the right", "up and to the right on a diagonal"),
    "down-left": ("down-left", "diagonally down and to the left", "down and to the left on a diagonal"),
    "down-right": ("down-right", "diagonally down and to the right", "down and to the right on a diagonal"),
}
_OTHER = {
    "bounce": ("bouncing", ["bounces up and down", "bounces", "hops up and down"], ["bounces up and down like a ball"]),
    "rotate": ("rotating", ["rotates in place", "spins", "rotates"], ["spins {spin} in place", "rotates {spin} without moving"]),
    "grow": ("growing", ["grows", "grows larger", "expands"], ["slowly grows larger", "expands steadily in place"]),
    "shrink": ("shrinking", ["shrinks", "gets smaller", "shrinks in place"], ["slowly shrinks", "gradually gets smaller in place"]),
    "stay": ("still", ["stays still", "sits still", "stays in place"], ["stays perfectly still", "rests motionless"]),
}

# Words a caption may use for each motion (tests and search use these).
MOTION_WORDS = {
    **{m: [m, _DIRECTION_WORDS[m][1].split()[-1], _DIRECTION_WORDS[m][2].split(" toward ")[-1]] for m in DIRECTIONS},
    "bounce": ["bounc", "hops"],
    "rotate": ["rotat", "spin"],
    "grow": ["grow", "expand"],
    "shrink": ["shrink", "smaller"],
    "stay": ["still", "in place", "motionless"],
}


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def motion_phrase(obj: ObjectSpec, style: str, rng: np.random.Generator) -> str:
    m = obj.motion
    if m in DIRECTIONS:
        terse, verb, detail = _DIRECTION_WORDS[m]
        if style == "terse":
            return _LINEAR_TERSE.format(d=terse)
        if style == "detailed":
            return _pick(rng, _LINEAR_DETAIL).format(d=detail)
        return _pick(rng, _LINEAR_VERB).format(d=verb)
    terse, verbs, details = _OTHER[m]
    if style == "terse":
        return terse
    spin = "clockwise" if obj.spin > 0 else "counterclockwise"
    return _pick(rng, details if style == "detailed" else verbs).format(spin=spin)


def background_phrase(scene: Scene, style: str, rng: np.random.Generator) -> str:
    b = scene.background
    c1, c2 = b.color, b.color2
    if style in ("terse", "short"):
        return {
            "solid": f"{c1} background",
            "gradient": "gradient background",
            "stripes": "striped background",
            "checker": "checkerboard background",
            "dots": "dotted background",
            "noise": "noisy background",
            "photo": "photo background",
        }[b.kind]
    return {
        "solid": f"a plain {c1} background",
        "gradient": f"a {c1} to {c2} gradient background",
        "stripes": f"a background of {c1} and {c2} stripes",
        "checker": f"a {c1} and {c2} checkerboard",
        "dots": f"a {c1} background with {c2} dots",
        "noise": f"a noisy {c1} and {c2} texture",
        "photo": "a dim photograph",
    }[b.kind]


def camera_phrase(scene: Scene) -> str:
    move = scene.camera.move
    if move == "none" or scene.background.kind == "solid":
        return ""
    if move.startswith("pan"):
        return f"the camera pans {move.split('-')[1]} across the background"
    return "the camera zooms " + ("in on" if move == "zoom-in" else "out from") + " the background"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _join(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def caption(scene: Scene, rng: np.random.Generator | None = None, style: str | None = None, image: bool = False) -> str:
    """One caption of `style` (terse|short|medium|detailed; random when None). image=True leaves
    motion out (a 1-frame scene)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    style = style or _pick(rng, STYLES)
    objs = scene.objects
    if style == "terse":
        items = [f"{o.color} {o.shape}" + ("" if image else f", {motion_phrase(o, style, rng)}") for o in objs]
        return "; ".join(items)
    if style == "short":
        items = [f"{_article(o.color)} {o.color} {o.shape}" + ("" if image else f" {motion_phrase(o, style, rng)}") for o in objs]
        text = f"{_join(items)} on a {background_phrase(scene, style, rng)}"
        return text[0].upper() + text[1:]
    if style == "medium":
        lead = _pick(rng, ["", "A video of ", "A clip showing "] if not image else ["", "An image of ", "A picture of "])
        items = [f"{_article(o.color)} {o.color} {o.shape}" + ("" if image else f" that {motion_phrase(o, style, rng)}") for o in objs]
        text = f"{lead}{_join(items)} on {background_phrase(scene, style, rng)}."
        return text[0].upper() + text[1:]
    # detailed: one sentence per object, then background / camera
    sentences = []
    for i, o in enumerate(objs):
        det = "A" if i == 0 else _pick(rng, ["Another object:", "Also,", "Meanwhile,"]) + " a"
        body = f"{det} {o.size} {o.color} {o.shape}"
        if not image:
            body += f" {motion_phrase(o, style, rng)}"
        if i == 0:
            body += f" over {background_phrase(scene, style, rng)}"
        sentences.append(body + ".")
    cam = camera_phrase(scene)
    if cam and not image:
        sentences.append(f"Meanwhile {cam}." if len(objs) == 1 else f"In the background, {cam}.")
    return " ".join(sentences)


def captions(scene: Scene, rng: np.random.Generator | None = None, image: bool = False) -> list[str]:
    """One caption of each style, terse first."""
    rng = rng if rng is not None else np.random.default_rng(0)
    return [caption(scene, rng, style, image=image) for style in STYLES]
