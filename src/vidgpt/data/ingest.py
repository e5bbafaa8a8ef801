"""Real videos and images -> token shards (`vidgpt data ingest`).

    items = gather_items(["videos/", "captions.jsonl"])            # media files + their captions
    result = ingest(items, "shards/", tokenizer, IngestConfig())    # Parquet chunks + report.json

Each file is read at the target fps, cut into clips of 1+4n frames (fixed length with a stride,
optionally only inside scenes found by a frame-difference threshold), and sent to the nearest
bucket: a small set of target (frames, height, width) shapes, NaViT-style (no padding): the
bucket's aspect ratio is the closest to the file's, its length the longest that fits. The clip is
resized to cover the bucket and centre-cropped. Clips are tokenized in batches per bucket; the
blueprint codes are the same tokenizer on the clip halved in space (`blueprint_input`). Images
become t=1 records (kind "image"); edit pairs (from a synthetic manifest) become kind "edit"
records whose `edit` field holds the instruction and the codes of the clip before the edit.

Scaling out: `slice_items(items, num_shards, shard_index)` keeps the files whose path hash falls
in this slice; every slice writes its own chunks and progress file (see `shards.ShardWriter`),
so slices run in parallel (several processes or machines, or `accelerate launch`) and an
interrupted slice resumes where it stopped. Unreadable files are skipped and listed in
report.json with the reason.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np

from ..errors import DataError, VidgptError
from .captions import MediaItem, caption_index, is_caption_file, read_captions, sidecar_caption
from ..utils import progress_wanted


class Bucket(NamedTuple):
    """A target clip shape in pixels: frames (1+4n), height and width."""

    frames: int
    height: int
    width: int

    def __str__(self) -> str:
        return f"{self.frames}x{self.height}x{self.width}"


DEFAULT_BUCKETS = "17x128x128,17x128x224,17x224x128,9x128x128,9x128x224,9x224x128"


@dataclass
class IngestConfig:
    """How files become clips. `buckets`: comma-separated FRAMESxHEIGHTxWIDTH (see parse_buckets)."""

    buckets: str = DEFAULT_BUCKETS
    fps: float | None = 8.0  # resample videos to this rate (None: keep the file's rate)
    stride: int | None = None  # frames between clip starts at the target fps (None: clip length, no overlap)
    max_clips_per_file: int | None = None  # None: as many as fit
    max_frames_per_file: int | None = None  # read at most this many frames (at the target fps) of a file
    scene_cuts: bool = False  # cut only inside scenes found by frame differences
    scene_threshold: float = 0.3  # mean absolute difference (0..1) of consecutive 32x32 thumbnails = a cut
    blueprint: bool = True  # also store blueprint codes (tokenizer on the clip halved in space)
    batch_size: int = 8  # clips per tokenizer call (per bucket)
    records_per_chunk: int = 256  # records per Parquet chunk (whole files, so a chunk may hold more)


# --- buckets ---------------------------------------------------------------------------------


def parse_buckets(spec: str | Sequence, blueprint: bool = True) -> list[Bucket]:
    """'17x128x128,9x128x224' -> [Bucket(17,128,128), Bucket(9,128,224)].

    frames must be 1+4n; height and width multiples of 16 (8 without blueprints, which halve them).
    """
    parts = [p.strip() for p in spec.split(",")] if isinstance(spec, str) else list(spec)
    step = 16 if blueprint else 8
    out: list[Bucket] = []
    for p in parts:
        if not p:
            continue
        try:
            t, h, w = (int(v) for v in (p.lower().split("x") if isinstance(p, str) else p))
        except ValueError:
            raise DataError(f"bucket {p!r}: expected FRAMESxHEIGHTxWIDTH, e.g. 17x128x128") from None
        if t < 1 or (t - 1) % 4:
            raise DataError(f"bucket {p!r}: frames must be 1+4n (1, 5, 9, 13, 17, ...), got {t}")
        if h < step or w < step or h % step or w % step:
            raise DataError(f"bucket {p!r}: height and width must be positive multiples of {step}"
                            + (" (blueprints halve them; pass --no-blueprint for multiples of 8)" if blueprint else ""))
        out.append(Bucket(t, h, w))
    if not out:
        raise DataError(f"no buckets in {spec!r}")
    return out


def choose_bucket(height: int, width: int, n_frames: int, buckets: Sequence[Bucket], image: bool = False) -> Bucket:
    """The bucket for a source of height x width with n_frames (at the target fps).

    Spatial size: the closest aspect ratio (in log space); among sizes of that aspect the largest
    that does not upscale, else the smallest. Length: images get 1 frame; videos the longest
    bucket length <= n_frames among the buckets of that size (or the shortest, padded, if none fits).
    """
    sizes = sorted({(b.height, b.width) for b in buckets if image or b.frames > 1} or {(b.height, b.width) for b in buckets})
    aspect = math.log(width / height)
    best = min(abs(math.log(w / h) - aspect) for h, w in sizes)
    near = [(h, w) for h, w in sizes if abs(abs(math.log(w / h) - aspect) - best) < 1e-9]
    fitting = [(h, w) for h, w in near if h <= height and w <= width]
    h, w = max(fitting, key=lambda s: s[0] * s[1]) if fitting else min(near, key=lambda s: s[0] * s[1])
    if image:
        return Bucket(1, h, w)
    lengths = sorted({b.frames for b in buckets if (b.height, b.width) == (h, w)})
    video_lengths = [t for t in lengths if t > 1] or lengths
    fits = [t for t in video_lengths if t <= n_frames]
    return Bucket(max(fits) if fits else min(video_lengths), h, w)


# --- cutting ---------------------------------------------------------------------------------


def detect_scene_cuts(frames: np.ndarray, threshold: float = 0.3) -> list[tuple[int, int]]:
    """Split [T, H, W, 3] frames into scenes: [(start, end), ...] covering 0..T.

    A cut falls between frames whose 32x32 grey thumbnails differ by more than `threshold`
    (mean absolute difference, 0..1).
    """
    import torch
    import torch.nn.functional as F

    n = len(frames)
    if n < 2:
        return [(0, n)]
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().mean(-1, keepdim=True).permute(0, 3, 1, 2)
    thumbs = F.adaptive_avg_pool2d(x, (32, 32)) / 255.0
    diffs = (thumbs[1:] - thumbs[:-1]).abs().mean(dim=(1, 2, 3))
    cuts = [i + 1 for i in torch.nonzero(diffs > threshold).flatten().tolist()]
    bounds = [0, *cuts, n]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def clip_starts(n_frames: int, length: int, stride: int | None = None, max_clips: int | None = None) -> list[int]:
    """Start indices of clips of `length` frames every `stride` frames inside n_frames."""
    stride = stride or length
    starts = list(range(0, n_frames - length + 1, stride)) if n_frames >= length else []
    return starts[:max_clips] if max_clips else starts


# --- inputs ----------------------------------------------------------------------------------


def gather_items(inputs: Sequence[str | os.PathLike], caption_files: Sequence[str | os.PathLike] = ()) -> list[MediaItem]:
    """Inputs (folders, media files, caption/manifest files) -> media items with captions.

    A .jsonl/.csv/.tsv input lists its own media (and edit pairs); folders and files are listed
    with `video_io.list_media`. Captions come from the caption file that lists the file, else the
    `caption_files`, else a sidecar .txt, else "".
    """
    from .video_io import list_media

    index = {}
    for f in caption_files:
        index.update(caption_index(read_captions(f)))
    items: list[MediaItem] = []
    seen: set[str] = set()
    for inp in inputs:
        p = Path(inp)
        if not p.exists():
            raise DataError(f"{p}: no such file or directory")
        found = read_captions(p) if is_caption_file(p) else [MediaItem(m) for m in list_media(p)]
        for item in found:
            known = index.get(os.path.abspath(item.path))
            if known is not None and not item.all_captions():
                item.caption, item.captions = known.caption, list(known.captions)
            if not item.all_captions():
                side = sidecar_caption(item.path) if item.path.suffix.lower() != ".txt" else None
                item.caption = side or ""
            if item.key not in seen:
                seen.add(item.key)
                items.append(item)
    return items


def slice_of(key: str, num_shards: int) -> int:
    """Which slice a file belongs to: a stable hash of its key, modulo num_shards."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:12], 16) % num_shards


