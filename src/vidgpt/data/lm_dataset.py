"""LM training shards straight from the synthetic world (`vidgpt data build-lm`), no mp4 in between.

    tok = VideoTokenizer.from_pretrained("tokenizer/")
    result = build_lm_shards("data/lm/shards", tok, BuildLMConfig(num=5000, images=2000, edits=3000, continuations=1500))

Every unit is rendered from the train split of the world (never a held-out composition), tokenized
in batches (fine codes of the clip, blueprint codes of the clip halved in space with
`blueprint_input`) and written as shard records (docs/CONTRACTS.md) through `shards.ShardWriter`:

  unit           records                                                       kind    edit.edit_kind
  video i        one clip, all caption styles (+ rewrites) in `captions`          video   -
  image i        one frame (t = 1), image captions                                image   -
  edit i         target clip + `edit` = {instruction, source codes}               edit    color|shape|motion|add|remove|background
                 (a share `general_edits` are inpaint/outpaint/interpolate/        edit    inpaint|outpaint|...
                 reverse/mirror/greyscale of a rendered clip, vidgpt.data.edits)
  continuation i the next part of a 2x-long render + `edit` = {source codes of     edit    continue
                 the first part (or its last 2 latent frames, as the long-video
                 generator conditions), instruction None (-> "Continue the video.")
                 or a wording of vidgpt.data.edits.continue_clip}

Unit i of a kind depends only on (seed, kind, i): a rerun skips the units its progress file lists
(resume), and a larger --num adds units. The LM trainer's `shards` source formats these records on
the fly (vidgpt.train.lm_data.RecordFormatter): a record with `edit.instruction` is an edit, one with
`edit` but no instruction a continuation, t = 1 an image, else text-to-video with blueprint + fine.

Rewritten captions: `caption_manifest` lists each unit's short caption as JSONL for `vidgpt data
recaption`; `load_recaptions` reads its output back, and every clip whose captions include a
rewritten text gets the rewrites too. `write_text_corpus` writes plain English paragraphs (Python's
standard-library documentation, present on every machine) for the LM's `text` source.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import DataError
from ..utils import progress_wanted

UNIT_KINDS = ("video", "image", "edit", "continuation")
SCENE_EDIT_KINDS = ("color", "shape", "motion", "add", "remove", "background")
GENERAL_EDIT_KINDS = ("inpaint", "outpaint", "interpolate", "reverse", "mirror", "greyscale")
CONTINUE_WORDINGS = ("continue the video", "what happens next?", "continue this clip", "keep going")
_KIND_STREAM = {k: i for i, k in enumerate(UNIT_KINDS)}


@dataclass
class BuildLMConfig:
    """How many units of each kind, their size, and the tokenizer batching."""

    num: int = 1000  # text-to-video clips
    images: int = 0  # 1-frame images
    edits: int = 0  # edit pairs
    continuations: int = 0  # (first part, next part) pairs
    frames: int = 17  # 1+4n
    height: int = 128  # multiple of 16 (the blueprint halves it)
    width: int = 128
    fps: float = 8.0
    seed: int = 0
    batch_size: int = 16  # clips per tokenizer call
    records_per_chunk: int = 256
    blueprint: bool = True  # blueprint codes on clip records (and edit / continuation targets)
    edit_kinds: list[str] = field(default_factory=lambda: list(SCENE_EDIT_KINDS))
    general_edits: float = 0.25  # share of edit units that are general edits (inpaint, reverse, ...)
    short_context: float = 0.5  # share of continuations whose source is the last 2 latent frames only
    # seconds over which the world lays out its objects and sets a linear move's speed (the object crosses 28-42% of
    # the frame in that time); None: the clip's own length, frames / fps, so a 9-frame clip moves as far as a
    # 17-frame one (the world's fixed 2.125 s made 9-frame objects cross only ~16% of the frame)
    duration: float | None = None

    def __post_init__(self) -> None:
        for name in ("num", "images", "edits", "continuations"):
            if getattr(self, name) < 0:
                raise DataError(f"build-lm: --{name} must be >= 0, got {getattr(self, name)}")
        if self.duration is not None and not self.duration > 0:
            raise DataError(f"build-lm: --duration must be > 0 seconds, got {self.duration}")
        if self.num + self.images + self.edits + self.continuations == 0:
            raise DataError("build-lm: nothing to do (--num, --images, --edits and --continuations are all 0)")
        if self.frames < 5 or (self.frames - 1) % 4:
            raise DataError(f"build-lm: --frames must be 1+4n and at least 5 (5, 9, 13, 17, ...), got {self.frames}")
        step = 16 if self.blueprint else 8
        for name in ("height", "width"):
            v = getattr(self, name)
            if v < step or v % step:
                raise DataError(f"build-lm: --{name} must be a positive multiple of {step}, got {v}")
        if self.batch_size < 1:
            raise DataError(f"build-lm: --batch-size must be >= 1, got {self.batch_size}")
        bad = [k for k in self.edit_kinds if k not in SCENE_EDIT_KINDS]
        if bad or not self.edit_kinds:
            raise DataError(f"build-lm: edit kinds {bad or '[]'} not usable (known: {', '.join(SCENE_EDIT_KINDS)})")
        if not 0.0 <= self.general_edits <= 1.0 or not 0.0 <= self.short_context <= 1.0:
            raise DataError("build-lm: general_edits and short_context are shares in [0, 1]")


@dataclass
class Unit:
    """One group of records before tokenizing: clips (uint8 [T,H,W,3]) and how they become records."""

    key: str
    kind: str
    clips: list[np.ndarray]  # [target] or [target, source]
    captions: list[str] = field(default_factory=list)
    instruction: str | None = None
    edit_kind: str | None = None
    source_slice: int | None = None  # keep only the last k latent frames of the source codes
    cover: np.ndarray | None = None  # float [T,H,W]: object coverage of the target clip (None: not a scene)


@dataclass
class BuildResult:
    out_dir: Path
    units_done: int = 0
    units_skipped: int = 0
    units_already_done: int = 0
    records: int = 0
    chunks_written: int = 0
    by_kind: dict = field(default_factory=dict)

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.by_kind.items()))
        s = (f"{self.units_done} units ({kinds or 'none'}), {self.records} records, {self.units_skipped} skipped, "
             f"{self.chunks_written} chunks -> {self.out_dir}")
        if self.units_already_done:
            s += f" ({self.units_already_done} units done by an earlier run)"
        return s


# --- scenes and captions ------------------------------------------------------------------------


def unit_rng(seed: int, kind: str, index: int) -> np.random.Generator:
    """The generator of unit `index` of `kind`: depends on nothing else (resume, extend)."""
    return np.random.default_rng([int(seed), 7919, _KIND_STREAM[kind], int(index)])


def long_world(world, frames: int, fps: float):
    """The world config with objects kept in frame for two clips (continuations)."""
    return dataclasses.replace(world, duration=max(world.duration, 2 * frames / fps))


def unit_captions(rng: np.random.Generator, scene, image: bool, recaptions: dict[str, list[str]] | None) -> list[str]:
    """All caption styles of a scene, then any rewrites of those texts from `recaptions`."""
    from .synthetic import captions

    caps = captions(scene, rng, image=image)
    extra: list[str] = []
    for c in caps:
        for r in (recaptions or {}).get(c, []):
            if r not in caps and r not in extra:
                extra.append(r)
    return caps + extra


def make_unit(kind: str, index: int, cfg: BuildLMConfig, world, recaptions=None) -> Unit:
    """Render unit `index` of `kind` (scenes from the train split only). DataError if impossible."""
    from . import edits as general
    from .synthetic import make_edit_pair, render_object_cover, render_scene, sample_scene

    rng = unit_rng(cfg.seed, kind, index)
    T, H, W, fps = cfg.frames, cfg.height, cfg.width, cfg.fps
    key = f"{kind}/{index:07d}"
    if kind == "video":
        scene = sample_scene(rng, world, "train")
        return Unit(key, kind, [render_scene(scene, T, H, W, fps)], unit_captions(rng, scene, False, recaptions),
                    cover=render_object_cover(scene, T, H, W, fps))
    if kind == "image":
        scene = sample_scene(rng, world, "train")
        return Unit(key, kind, [render_scene(scene, 1, H, W, fps)], unit_captions(rng, scene, True, recaptions),
                    cover=render_object_cover(scene, 1, H, W, fps))
    if kind == "continuation":
        scene = sample_scene(rng, long_world(world, T, fps), "train")
        full = render_scene(scene, 2 * T, H, W, fps)
        caps = unit_captions(rng, scene, False, recaptions)
        words = None if rng.random() < 0.5 else CONTINUE_WORDINGS[int(rng.integers(len(CONTINUE_WORDINGS)))]
        k = 2 if rng.random() < cfg.short_context else None
        return Unit(key, "edit", [full[T:], full[:T]], caps, words, "continue", k,
                    cover=render_object_cover(scene, 2 * T, H, W, fps)[T:])
    if kind == "edit":
        if rng.random() < cfg.general_edits:
            scene = sample_scene(rng, world, "train")
            what, e = general.general_edit(render_scene(scene, T, H, W, fps), rng,
                                           GENERAL_EDIT_KINDS[int(rng.integers(len(GENERAL_EDIT_KINDS)))])
            return Unit(key, "edit", [e.target, e.input], [], e.instruction, what)
        scene = sample_scene(rng, world, "train")
        for what in rng.permutation(cfg.edit_kinds):  # the first kind this scene allows
            try:
                source, target, instruction, what = make_edit_pair(rng, scene, str(what), config=world, split="train")
                break
            except DataError:
                continue
        else:
            raise DataError(f"{key}: none of the edit kinds {cfg.edit_kinds} fits this scene")
        caps = unit_captions(rng, target, False, recaptions)
        return Unit(key, "edit", [render_scene(target, T, H, W, fps), render_scene(source, T, H, W, fps)], caps,
                    instruction, what, cover=render_object_cover(target, T, H, W, fps))
    raise DataError(f"unknown unit kind {kind!r} (known: {', '.join(UNIT_KINDS)})")


def planned_units(cfg: BuildLMConfig) -> list[tuple[str, int]]:
    """(kind, index) of every unit, interleaved so that a partial run holds every kind."""
    counts = {"video": cfg.num, "image": cfg.images, "edit": cfg.edits, "continuation": cfg.continuations}
    # order by fractional position i / count, so kinds stay mixed throughout the run
    keyed = [((i + 0.5) / n, k, i) for k, n in counts.items() for i in range(n)]
    keyed.sort()
    return [(k, i) for _, k, i in keyed]


# --- tokenizing ---------------------------------------------------------------------------------


def encode_batch(tokenizer, clips: Sequence[np.ndarray], blueprint: bool, batch_size: int):
    """uint8 clips (any mix of shapes) -> per clip (codes LongTensor [t,h,w], blueprint [t,h',w'] or None).

    Clips of one shape go through the tokenizer together, `batch_size` at a time.
    """
    import torch

    from ..tokenizer import blueprint_input

    out: list = [None] * len(clips)
    by_shape: dict[tuple, list[int]] = {}
    for i, c in enumerate(clips):
        by_shape.setdefault(tuple(c.shape), []).append(i)
    for idx in by_shape.values():
        for s in range(0, len(idx), batch_size):
            part = idx[s : s + batch_size]
            x = torch.from_numpy(np.stack([clips[i] for i in part])).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
            x = x.to(tokenizer.device)
            codes = tokenizer.encode(x).cpu()
            bp = tokenizer.encode(blueprint_input(x, getattr(tokenizer, "space_factor", 8))).cpu() if blueprint else None
            for j, i in enumerate(part):
                out[i] = (codes[j], None if bp is None else bp[j])
    return out


def _flat(t) -> tuple[list[int] | None, list[int] | None]:
    if t is None:
        return None, None
    return t.reshape(-1).tolist(), list(t.shape)


def _object_mask(cover: np.ndarray | None, codes) -> list[int] | None:
    from .synthetic import code_object_mask

    if cover is None or codes is None:
        return None
    return code_object_mask(cover, tuple(codes.shape)).reshape(-1).astype(np.uint8).tolist()


def unit_records(unit: Unit, coded: list) -> list[dict]:
    """One shard record for a unit from the (codes, blueprint) of its clips (target first)."""
    codes, bp = coded[0]
    flat, shape = _flat(codes)
    bflat, bshape = _flat(bp)
    edit = None
    if len(coded) > 1:
        src = coded[1][0]
        if unit.source_slice:
            src = src[-unit.source_slice :]
        s_flat, s_shape = _flat(src)
        edit = {"instruction": unit.instruction, "edit_kind": unit.edit_kind, "source_codes": s_flat,
                "source_shape": s_shape, "source_blueprint_codes": None, "source_blueprint_shape": None,
                "source": f"synthetic:{unit.key}:source"}
    kind = unit.kind
    return [{"codes": flat, "shape": shape, "blueprint_codes": bflat, "blueprint_shape": bshape,
             "caption": unit.captions[0] if unit.captions else "", "captions": list(unit.captions),
             "source": f"synthetic:{unit.key}", "kind": kind, "edit": edit,
             "object_mask": _object_mask(unit.cover, codes), "blueprint_object_mask": _object_mask(unit.cover, bp)}]


# --- the run ------------------------------------------------------------------------------------


def _world_hash(world) -> str:
    from ..config import to_dict

    return hashlib.sha256(json.dumps(to_dict(world), sort_keys=True).encode()).hexdigest()[:16]


def _file_hash(path) -> str | None:
    if path is None:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def build_lm_shards(
    out_dir: str | os.PathLike,
    tokenizer,
    cfg: BuildLMConfig,
    world=None,
    *,
    recaptions_path: str | os.PathLike | None = None,
    tokenizer_dir: str | None = None,
    progress: bool = True,
    on_chunk: Callable[[Path], None] | None = None,
) -> BuildResult:
    """Render, tokenize and write every planned unit not done yet; then manifest.json and report.json."""
    from tqdm.auto import tqdm

    from .ingest import shard_tokenizer_key, tokenizer_info, write_report_and_manifest
    from .shards import ShardWriter
    from .synthetic import WorldConfig, clip_world

    world = clip_world(world or WorldConfig(), cfg.frames, cfg.fps, cfg.duration)
    recaptions = load_recaptions(recaptions_path) if recaptions_path else None
    out = Path(out_dir)
    tok_info = tokenizer_info(tokenizer)
    settings = {k: v for k, v in dataclasses.asdict(cfg).items()
                if k not in ("num", "images", "edits", "continuations", "batch_size", "records_per_chunk", "duration")}
    info = {"format": "vidgpt-synthetic-lm", "tokenizer": shard_tokenizer_key(out, 0, tokenizer), "world": _world_hash(world),
            "recaptions": _file_hash(recaptions_path), **settings}
    result = BuildResult(out)
    with ShardWriter(out, 0, cfg.records_per_chunk, info=info, on_chunk=on_chunk) as writer:
        done = writer.completed
        plan = planned_units(cfg)
        todo = [(k, i) for k, i in plan if f"{k}/{i:07d}" not in done]
        result.units_already_done = len(plan) - len(todo)
        bar = tqdm(total=len(todo), desc="build-lm", unit="unit", disable=not progress_wanted(progress), dynamic_ncols=True)
        pending: list[Unit] = []

        def flush_pending() -> None:
            clips = [c for u in pending for c in u.clips]
            coded = encode_batch(tokenizer, clips, cfg.blueprint, cfg.batch_size)
            pos = 0
            for u in pending:
                recs = unit_records(u, coded[pos : pos + len(u.clips)])
                pos += len(u.clips)
                writer.add(recs, group=u.key)
                result.records += len(recs)
                name = u.edit_kind if u.edit_kind == "continue" else u.kind
                result.by_kind[name] = result.by_kind.get(name, 0) + 1
                result.units_done += 1
            bar.update(len(pending))
            bar.set_postfix(records=result.records, skipped=result.units_skipped)
            pending.clear()

        for kind, i in todo:
            try:
                unit = make_unit(kind, i, cfg, world, recaptions)
            except DataError as e:  # e.g. no edit of that kind fits this scene: skip, listed in report.json
                writer.skip(f"{kind}/{i:07d}", " ".join(str(e).split())[:300])
                result.units_skipped += 1
                bar.update(1)
                continue
            pending.append(unit)
            if sum(len(u.clips) for u in pending) >= cfg.batch_size:
                flush_pending()
        if pending:
            flush_pending()
        bar.close()
        writer.flush()
        result.chunks_written = writer.chunks_written
    write_report_and_manifest(out, tok_info, tokenizer_dir, cfg)
    return result


# --- rewritten captions -------------------------------------------------------------------------


def caption_manifest(cfg: BuildLMConfig, world=None) -> list[dict]:
    """JSONL records {"caption": short caption, "captions": [all styles], "unit": key} of every planned
    video / image / continuation unit (scenes only: fast, nothing rendered), for `vidgpt data recaption`."""
    from .synthetic import STYLES, WorldConfig, captions, clip_world, sample_scene

    world = clip_world(world or WorldConfig(), cfg.frames, cfg.fps, cfg.duration)
    short = STYLES.index("short")
    out = []
    for kind, i in planned_units(cfg):
        if kind == "edit":
            continue  # edit records are trained on their instruction, not on a caption
        rng = unit_rng(cfg.seed, kind, i)
        w = long_world(world, cfg.frames, cfg.fps) if kind == "continuation" else world
        scene = sample_scene(rng, w, "train")
        caps = captions(scene, rng, image=kind == "image")
        out.append({"caption": caps[short], "captions": caps, "unit": f"{kind}/{i:07d}"})
    return out


def load_recaptions(path: str | os.PathLike) -> dict[str, list[str]]:
    """{original caption: [rewrites]} from a JSONL that `vidgpt data recaption` wrote (records with
    `caption` and `captions`; the rewrites are the captions that the record did not hold before).

    Every caption style of a record maps to the rewrites, so any style found in a clip pulls them in.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: recaption file not found")
    index: dict[str, list[str]] = {}
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{p}:{n}: not valid JSON ({e.msg})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("caption"), str):
            raise DataError(f"{p}:{n}: expected a record with a `caption` string")
        caps = [c for c in rec.get("captions") or [] if isinstance(c, str)]
        from .synthetic import STYLES

        originals = caps[: len(STYLES)] if rec["caption"] in caps[: len(STYLES)] else [rec["caption"]]
        rewrites = [c for c in caps if c not in originals and c != rec["caption"]]
        if rewrites:
            for o in set(originals) | {rec["caption"]}:
                index.setdefault(o, [])
                index[o] += [r for r in rewrites if r not in index[o]]
    return index


