"""General edits that apply to any clip (uint8 [T, H, W, 3]), pure numpy.

Each maker returns an `Edit(input, target, instruction, mask)`: the clip the model is shown,
the clip it should produce, an instruction in varied wording (pass an rng to vary it), and a
bool mask of the target region to fill (or None).

  continue_clip  prefix -> continuation          (mask None)
  inpaint        clip with a box greyed -> clip   (mask [T, H, W], True = to fill)
  outpaint       centre crop -> full frame        (mask [H, W], True = outside the crop)
  interpolate    every other frame -> all frames  (mask None)
  reverse, mirror, greyscale                      (mask None)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import DataError

GENERAL_EDITS = ("continue", "inpaint", "outpaint", "interpolate", "reverse", "mirror", "greyscale")


class Edit(NamedTuple):
    input: np.ndarray
    target: np.ndarray
    instruction: str
    mask: np.ndarray | None


def _pick(rng: np.random.Generator | None, options: list[str]) -> str:
    return options[0] if rng is None else options[int(rng.integers(len(options)))]


def _check(frames: np.ndarray, min_frames: int = 1) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise DataError(f"edit: expected uint8 frames [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    if frames.shape[0] < min_frames:
        raise DataError(f"edit: needs at least {min_frames} frames, got {frames.shape[0]}")
    return frames


def continue_clip(frames: np.ndarray, prefix: int | None = None, rng: np.random.Generator | None = None) -> Edit:
    """Split into the first `prefix` frames (default: about half, 1 + 4k) and the rest."""
    frames = _check(frames, 2)
    n = len(frames)
    if prefix is None:
        prefix = min(1 + 4 * ((n // 2) // 4), n - 1)
    if not 1 <= prefix < n:
        raise DataError(f"continue: prefix must be in [1, {n - 1}], got {prefix}")
    text = _pick(rng, ["continue the video", "what happens next?", "continue this clip", "keep going"])
    return Edit(frames[:prefix].copy(), frames[prefix:].copy(), text, None)


def inpaint(frames: np.ndarray, rng: np.random.Generator | None = None, box: tuple[int, int, int, int] | None = None, fill: int = 128) -> Edit:
    """Grey out a box (y0, x0, y1, x1) in every frame (random, 1/4 to 1/2 of each side, when None)."""
    frames = _check(frames)
    _, h, w, _ = frames.shape
    if box is None:
        g = rng if rng is not None else np.random.default_rng(0)
        bh, bw = int(g.integers(h // 4, h // 2 + 1)), int(g.integers(w // 4, w // 2 + 1))
        y0, x0 = int(g.integers(0, h - bh + 1)), int(g.integers(0, w - bw + 1))
        box = (y0, x0, y0 + bh, x0 + bw)
    y0, x0, y1, x1 = box
    if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
        raise DataError(f"inpaint: box {box} outside a {h}x{w} frame")
    mask = np.zeros(frames.shape[:3], dtype=bool)
    mask[:, y0:y1, x0:x1] = True
    masked = frames.copy()
    masked[mask] = fill
    text = _pick(rng, ["fill in the grey box", "fill the masked region", "inpaint the missing area", "restore the hidden part"])
    return Edit(masked, frames.copy(), text, mask)


def outpaint(frames: np.ndarray, rng: np.random.Generator | None = None, keep: float = 0.5) -> Edit:
    """Centre crop keeping `keep` of each side (rounded down to a multiple of 8 when possible)."""
    frames = _check(frames)
    _, h, w, _ = frames.shape
    if not 0 < keep < 1:
        raise DataError(f"outpaint: keep must be in (0, 1), got {keep}")

    def side(n: int) -> int:
        k = int(n * keep)
        return max(8 * (k // 8), 1) if k >= 8 else max(k, 1)

    ch, cw = side(h), side(w)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    mask = np.ones((h, w), dtype=bool)
    mask[y0 : y0 + ch, x0 : x0 + cw] = False
    text = _pick(rng, ["extend the view outward", "zoom out and fill in the surroundings", "outpaint this clip", "show more around the edges"])
    return Edit(frames[:, y0 : y0 + ch, x0 : x0 + cw].copy(), frames.copy(), text, mask)


def interpolate(frames: np.ndarray, rng: np.random.Generator | None = None) -> Edit:
    """Keep every other frame (0, 2, 4, ...); 17 frames -> 9 in, 17 out."""
    frames = _check(frames, 3)
    text = _pick(rng, ["interpolate the missing frames", "double the frame rate", "make the motion smoother", "fill in between frames"])
    return Edit(frames[::2].copy(), frames.copy(), text, None)


def reverse(frames: np.ndarray, rng: np.random.Generator | None = None) -> Edit:
    frames = _check(frames, 2)
    text = _pick(rng, ["play it backwards", "reverse the video", "run the clip in reverse"])
    return Edit(frames.copy(), frames[::-1].copy(), text, None)


def mirror(frames: np.ndarray, rng: np.random.Generator | None = None) -> Edit:
    """Left-right flip."""
    frames = _check(frames)
    text = _pick(rng, ["mirror it", "flip it horizontally", "flip left and right"])
    return Edit(frames.copy(), frames[:, :, ::-1].copy(), text, None)


def greyscale(frames: np.ndarray, rng: np.random.Generator | None = None) -> Edit:
    """ITU-R BT.601 luma in all three channels."""
    frames = _check(frames)
    luma = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    grey = np.repeat(np.clip(luma + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    text = _pick(rng, ["make it black and white", "convert to greyscale", "remove the colour", "make it grayscale"])
    return Edit(frames.copy(), grey, text, None)


_MAKERS = {
    "continue": lambda f, rng: continue_clip(f, rng=rng),
    "inpaint": lambda f, rng: inpaint(f, rng=rng),
    "outpaint": lambda f, rng: outpaint(f, rng=rng),
    "interpolate": interpolate,
    "reverse": reverse,
    "mirror": mirror,
    "greyscale": greyscale,
}


def general_edit(frames: np.ndarray, rng: np.random.Generator, kind: str | None = None) -> tuple[str, Edit]:
    """(kind, Edit) for a named or random general edit that the clip allows (1-frame clips only get
    inpaint, outpaint, mirror, greyscale)."""
    frames = _check(frames)
    if kind is not None and kind not in _MAKERS:
        raise DataError(f"general edit {kind!r} unknown (known: {', '.join(GENERAL_EDITS)})")
    if kind is None:
        kinds = list(GENERAL_EDITS) if len(frames) >= 3 else ["inpaint", "outpaint", "mirror", "greyscale"]
        kind = kinds[int(rng.integers(len(kinds)))]
    return kind, _MAKERS[kind](frames, rng)
