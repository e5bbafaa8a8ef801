"""Render a Scene to frames: uint8 [T, H, W, 3].

Backgrounds are functions of screen coordinates in units of the shorter side (so textures keep
square cells at any aspect ratio); a camera move pans or zooms those coordinates over time.
Objects are painted back to front with anti-aliased edges (supersampled coverage).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .palette import rgb
from .scene import Background, Camera, ObjectSpec, Scene, SceneError
from .shapes import inside, rotate_to_local

PHOTO_DIM = 0.38  # scene photos are darkened so that no photo colour looks like an object colour


def screen_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates [H, W] in units of the shorter side, origin at the frame centre."""
    s = float(min(height, width))
    x = (np.arange(width, dtype=np.float32) + 0.5 - width / 2) / s
    y = (np.arange(height, dtype=np.float32) + 0.5 - height / 2) / s
    return np.broadcast_to(x[None, :], (height, width)), np.broadcast_to(y[:, None], (height, width))


def camera_transform(camera: Camera, t: float) -> tuple[float, float, float]:
    """(offset_x, offset_y, zoom) of the camera at time t: world = screen / zoom + offset."""
    d = camera.speed * t
    return {
        "pan-left": (-d, 0.0, 1.0),
        "pan-right": (d, 0.0, 1.0),
        "pan-up": (0.0, -d, 1.0),
        "pan-down": (0.0, d, 1.0),
        "zoom-in": (0.0, 0.0, float(np.exp(d))),
        "zoom-out": (0.0, 0.0, float(np.exp(-d))),
    }.get(camera.move, (0.0, 0.0, 1.0))


def _value_noise(u: np.ndarray, v: np.ndarray, grid: np.ndarray, cell: float) -> np.ndarray:
    """Bilinear interpolation of a periodic random grid [G, G] at world coordinates (u, v)."""
    g = grid.shape[0]
    fu, fv = u / cell, v / cell
    i0, j0 = np.floor(fu).astype(np.int64), np.floor(fv).astype(np.int64)
    a, b = (fu - i0)[..., None], (fv - j0)[..., None]
    i0, j0 = i0 % g, j0 % g
    i1, j1 = (i0 + 1) % g, (j0 + 1) % g
    top = grid[j0, i0] * (1 - a) + grid[j0, i1] * a
    bot = grid[j1, i0] * (1 - a) + grid[j1, i1] * a
    return top * (1 - b) + bot * b


