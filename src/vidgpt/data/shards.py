"""Token shard directories: Parquet chunks of clip/image/edit records (docs/CONTRACTS.md).

    DIR/part-IIIII-CCCCC.parquet   chunk CCCCC of slice IIIII (one slice per ingest process)
    DIR/progress-IIIII.json        what slice IIIII has finished (for resume; see ShardWriter)
    DIR/manifest.json              what made the shards (tokenizer, buckets, counts)
    DIR/report.json                files skipped and why

`ShardWriter` writes each chunk atomically (temp name, then rename) and only then records the
groups (source files) it holds in the slice's progress file, also atomically; a chunk never holds
part of a group, so a rerun that skips the finished groups neither loses nor duplicates records.
Chunks of this slice that the progress file does not list (a crash between the two renames) are
deleted on open. `load_shards` reads one or more directories back as a `datasets` dataset.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import DataError
from ..utils import atomic_path, atomic_write_text

CHUNK_RE = re.compile(r"^part-(\d{5})-(\d{5})\.parquet$")
PROGRESS_FORMAT = "vidgpt-shard-progress"


def chunk_name(slice_index: int, chunk: int) -> str:
    return f"part-{slice_index:05d}-{chunk:05d}.parquet"


def progress_name(slice_index: int) -> str:
    return f"progress-{slice_index:05d}.json"


def record_schema():
    """The pyarrow schema of clip/image/edit records (fixed, so every chunk has the same types)."""
    import pyarrow as pa

    ints = pa.list_(pa.int32())
    edit = pa.struct(
        [
            ("instruction", pa.string()),
            ("edit_kind", pa.string()),
            ("source_codes", ints),
            ("source_shape", ints),
            ("source_blueprint_codes", ints),
            ("source_blueprint_shape", ints),
            ("source", pa.string()),
        ]
    )
    return pa.schema(
        [
            ("codes", ints),
            ("shape", ints),
            ("blueprint_codes", ints),
            ("blueprint_shape", ints),
            ("caption", pa.string()),
            ("captions", pa.list_(pa.string())),
            ("source", pa.string()),
            ("kind", pa.string()),
            ("edit", edit),
            # synthetic records: 1 where a code of `codes` / `blueprint_codes` shows an object (same order), else
            # null. The LM trainer's data.object_loss_weight reads them.
            ("object_mask", pa.list_(pa.uint8())),
            ("blueprint_object_mask", pa.list_(pa.uint8())),
        ]
    )


def _to_table(records: list[dict]):
    import pyarrow as pa

    if all("codes" in r for r in records):
        schema = record_schema()
        rows = [{k: r.get(k) for k in schema.names} for r in records]
        return pa.Table.from_pylist(rows, schema=schema)
    return pa.Table.from_pylist(records)  # text / token-sequence records: types inferred


class ShardWriter:
    """Append records in groups; write Parquet chunks atomically; track finished groups.

    writer = ShardWriter(out_dir, slice_index, records_per_chunk=256)
    done = writer.completed          # groups finished by an earlier run (skip them)
    writer.add(records, group="a.mp4")   # all records of one source file, together
    writer.skip("b.mp4", "truncated")    # a group that produced nothing (listed in the report)
    writer.close()                   # flush the rest

    A chunk is written once it holds at least `records_per_chunk` records (whole groups only, so
    it may hold more). `on_chunk(path)` is called after each chunk is in place (tests use it to
    simulate a crash). `info` (JSON-able) is kept in the progress file; opening an existing slice
    whose `info` differs raises DataError (e.g. a different tokenizer would mix codes).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        slice_index: int = 0,
        records_per_chunk: int = 256,
        info: dict | None = None,
        on_chunk=None,
    ):
        if records_per_chunk < 1:
            raise ValueError(f"records_per_chunk must be >= 1, got {records_per_chunk}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.slice_index = int(slice_index)
        self.records_per_chunk = int(records_per_chunk)
        self.on_chunk = on_chunk
        self.progress_path = self.out_dir / progress_name(self.slice_index)
        self._buffer: list[dict] = []
        self._buffer_groups: list[str] = []
        self._pending_skips: dict[str, str] = {}
        self.state = self._load_progress(info or {})
        self._known = set(self.state["done"]) | set(self.state["failed"])
        self._remove_orphans()
        self.chunks_written = 0

    # --- progress ------------------------------------------------------------------------------
    def _load_progress(self, info: dict) -> dict:
        fresh = {"format": PROGRESS_FORMAT, "slice": self.slice_index, "info": info, "chunks": [], "done": [],
                 "failed": {}, "records": 0, "by_kind": {}, "by_shape": {}}
        if not self.progress_path.exists():
            return fresh
        try:
            state = json.loads(self.progress_path.read_text())
            if state.get("format") != PROGRESS_FORMAT:
                raise ValueError("not a progress file")
        except (ValueError, OSError) as e:
            raise DataError(f"{self.progress_path}: unreadable progress file ({e}); delete it to start this slice over") from None
        if info and state.get("info") != info:
            changed = sorted(k for k in set(info) | set(state.get("info", {})) if info.get(k) != state["info"].get(k))
            raise DataError(
                f"{self.progress_path}: this slice was started with other settings ({', '.join(changed)} differ); "
                "use a new output directory or the same settings"
            )
        return {**fresh, **state}

    def _remove_orphans(self) -> None:
        listed = set(self.state["chunks"])
        for f in self.out_dir.iterdir():
            m = CHUNK_RE.match(f.name)
            if m and int(m.group(1)) == self.slice_index and f.name not in listed:
                f.unlink()  # renamed into place but never recorded: its groups will be redone
        for f in self.out_dir.glob(f".part-{self.slice_index:05d}-*.tmp"):
            f.unlink()  # a temp file a killed process left behind

    def _save_progress(self) -> None:
        atomic_write_text(self.progress_path, json.dumps(self.state, indent=1) + "\n")

    @property
    def completed(self) -> set[str]:
        """Groups already written (or skipped as failed) by this or an earlier run."""
        return set(self.state["done"]) | set(self.state["failed"])

    # --- writing -------------------------------------------------------------------------------
    def add(self, records: Sequence[dict], group: str) -> None:
        """Buffer all records of one group; write a chunk when the buffer is full."""
        if group in self._known:
            raise DataError(f"{group}: already written to {self.out_dir} (slice {self.slice_index})")
        self._known.add(group)
        self._buffer.extend(records)
        self._buffer_groups.append(group)
        if len(self._buffer) >= self.records_per_chunk:
            self.flush()

    def skip(self, group: str, reason: str) -> None:
        """Record a group that produced no records (an unreadable file) with the reason."""
        self._known.add(group)
        self._pending_skips[group] = reason

    def flush(self) -> Path | None:
        """Write the buffer as one chunk (atomically), then update the progress file."""
        path = None
        if self._buffer:
            name = chunk_name(self.slice_index, self._next_chunk())
            path = self.out_dir / name
            table = _to_table(self._buffer)
            import pyarrow.parquet as pq

            with atomic_path(path) as tmp:
                pq.write_table(table, tmp)
            self.state["chunks"].append(name)
            self.state["records"] += len(self._buffer)
            for r in self._buffer:
                if "kind" in r:
                    _bump(self.state["by_kind"], str(r["kind"]))
                if "shape" in r:
                    _bump(self.state["by_shape"], shape_key(r["shape"]))
            self.state["done"].extend(self._buffer_groups)
            self.chunks_written += 1
        if path is not None or self._pending_skips:
            self.state["failed"].update(self._pending_skips)
            self._save_progress()
        self._buffer, self._buffer_groups, self._pending_skips = [], [], {}
        if path is not None and self.on_chunk is not None:
            self.on_chunk(path)
        return path

    def _next_chunk(self) -> int:
        used = [int(CHUNK_RE.match(n).group(2)) for n in self.state["chunks"]]
        return max(used, default=-1) + 1

    def close(self) -> None:
        self.flush()
        if not self.progress_path.exists():
            self._save_progress()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        # on an error the buffer is dropped: those groups are not in `done`, so a rerun redoes them


def _bump(d: dict, key: str, n: int = 1) -> None:
    d[key] = d.get(key, 0) + n


def shape_key(shape) -> str:
    return "x".join(str(int(s)) for s in shape)


# --- reading ---------------------------------------------------------------------------------


def shard_files(dir_or_dirs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """All chunk files of one or more shard directories (sorted); DataError when there are none."""
    dirs = [dir_or_dirs] if isinstance(dir_or_dirs, (str, os.PathLike)) else list(dir_or_dirs)
    files: list[Path] = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise DataError(f"{d}: shard directory not found")
        found = sorted(f for f in d.iterdir() if CHUNK_RE.match(f.name))
        if not found:
            found = sorted(d.glob("*.parquet"))  # any folder of Parquet files works too
        if not found:
            raise DataError(f"{d}: no Parquet shards (part-*.parquet); make some with `vidgpt data ingest`")
        files.extend(found)
    return files


def load_shards(dir_or_dirs, streaming: bool = False, cache_dir: str | os.PathLike | None = None,
                rank: int = 0, world_size: int = 1):
    """One or more shard directories as a `datasets.Dataset` (or `IterableDataset` when streaming).

    Streaming with world_size > 1 gives process `rank` its own part (`datasets.distributed.split_dataset_by_node`:
    whole files when their number is a multiple of world_size, so a process opens only its own files; else every
    world_size-th record). The LM trainer reads shards itself, row group by row group (vidgpt.train.lm_data).
    """
    import datasets

    files = [str(f) for f in shard_files(dir_or_dirs)]
    kw = {} if cache_dir is None else {"cache_dir": str(cache_dir)}
    ds = datasets.load_dataset("parquet", data_files={"train": files}, split="train", streaming=streaming, **kw)
    if world_size > 1:
        if not streaming:
            return ds.shard(num_shards=world_size, index=rank, contiguous=True)
        from datasets.distributed import split_dataset_by_node

        ds = split_dataset_by_node(ds, rank=rank, world_size=world_size)
    return ds


def shard_stats(directory: str | os.PathLike) -> dict:
    """Counts of a shard directory: records, by kind, by shape, visual tokens, chunks, skipped files."""
    import pyarrow.parquet as pq

    files = shard_files(directory)
    by_kind: Counter = Counter()
    by_shape: Counter = Counter()
    tokens = blueprint_tokens = records = 0
    for f in files:
        names = pq.read_schema(f).names
        cols = [c for c in ("kind", "shape", "blueprint_shape") if c in names]
        table = pq.read_table(f, columns=cols)
        records += table.num_rows
        if not cols:
            by_kind["text/tokens"] += table.num_rows
            continue
        data = table.to_pydict()
        for i in range(table.num_rows):
            by_kind[data["kind"][i] if "kind" in data else "?"] += 1
            if "shape" in data and data["shape"][i]:
                t, h, w = data["shape"][i]
                by_shape[shape_key(data["shape"][i])] += 1
                tokens += t * h * w
            if "blueprint_shape" in data and data["blueprint_shape"][i]:
                t, h, w = data["blueprint_shape"][i]
                blueprint_tokens += t * h * w
    report = Path(directory) / "report.json"
    skipped = None
    if report.is_file():
        try:
            skipped = len(json.loads(report.read_text()).get("skipped", []))
        except (ValueError, OSError):
            skipped = None
    return {
        "records": records,
        "chunks": len(files),
        "by_kind": dict(sorted(by_kind.items())),
        "by_shape": dict(sorted(by_shape.items())),
        "visual_tokens": tokens,
        "blueprint_tokens": blueprint_tokens,
        "skipped_files": skipped,
    }


def format_stats(stats: dict) -> str:
    """Human-readable lines for `vidgpt data stats`."""
    lines = [f"{stats['records']} records in {stats['chunks']} chunk(s); "
             f"{stats['visual_tokens']} fine + {stats['blueprint_tokens']} blueprint visual tokens"]
    lines.append("by kind:  " + ", ".join(f"{k} {v}" for k, v in stats["by_kind"].items()))
    if stats["by_shape"]:
        lines.append("by shape: " + ", ".join(f"{k} {v}" for k, v in stats["by_shape"].items()))
    if stats["skipped_files"] is not None:
        lines.append(f"skipped files (report.json): {stats['skipped_files']}")
    return "\n".join(lines)


def read_progress(directory: str | os.PathLike) -> list[dict]:
    """The progress files of all slices in a shard directory."""
    out = []
    for f in sorted(Path(directory).glob("progress-*.json")):
        try:
            out.append(json.loads(f.read_text()))
        except (ValueError, OSError) as e:
            raise DataError(f"{f}: unreadable progress file ({e})") from None
    return out
