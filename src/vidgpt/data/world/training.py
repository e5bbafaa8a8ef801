"""Random clips for tokenizer training: richer and less tidy than the captioned scenes.

Up to 6 objects in any colour (named or random RGB), overlapping and leaving the frame, bright
or dark textures, camera pans/zooms, and real photos (panned and zoomed) when given.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .render import background_texture, camera_transform, paint_object, sample_photo, screen_grid
from .scene import BACKGROUNDS, CAMERA_MOVES, DIRECTIONS, MOTIONS, DEFAULT_SIZES, Background, Camera, ObjectSpec
from .shapes import SHAPES


def _random_color(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3).astype(np.float32)


def _random_object(rng: np.random.Generator) -> tuple[ObjectSpec, np.ndarray]:
    obj = ObjectSpec(
        shape=str(rng.choice(SHAPES)),
        color="red",
        size=str(rng.choice(list(DEFAULT_SIZES))),
        motion=str(rng.choice(MOTIONS)),
        x=float(rng.uniform(0.0, 1.0)),
        y=float(rng.uniform(0.0, 1.0)),
        angle=float(rng.uniform(0, 360)),
        speed=float(rng.uniform(0.05, 0.4)),
        spin=float(rng.uniform(-180, 180)),
        rate=float(rng.uniform(0.1, 0.6)),
        hop=float(rng.uniform(0.05, 0.3)),
    )
    return obj, _random_color(rng)


def random_training_clip(
    rng: np.random.Generator, frames: int, height: int, width: int, photos: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """uint8 [frames, height, width, 3]: one random clip (frames=1: an image).

    photos: optional uint8 [h, w, 3] arrays; about half the clips then pan or zoom over one.
    """
    fps = float(rng.uniform(4.0, 12.0))
    times = np.arange(frames) / fps
    use_photo = bool(photos) and rng.random() < 0.5
    camera = Camera(str(rng.choice(CAMERA_MOVES)), float(rng.uniform(0.05, 0.25)))
    bright = rng.random() < 0.4
    c1, c2 = _random_color(rng), _random_color(rng)
    if not bright:
        c1, c2 = c1 * 0.35, c2 * 0.35
    bg = Background(
        kind=str(rng.choice([b for b in BACKGROUNDS if b != "photo"])),
        angle=float(rng.uniform(0, 180)),
        scale=float(rng.uniform(0.05, 0.4)),
        seed=int(rng.integers(0, 2**31 - 1)),
    )
    photo = photos[int(rng.integers(len(photos)))] if use_photo else None
    zoom0 = float(rng.uniform(0.3, 1.0))  # fraction of the photo's shorter side in view
    off = rng.uniform(-0.25, 0.25, 2)

    x, y = screen_grid(height, width)
    out = np.empty((frames, height, width, 3), dtype=np.float32)
    for i, t in enumerate(times):
        if i > 0 and camera.move == "none":
            out[i] = out[0]
            continue
        ox, oy, zoom = camera_transform(camera, float(t))
        u, v = x / zoom + ox, y / zoom + oy
        if photo is not None:
            out[i] = sample_photo(photo, u * zoom0 + off[0], v * zoom0 + off[1])
        else:
            out[i] = background_texture(bg, u, v, c1=c1, c2=c2)

    n_objects = int(rng.integers(0, 4 if use_photo else 7))
    objects = [_random_object(rng) for _ in range(n_objects)]
    for i, t in enumerate(times):
        for obj, color in objects:
            paint_object(out[i], obj, float(t), color=color)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