def slice_items(items: Sequence[MediaItem], num_shards: int = 1, shard_index: int = 0) -> list[MediaItem]:
    """The items this process handles (all when num_shards == 1)."""
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise DataError(f"--shard-index must be in 0..{num_shards - 1} for --num-shards {num_shards}, got {shard_index}")
    return [it for it in items if num_shards == 1 or slice_of(it.key, num_shards) == shard_index]


def distributed_slice() -> tuple[int, int]:
    """(num_shards, shard_index) from `accelerate launch`/torchrun's WORLD_SIZE and RANK, else (1, 0)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    return (world, rank) if world > 1 else (1, 0)


# --- reading one item into clips -------------------------------------------------------------


@dataclass
class Clip:
    """One clip waiting for the tokenizer: target frames [T,H,W,3] (and the edit source)."""

    item: MediaItem
    order: int  # position within its item (records keep file order)
    bucket: Bucket
    frames: np.ndarray
    source: str
    source_frames: np.ndarray | None = None
    source_ref: str | None = None


def _read(path: Path, cfg: IngestConfig) -> tuple[np.ndarray, np.ndarray]:
    """(frames at the target fps, original frame index of each) for a video or image."""
    from .video_io import IMAGE_EXTS, read_video, read_video_meta

    is_still = path.suffix.lower() in IMAGE_EXTS or path.is_dir()
    rate = None
    if cfg.fps and not is_still:
        rate = read_video_meta(path).get("fps")
    frames = read_video(path, fps=cfg.fps if rate else None, max_frames=cfg.max_frames_per_file)
    ratio = rate / cfg.fps if (rate and cfg.fps) else 1.0
    index = np.floor((np.arange(len(frames)) + 0.5) * ratio + 1e-9).astype(int) if ratio != 1.0 else np.arange(len(frames))
    return frames, index


def _ref(path: Path, index: np.ndarray, a: int, b: int) -> str:
    """'path#frames=A-B': the clip's source file and original frame range [A, B)."""
    return f"{path}#frames={int(index[a])}-{int(index[b - 1]) + 1}"