# --- plain text ---------------------------------------------------------------------------------

ROLE = re.compile(r":[a-z:]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")  # :func:`name` -> name


def stdlib_module_names() -> list[str]:
    """Importable public top-level standard-library modules and their public submodules (sorted)."""
    import sys

    names = sorted(n for n in getattr(sys, "stdlib_module_names", ()) if not n.startswith("_"))
    skip = {"antigravity", "this", "idlelib", "lib2to3", "turtledemo", "test", "tkinter", "turtle", "ensurepip",
            "readline", "curses", "webbrowser", "pydoc", "site"}
    return [n for n in names if n not in skip]


def _paragraphs(doc: str, min_chars: int) -> list[str]:
    out = []
    for para in doc.split("\n\n"):
        lines = [ln.strip() for ln in para.strip().splitlines()]
        text = ROLE.sub(r"\1", " ".join(ln for ln in lines if ln)).replace("``", "").replace("`", "")
        letters = sum(ch.isalpha() or ch == " " for ch in text)
        # prose only: long enough, mostly letters, no code or tables
        if len(text) >= min_chars and letters >= 0.85 * len(text) and ">>>" not in text and "::" not in text:
            out.append(text)
    return out


def text_corpus(max_docs: int = 5000, min_chars: int = 160) -> list[str]:
    """Plain English paragraphs from the docstrings of Python standard-library modules (offline, same on
    every machine). Each document is a few consecutive paragraphs of one docstring."""
    import warnings

    with warnings.catch_warnings():  # importing / reading old modules warns about deprecations
        warnings.simplefilter("ignore")
        return _text_corpus(max_docs, min_chars)


