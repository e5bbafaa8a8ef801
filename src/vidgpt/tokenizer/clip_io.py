"""File helpers for the tokenizer commands: read a clip as a model tensor, write videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import TokenizerError, VideoReadError, VideoWriteError


def _video_io():
    try:
        from ..data import video_io  # noqa: F401
    except ImportError as e:
        raise VideoReadError("vidgpt.data.video_io is not available (video files cannot be read or written yet)") from e
    return video_io


def read_frames(path: str | Path, max_frames: int | None = None) -> np.ndarray:
    """uint8 [T,H,W,3]: .npy arrays directly, everything else through vidgpt.data.video_io."""
    p = Path(path)
    if p.suffix.lower() == ".npy":
        from ..train.tokenizer_data import read_media

        try:
            return read_media(p, max_frames or 10**9)
        except Exception as e:  # DataError -> read error of this file
            raise VideoReadError(str(e)) from e
    if not p.exists():
        raise VideoReadError(f"{p}: file not found")
    return _video_io().read_video(p, max_frames=max_frames)


def load_clip(path: str | Path, frames: int, size: int) -> torch.Tensor:
    """First `frames` frames (or the largest 1+4n available), center-cropped to size x size: [3,T,S,S] in [-1,1]."""
    if size <= 0 or size % 8:
        raise TokenizerError(f"--size {size}: must be a positive multiple of 8")
    if frames < 1 or (frames - 1) % 4:
        raise TokenizerError(f"--frames {frames}: must be 1+4n (1, 5, 9, 13, 17, ...)")
    arr = read_frames(path, max_frames=frames)
    if len(arr) == 0:
        raise VideoReadError(f"{path}: no frames")
    n = 1 + (min(frames, len(arr)) - 1) // 4 * 4
    arr = arr[:n]
    if arr.shape[1:3] != (size, size):
        arr = _center_crop(arr, size, path)
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(3, 0, 1, 2).float()
    return t.div(127.5).sub(1.0)


def _center_crop(arr: np.ndarray, size: int, path) -> np.ndarray:
    try:
        from ..data.video_io import resize_and_crop
    except ImportError:
        h, w = arr.shape[1:3]
        if h < size or w < size:
            raise VideoReadError(f"{path}: {h}x{w} is smaller than {size}x{size} and video_io is unavailable to resize") from None
        y, x = (h - size) // 2, (w - size) // 2
        return arr[:, y : y + size, x : x + size]
    return resize_and_crop(arr, size, size, crop="center")


def to_frames(video: torch.Tensor) -> np.ndarray:
    """[3,T,H,W] in [-1,1] -> uint8 [T,H,W,3]."""
    return ((video.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).numpy()


def write_clip(path: str | Path, video: torch.Tensor, fps: int = 8) -> Path:
    """Write [3,T,H,W] in [-1,1] as a video/image file through video_io (.npy written directly)."""
    p = Path(path)
    frames = to_frames(video)
    if p.suffix.lower() == ".npy":
        from ..utils import atomic_path

        with atomic_path(p) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, frames)
        return p
    try:
        io = _video_io()
    except VideoReadError as e:
        raise VideoWriteError(f"{p}: {e}") from e
    io.write_video(p, frames, fps=fps)
    return p


def save_side_by_side(path: Path, original: torch.Tensor, recon: torch.Tensor, fps: int = 8) -> Path:
    """Original | reconstruction, concatenated along width."""
    return write_clip(path, torch.cat([original.cpu(), recon.cpu()], dim=-1), fps=fps)