def _segments(frames: np.ndarray, cfg: IngestConfig) -> list[tuple[int, int]]:
    return detect_scene_cuts(frames, cfg.scene_threshold) if cfg.scene_cuts else [(0, len(frames))]


def item_clips(item: MediaItem, cfg: IngestConfig, buckets: Sequence[Bucket]) -> list[Clip]:
    """Read one item and cut it into bucketed, resized clips. Raises VidgptError if unreadable."""
    from .video_io import resize_and_crop, take_frames

    frames, index = _read(item.path, cfg)
    src = idx_src = None
    if item.kind == "edit":
        src, idx_src = _read(item.source_path, cfg)
        n = min(len(frames), len(src))
        frames, index, src, idx_src = frames[:n], index[:n], src[:n], idx_src[:n]
    _, H, W, _ = frames.shape
    if len(frames) == 1 and item.kind != "edit":
        b = choose_bucket(H, W, 1, buckets, image=True)
        return [Clip(item, 0, b, resize_and_crop(frames, b.height, b.width), str(item.path))]
    spans: list[tuple[Bucket, int, int]] = []  # (bucket, start, end) in target-fps frames
    segments = _segments(frames, cfg) if item.kind != "edit" else [(0, len(frames))]
    for a, e in segments:
        b = choose_bucket(H, W, e - a, buckets)
        for s in clip_starts(e - a, b.frames, cfg.stride, None):
            spans.append((b, a + s, a + s + b.frames))
    if not spans:  # shorter than every bucket: pad the longest scene by repeating its last frame
        a, e = max(segments, key=lambda s: s[1] - s[0])
        b = choose_bucket(H, W, e - a, buckets)
        spans.append((b, a, e))
    if cfg.max_clips_per_file:
        spans = spans[: cfg.max_clips_per_file]
    clips = []
    resized: dict[Bucket, tuple] = {}
    for order, (b, a, e) in enumerate(spans):
        size = (b.height, b.width)
        if size not in resized:  # resize the whole file once per spatial size
            resized[size] = (resize_and_crop(frames, *size), None if src is None else resize_and_crop(src, *size))
        tgt_all, src_all = resized[size]
        clip = take_frames(tgt_all[a:e], b.frames, pad="repeat")
        clip_src = None if src_all is None else take_frames(src_all[a:e], b.frames, pad="repeat")
        ref_src = None if src is None else _ref(item.source_path, idx_src, a, e)
        clips.append(Clip(item, order, b, clip, _ref(item.path, index, a, e), clip_src, ref_src))
    return clips


# --- tokenizing ------------------------------------------------------------------------------


