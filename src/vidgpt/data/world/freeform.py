"""Free-form prompts for a scene: the words a person might type, not the caption templates of the training data.

    freeform_prompt(scene, rng)  # e.g. "make a clip where a small red circle heads right over a dark blue backdrop"

`vidgpt eval model` judges adherence on these too (issue 11: other word orders, synonyms, a background named
or not). Deterministic in (scene, rng state). Every prompt names each object's colour (its palette name, or a
synonym listed in COLOR_WORDS), its shape (SHAPE_WORDS) and its motion (MOTION_PHRASES), so the
scene stays the ground truth the judge compares against. The frames (lead-ins, word orders, motion phrases)
are disjoint from vidgpt.data.world.captions: no prompt made here is one of the training captions.
"""

from __future__ import annotations

import numpy as np

from .scene import Scene

# palette name -> words a prompt may use for it (the palette name first)
COLOR_WORDS = {
    "red": ["red", "bright red", "scarlet"],
    "green": ["green", "bright green", "lime green"],
    "blue": ["blue", "bright blue", "royal blue"],
    "yellow": ["yellow", "lemon yellow", "sunny yellow"],
    "purple": ["purple", "violet"],
    "orange": ["orange", "tangerine"],
    "white": ["white", "snow-white"],
    "cyan": ["cyan", "aqua", "turquoise"],
    "pink": ["pink", "hot pink"],
}
SHAPE_WORDS = {
    "circle": ["circle", "disc", "round dot"],
    "square": ["square", "box", "block"],
    "triangle": ["triangle", "three-sided shape"],
    "star": ["star", "five-pointed star"],
    "diamond": ["diamond", "rhombus"],
    "hexagon": ["hexagon", "six-sided shape"],
    "cross": ["cross", "plus sign"],
    "ring": ["ring", "hoop", "donut shape"],
}
SIZE_WORDS = {"small": ["small", "little", "tiny"], "medium": ["medium-sized", "mid-sized", ""], "large": ["large", "big"], "huge": ["huge", "giant", "very large"]}
# motion -> third-person clauses ("... a red disc {clause}")
MOTION_PHRASES = {
    "left": ["heads left", "makes its way to the left", "goes leftward", "slips off toward the left"],
    "right": ["heads right", "makes its way to the right", "goes rightward", "slips off toward the right"],
    "up": ["rises", "floats upward", "climbs toward the top", "goes up"],
    "down": ["sinks", "falls toward the bottom", "drops downward", "goes down"],
    "up-left": ["heads for the top left corner", "rises diagonally to the left", "goes up and left"],
    "up-right": ["heads for the top right corner", "rises diagonally to the right", "goes up and right"],
    "down-left": ["heads for the bottom left corner", "sinks diagonally to the left", "goes down and left"],
    "down-right": ["heads for the bottom right corner", "sinks diagonally to the right", "goes down and right"],
    "bounce": ["keeps hopping", "jumps up and down again and again", "keeps bouncing"],
    "rotate": ["spins around", "turns round and round in place", "twirls"],
    "grow": ["gets bigger", "swells up", "inflates"],
    "shrink": ["dwindles", "contracts", "gets smaller and smaller"],
    "stay": ["doesn't move", "stays put", "holds still", "remains stationary"],
}


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _a(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def _background(scene: Scene, rng: np.random.Generator) -> str:
    b = scene.background
    c1, c2 = b.color, b.color2
    return _pick(rng, {
        "solid": [f"a {c1} backdrop", f"a flat {c1} field", f"plain {c1}"],
        "gradient": [f"a {c1}-to-{c2} gradient", "a smooth gradient backdrop"],
        "stripes": [f"{c1} and {c2} stripes", "a striped backdrop"],
        "checker": [f"a {c1} and {c2} checkered pattern", "a checkered backdrop"],
        "dots": [f"a polka-dot {c1} backdrop", "a dotted pattern"],
        "noise": [f"a grainy {c1} texture", "a grainy backdrop"],
        "photo": ["a photo", "a photograph"],
    }[b.kind])


def _thing(obj, rng: np.random.Generator) -> str:
    """An object in one of three word orders: size colour shape / shape in colour / colour-coloured shape."""
    color, shape = _pick(rng, COLOR_WORDS[obj.color]), _pick(rng, SHAPE_WORDS[obj.shape])
    size = _pick(rng, SIZE_WORDS[obj.size]) if rng.random() < 0.5 else ""
    order = int(rng.integers(3))
    if order == 0:
        return _a(" ".join(w for w in (size, color, shape) if w))
    if order == 1:
        return _a(" ".join(w for w in (size, shape) if w)) + f" in {color}"
    return _a(" ".join(w for w in (size, f"{obj.color}-coloured", shape) if w))


def freeform_prompt(scene: Scene, rng: np.random.Generator | None = None) -> str:
    """One free-form prompt for the video of `scene`."""
    rng = rng if rng is not None else np.random.default_rng(0)
    clauses = []
    for o in scene.objects:
        thing = _thing(o, rng)
        clauses.append(f"{thing} {_pick(rng, MOTION_PHRASES[o.motion])}")
    body = clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + _pick(rng, [" while ", ", and "]) + clauses[-1]
    bg = _background(scene, rng) if rng.random() < 0.6 else ""  # a background named or not
    frame = int(rng.integers(5))
    if frame == 0:
        text = f"make a clip where {body}" + (f" over {bg}" if bg else "")
    elif frame == 1:
        text = f"show me a video in which {body}" + (f", against {bg}" if bg else "")
    elif frame == 2:
        text = (f"against {bg}, {body}" if bg else f"picture this: {body}")
    elif frame == 3:
        text = f"i'd like a video where {body}" + (f"; the background is {bg}" if bg else "")
    else:
        text = f"{body}" + (f", set on {bg}" if bg else "") + " - please animate that"
    return text[0].upper() + text[1:]
