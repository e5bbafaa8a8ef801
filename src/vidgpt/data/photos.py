"""Real photos on this machine, and camera pans/zooms over them as natural-texture clips.

Debian's wallpaper packages (plasma-workspace-wallpapers, mate-backgrounds, gnome-backgrounds,
...) install high-resolution photos; scikit-image's `data` module ships a few more; the env var
VIDGPT_PHOTO_DIRS (os.pathsep-separated) adds your own folders. `find_photos` lists them,
`load_photo` reads one as uint8 [H, W, 3], and `camera_move_clip` films it with a virtual camera
(sub-pixel crop windows resized with antialiasing) into uint8 [T, H, W, 3]: real textures with
real camera motion, for training the video tokenizer.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import VideoReadError
from .video_io import IMAGE_EXTS, natural_key, read_image

log = logging.getLogger(__name__)

SYSTEM_PHOTO_DIRS = (
    "/usr/share/backgrounds",  # gnome-backgrounds, mate-backgrounds, xfce, debian themes
    "/usr/share/wallpapers",  # KDE layout: NAME/contents/images/WxH.jpg
    "/usr/share/mate-backgrounds",
    "/usr/share/gnome-backgrounds",
    "/usr/share/images/desktop-base",
    "/usr/share/desktop-base",
    "/usr/share/pixmaps/backgrounds",
)
ENV_VAR = "VIDGPT_PHOTO_DIRS"
CAMERA_KINDS = ("pan", "zoom", "pan_zoom")
_SIZE_NAME = re.compile(r"^(\d+)x(\d+)$")


def photo_dirs(system: bool = True) -> list[Path]:
    """Folders `find_photos` scans by default: VIDGPT_PHOTO_DIRS first, then the system ones
    and scikit-image's data folder (when those exist / that package is installed)."""
    dirs = [Path(d) for d in os.environ.get(ENV_VAR, "").split(os.pathsep) if d.strip()]
    if system:
        dirs += [Path(d) for d in SYSTEM_PHOTO_DIRS]
        skimage_dir = _skimage_data_dir()
        if skimage_dir is not None:
            dirs.append(skimage_dir)
    return [d for d in dirs if d.is_dir()]


def _skimage_data_dir() -> Path | None:
    try:
        import skimage.data  # optional
    except Exception:
        return None
    d = getattr(skimage.data, "data_dir", None) or Path(skimage.data.__file__).parent
    return Path(d)


def find_photos(
    dirs: Iterable[str | os.PathLike] | None = None,
    min_side: int = 256,
    limit: int | None = None,
    skipped: list | None = None,
) -> list[Path]:
    """List raster photos (png/jpg/jpeg/bmp/webp) under `dirs` (default: `photo_dirs()`).

    A KDE wallpaper folder (NAME/contents/images/WxH.ext) counts once, with its largest image.
    Photos whose shorter side is below `min_side` are left out; unreadable ones are skipped and,
    when `skipped` is a list, appended to it as (path, reason). Sorted, deduplicated by real path,
    at most `limit` entries.
    """
    roots = photo_dirs() if dirs is None else [Path(d) for d in dirs]
    seen: set[Path] = set()
    found: list[Path] = []
    for root in roots:
        for path in _candidates(root):
            real = path.resolve()
            if real in seen:
                continue
            seen.add(real)
            try:
                w, h = _image_size(path)
            except VideoReadError as e:
                if skipped is not None:
                    skipped.append((path, str(e)))
                continue
            if min(w, h) >= min_side:
                found.append(path)
            if limit is not None and len(found) >= limit:
                return found
    if skipped:
        log.info("find_photos: skipped %d unreadable files", len(skipped))
    return found


def _candidates(root: Path) -> Iterable[Path]:
    """Image files under root in natural order; a KDE wallpaper package yields its largest image."""
    if root.is_file():
        yield root
        return
    try:
        entries = sorted(root.iterdir(), key=lambda p: natural_key(p.name))
    except OSError:
        return
    kde_images = root / "contents" / "images"
    if kde_images.is_dir():
        best = _largest_kde_image(kde_images)
        if best is not None:
            yield best
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from _candidates(entry)
        elif entry.suffix.lower() in IMAGE_EXTS:
            yield entry


def _largest_kde_image(folder: Path) -> Path | None:
    """Among WxH.ext files pick the largest area (by name, else by reading the header)."""
    best, best_area = None, -1
    for f in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if f.suffix.lower() not in IMAGE_EXTS or f.name.startswith("."):
            continue
        m = _SIZE_NAME.match(f.stem)
        if m:
            area = int(m.group(1)) * int(m.group(2))
        else:
            try:
                w, h = _image_size(f)
            except VideoReadError:
                continue
            area = w * h
        if area > best_area:
            best, best_area = f, area
    return best


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size
    except Exception as e:
        raise VideoReadError(f"{path}: not a readable image ({type(e).__name__})") from None


def load_photo(path: str | os.PathLike, max_side: int = 1024) -> np.ndarray:
    """Read a photo as uint8 [H, W, 3] RGB, downscaled (antialiased) so max(H, W) <= max_side.

    Large JPEGs are decoded at reduced size directly (PIL draft mode). Raises VideoReadError.
    """
    from PIL import Image, ImageOps

    p = Path(path)
    if p.suffix.lower() in (".jpg", ".jpeg"):
        try:
            with Image.open(p) as img:
                img.draft("RGB", (max_side, max_side))
                img = ImageOps.exif_transpose(img)
                arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
        except Exception:
            arr = read_image(p)  # raises a proper VideoReadError
    else:
        arr = read_image(p)
    h, w, _ = arr.shape
    scale = max_side / max(h, w)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        arr = np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0))
    return np.ascontiguousarray(arr)


