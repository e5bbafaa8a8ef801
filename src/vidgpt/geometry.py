"""Clip geometry, in one place: frames and size -> latent (t, h, w) -> blueprint shape -> block lengths.

The video tokenizer compresses time by `time_factor` (4: 1 + 4n frames -> 1 + n latent frames) and
space by `space_factor` (8 by default; a 16x tokenizer makes 17x128x128 -> 5x8x8). The blueprint is
the same tokenizer on the clip at half size, so its latent is (t, ceil(h/2), ceil(w/2)), and a clip
drawn with a blueprint needs sides that are multiples of 2 * space_factor. A visual block is

    <|vision_start|> <|t|><|h|><|w|> [<|blueprint|> t*bh*bw*S ids] [<|fine|> t*h*w*S ids] <|vision_end|>

`ClipGeometry` answers every question about one request (validation with one-line errors, latent
and blueprint shapes, per-section lengths); the layout, the structure constraint and the pipeline
ask it instead of computing the numbers themselves. `factors_of(video_tokenizer)` reads the factors
off a tokenizer (its `space_factor` / `time_factor` properties, else its config, else 4 and 8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import GenerationError

TIME_FACTOR = 4
SPACE_FACTOR = 8


def blueprint_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """Latent shape of the blueprint of a clip whose fine latent is `shape` (t, h, w)."""
    t, h, w = (int(x) for x in shape)
    return (t, (h + 1) // 2, (w + 1) // 2)


def moved_fine_mask(blueprint, fine_shape: Sequence[int]):
    """bool numpy [t, h, w] over the fine grid: the cells under blueprint cells (codes [t, bh, bw], array-like) whose
    code differs from the same cell's in latent frame 0 (where the blueprint says the object went or left; latent
    frame 0 never). One definition for training weights, the follow guidance and tools/fine_follow_probe.py."""
    bp = np.asarray(blueprint)
    t, h, w = (int(x) for x in fine_shape)
    moved = bp != bp[:1]
    return moved.repeat(2, 1).repeat(2, 2)[:t, :h, :w]


BACKGROUND_BITS = 2


def blueprint_region_mask(blueprint, fine_shape: Sequence[int], margin: int = 0, background_bits: int = BACKGROUND_BITS):
    """bool numpy [t, h, w] over the fine grid: the cells near what the blueprint (codes [t, bh, bw], array-like,
    code = sum(bit_i * 2^i)) shows over its background. A blueprint cell is background when its code differs from
    its latent frame's most common code in at most `background_bits` bits (a plain background codes to one code with
    a local tokenizer, up to the bits whose latent sits near the sign flip: measured on the default model's own
    blueprints, model/README.md "Blueprint mask"); the other cells, grown by `margin` blueprint cells in space
    (8-neighbourhood), are mapped 2x2 onto the fine grid. The pipeline's `blueprint_mask` decode option draws only
    these fine cells and sets the rest from the blueprint itself."""
    bp = np.asarray(blueprint).astype(np.int64)
    t, h, w = (int(x) for x in fine_shape)
    region = np.zeros(bp.shape, dtype=bool)
    for f in range(bp.shape[0]):
        values, counts = np.unique(bp[f], return_counts=True)
        diff = np.bitwise_xor(bp[f], values[counts.argmax()])
        flipped = np.zeros(diff.shape, dtype=np.int64)
        while diff.any():
            flipped += diff & 1
            diff = diff >> 1
        region[f] = flipped > background_bits
    return grow_cells(region, margin).repeat(2, 1).repeat(2, 2)[:t, :h, :w]


def grow_cells(mask: np.ndarray, steps: int = 1) -> np.ndarray:
    """bool [..., h, w] grown by `steps` cells in space (8-neighbourhood), a new array."""
    region = np.array(mask, dtype=bool)
    h, w = region.shape[-2:]
    lead = ((0, 0),) * (region.ndim - 2)
    for _ in range(max(0, int(steps))):
        grown = region.copy()
        padded = np.pad(region, lead + ((1, 1), (1, 1)))
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                grown |= padded[..., dy : dy + h, dx : dx + w]
        region = grown
    return region


def section_lengths(shape: Sequence[int], subtokens: int = 1, blueprint: bool = True, fine: bool = True) -> dict[str, int]:
    """Visual ids per section present: {"blueprint": t*bh*bw*S, "fine": t*h*w*S}."""
    t, h, w = (int(x) for x in shape)
    out = {}
    if blueprint:
        _, bh, bw = blueprint_shape(shape)
        out["blueprint"] = t * bh * bw * subtokens
    if fine:
        out["fine"] = t * h * w * subtokens
    return out


def block_length(shape: Sequence[int], subtokens: int = 1, blueprint: bool = True, fine: bool = True) -> int:
    """Number of ids a visual block takes (start, header, section markers, visual ids, end)."""
    lengths = section_lengths(shape, subtokens, blueprint, fine)
    return 1 + 3 + 1 + sum(1 + n for n in lengths.values())


def latent_shape(frames: int, height: int, width: int, time_factor: int = TIME_FACTOR,
                 space_factor: int = SPACE_FACTOR) -> tuple[int, int, int]:
    """Video (T, H, W) -> latent (t, h, w) (no validation; see ClipGeometry.check)."""
    return 1 + (int(frames) - 1) // time_factor, int(height) // space_factor, int(width) // space_factor


def video_shape(t: int, h: int, w: int, time_factor: int = TIME_FACTOR, space_factor: int = SPACE_FACTOR) -> tuple[int, int, int]:
    """Latent (t, h, w) -> video (T, H, W)."""
    return 1 + (int(t) - 1) * time_factor, int(h) * space_factor, int(w) * space_factor


def factors_of(video_tokenizer=None, meta: dict | None = None) -> tuple[int, int]:
    """(time_factor, space_factor) of a video tokenizer: its properties, its config, the model metadata, else (4, 8)."""
    tf = sf = None
    if video_tokenizer is not None:
        tf = getattr(video_tokenizer, "time_factor", None)
        sf = getattr(video_tokenizer, "space_factor", None)
        cfg = getattr(video_tokenizer, "config", None)
        tf = tf or getattr(cfg, "time_factor", None)
        sf = sf or getattr(cfg, "space_factor", None)
    meta = meta or {}
    tf = tf or meta.get("time_factor") or TIME_FACTOR
    sf = sf or meta.get("space_factor") or SPACE_FACTOR
    return int(tf), int(sf)


@dataclass(frozen=True)
class ClipGeometry:
    """One clip request: its pixel size, the tokenizer's factors, and whether a blueprint is drawn."""

    frames: int
    height: int
    width: int
    time_factor: int = TIME_FACTOR
    space_factor: int = SPACE_FACTOR
    blueprint: bool = True

    @classmethod
    def from_latent(cls, shape: Sequence[int], time_factor: int = TIME_FACTOR, space_factor: int = SPACE_FACTOR,
                    blueprint: bool = True) -> "ClipGeometry":
        T, H, W = video_shape(*shape, time_factor=time_factor, space_factor=space_factor)
        return cls(T, H, W, time_factor, space_factor, blueprint)

    @property
    def multiple(self) -> int:
        """What height and width must be multiples of."""
        return 2 * self.space_factor if self.blueprint else self.space_factor

    def check(self, max_latent_t: int | None = None, max_latent_hw: int | None = None) -> "ClipGeometry":
        """Raise GenerationError (one line, with what is allowed) unless the request is drawable."""
        for name, v in (("frames", self.frames), ("height", self.height), ("width", self.width)):
            if isinstance(v, bool) or not isinstance(v, int) and not hasattr(v, "__index__") or v < 1:
                raise GenerationError(f"{name}={v!r}: must be a positive integer")
        tf = self.time_factor
        if (self.frames - 1) % tf:
            allowed = ", ".join(str(1 + tf * i) for i in range(5))
            raise GenerationError(f"frames={self.frames}: the tokenizer makes 1+{tf}n frames ({allowed}, ...)")
        for name, v in (("height", self.height), ("width", self.width)):
            if v % self.multiple:
                why = " (the blueprint is drawn at half size)" if self.blueprint else ""
                raise GenerationError(f"{name}={v}: must be a multiple of {self.multiple}{why}")
        t, h, w = self.latent
        if max_latent_t is not None and t > max_latent_t:
            raise GenerationError(f"frames={self.frames}: at most {1 + (max_latent_t - 1) * tf} frames per clip for this model")
        if max_latent_hw is not None and max(h, w) > max_latent_hw:
            raise GenerationError(
                f"{self.height}x{self.width}: at most {max_latent_hw * self.space_factor} pixels per side for this model"
            )
        return self

    @property
    def latent(self) -> tuple[int, int, int]:
        return latent_shape(self.frames, self.height, self.width, self.time_factor, self.space_factor)

    @property
    def blueprint_latent(self) -> tuple[int, int, int]:
        return blueprint_shape(self.latent)

    def section_lengths(self, subtokens: int = 1, sections: Sequence[str] = ("blueprint", "fine")) -> dict[str, int]:
        return section_lengths(self.latent, subtokens, "blueprint" in sections, "fine" in sections)

    def block_length(self, subtokens: int = 1, sections: Sequence[str] = ("blueprint", "fine")) -> int:
        return block_length(self.latent, subtokens, "blueprint" in sections, "fine" in sections)

    def describe(self) -> str:
        return f"{self.frames}-frame {self.height}x{self.width}"
