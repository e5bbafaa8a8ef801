"""Read and write videos, images and frame folders as uint8 RGB arrays.

Every clip at this level is a `numpy.ndarray` of dtype uint8 and shape `[T, H, W, 3]` (RGB);
an image is `T = 1`. Models see `[3, T, H, W]` floats in `[-1, 1]` (`frames_to_tensor`).

Reading goes through PyAV (videos and gifs) and PIL (still images). Anything wrong with an
input file -- missing, empty, not a video, truncated, absurdly large -- raises `VideoReadError`
with one line "<path>: <problem>", never a raw av/PIL traceback. Batch jobs use `read_many` /
`iter_videos`, which skip bad files and list them with the reason.

Writing (`write_video`, `save_contact_sheet`) is atomic: a temp file next to the target (that
keeps the real extension, so the container is guessed right) is renamed over it on success.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..errors import VideoReadError, VideoWriteError
from ..utils import atomic_path

log = logging.getLogger(__name__)

VIDEO_EXTS = frozenset({".mp4", ".m4v", ".webm", ".mov", ".avi", ".mkv", ".gif"})
IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
MEDIA_EXTS = VIDEO_EXTS | IMAGE_EXTS

MAX_SIDE = 8192
"""Largest width or height accepted on read (checked from metadata before decoding)."""

MAX_PIXELS = 1 << 30
"""Default budget of decoded pixels (H * W * frames kept) for one read: 1 Gi pixels = 3 GiB of RGB."""


class FrameCountError(VideoReadError):
    """A clip has too few frames for what was asked (see `take_frames`)."""


# ---------------------------------------------------------------------------------------------
# small helpers


def natural_key(name: str) -> list:
    """Sort key that orders 'frame2' before 'frame10'."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def valid_frame_count(n: int) -> bool:
    """True when the tokenizer accepts `n` frames: n == 1 + 4k (1, 5, 9, 13, 17, ...)."""
    return n >= 1 and (n - 1) % 4 == 0