def _text_corpus(max_docs: int, min_chars: int) -> list[str]:
    import importlib
    import inspect

    docs: list[str] = []
    seen: set[str] = set()
    for name in stdlib_module_names():
        try:
            mod = importlib.import_module(name)
        except BaseException:  # a module missing on this build, or one with side effects: skip it
            continue
        objs = [mod] + [getattr(mod, a, None) for a in sorted(dir(mod)) if not a.startswith("_")]
        objs += [getattr(c, a, None) for c in objs if inspect.isclass(c) for a in sorted(vars(c)) if not a.startswith("_")]
        for obj in objs:
            try:
                doc = inspect.getdoc(obj)
            except Exception:
                doc = None
            if not doc or doc in seen:
                continue
            seen.add(doc)
            paras = _paragraphs(doc, min_chars)
            if paras:
                docs.append("\n".join(paras[:4]))
            if len(docs) >= max_docs:
                return docs
    return docs


def write_text_corpus(out_dir: str | os.PathLike, max_docs: int = 5000) -> tuple[Path, int]:
    """Write `text_corpus` to OUT/python-docs.txt (documents separated by blank lines). Returns (path, docs)."""
    from ..utils import atomic_write_text

    docs = text_corpus(max_docs)
    if not docs:
        raise DataError("no text documents found in the standard library's docstrings")
    path = Path(out_dir) / "python-docs.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n\n".join(docs) + "\n")
    return path, len(docs)
