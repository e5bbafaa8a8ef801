"""A ready-to-load copy of a delta-form model, so `vidgpt generate` does not rebuild it every call.

A delta-form vidgpt LM (vidgpt.json with `base`, new_rows.safetensors, maybe a LoRA adapter) is
rebuilt at every load: the base is loaded (the embedded SmolLM2 is a Q4_1 GGUF, dequantised tensor
by tensor), resized, the new rows written in, the adapter merged. The first load writes the result
as a plain safetensors directory under the cache; later loads read that directly (an mmap of fp32
weights). The key hashes vidgpt.json and the size and mtime of every file of the directory, so a
retrained or edited model gets a new entry. Full-form directories are already ready and are loaded
as they are.

    VIDGPT_READY_CACHE=DIR   where the copies live (default ~/.cache/vidgpt/ready)
    VIDGPT_READY_CACHE=0     no cache: always rebuild
    VIDGPT_READY_KEEP=N      copies kept (default 3, the most recently used; each is ~0.3 GB for SmolLM2-135M)

`load_light` reads the same copy (or a full-form directory) without transformers' model classes, for the fast
decoder on the CPU (light_model.py); it returns None where it cannot, and the caller loads through `load_ready`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..backbone import (META_NAME, NEW_ROWS_NAME, VIDEO_TOKENIZER_DIR, VidgptLM, attach_directory_hint, load_vidgpt_lm,
                        parent_hint_detached, read_meta)
from ..vocab import UnifiedVocab


def cache_root() -> Path | None:
    env = os.environ.get("VIDGPT_READY_CACHE")
    if env is not None and env.strip() in ("0", "", "off", "no"):
        return None
    return Path(env) if env else Path.home() / ".cache" / "vidgpt" / "ready"


def cache_key(directory: Path) -> str:
    """Hash of vidgpt.json and of (path, size, mtime) of every other file in the model directory."""
    h = hashlib.sha256((directory / META_NAME).read_bytes())
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p.name != META_NAME:
            st = p.stat()
            h.update(f"{p.relative_to(directory)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


KEEP_DEFAULT = 3


def _entries(root: Path) -> list[Path]:
    """The cache's copies (directories named by a key, with the source.json this module writes)."""
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if p.is_dir() and len(p.name) == 24 and (p / "source.json").is_file()]


def mark_used(entry: Path) -> None:
    try:
        os.utime(entry)
    except OSError:
        pass


def evict(root: Path, keep: int | None = None, spare: Path | None = None) -> list[Path]:
    """Remove all but the `keep` most recently used copies (never `spare`); returns what was removed. Without
    this the cache grows by a copy for every retrained or edited model (and every test run's tiny models)."""
    import shutil

    if keep is None:
        try:
            keep = int(os.environ.get("VIDGPT_READY_KEEP", KEEP_DEFAULT))
        except ValueError:
            keep = KEEP_DEFAULT
    entries = sorted(_entries(root), key=lambda p: p.stat().st_mtime, reverse=True)
    removed = []
    for p in entries[max(keep, 1):]:
        if spare is not None and p.resolve() == spare.resolve():
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def is_delta(directory: Path) -> bool:
    meta = read_meta(directory)
    return "base" in meta and (directory / NEW_ROWS_NAME).is_file()


def load_light(directory, dtype=None) -> tuple[VidgptLM, str] | None:
    """(lm, how) with lm.model a light_model.LightLlama (fast decoder only, CPU), or None where this model cannot
    be loaded so: another family, sharded weights, a delta form not yet in the ready cache (load_ready builds it)."""
    from .light_model import LightLlama
    from .light_tokenizer import load_light_tokenizer

    d = Path(directory)
    meta = read_meta(d)
    if is_delta(d):
        root = cache_root()
        src = None if root is None else root / cache_key(d)
        if src is None or not (src / "config.json").is_file():
            return None
        mark_used(src)
        how = "cached+light"
    else:
        src, how = d, "full+light"
    if LightLlama.can_load(src) is not None:
        return None
    tok = load_light_tokenizer(d)
    if tok is None:
        return None
    model = LightLlama.from_dir(src, dtype=dtype)
    vt = d / meta.get("video_tokenizer", VIDEO_TOKENIZER_DIR)
    return VidgptLM(model, tok, UnifiedVocab.from_dict(meta["vocab"]), meta, vt if vt.is_dir() else None), how


def load_ready(directory, dtype=None, device=None) -> tuple[VidgptLM, str]:
    """Load a vidgpt LM directory, through the ready cache for the delta form. Returns (lm, how) with
    how in {"full", "cached", "built+cached", "built"} (what happened, for logs and tests)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..utils import atomic_dir, quiet_hub_progress

    d = Path(directory)
    root = cache_root()
    if not is_delta(d):
        return load_vidgpt_lm(d, dtype=dtype, device=device), "full"
    if root is None:
        return load_vidgpt_lm(d, dtype=dtype, device=device), "built"
    ready = root / cache_key(d)
    if (ready / "config.json").is_file():
        mark_used(ready)
        meta = read_meta(d)
        kwargs = {"dtype": dtype} if dtype is not None else {}
        with quiet_hub_progress():
            model = AutoModelForCausalLM.from_pretrained(str(ready), **kwargs)
        if device is not None:
            model = model.to(device)
        model.eval()
        attach_directory_hint(model, d)  # as load_vidgpt_lm leaves it
        vt = d / meta.get("video_tokenizer", VIDEO_TOKENIZER_DIR)
        lm = VidgptLM(model, AutoTokenizer.from_pretrained(str(d)), UnifiedVocab.from_dict(meta["vocab"]), meta,
                      vt if vt.is_dir() else None)
        return lm, "cached"
    lm = load_vidgpt_lm(d)  # fp32 on the CPU, adapter merged: what the cache holds
    try:
        root.mkdir(parents=True, exist_ok=True)
        with atomic_dir(ready) as tmp, parent_hint_detached(lm):  # no hint keys in the copy ("unexpected" later)
            with quiet_hub_progress():
                lm.model.save_pretrained(tmp)
            (tmp / "source.json").write_text(json.dumps({"model": str(d.resolve())}) + "\n")
        how = "built+cached"
        evict(root, spare=ready)
    except OSError:  # a read-only home or a full disk: the model still loads, uncached
        how = "built"
    if dtype is not None:
        lm.model = lm.model.to(dtype)
    if device is not None:
        lm.model = lm.model.to(device)
    return lm, how
