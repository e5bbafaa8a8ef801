"""Named colours of the synthetic world.

Object colours are bright and saturated, far apart in RGB (every pair is >= 95 apart), so a
rule-based judge can name them. Background colours are dark and muted (every channel <= 75), so
nothing in a background is ever mistaken for an object colour.
"""

from __future__ import annotations

import numpy as np

# name -> RGB (uint8 values)
OBJECT_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (235, 30, 30),
    "green": (30, 205, 50),
    "blue": (45, 90, 255),
    "yellow": (250, 235, 40),
    "purple": (160, 50, 215),
    "orange": (255, 145, 0),
    "white": (245, 245, 245),
    "cyan": (0, 225, 230),
    "pink": (255, 120, 200),
}

BACKGROUND_COLORS: dict[str, tuple[int, int, int]] = {
    "black": (8, 8, 10),
    "dark grey": (50, 50, 52),
    "dark blue": (18, 28, 72),
    "navy": (10, 15, 45),
    "dark green": (15, 52, 28),
    "dark teal": (12, 55, 58),
    "brown": (70, 42, 25),
    "maroon": (62, 14, 26),
    "dark purple": (45, 20, 62),
}


def rgb(name: str) -> np.ndarray:
    """float32 [3] RGB of an object or background colour name."""
    if name in OBJECT_COLORS:
        return np.asarray(OBJECT_COLORS[name], dtype=np.float32)
    return np.asarray(BACKGROUND_COLORS[name], dtype=np.float32)


def object_palette() -> tuple[list[str], np.ndarray]:
    """(names, float32 [K,3]) of the object colours, in a fixed order."""
    names = list(OBJECT_COLORS)
    return names, np.asarray([OBJECT_COLORS[n] for n in names], dtype=np.float32)