def encode_clips(tokenizer, clips: Sequence[np.ndarray], blueprint: bool = True):
    """uint8 clips [T,H,W,3] of one shape -> (codes [B,t,h,w], blueprint codes [B,t,h/2,w/2] or None), on CPU."""
    import torch

    from ..tokenizer import blueprint_input
    from .video_io import frames_to_tensor

    x = torch.stack([frames_to_tensor(c) for c in clips]).to(tokenizer.device)
    codes = tokenizer.encode(x).cpu()
    bp = tokenizer.encode(blueprint_input(x, getattr(tokenizer, "space_factor", 8))).cpu() if blueprint else None
    return codes, bp


def _flat(codes) -> tuple[list[int], list[int]]:
    return codes.reshape(-1).tolist(), list(codes.shape)


def clip_records(clips: Sequence[Clip], tokenizer, blueprint: bool) -> list[dict]:
    """Tokenize clips of one bucket (edit sources in the same batch) into shard records."""
    frames = [c.frames for c in clips] + [c.source_frames for c in clips if c.source_frames is not None]
    codes, bp = encode_clips(tokenizer, frames, blueprint)
    records = []
    j = len(clips)  # edit sources follow the targets in the batch
    for i, c in enumerate(clips):
        flat, shape = _flat(codes[i])
        bflat, bshape = _flat(bp[i]) if bp is not None else (None, None)
        kind = "edit" if c.item.kind == "edit" else ("image" if c.bucket.frames == 1 else "video")
        edit = None
        if c.source_frames is not None:
            s_flat, s_shape = _flat(codes[j])
            sb_flat, sb_shape = _flat(bp[j]) if bp is not None else (None, None)
            edit = {"instruction": c.item.instruction, "edit_kind": c.item.meta.get("edit_kind"), "source_codes": s_flat, "source_shape": s_shape,
                    "source_blueprint_codes": sb_flat, "source_blueprint_shape": sb_shape, "source": c.source_ref}
            j += 1
        records.append({
            "codes": flat, "shape": shape, "blueprint_codes": bflat, "blueprint_shape": bshape,
            "caption": c.item.all_captions()[0] if c.item.all_captions() else "",
            "captions": c.item.all_captions(), "source": c.source, "kind": kind, "edit": edit,
        })
    return records


# --- the run ---------------------------------------------------------------------------------


@dataclass
class IngestResult:
    out_dir: Path
    files_ok: int = 0
    files_skipped: int = 0
    files_already_done: int = 0
    records: int = 0
    chunks_written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        s = (f"{self.files_ok} files ok, {self.files_skipped} skipped, {self.records} records, "
             f"{self.chunks_written} shards written -> {self.out_dir}")
        if self.files_already_done:
            s += f" ({self.files_already_done} files done by an earlier run)"
        return s


def tokenizer_info(tokenizer) -> dict:
    return {"fingerprint": tokenizer.weights_fingerprint(), "encoder_fingerprint": tokenizer.encoder_fingerprint(),
            "config_hash": tokenizer.config_hash(), "codebook_bits": tokenizer.codebook_bits}


def shard_tokenizer_key(out: str | os.PathLike, slice_index: int, tokenizer) -> str:
    """The tokenizer's entry in a slice's progress info: its encoder fingerprint, so that a slice can
    be resumed with a decoder-only fine-tune of its tokenizer (same codes). A slice started before
    that existed recorded the weights fingerprint; it is kept where the tokenizer accepts it."""
    from .shards import progress_name

    enc = tokenizer.encoder_fingerprint()
    try:
        old = json.loads((Path(out) / progress_name(slice_index)).read_text()).get("info", {}).get("tokenizer")
    except (OSError, ValueError, AttributeError):
        old = None
    if isinstance(old, str) and old != enc and tokenizer.accepts_codes_of(weights_fingerprint=old):
        return old
    return enc


