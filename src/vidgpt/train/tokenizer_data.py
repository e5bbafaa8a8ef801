"""Where the tokenizer trainer gets clips: video/image files (plus .npy arrays) and the synthetic world.

Every clip is uint8 [T, H, W, 3]; `ClipSampler.batch` turns a list of them into [B, 3, T, H, W] in [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError

VIDEO_EXTS = {".mp4", ".webm", ".mov", ".avi", ".mkv", ".gif"}
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
ARRAY_EXTS = {".npy"}  # uint8 [T,H,W,3] or [H,W,3], read without video_io


def list_media(paths: list[str]) -> list[Path]:
    """Files under `paths` (files or folders, recursive) with a video, image or .npy extension."""
    exts = VIDEO_EXTS | IMAGE_EXTS | ARRAY_EXTS
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in exts and f.is_file())
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"{p}: data path not found")
    return out


def read_media(path: Path, max_frames: int) -> np.ndarray:
    """uint8 [T, H, W, 3] from a .npy array, or through vidgpt.data.video_io for videos/images."""
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path)
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: cannot read array ({e})") from e
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise DataError(f"{path}: expected uint8 [T,H,W,3], got {arr.dtype} {arr.shape}")
        return arr[:max_frames]
    try:
        from ..data.video_io import read_video
    except ImportError as e:
        raise DataError(f"{path}: vidgpt.data.video_io is not available to read it") from e
    return read_video(path, max_frames=max_frames)


def to_tensor(clips: list[np.ndarray]) -> torch.Tensor:
    """list of uint8 [T,H,W,3] (same shape) -> float [B, 3, T, H, W] in [-1, 1]."""
    arr = torch.from_numpy(np.stack(clips))
    return arr.permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)


def _load_synthetic():
    try:
        from ..data.synthetic import random_training_clip
    except ImportError:
        return None
    return random_training_clip


def world_scene_clip(rng: np.random.Generator, frames: int, height: int, width: int) -> np.ndarray:
    """uint8 [T, H, W, 3]: a captioned scene of the synthetic world's *train* split (the named colours,
    shapes, sizes, motions and backgrounds that generation is judged on; the held-out compositions
    never appear), rendered at 6-10 fps."""
    from ..data.synthetic import render_scene

    scene, fps = world_scene_and_fps(rng)
    return render_scene(scene, frames=frames, height=height, width=width, fps=fps)


def world_scene_and_fps(rng: np.random.Generator):
    """The (scene, fps) that world_scene_clip draws from the same generator state (for checks)."""
    from ..data.synthetic import WorldConfig, sample_scene

    scene = sample_scene(rng, WorldConfig(), split="train")
    return scene, float(rng.uniform(6.0, 10.0))


class ClipSampler:
    """Draws uint8 clips of a given (T, H, W) from files and/or the synthetic world."""

    def __init__(
        self, paths: list[str], synthetic: bool, synthetic_prob: float, photos: list[str], max_frames: int, log=print, world_prob: float = 0.0
    ):
        self.world_prob = world_prob
        self.files: list[np.ndarray] = []
        for f in list_media(paths):
            try:
                self.files.append(read_media(f, max_frames))
            except Exception as e:  # noqa: BLE001 - one bad file must not stop training
                log(f"skipping {f}: {' '.join(str(e).split())}")
        self.synthetic = _load_synthetic() if synthetic else None
        if synthetic and self.synthetic is None:
            log("vidgpt.data.synthetic is not available; training on files only")
        self.photos = None
        if photos:
            self.photos = [read_media(f, 1)[0] for f in list_media(photos)]
        self.synthetic_prob = synthetic_prob if self.files else 1.0
        if not self.files and self.synthetic is None:
            raise DataError("no training data: data.paths gave no readable file and the synthetic world is unavailable")

    def sample(self, rng: np.random.Generator, frames: int, height: int, width: int) -> np.ndarray:
        """uint8 [frames, height, width, 3]."""
        if self.synthetic is not None and rng.random() < self.synthetic_prob:
            if self.world_prob > 0 and rng.random() < self.world_prob:
                return np.ascontiguousarray(world_scene_clip(rng, frames, height, width))
            return np.ascontiguousarray(self.synthetic(rng, frames, height, width, self.photos))
        for _ in range(100):
            clip = self.files[int(rng.integers(len(self.files)))]
            if len(clip) >= frames:
                break
        else:
            raise DataError(f"no data file has {frames} frames (longest: {max(len(c) for c in self.files)})")
        start = int(rng.integers(len(clip) - frames + 1))
        clip = _crop(clip[start : start + frames], height, width, rng)
        if rng.random() < 0.5:
            clip = clip[:, :, ::-1]
        return np.ascontiguousarray(clip)


def _crop(clip: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Random crop to (height, width), resizing first through video_io when the clip is another size."""
    if clip.shape[1:3] == (height, width):
        return clip
    try:
        from ..data.video_io import resize_and_crop
    except ImportError:
        resize_and_crop = None
    if resize_and_crop is not None:
        return resize_and_crop(clip, height, width, crop="random", rng=rng)
    h, w = clip.shape[1:3]
    if h < height or w < width:
        raise DataError(f"clip of {h}x{w} is smaller than {height}x{width} and video_io is unavailable to resize it")
    y, x = int(rng.integers(h - height + 1)), int(rng.integers(w - width + 1))
    return clip[:, y : y + height, x : x + width]
