"""Codes files: a codes tensor [t,h,w] (or [B,t,h,w]) plus the K and config hash of its tokenizer.

.safetensors keeps them as the tensor "codes" with string metadata; .npz as arrays "codes",
"codebook_bits", "config_hash", "weights_fingerprint", "encoder_fingerprint". Decoding with another
tokenizer fails clearly; one whose encoder differs warns. Codes stay valid across a decoder-only
fine-tune (same encoder fingerprint); files written before the encoder fingerprint existed are checked
by their weights fingerprint (`VideoTokenizer.accepts_codes_of`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import TokenizerError
from ..utils import atomic_path


def save_codes(path: str | Path, codes: torch.Tensor, tokenizer, source: str = "") -> Path:
    """Write `codes` made by `tokenizer` to .safetensors or .npz (atomically)."""
    p = Path(path)
    meta = {
        "codebook_bits": str(tokenizer.codebook_bits),
        "config_hash": tokenizer.config_hash(),
        "weights_fingerprint": tokenizer.weights_fingerprint(),
        "encoder_fingerprint": tokenizer.encoder_fingerprint(),
        "source": source,
    }
    codes = codes.detach().cpu().to(torch.int64).contiguous()
    suffix = p.suffix.lower()
    if suffix not in (".safetensors", ".npz"):
        raise TokenizerError(f"{p}: codes file must end in .safetensors or .npz")
    with atomic_path(p) as tmp:
        if suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({"codes": codes}, str(tmp), metadata=meta)
        else:
            with open(tmp, "wb") as f:
                np.savez(f, codes=codes.numpy(), **{k: np.array(v) for k, v in meta.items()})
    return p


def read_codes(path: str | Path) -> tuple[torch.Tensor, dict[str, str]]:
    """(codes LongTensor, metadata dict) from a codes file; TokenizerError naming the file if bad."""
    p = Path(path)
    if not p.is_file():
        raise TokenizerError(f"{p}: codes file not found")
    try:
        if p.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(p), framework="pt") as f:
                meta = dict(f.metadata() or {})
                codes = f.get_tensor("codes")
        elif p.suffix.lower() == ".npz":
            with np.load(p, allow_pickle=False) as z:
                codes = torch.from_numpy(z["codes"].astype(np.int64))
                meta = {k: str(z[k]) for k in z.files if k != "codes"}
        else:
            raise TokenizerError(f"{p}: codes file must end in .safetensors or .npz")
    except TokenizerError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
        raise TokenizerError(f"{p}: not a codes file ({' '.join(str(e).split())[:200]})") from e
    return codes.long(), meta


def load_codes(path: str | Path, tokenizer) -> torch.Tensor:
    """Codes from `path`, checked against `tokenizer` (same K and config hash)."""
    codes, meta = read_codes(path)
    if "codebook_bits" not in meta or "config_hash" not in meta:
        raise TokenizerError(f"{path}: codes file lacks codebook_bits/config_hash metadata")
    if int(meta["codebook_bits"]) != tokenizer.codebook_bits:
        raise TokenizerError(f"{path}: codes have K={meta['codebook_bits']} bits but the tokenizer has K={tokenizer.codebook_bits}")
    if meta["config_hash"] != tokenizer.config_hash():
        raise TokenizerError(f"{path}: codes come from a tokenizer with config hash {meta['config_hash']}, this one is {tokenizer.config_hash()}")
    enc, fp = meta.get("encoder_fingerprint"), meta.get("weights_fingerprint")
    if (enc or fp) and not tokenizer.accepts_codes_of(enc, fp):
        import sys

        made, now = (f"encoder {enc}", tokenizer.encoder_fingerprint()) if enc else (f"weights {fp}", tokenizer.weights_fingerprint())
        print(f"vidgpt: warning: {path}: codes were made by tokenizer {made}, decoding with {now}", file=sys.stderr)
    return codes
