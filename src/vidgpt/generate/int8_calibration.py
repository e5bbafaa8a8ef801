"""The activation maxima that int8 decoding (`FastDecoder(dtype="int8")`) is smoothed with, kept beside a model.

`<model dir>/int8_maxima.safetensors` holds, for every decoder layer i and matrix m (qkv, o, gate_up, down),
the max |x| of each input channel of m over a few real clips (`{i}.{m}` -> float [in]), and the final norm's
output, the head's input (`-1.head`, for `int8_head`); `tools/calibrate_int8.py` writes it. Without the file the
decoder calibrates on the first prompt it is given (a rougher estimate: the default model's next-code KL against
fp32 is 2-3x larger, docs/DECODING.md).
"""

from __future__ import annotations

from pathlib import Path

import torch

FILE = "int8_maxima.safetensors"


def save_maxima(directory: str | Path, maxima: dict[int, dict[str, torch.Tensor]]) -> Path:
    from safetensors.torch import save_file

    path = Path(directory) / FILE
    flat = {f"{i}.{name}": t.detach().float().contiguous().cpu() for i, per in maxima.items() for name, t in per.items()}
    save_file(flat, str(path), metadata={"what": "per-input-channel max |x| of each decoder matrix, for int8 smoothing"})
    return path


def load_maxima(directory: str | Path) -> dict[int, dict[str, torch.Tensor]] | None:
    """The maxima stored beside a model, or None when it has none."""
    path = Path(directory) / FILE
    if not path.is_file():
        return None
    from safetensors.torch import load_file

    out: dict[int, dict[str, torch.Tensor]] = {}
    for key, t in load_file(str(path)).items():
        i, name = key.split(".", 1)
        out.setdefault(int(i), {})[name] = t
    return out


def merge_maxima(a: dict | None, b: dict) -> dict:
    """Channel-wise max of two maxima dicts (several calibration clips)."""
    if a is None:
        return b
    out = {i: dict(per) for i, per in a.items()}
    for i, per in b.items():
        for n, t in per.items():
            old = out.setdefault(i, {}).get(n)
            out[i][n] = t if old is None else torch.maximum(old, t)
    return out
