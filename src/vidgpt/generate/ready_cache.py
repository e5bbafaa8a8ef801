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
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..backbone import META_NAME, NEW_ROWS_NAME, VIDEO_TOKENIZER_DIR, VidgptLM, load_vidgpt_lm, read_meta
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


def is_delta(directory: Path) -> bool:
    meta = read_meta(directory)
    return "base" in meta and (directory / NEW_ROWS_NAME).is_file()


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
        meta = read_meta(d)
        kwargs = {"dtype": dtype} if dtype is not None else {}
        with quiet_hub_progress():
            model = AutoModelForCausalLM.from_pretrained(str(ready), **kwargs)
        if device is not None:
            model = model.to(device)
        model.eval()
        vt = d / meta.get("video_tokenizer", VIDEO_TOKENIZER_DIR)
        lm = VidgptLM(model, AutoTokenizer.from_pretrained(str(d)), UnifiedVocab.from_dict(meta["vocab"]), meta,
                      vt if vt.is_dir() else None)
        return lm, "cached"
    lm = load_vidgpt_lm(d)  # fp32 on the CPU, adapter merged: what the cache holds
    try:
        root.mkdir(parents=True, exist_ok=True)
        with atomic_dir(ready) as tmp:
            with quiet_hub_progress():
                lm.model.save_pretrained(tmp)
            (tmp / "source.json").write_text(json.dumps({"model": str(d.resolve())}) + "\n")
        how = "built+cached"
    except OSError:  # a read-only home or a full disk: the model still loads, uncached
        how = "built"
    if dtype is not None:
        lm.model = lm.model.to(dtype)
    if device is not None:
        lm.model = lm.model.to(device)
    return lm, how
