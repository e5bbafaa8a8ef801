"""Caption files: which media file goes with which caption (and, for edit pairs, which instruction).

Three ways to give captions, all read into `MediaItem`s:

- JSONL: one object a line with a path and a caption, e.g.
  `{"path": "clips/a.mp4", "caption": "a dog runs"}`; `"captions": [...]` may add more. This is
  also the synthetic world's manifest (`vidgpt data synth`), whose extra keys (scene, split, ...)
  are kept in `MediaItem.meta`, and whose edit pairs (`"kind": "edit"`, the edited clip in
  `path`/`target`, the clip before the edit in `source`, and an `instruction`) become edit items.
- CSV (or TSV): a header row with a path column (`path`, `file`, `video`, `image`) and a caption
  column (`caption`, `text`, `prompt`).
- Sidecar text files: `clip.txt` next to `clip.mp4` holds its caption (`sidecar_caption`).

Relative paths in a caption file are relative to the folder holding that file. A malformed file
raises `DataError("<file>:<line>: <problem>")`.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

PATH_KEYS = ("path", "file", "video", "image", "target", "target_path")
CAPTION_KEYS = ("caption", "text", "prompt")
SOURCE_KEYS = ("source", "source_path", "src")
CAPTION_FILE_EXTS = (".jsonl", ".csv", ".tsv")


@dataclass
class MediaItem:
    """One thing to ingest: a video/image file (kind None: decided by the file) or an edit pair."""

    path: Path
    caption: str = ""
    captions: list[str] = field(default_factory=list)
    kind: str | None = None  # None (video or image, from the file) or "edit"
    source_path: Path | None = None  # edit pairs: the clip before the edit (`path` is after it)
    instruction: str | None = None  # edit pairs: what changed, in words
    meta: dict = field(default_factory=dict)  # other keys of the manifest line (scene, split, ...)

    def all_captions(self) -> list[str]:
        """`caption` first, then the other captions, without repeats or empties."""
        out: list[str] = []
        for c in [self.caption, *self.captions]:
            c = (c or "").strip()
            if c and c not in out:
                out.append(c)
        return out

    @property
    def key(self) -> str:
        """Stable identity used for slicing and resume: the absolute path (plus the source of an edit)."""
        key = os.path.abspath(self.path)
        if self.kind == "edit" and self.source_path is not None:
            key += " <- " + os.path.abspath(self.source_path)
        return key


def _first(row: dict, keys: tuple[str, ...]):
    for k in keys:
        v = row.get(k)
        if v not in (None, ""):
            return k, v
    return None, None


def _resolve(base: Path, value: str) -> Path:
    p = Path(os.path.expanduser(str(value)))
    return p if p.is_absolute() else base / p


def _as_str_list(value, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise DataError(f"{where}: 'captions' must be a list of strings, got {type(value).__name__}")


def item_from_dict(row: dict, base: Path, where: str) -> MediaItem:
    """A manifest line (dict) -> MediaItem; `base` resolves relative paths, `where` is "file:line"."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    pkey, path = _first(row, PATH_KEYS)
    if path is None:
        raise DataError(f"{where}: no path (one of the keys {', '.join(PATH_KEYS)})")
    if not isinstance(path, str):
        raise DataError(f"{where}: '{pkey}' must be a string, got {type(path).__name__}")
    ckey, caption = _first(row, CAPTION_KEYS)
    captions = _as_str_list(row.get("captions"), where)
    if caption is not None and not isinstance(caption, str):
        raise DataError(f"{where}: '{ckey}' must be a string, got {type(caption).__name__}")
    caption = caption or (captions[0] if captions else "")
    kind = row.get("kind")
    _, source = _first(row, SOURCE_KEYS)
    is_edit = kind == "edit" or (source is not None and "instruction" in row)
    used = {pkey, ckey, "captions", "kind", *SOURCE_KEYS, "instruction"}
    meta = {k: v for k, v in row.items() if k not in used}
    if not is_edit:
        return MediaItem(_resolve(base, path), caption, captions, None, None, None, meta)
    if not isinstance(source, str):
        raise DataError(f"{where}: an edit pair needs 'source' (the clip before the edit) as a path string")
    instruction = row.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise DataError(f"{where}: an edit pair needs a non-empty 'instruction'")
    return MediaItem(_resolve(base, path), caption, captions, "edit", _resolve(base, source), instruction.strip(), meta)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """All objects of a JSONL file (blank lines skipped); DataError names the file and line."""
    return [obj for _, obj in _jsonl_with_lines(Path(path))]


def read_caption_jsonl(path: str | os.PathLike) -> list[MediaItem]:
    """Media items of a JSONL caption file or synthetic manifest."""
    p = Path(path)
    return [item_from_dict(obj, p.parent, f"{p}:{line}") for line, obj in _jsonl_with_lines(p)]


def _jsonl_with_lines(p: Path):
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: cannot read ({e})") from None
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield i, json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{p}:{i}: bad JSON ({e.msg} at column {e.colno})") from None


def read_caption_csv(path: str | os.PathLike) -> list[MediaItem]:
    """Media items of a CSV/TSV file with a header row naming a path column and a caption column."""
    p = Path(path)
    delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: cannot read ({e})") from None
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if not header:
        raise DataError(f"{p}: empty file (expected a header row with path and caption columns)")
    reader.fieldnames = header
    path_col = next((k for k in PATH_KEYS if k in header), None)
    cap_col = next((k for k in CAPTION_KEYS if k in header), None)
    if path_col is None:
        raise DataError(f"{p}: missing column 'path' (have: {', '.join(header)})")
    if cap_col is None:
        raise DataError(f"{p}: missing column 'caption' (have: {', '.join(header)})")
    items = []
    for line, row in enumerate(reader, start=2):
        if None in row:
            raise DataError(f"{p}:{line}: more fields than the header has")
        value = (row.get(path_col) or "").strip()
        if not value:
            raise DataError(f"{p}:{line}: empty '{path_col}'")
        meta = {k: v for k, v in row.items() if k not in (path_col, cap_col)}
        items.append(MediaItem(_resolve(p.parent, value), (row.get(cap_col) or "").strip(), meta=meta))
    return items


def read_captions(path: str | os.PathLike) -> list[MediaItem]:
    """Read a caption file by its extension: .jsonl (JSON lines) or .csv/.tsv."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext == ".jsonl":
        return read_caption_jsonl(p)
    if ext in (".csv", ".tsv"):
        return read_caption_csv(p)
    raise DataError(f"{p}: unknown caption file type {ext or '(none)'}; use .jsonl, .csv or .tsv")


def is_caption_file(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_file() and p.suffix.lower() in CAPTION_FILE_EXTS


def sidecar_caption(media_path: str | os.PathLike) -> str | None:
    """Text of `name.txt` next to `name.mp4` (stripped), or None when there is none."""
    p = Path(media_path)
    side = p.with_suffix(".txt") if p.suffix else p.with_name(p.name + ".txt")
    if not side.is_file():
        return None
    try:
        text = side.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{side}: cannot read caption ({e})") from None
    return text or None


def caption_index(items: list[MediaItem]) -> dict[str, MediaItem]:
    """Map absolute path -> item (the last entry wins when a file is listed twice)."""
    return {os.path.abspath(it.path): it for it in items if it.kind != "edit"}