def ingest(
    items: Sequence[MediaItem],
    out_dir: str | os.PathLike,
    tokenizer,
    config: IngestConfig | None = None,
    *,
    num_shards: int = 1,
    shard_index: int = 0,
    progress: bool = True,
    on_chunk: Callable[[Path], None] | None = None,
    tokenizer_dir: str | None = None,
) -> IngestResult:
    """Tokenize this slice of `items` into Parquet chunks under out_dir (resuming a previous run).

    Writes part-IIIII-CCCCC.parquet chunks and progress-IIIII.json, then (re)builds report.json
    and manifest.json from all slices' progress files. `on_chunk(path)` runs after each chunk.
    """
    from tqdm.auto import tqdm

    from .shards import ShardWriter

    cfg = config or IngestConfig()
    buckets = parse_buckets(cfg.buckets, cfg.blueprint)
    if cfg.batch_size < 1:
        raise DataError(f"batch size must be >= 1, got {cfg.batch_size}")
    out = Path(out_dir)
    tok_info = tokenizer_info(tokenizer)
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("batch_size", "records_per_chunk")}
    info = {"tokenizer": shard_tokenizer_key(out, shard_index, tokenizer), "num_shards": num_shards, **settings}
    mine = slice_items(items, num_shards, shard_index)
    result = IngestResult(out)
    with ShardWriter(out, shard_index, cfg.records_per_chunk, info=info, on_chunk=on_chunk) as writer:
        done = writer.completed
        todo = [it for it in mine if it.key not in done]
        result.files_already_done = len(mine) - len(todo)
        queues: dict[Bucket, list[Clip]] = {}
        outstanding: dict[str, int] = {}
        finished: dict[str, list[tuple[int, dict]]] = {}

        def run_queue(b: Bucket) -> None:
            batch, queues[b] = queues.get(b, []), []
            if not batch:
                return
            for clip, rec in zip(batch, clip_records(batch, tokenizer, cfg.blueprint)):
                key = clip.item.key
                finished.setdefault(key, []).append((clip.order, rec))
                outstanding[key] -= 1
                if outstanding[key] == 0:
                    recs = [r for _, r in sorted(finished.pop(key), key=lambda x: x[0])]
                    writer.add(recs, group=key)
                    result.records += len(recs)
                    del outstanding[key]

        bar = tqdm(todo, desc=f"ingest slice {shard_index}/{num_shards}", unit="file", disable=not progress_wanted(progress))
        for item in bar:
            try:
                clips = item_clips(item, cfg, buckets)
            except (VidgptError, OSError, ValueError, RuntimeError) as e:  # a bad file never stops the run
                msg = " ".join(str(e).split()) if isinstance(e, VidgptError) else f"cannot ingest ({type(e).__name__}: {e})"
                reason = _strip_path(str(item.path), " ".join(msg.split())[:300])
                writer.skip(item.key, reason)
                result.files_skipped += 1
                result.skipped.append((str(item.path), reason))
                continue
            result.files_ok += 1
            outstanding[item.key] = len(clips)
            for c in clips:
                queues.setdefault(c.bucket, []).append(c)
                if len(queues[c.bucket]) >= cfg.batch_size:
                    run_queue(c.bucket)
            bar.set_postfix(records=result.records, skipped=result.files_skipped)
        for b in list(queues):
            run_queue(b)
        writer.flush()
        result.chunks_written = writer.chunks_written
    write_report_and_manifest(out, tok_info, tokenizer_dir, cfg)
    return result


def _strip_path(file: str, reason: str) -> str:
    for prefix in (file, os.path.abspath(file)):
        if reason.startswith(prefix + ": "):
            return reason[len(prefix) + 2 :]
    return reason


def write_report_and_manifest(out: Path, tok_info: dict, tokenizer_dir: str | None, cfg: IngestConfig) -> None:
    """Rebuild report.json and manifest.json from every slice's progress file (atomic writes)."""
    from ..utils import atomic_write_text
    from .shards import read_progress

    states = read_progress(out)
    skipped = []
    counts = {"records": 0, "files_ok": 0, "files_skipped": 0, "chunks": 0, "by_kind": {}, "by_shape": {}}
    for st in states:
        for key, reason in sorted(st["failed"].items()):
            file = key.split(" <- ")[0]
            skipped.append({"file": file, "reason": reason, "slice": st["slice"]})
        counts["records"] += st["records"]
        counts["files_ok"] += len(st["done"])
        counts["files_skipped"] += len(st["failed"])
        counts["chunks"] += len(st["chunks"])
        for name in ("by_kind", "by_shape"):
            for k, v in st[name].items():
                counts[name][k] = counts[name].get(k, 0) + v
    atomic_write_text(out / "report.json", json.dumps({"skipped": skipped}, indent=1) + "\n")
    manifest = {
        "format": "vidgpt-token-shards",
        "version": 1,
        "tokenizer": {**tok_info, "dir": tokenizer_dir},
        "settings": asdict(cfg),
        "slices": sorted(st["slice"] for st in states),
        "num_shards": states[0]["info"].get("num_shards") if states else 1,
        "counts": counts,
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
