"""A caption with its motion reversed: `reversed_motion("a red circle moving to the left")` -> "a red circle moving to
the right"; a caption with no direction / growth / spin word gives "". Word-level and case-keeping, so free-form
prompts work too.

Two users: motion-contrast guidance (`VidGPT.default_negative`, on by default for a model whose vidgpt.json sets
`contrast_motion`, else `vidgpt generate --contrast-motion`: the negative prompt is the prompt moving the other way,
so the guidance scale amplifies what the model knows about direction without touching colour or shape;
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
_SPIN = {"clockwise", "counterclockwise", "anticlockwise"}
# "bounces up and down", "from side to side": both ends named, nothing to reverse
_BOTH_WAYS = re.compile(r"\b(up and down|down and up|left and right|right and left|back and forth|side to side)\b",
                        re.IGNORECASE)


def _keep_case(src: str, word: str) -> str:
    if src.isupper():
        return word.upper()
    if src[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def reversed_motion(prompt: str, spin: bool = True) -> str:
    """The prompt with every direction / growth / spin word swapped for its opposite; "" if it has none.

    Phrases that name both ends ("bounces up and down") are kept as they are. spin=False leaves clockwise /
    counterclockwise alone (a prompt whose only motion word is a spin direction then gives "")."""
    kept = [(m.start(), m.end()) for m in _BOTH_WAYS.finditer(prompt)]

    def swap(m):
        word = m.group(0)
        if any(a <= m.start() < b for a, b in kept) or (not spin and word.lower() in _SPIN):
            return word
        swap.n += 1
        return _keep_case(word, _SWAP[word.lower()])

    swap.n = 0
    out = _WORD.sub(swap, prompt)
    return out if swap.n else ""


# words naming a straight direction (any inflection the list holds), for `named_direction`
_DIRECTION_NAMES = {
    "left": ("left", "leftward", "leftwards"),
    "right": ("right", "rightward", "rightwards"),
    "up": ("up", "upward", "upwards", "top", "upper", "rise", "rises", "rising", "climb", "climbs", "climbing", "ascend",
           "ascends", "ascending"),
    "down": ("down", "downward", "downwards", "bottom", "lower", "sink", "sinks", "sinking", "fall", "falls", "falling", "drop",
             "drops", "dropping", "descend", "descends", "descending"),
}
_NAME_OF = {w: d for d, words in _DIRECTION_NAMES.items() for w in words}
_DIRECTION_WORD = re.compile(r"\b(" + "|".join(sorted(_NAME_OF, key=len, reverse=True)) + r")\b", re.IGNORECASE)
# "from the right (toward the left)": where a move starts, not where it goes
_FROM = re.compile(r"\bfrom the (left|right|top|bottom)\b", re.IGNORECASE)


def named_direction(prompt: str) -> str | None:
    """The one straight direction (left, right, up, down) a prompt asks for, or None when it names none, several
    ("up and to the left", "bounces up and down") or a direction only as where the move starts ("from the right").
    "moving left", "heads for the top", "sinks", "from the right toward the left" -> left / up / down / left."""
    text = _BOTH_WAYS.sub(" ", _FROM.sub(" ", prompt))
    named = {_NAME_OF[m.group(0).lower()] for m in _DIRECTION_WORD.finditer(text)}
    return named.pop() if len(named) == 1 else None
