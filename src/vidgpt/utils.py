"""Small shared helpers: atomic writes, device choice, seeding."""

from __future__ import annotations

import os
import random
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike, *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it onto `path`.

    A crash leaves `path` as it was (the temp file is removed), so a checkpoint or shard
    is never half-written. Works for files; for directories use `atomic_dir`.
    The temp file is `.clip.mp4.XXXX.tmp`, or with `keep_suffix` `.clip.tmpXXXX.mp4` (for
    writers that pick the format from the extension).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if keep_suffix:
        prefix, suffix = f".{path.stem}.tmp", path.suffix
    else:
        prefix, suffix = f".{path.name}.", ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory next to `path`; on success it replaces `path` whole."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def pick_device(device: str | None = None):
    """'cuda' when present (or the device asked for), else 'cpu'."""
    import torch

    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def progress_wanted(enabled: bool = True) -> bool:
    """Whether to draw a progress bar: asked for and stderr is a terminal; VIDGPT_PROGRESS=1/0 forces it."""
    env = os.environ.get("VIDGPT_PROGRESS")
    if env is not None:
        return env.strip() not in ("", "0", "false", "no")
    if not enabled:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextmanager
def quiet_hub_progress() -> Iterator[None]:
    """Silence transformers' own progress bars ("Loading weights", "Writing model shards", GGUF de-quantising) while
    loading or saving a model: vidgpt shows its own, and a CLI error stays one line. The GGUF reader calls tqdm
    directly (not transformers' switchable one), so its module's tqdm is swapped for a disabled one meanwhile."""
    import functools

    from transformers.utils import logging as hf_logging

    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_mod
    except ImportError:  # transformers without GGUF support: nothing to quiet there
        gguf_mod = None
    gguf_tqdm = getattr(gguf_mod, "tqdm", None)
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    if gguf_tqdm is not None:
        gguf_mod.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        yield
    finally:
        if gguf_tqdm is not None:
            gguf_mod.tqdm = gguf_tqdm
        if was:
            hf_logging.enable_progress_bar()


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 matrix products natively (AVX512-BF16 or AMX-BF16).

    Without it (e.g. AVX2-only machines) bf16 is emulated and runs several times SLOWER than fp32, so the
    trainers' `cpu_bf16` settings fall back to fp32 there. VIDGPT_CPU_BF16=1 / 0 forces the answer.
    `cpuinfo`: the text of /proc/cpuinfo (read when None).
    """
    forced = os.environ.get("VIDGPT_CPU_BF16", "").strip().lower()
    if forced in ("1", "true", "yes"):
        return True
    if forced in ("0", "false", "no"):
        return False
    text = cpuinfo
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text()
        except OSError:
            text = ""
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    try:  # no /proc/cpuinfo (macOS, Windows): trust torch's capability probe
        import torch

        return "AVX512" in str(torch.backends.cpu.get_cpu_capability()).upper()
    except Exception:
        return False


def cpu_bf16_if_native(requested: bool, note) -> bool:
    """A trainer's `train.cpu_bf16` as it runs here: `requested` where the CPU has native bf16, else False
    with `note(message)` (emulated bf16 is several times slower than fp32)."""
    if requested and not cpu_has_native_bf16():
        note("train.cpu_bf16 ignored: this CPU has no native bf16 (AVX512-BF16/AMX), emulated bf16 is slower; fp32")
        return False
    return requested


def best_time(fn, reps: int = 3, clock=None) -> float:
    """Best time of `reps` calls of fn (seconds of `clock`, default time.perf_counter): on a machine other jobs
    share, the fastest run is the cleanest measurement. The benchmarks under tools/ time with it."""
    import time

    clock = clock or time.perf_counter
    best = float("inf")
    for _ in range(max(1, reps)):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best