def sample_photo(photo: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sample a photo [h, w, 3] at world coords (u, v) (the unit square around the origin spans the
    photo's shorter side, centred); mirrored beyond its edges. Returns float32 [..., 3]."""
    h, w = photo.shape[:2]
    s = min(h, w)
    px = u * s + w / 2 - 0.5
    py = v * s + h / 2 - 0.5

    def mirror(p: np.ndarray, n: int) -> np.ndarray:
        p = np.mod(p, 2 * n - 2) if n > 1 else np.zeros_like(p)
        return np.where(p > n - 1, 2 * n - 2 - p, p)

    px, py = mirror(px, w), mirror(py, h)
    x0, y0 = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    a, b = (px - x0)[..., None], (py - y0)[..., None]
    img = photo.astype(np.float32)
    top = img[y0, x0] * (1 - a) + img[y0, x1] * a
    bot = img[y1, x0] * (1 - a) + img[y1, x1] * a
    return top * (1 - b) + bot * b


def background_texture(
    bg: Background, u: np.ndarray, v: np.ndarray, photos=None, c1=None, c2=None, photo_dim: float = PHOTO_DIM
) -> np.ndarray:
    """float32 [..., 3] background colour at world coordinates (u, v)."""
    c1 = rgb(bg.color) if c1 is None else np.asarray(c1, np.float32)
    c2 = rgb(bg.color2) if c2 is None else np.asarray(c2, np.float32)
    a = np.radians(bg.angle)
    along = u * np.cos(a) + v * np.sin(a)
    if bg.kind == "solid":
        return np.broadcast_to(c1, u.shape + (3,)).astype(np.float32)
    if bg.kind == "gradient":
        w = np.clip(along + 0.5, 0.0, 1.0)[..., None]
        return c1 * (1 - w) + c2 * w
    if bg.kind == "stripes":
        w = (np.mod(along / bg.scale, 1.0) < 0.5)[..., None]
        return np.where(w, c1, c2)
    if bg.kind == "checker":
        w = ((np.floor(u / bg.scale) + np.floor(v / bg.scale)) % 2 == 0)[..., None]
        return np.where(w, c1, c2)
    if bg.kind == "dots":
        cell = bg.scale * 0.6
        du, dv = np.mod(u / cell, 1.0) - 0.5, np.mod(v / cell, 1.0) - 0.5
        w = (du * du + dv * dv < 0.09)[..., None]
        return np.where(w, c2, c1)
    if bg.kind == "noise":
        rng = np.random.default_rng(bg.seed)
        coarse = _value_noise(u, v, rng.uniform(-1, 1, (8, 8, 1)).astype(np.float32), bg.scale * 1.5)
        fine = _value_noise(u, v, rng.uniform(-1, 1, (32, 32, 3)).astype(np.float32), 0.03)
        base = c1 * (1 - (coarse + 1) / 2) + c2 * ((coarse + 1) / 2)
        return np.clip(base + 14.0 * fine, 0, 255)
    if bg.kind == "photo":
        photo = _lookup_photo(photos, bg.photo)
        return sample_photo(photo, u * 0.8, v * 0.8) * photo_dim
    raise SceneError(f"scene.background.kind: unknown {bg.kind!r}")


def _lookup_photo(photos, key) -> np.ndarray:
    if photos is None:
        raise SceneError(f"scene.background: photo {key!r} needed but no photos were given")
    if isinstance(photos, Mapping):
        if key not in photos:
            raise SceneError(f"scene.background: photo {key!r} not among the photos given ({len(photos)})")
        return photos[key]
    try:
        return photos[int(key)]
    except (ValueError, IndexError, TypeError) as e:
        raise SceneError(f"scene.background: photo {key!r} not among the {len(photos)} photos given") from e


def render_background(bg: Background, camera: Camera, times: Sequence[float], height: int, width: int, photos=None) -> np.ndarray:
    """float32 [T, H, W, 3] background frames."""
    x, y = screen_grid(height, width)
    out = np.empty((len(times), height, width, 3), dtype=np.float32)
    static = camera.move == "none" or bg.kind == "solid"
    for i, t in enumerate(times):
        if static and i > 0:
            out[i] = out[0]
            continue
        ox, oy, zoom = camera_transform(camera, float(t))
        out[i] = background_texture(bg, x / zoom + ox, y / zoom + oy, photos)
    return out


def paint_shape(
    frame: np.ndarray, shape: str, color: np.ndarray, cx: float, cy: float, radius: float, angle: float, supersample: int = 2
) -> None:
    """Composite one shape onto frame float32 [H, W, 3] in place. cx, cy, radius in pixels."""
    h, w = frame.shape[:2]
    x0, x1 = max(int(np.floor(cx - radius)) - 1, 0), min(int(np.ceil(cx + radius)) + 1, w)
    y0, y1 = max(int(np.floor(cy - radius)) - 1, 0), min(int(np.ceil(cy + radius)) + 1, h)
    if x1 <= x0 or y1 <= y0 or radius <= 0:
        return
    s = supersample
    sub = (np.arange(s, dtype=np.float32) + 0.5) / s
    xs = (np.arange(x0, x1, dtype=np.float32)[:, None] + sub[None, :]).reshape(-1)
    ys = (np.arange(y0, y1, dtype=np.float32)[:, None] + sub[None, :]).reshape(-1)
    u, v = rotate_to_local((xs[None, :] - cx) / radius, (ys[:, None] - cy) / radius, angle)
    cover = inside(shape, u, v).astype(np.float32)
    alpha = cover.reshape(y1 - y0, s, x1 - x0, s).mean(axis=(1, 3))[..., None]
    region = frame[y0:y1, x0:x1]
    region += alpha * (color - region)


def paint_object(frame: np.ndarray, obj: ObjectSpec, t: float, color=None, supersample: int = 2) -> None:
    """Paint obj as it is at time t onto frame float32 [H, W, 3]."""
    h, w = frame.shape[:2]
    x, y, r, angle = (float(a) for a in obj.state(t))
    color = rgb(obj.color) if color is None else np.asarray(color, np.float32)
    paint_shape(frame, obj.shape, color, x * w, y * h, r * min(h, w), angle, supersample)


def render_scene(
    scene: Scene, frames: int = 17, height: int = 128, width: int = 128, fps: float = 8.0, photos=None, supersample: int = 2
) -> np.ndarray:
    """uint8 [T, H, W, 3]: the scene sampled at t = i / fps for i < frames (frames=1: an image).

    photos: a list or dict of uint8 [h, w, 3] arrays, needed when background.kind == "photo".
    """
    if frames < 1 or height < 1 or width < 1 or fps <= 0:
        raise SceneError(f"render: bad size frames={frames} height={height} width={width} fps={fps}")
    times = [i / fps for i in range(frames)]
    out = render_background(scene.background, scene.camera, times, height, width, photos)
    for i, t in enumerate(times):
        for obj in scene.objects:
            paint_object(out[i], obj, t, supersample=supersample)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def render_object_cover(scene: Scene, frames: int = 17, height: int = 128, width: int = 128, fps: float = 8.0,
                        supersample: int = 2) -> np.ndarray:
    """float32 [T, H, W] in [0, 1]: how much of each pixel the scene's objects cover (any object), frame by frame.

    The same geometry as `render_scene` (same times, same antialiasing), without the background: the
    LM's training data uses it to know which video codes show an object (`code_object_mask`).
    """
    if frames < 1 or height < 1 or width < 1 or fps <= 0:
        raise SceneError(f"render_object_cover: bad size frames={frames} height={height} width={width} fps={fps}")
    out = np.zeros((frames, height, width, 1), np.float32)
    one = np.ones(1, np.float32)
    for i in range(frames):
        for obj in scene.objects:
            paint_object(out[i], obj, i / fps, color=one, supersample=supersample)
    return out[..., 0]


def code_object_mask(cover: np.ndarray, code_shape, threshold: float = 0.05) -> np.ndarray:
    """bool [t, h, w]: which codes of a causal video tokenizer's grid see an object.

    cover: float [T, H, W] (`render_object_cover`). The grid is causal in time: code slice 0 holds frame 0 and
    slice k >= 1 frames (k-1)*r+1 .. k*r with r = (T-1)/(t-1); in space a code covers an (H/h) x (W/w) cell.
    Works for the fine grid and for the blueprint's (half-size clip: cells twice as large). A code counts as
    object when some pixel of its cell, in one of its frames, is covered more than `threshold`.
    """
    t, h, w = (int(x) for x in code_shape)
    T, H, W = cover.shape
    if H % h or W % w or (t > 1 and (T - 1) % (t - 1)) or (t == 1 and T != 1):
        raise SceneError(f"code_object_mask: grid {t}x{h}x{w} does not divide the clip {T}x{H}x{W}")
    cells = cover.reshape(T, h, H // h, w, W // w).max(axis=(2, 4))  # [T, h, w]
    r = (T - 1) // (t - 1) if t > 1 else 1
    slices = [cells[:1]] + [cells[(k - 1) * r + 1 : k * r + 1] for k in range(1, t)]
    return np.stack([s.max(axis=0) for s in slices]) > threshold