def largest_valid_frames(n: int) -> int:
    """Largest count <= n of the form 1 + 4k (0 when n < 1: no valid count fits)."""
    return 0 if n < 1 else 1 + 4 * ((n - 1) // 4)


def _pick_index(j: int, ratio: float) -> int:
    """Source index for output frame j when ratio = src_fps / dst_fps (nearest, centre-aligned)."""
    return int(math.floor((j + 0.5) * ratio + 1e-9))


def resample_fps(frames: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Change the frame rate by picking the nearest source frame for each output frame.

    [T, H, W, 3] -> [T', H, W, 3] with T' ~= T * dst_fps / src_fps (at least 1). Output frame j
    shows the source frame on screen at time (j + 0.5) / dst_fps.
    """
    if src_fps <= 0 or dst_fps <= 0:
        raise ValueError(f"fps must be positive, got src_fps={src_fps}, dst_fps={dst_fps}")
    n = len(frames)
    if n == 0 or src_fps == dst_fps:
        return frames
    ratio = src_fps / dst_fps
    idx = []
    j = 0
    while (i := _pick_index(j, ratio)) < n:
        idx.append(i)
        j += 1
    return frames[np.asarray(idx or [0])]


def take_frames(frames: np.ndarray, n: int, start: int = 0, pad: str = "error") -> np.ndarray:
    """Frames [start, start + n) of a [T, H, W, 3] clip.

    When the clip is too short: pad="error" raises FrameCountError, "repeat" repeats the last
    frame, "loop" starts over from `start`.
    """
    if n < 1:
        raise ValueError(f"take_frames: n must be >= 1, got {n}")
    if pad not in ("error", "repeat", "loop"):
        raise ValueError(f"take_frames: pad must be 'error', 'repeat' or 'loop', got {pad!r}")
    total = len(frames)
    if start < 0 or start >= total:
        raise FrameCountError(f"clip has {total} frames, cannot start at frame {start}")
    have = total - start
    if have >= n:
        return frames[start : start + n]
    if pad == "error":
        raise FrameCountError(f"clip has {total} frames, need {n} from frame {start} (pass pad='repeat' to pad)")
    if pad == "repeat":
        idx = np.minimum(np.arange(start, start + n), total - 1)
    else:
        idx = start + np.arange(n) % have
    return frames[idx]


def resize_and_crop(
    frames: np.ndarray,
    height: int,
    width: int,
    crop: str = "center",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Resize so the clip covers height x width (short side fits), then crop to exactly that.

    [T, H, W, 3] uint8 -> [T, height, width, 3] uint8. Downscaling is antialiased (PIL bicubic).
    crop="center" or "random" (one offset for the whole clip, drawn from `rng`).
    """
    from PIL import Image

    if crop not in ("center", "random"):
        raise ValueError(f"crop must be 'center' or 'random', got {crop!r}")
    frames = _check_frames(frames, "resize_and_crop")
    t, h, w, _ = frames.shape
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    if (nh, nw) != (h, w):
        out = np.empty((t, nh, nw, 3), np.uint8)
        for i in range(t):
            out[i] = np.asarray(Image.fromarray(frames[i]).resize((nw, nh), Image.Resampling.BICUBIC))
        frames = out
    if crop == "random":
        rng = rng if rng is not None else np.random.default_rng()
        y0 = int(rng.integers(0, nh - height + 1))
        x0 = int(rng.integers(0, nw - width + 1))
    else:
        y0, x0 = (nh - height) // 2, (nw - width) // 2
    return np.ascontiguousarray(frames[:, y0 : y0 + height, x0 : x0 + width])


def frames_to_tensor(frames: np.ndarray):
    """uint8 [T, H, W, 3] (or [H, W, 3]) -> torch float [3, T, H, W] in [-1, 1]."""
    import torch

    frames = _check_frames(frames, "frames_to_tensor")
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float()
    return x / 127.5 - 1.0


def tensor_to_frames(x) -> np.ndarray:
    """torch float [3, T, H, W] (or [1, 3, T, H, W]) in [-1, 1] -> uint8 [T, H, W, 3] (clamped)."""
    import torch

    if x.dim() == 5 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 4 or x.shape[0] != 3:
        raise ValueError(f"tensor_to_frames expects [3, T, H, W], got {tuple(x.shape)}")
    x = torch.nan_to_num(x.detach().float(), nan=0.0).clamp(-1, 1)
    x = ((x + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).contiguous().cpu().numpy()


def _check_frames(frames, what: str) -> np.ndarray:
    """Accept uint8 [T, H, W, 3] or [H, W, 3]; return [T, H, W, 3]."""
    frames = np.asarray(frames)
    if frames.ndim == 3 and frames.shape[-1] == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"{what}: expected uint8 frames [T, H, W, 3], got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"{what}: expected uint8 frames, got {frames.dtype}")
    return frames


# ---------------------------------------------------------------------------------------------
# reading


def read_video(
    path: str | os.PathLike,
    *,
    fps: float | None = None,
    max_frames: int | None = None,
    start_frame: int = 0,
    allow_partial: bool = False,
    max_pixels: int = MAX_PIXELS,
    max_side: int = MAX_SIDE,
) -> np.ndarray:
    """Read a video, gif, image or folder of frames as uint8 [T, H, W, 3] RGB.

    start_frame: source frames to skip first. fps: resample (nearest frame) to this rate after
    skipping (images and frame folders have no rate and are not resampled). max_frames: stop
    after this many output frames. allow_partial: return the frames decoded before a truncated
    or corrupt stream breaks (with a warning) instead of raising. max_pixels / max_side guard
    memory: H * W * kept frames and each side are checked against stream metadata before decoding.
    Raises VideoReadError("<path>: <problem>").
    """
    p = Path(path)
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if p.is_dir():
        return _read_frames_dir(p, max_frames, start_frame, max_pixels, max_side)
    _check_file(p)
    opts = dict(max_frames=max_frames, start_frame=start_frame, max_pixels=max_pixels, max_side=max_side)
    if p.suffix.lower() in IMAGE_EXTS:
        if start_frame > 0:
            raise VideoReadError(f"{p}: an image has 1 frame, cannot start at frame {start_frame}")
        return read_image(p, max_pixels=max_pixels, max_side=max_side)[None]
    return _read_av(p, fps=fps, allow_partial=allow_partial, **opts)


def _check_file(p: Path) -> None:
    if not p.exists():
        raise VideoReadError(f"{p}: no such file")
    if not p.is_file():
        raise VideoReadError(f"{p}: not a regular file")
    if p.stat().st_size == 0:
        raise VideoReadError(f"{p}: empty file")


def read_image(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE) -> np.ndarray:
    """Read one image file as uint8 [H, W, 3] RGB (EXIF rotation applied; alpha dropped;
    16-bit and float images scaled to 8 bits). Raises VideoReadError."""
    from PIL import Image, ImageOps

    p = Path(path)
    _check_file(p)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning: we check sizes ourselves
            with Image.open(p) as img:
                w, h = img.size
                _check_size(p, w, h, 1, max_pixels, max_side)
                img = ImageOps.exif_transpose(img)
                return _pil_to_rgb(img)
    except VideoReadError:
        raise
    except Exception as e:  # PIL raises many types for bad files
        raise VideoReadError(f"{p}: not a readable image ({_why(e)})") from None


def _pil_to_rgb(img) -> np.ndarray:
    """Any PIL mode -> uint8 [H, W, 3]."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img).astype(np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") else max(float(a.max()), 1.0)
        a = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def _check_size(p: Path, w: int, h: int, frames: int, max_pixels: int, max_side: int) -> None:
    if w <= 0 or h <= 0:
        raise VideoReadError(f"{p}: bad frame size {w}x{h}")
    if w > max_side or h > max_side:
        raise VideoReadError(f"{p}: frame size {w}x{h} exceeds the {max_side} px limit per side")
    if w * h * frames > max_pixels:
        raise VideoReadError(
            f"{p}: {frames} frame(s) of {w}x{h} exceed the budget of {max_pixels} pixels (pass max_frames or max_pixels)"
        )


def _why(e: BaseException) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg[:200]


def _read_frames_dir(p: Path, max_frames, start_frame, max_pixels, max_side) -> np.ndarray:
    files = [f for f in sorted(p.iterdir(), key=lambda f: natural_key(f.name)) if _is_media(f, IMAGE_EXTS)]
    if not files:
        raise VideoReadError(f"{p}: no image frames in directory")
    if start_frame >= len(files):
        raise VideoReadError(f"{p}: {len(files)} frames, cannot start at frame {start_frame}")
    files = files[start_frame:]
    if max_frames is not None:
        files = files[:max_frames]
    first = read_image(files[0], max_pixels=max_pixels, max_side=max_side)
    h, w, _ = first.shape
    _check_size(p, w, h, len(files), max_pixels, max_side)
    out = np.empty((len(files), h, w, 3), np.uint8)
    out[0] = first
    for i, f in enumerate(files[1:], start=1):
        img = read_image(f, max_pixels=max_pixels, max_side=max_side)
        if img.shape != first.shape:
            raise VideoReadError(f"{f}: frame size {img.shape[1]}x{img.shape[0]} differs from the first frame's {w}x{h}")
        out[i] = img
    return out


def _is_media(f: Path, exts) -> bool:
    return f.is_file() and not f.name.startswith(".") and f.suffix.lower() in exts


def _open_container(p: Path):
    import av

    try:
        container = av.open(str(p), "r")
    except av.FFmpegError as e:
        raise VideoReadError(f"{p}: not a video file or corrupt container ({_why(e)})") from None
    except Exception as e:
        raise VideoReadError(f"{p}: cannot open ({_why(e)})") from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{p}: not a video file (no video stream)")
    return container


def _stream_rate(stream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and 0 < float(rate) < 1000:
            return float(rate)
    return None


def _stream_frames(stream, container, rate: float | None) -> int | None:
    """Frame count from metadata (container header), or duration * rate; None if unknown."""
    if stream.frames and stream.frames > 0:
        return int(stream.frames)
    if rate:
        if stream.duration and stream.time_base:
            return max(1, round(float(stream.duration * stream.time_base) * rate))
        if container.duration:  # microseconds
            return max(1, round(container.duration / 1e6 * rate))
    return None


def _read_av(p: Path, *, fps, max_frames, start_frame, allow_partial, max_pixels, max_side) -> np.ndarray:
    import av

    container = _open_container(p)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        cc = stream.codec_context
        w, h = cc.width, cc.height
        rate = _stream_rate(stream)
        expected = _stream_frames(stream, container, rate)
        # metadata check before decoding anything
        if w and h:
            n_keep = max(1, (expected or 1) - start_frame)
            if fps and rate:
                n_keep = max(1, math.ceil(n_keep * fps / rate))
            if max_frames:
                n_keep = min(n_keep, max_frames)
            _check_size(p, w, h, n_keep, max_pixels, max_side)
        ratio = (rate / fps) if (fps and rate) else None
        out: list[np.ndarray] = []
        decoded = 0  # source frames seen
        j = 0  # next output frame index (when resampling)
        error: str | None = None
        try:
            for frame in container.decode(stream):
                i = decoded - start_frame
                decoded += 1
                if i < 0:
                    continue
                if ratio is None:
                    picks = 1
                else:
                    picks = 0
                    while _pick_index(j + picks, ratio) == i:
                        picks += 1
                    j += picks
                if picks == 0:
                    continue
                arr = _frame_to_rgb(frame)
                if not out:
                    _check_size(p, arr.shape[1], arr.shape[0], 1, max_pixels, max_side)
                elif arr.shape != out[0].shape:
                    raise VideoReadError(f"{p}: frame size changes mid-stream at frame {decoded - 1}")
                for _ in range(picks):
                    out.append(arr)
                    if len(out) * arr.shape[0] * arr.shape[1] > max_pixels:
                        raise VideoReadError(
                            f"{p}: decoded frames exceed the budget of {max_pixels} pixels (pass max_frames or max_pixels)"
                        )
                    if max_frames is not None and len(out) >= max_frames:
                        break
                if max_frames is not None and len(out) >= max_frames:
                    break
        except VideoReadError:
            raise
        except (av.FFmpegError, OSError, ValueError, EOFError) as e:
            error = _why(e)
        limited = max_frames is not None and len(out) >= max_frames
        if error is None and not limited and expected and stream.frames and decoded < 0.9 * expected - 1:
            error = f"header says {expected} frames"
        if error is not None and not limited:
            msg = f"{p}: truncated or corrupt stream after {decoded} frames ({error})"
            if decoded == 0 or not out or not allow_partial:
                raise VideoReadError(msg)
            warnings.warn(msg + "; returning the frames decoded so far", stacklevel=3)
        if not out:
            if decoded == 0:
                raise VideoReadError(f"{p}: no decodable frames")
            raise VideoReadError(f"{p}: {decoded} frames, cannot start at frame {start_frame}")
        return np.stack(out)
    finally:
        container.close()


def _frame_to_rgb(frame) -> np.ndarray:
    """av.VideoFrame (any pixel format: yuv420/444, 10-bit, gray, rgba, pal8) -> uint8 [H, W, 3],
    with display rotation metadata applied."""
    arr = frame.to_ndarray(format="rgb24")
    quarter_turns = round(float(getattr(frame, "rotation", 0) or 0) / 90) % 4
    if quarter_turns:
        # the display matrix angle is counter-clockwise (what ffmpeg's autorotate applies)
        arr = np.ascontiguousarray(np.rot90(arr, k=quarter_turns))
    return arr


def read_video_meta(path: str | os.PathLike) -> dict:
    """Best-effort metadata: dict(kind, fps, frames, height, width, codec, pix_fmt, duration).

    Unknown values are None. kind is "video", "image" or "frames" (a folder of frames).
    Raises VideoReadError when the file cannot be opened at all.
    """
    p = Path(path)
    meta = dict(kind=None, fps=None, frames=None, height=None, width=None, codec=None, pix_fmt=None, duration=None)
    if p.is_dir():
        files = [f for f in p.iterdir() if _is_media(f, IMAGE_EXTS)]
        if not files:
            raise VideoReadError(f"{p}: no image frames in directory")
        first = min(files, key=lambda f: natural_key(f.name))
        meta.update(_image_meta(first), kind="frames", frames=len(files))
        return meta
    _check_file(p)
    if p.suffix.lower() in IMAGE_EXTS:
        meta.update(_image_meta(p), kind="image", frames=1)
        return meta
    container = _open_container(p)
    try:
        stream = container.streams.video[0]
        cc = stream.codec_context
        rate = _stream_rate(stream)
        duration = None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1e6
        meta.update(
            kind="video",
            fps=rate,
            frames=_stream_frames(stream, container, rate),
            height=cc.height or None,
            width=cc.width or None,
            codec=cc.name,
            pix_fmt=cc.format.name if cc.format else None,
            duration=duration,
        )
        return meta
    finally:
        container.close()


def _image_meta(p: Path) -> dict:
    from PIL import Image

    try:
        with Image.open(p) as img:
            return dict(width=img.size[0], height=img.size[1], pix_fmt=img.mode, codec=img.format)
    except Exception as e:
        raise VideoReadError(f"{p}: not a readable image ({_why(e)})") from None


# ---------------------------------------------------------------------------------------------
# batches


def list_media(
    paths_or_dirs: str | os.PathLike | Iterable[str | os.PathLike],
    recursive: bool = True,
    frames_dir_as_clip: bool = False,
) -> list[Path]:
    """Expand files and folders into a list of media paths (videos, gifs, images).

    Files named explicitly are kept whatever their extension (a bad one is reported when read,
    not silently dropped); folders contribute their media files in natural order, hidden files
    skipped. With frames_dir_as_clip=True a folder holding image files and no videos is listed
    as one clip (the folder itself) instead of one entry per image.
    """
    if isinstance(paths_or_dirs, (str, os.PathLike)):
        paths_or_dirs = [paths_or_dirs]
    out: list[Path] = []
    for item in paths_or_dirs:
        p = Path(item)
        if p.is_dir():
            out.extend(_walk_media(p, recursive, frames_dir_as_clip))
        else:
            out.append(p)
    return out


def _walk_media(d: Path, recursive: bool, frames_dir_as_clip: bool) -> list[Path]:
    try:
        entries = sorted(d.iterdir(), key=lambda f: natural_key(f.name))
    except OSError as e:
        log.warning("%s: cannot list directory (%s)", d, _why(e))
        return []
    files = [f for f in entries if _is_media(f, MEDIA_EXTS)]
    videos = [f for f in files if f.suffix.lower() in VIDEO_EXTS]
    out: list[Path] = []
    if frames_dir_as_clip and files and not videos:
        out.append(d)
    else:
        out.extend(files)
    if recursive:
        for sub in entries:
            if sub.is_dir() and not sub.name.startswith("."):
                out.extend(_walk_media(sub, recursive, frames_dir_as_clip))
    return out


def iter_videos(
    paths: Iterable[str | os.PathLike],
    report: list | None = None,
    **kw,
) -> Iterator[tuple[Path, np.ndarray]]:
    """Yield (path, frames) for each readable path; bad ones are skipped and, when `report` is
    a list, appended to it as (path, message). `kw` goes to `read_video`."""
    for item in paths:
        p = Path(item)
        try:
            frames = read_video(p, **kw)
        except VideoReadError as e:
            log.info("skipping %s", e)
            if report is not None:
                report.append((p, str(e)))
            continue
        yield p, frames


def read_many(paths: Iterable[str | os.PathLike], **kw) -> tuple[list[tuple[Path, np.ndarray]], list[tuple[Path, str]]]:
    """Read every path: returns (ok: [(path, frames)], failed: [(path, message)])."""
    failed: list[tuple[Path, str]] = []
    ok = list(iter_videos(paths, failed, **kw))
    return ok, failed


# ---------------------------------------------------------------------------------------------
# writing


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 8, *, quality: int = 18) -> Path:
    """Write uint8 [T, H, W, 3] frames atomically; the extension picks the format.

    .mp4/.mov/.mkv: h264 (libx264, crf=quality) or mpeg4 when libx264 is missing, yuv420p,
    odd sizes padded to even by repeating the last row/column. .webm: VP9/VP8. .gif: PIL,
    palette per frame, looping (identical consecutive frames are merged by PIL, durations kept).
    .png/.jpg/.webp/.bmp: a single frame (T must be 1). Returns the path.
    """
    p = Path(path)
    ext = p.suffix.lower()
    try:
        frames = _check_frames(frames, "write_video")
    except ValueError as e:
        raise VideoWriteError(f"{p}: {e}") from None
    if not fps or fps <= 0:
        raise VideoWriteError(f"{p}: fps must be positive, got {fps}")
    if ext in IMAGE_EXTS:
        if len(frames) != 1:
            raise VideoWriteError(
                f"{p}: an image holds one frame, got {len(frames)}; use .mp4/.gif or save_contact_sheet"
            )
        writer = _write_image
    elif ext == ".gif":
        writer = _write_gif
    elif ext in (".mp4", ".m4v", ".mov", ".mkv", ".webm"):
        writer = _write_av
    else:
        raise VideoWriteError(f"{p}: unsupported output format {ext or '(none)'}; use .mp4, .gif or .png")
    try:
        with atomic_path(p, keep_suffix=True) as tmp:
            writer(tmp, frames, fps, quality)
    except VideoWriteError:
        raise
    except Exception as e:
        raise VideoWriteError(f"{p}: cannot write ({_why(e)})") from None
    return p


def _write_image(tmp: Path, frames: np.ndarray, fps: float, quality: int) -> None:
    from PIL import Image

    Image.fromarray(frames[0]).save(tmp)


def _write_gif(tmp: Path, frames: np.ndarray, fps: float, quality: int) -> None:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    duration = max(20, 10 * round(100 / fps))  # ms; gif stores 1/100 s, browsers clamp < 20 ms
    images[0].save(tmp, save_all=True, append_images=images[1:], duration=duration, loop=0, disposal=1)


def _video_codec(ext: str) -> str:
    import av

    have = av.codecs_available
    if ext == ".webm":
        return "libvpx-vp9" if "libvpx-vp9" in have else "libvpx"
    return "libx264" if "libx264" in have else "mpeg4"


def _write_av(tmp: Path, frames: np.ndarray, fps: float, quality: int) -> None:
    import av

    t, h, w, _ = frames.shape
    ph, pw = h + h % 2, w + w % 2
    if (ph, pw) != (h, w):
        frames = np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    ext = tmp.suffix.lower()
    codec = _video_codec(ext)
    rate = Fraction(fps).limit_denominator(1001)
    options = {"movflags": "+faststart"} if ext in (".mp4", ".m4v", ".mov") else {}
    with av.open(str(tmp), "w", options=options) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(quality), "preset": "medium"}
        elif codec.startswith("libvpx"):
            stream.options = {"crf": str(quality + 12), "b": "0"}
        else:
            stream.bit_rate = int(max(1_000_000, pw * ph * float(rate) * 1.5))
        for k, arr in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            frame.pts = k
            frame.time_base = 1 / rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def save_contact_sheet(
    path: str | os.PathLike,
    frames: np.ndarray,
    cols: int | None = None,
    labels: Sequence[str] | None = None,
    gap: int = 2,
) -> Path:
    """Write frames [T, H, W, 3] as one PNG grid (cols defaults to ~sqrt(T)), each tile
    optionally captioned with labels[i] above it. Atomic. Returns the path."""
    from PIL import Image, ImageDraw

    p = Path(path)
    try:
        frames = _check_frames(frames, "save_contact_sheet")
    except ValueError as e:
        raise VideoWriteError(f"{p}: {e}") from None
    t, h, w, _ = frames.shape
    cols = max(1, min(t, cols or math.ceil(math.sqrt(t))))
    rows = math.ceil(t / cols)
    if labels is not None and len(labels) != t:
        raise VideoWriteError(f"{p}: {len(labels)} labels for {t} frames")
    label_h = 12 if labels is not None else 0
    cell_h, cell_w = h + label_h + gap, w + gap
    sheet = Image.new("RGB", (cols * cell_w + gap, rows * cell_h + gap), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i in range(t):
        r, c = divmod(i, cols)
        x, y = gap + c * cell_w, gap + r * cell_h
        if labels is not None:
            draw.text((x, y), str(labels[i]), fill=(0, 0, 0))
        sheet.paste(Image.fromarray(frames[i]), (x, y + label_h))
    try:
        with atomic_path(p, keep_suffix=True) as tmp:
            sheet.save(tmp, format="PNG")
    except Exception as e:
        raise VideoWriteError(f"{p}: cannot write ({_why(e)})") from None
    return p
