"""A caption with its motion reversed: `reversed_motion("a red circle moving to the left")` -> "a red circle moving to
the right"; a caption with no direction / growth / spin word gives "". Word-level and case-keeping, so free-form
prompts work too.

Two users: motion-contrast guidance (`vidgpt generate --contrast-motion`: the negative prompt is the prompt moving the
other way, so the guidance scale amplifies what the model knows about direction without touching colour or shape;
measured in model/README.md, "Motion-contrast guidance"), and the contrastive motion loss of training
(vidgpt.train.motion_pairs: the same clip under its caption and under the reversed one).
"""

from __future__ import annotations

import re

# each pair is swapped both ways; longer words first so "leftward" is not read as "left" + "ward"
_PAIRS = (
    ("counterclockwise", "clockwise"), ("anticlockwise", "clockwise"),
    ("leftward", "rightward"), ("leftwards", "rightwards"), ("left", "right"),
    ("upward", "downward"), ("upwards", "downwards"), ("up", "down"),
    ("top", "bottom"), ("rises", "sinks"), ("rising", "sinking"), ("rise", "sink"),
    ("growing", "shrinking"), ("grows", "shrinks"), ("grow", "shrink"),
    ("expanding", "contracting"), ("expands", "contracts"), ("expand", "contract"),
    ("larger", "smaller"), ("bigger", "smaller"),
)
_SWAP: dict[str, str] = {}
for _a, _b in _PAIRS:
    _SWAP.setdefault(_a, _b)
    _SWAP.setdefault(_b, _a)
_WORD = re.compile(r"\b(" + "|".join(sorted(_SWAP, key=len, reverse=True)) + r")\b", re.IGNORECASE)


def _keep_case(src: str, word: str) -> str:
    if src.isupper():
        return word.upper()
    if src[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def reversed_motion(prompt: str) -> str:
    """The prompt with every direction / growth / spin word swapped for its opposite; "" if it has none."""
    out, n = _WORD.subn(lambda m: _keep_case(m.group(0), _SWAP[m.group(0).lower()]), prompt)
    return out if n else ""