def load_photos(
    paths: Iterable[str | os.PathLike], max_side: int = 1024, skipped: list | None = None
) -> list[np.ndarray]:
    """Load many photos ([H, W, 3] each), skipping unreadable ones (listed in `skipped`)."""
    out = []
    for p in paths:
        try:
            out.append(load_photo(p, max_side=max_side))
        except VideoReadError as e:
            if skipped is not None:
                skipped.append((Path(p), str(e)))
    return out


def camera_windows(
    photo_hw: tuple[int, int],
    rng: np.random.Generator,
    frames: int,
    height: int,
    width: int,
    kind: str | None = None,
) -> np.ndarray:
    """Crop windows of a virtual camera over a photo of size photo_hw = (H, W).

    Returns float [frames, 4] boxes (x0, y0, x1, y1) in photo pixels, all inside the photo, with
    aspect width/height. kind: "pan" (fixed zoom, straight move), "zoom" (fixed centre, zoom in
    or out), "pan_zoom" (both), or None/"random" (one of them). Centres move linearly and the
    window size geometrically, so speed looks constant.
    """
    if kind in (None, "random"):
        kind = CAMERA_KINDS[int(rng.integers(len(CAMERA_KINDS)))]
    if kind not in CAMERA_KINDS:
        raise ValueError(f"kind must be one of {CAMERA_KINDS} or 'random', got {kind!r}")
    ph, pw = photo_hw
    aspect = width / height
    full = min(ph, pw / aspect)  # tallest window that fits

    def random_centre(win_h: float) -> np.ndarray:
        half = np.array([win_h * aspect, win_h]) / 2
        return rng.uniform(half, np.array([pw, ph]) - half)

    if kind == "pan":
        z0 = z1 = rng.uniform(0.45, 0.8)
    else:
        z_big = rng.uniform(0.7, 1.0)
        z_small = z_big / rng.uniform(1.25, 2.0)
        z0, z1 = (z_big, z_small) if rng.random() < 0.5 else (z_small, z_big)
    h0, h1 = z0 * full, z1 * full
    if kind == "zoom":
        c0 = c1 = random_centre(max(h0, h1))
    elif kind == "pan":
        c0 = random_centre(h0)
        c1 = _pan_target(c0, h0, aspect, (ph, pw), rng)
    else:
        c0, c1 = random_centre(h0), random_centre(h1)

    s = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    centres = c0[None] + (c1 - c0)[None] * s[:, None]
    win_h = h0 * (h1 / h0) ** s
    half = np.stack([win_h * aspect, win_h], axis=1) / 2
    lo = np.clip(centres - half, 0, None)
    boxes = np.concatenate([lo, lo + 2 * half], axis=1)
    # guard float round-off at the photo's edges
    boxes[:, [0, 2]] -= np.clip(boxes[:, 2:3] - pw, 0, None)
    boxes[:, [1, 3]] -= np.clip(boxes[:, 3:4] - ph, 0, None)
    return np.clip(boxes, 0, [pw, ph, pw, ph])


def _pan_target(c0: np.ndarray, win_h: float, aspect: float, photo_hw, rng) -> np.ndarray:
    """End centre of a straight pan over 10-35 % of the window height, bounced off the edges."""
    ph, pw = photo_hw
    half = np.array([win_h * aspect, win_h]) / 2
    lo, hi = half, np.array([pw, ph]) - half
    angle = rng.uniform(0, 2 * np.pi)
    step = rng.uniform(0.1, 0.35) * win_h * np.array([np.cos(angle), np.sin(angle)])
    c1 = c0 + step
    out = (c1 < lo) | (c1 > hi)
    c1[out] = c0[out] - step[out]  # reflect the components that leave the photo
    return np.clip(c1, lo, hi)


def render_windows(photo: np.ndarray, boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resample each (x0, y0, x1, y1) box of a uint8 [H, W, 3] photo to height x width
    (sub-pixel, antialiased bicubic). Returns uint8 [len(boxes), height, width, 3]."""
    from PIL import Image

    img = Image.fromarray(photo)
    out = np.empty((len(boxes), height, width, 3), np.uint8)
    for i, box in enumerate(boxes):
        out[i] = np.asarray(img.resize((width, height), Image.Resampling.BICUBIC, box=tuple(map(float, box))))
    return out


def camera_move_clip(
    photo: np.ndarray,
    rng: np.random.Generator,
    frames: int,
    height: int,
    width: int,
    kind: str | None = None,
) -> np.ndarray:
    """Film a photo (uint8 [H, W, 3]) with a moving virtual camera -> uint8 [frames, height, width, 3].

    kind: "pan", "zoom", "pan_zoom", or None/"random" (see `camera_windows`).
    """
    photo = np.asarray(photo)
    if photo.ndim != 3 or photo.shape[-1] != 3 or photo.dtype != np.uint8:
        raise ValueError(f"camera_move_clip expects a uint8 [H, W, 3] photo, got {photo.dtype} {photo.shape}")
    boxes = camera_windows(photo.shape[:2], rng, frames, height, width, kind)
    return render_windows(photo, boxes, height, width)
