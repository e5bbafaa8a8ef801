"""Pick the fastest attention kernel present, and feed packed rows to it without cross-document attention.

Kernels, fastest first (H100 figures, fwd+bwd, head dim 64): FlashAttention-4 (`flash_attn.cute`,
Hopper/Blackwell; ~440-490 TFLOP/s) -> transformers "flash_attention_4"; FlashAttention-2 (`flash_attn`,
~240-280) -> "flash_attention_2"; otherwise "sdpa" (PyTorch picks cuDNN / its own flash kernel on CUDA,
~360-410 with cuDNN; the math kernel on CPU).

Packing. A packed row holds several documents; `position_ids` restart at 0 at each document start.
transformers (5.x) then does the rest for every kernel, provided no 2D attention mask and no KV cache
are passed (`use_cache=False`): flash kernels get `cu_seqlens` derived from the position ids (varlen),
sdpa/eager/flex get a block-diagonal causal mask (`masking_utils.find_packed_sequence_indices`). That is
verified by tests/test_attention.py (packed logits == per-document logits under sdpa and eager).
`block_causal_mask` builds the same mask explicitly, for models whose code does not do this.
"""

from __future__ import annotations

import importlib.util

import torch

KERNEL_ORDER = ("flash_attention_4", "flash_attention_2", "sdpa")


def _importable(module: str, name: str) -> bool:
    """`from module import name` works (without importing flash_attn at all when it is absent)."""
    if importlib.util.find_spec("flash_attn") is None:
        return False
    try:
        return hasattr(importlib.import_module(module), name)
    except Exception:
        return False


def flash_attn_4_available() -> bool:
    """`from flash_attn.cute import flash_attn_varlen_func` works (the FA4 CuTe kernels)."""
    return _importable("flash_attn.cute", "flash_attn_varlen_func")


def flash_attn_2_available() -> bool:
    """`from flash_attn import flash_attn_varlen_func` works (FlashAttention 2)."""
    return _importable("flash_attn", "flash_attn_varlen_func")


def pick_attention(device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> str:
    """The transformers attn_implementation to use on `device` with `dtype`.

    Flash kernels need CUDA and a half dtype (fp16/bf16; fp32 training under bf16 autocast counts as bf16:
    pass the autocast dtype). FA4 needs compute capability >= 9 (Hopper, Blackwell).
    """
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type != "cuda" or not torch.cuda.is_available():
        return "sdpa"
    if dtype is not None and dtype not in (torch.float16, torch.bfloat16):
        return "sdpa"
    major, _ = torch.cuda.get_device_capability(dev)
    if major >= 9 and flash_attn_4_available():
        return "flash_attention_4"
    if major >= 8 and flash_attn_2_available():
        return "flash_attention_2"
    return "sdpa"


def resolve_attention(name: str | None, device=None, dtype=None) -> str:
    """'auto' (or empty) -> pick_attention; a named kernel that is missing falls back to sdpa."""
    if not name or name == "auto":
        return pick_attention(device, dtype)
    if name == "flash_attention_4" and not flash_attn_4_available():
        return pick_attention(device, dtype)
    if name == "flash_attention_2" and not flash_attn_2_available():
        return pick_attention(device, dtype)
    return name


def position_ids_from_doc_lengths(lengths: list[int], total: int | None = None) -> torch.Tensor:
    """[L] position ids restarting at 0 for each document; a tail past sum(lengths) counts as one more document."""
    parts = [torch.arange(n) for n in lengths if n > 0]
    used = sum(lengths)
    if total is not None and total > used:
        parts.append(torch.arange(total - used))
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def doc_ids_from_position_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """[B, L] document index per token (a new document starts wherever the position id is 0 or jumps)."""
    pos = position_ids if position_ids.dim() == 2 else position_ids[None]
    start = torch.ones_like(pos, dtype=torch.bool)
    start[:, 1:] = pos[:, 1:] != pos[:, :-1] + 1
    return start.long().cumsum(-1) - 1


def block_causal_mask(position_ids: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[B, 1, L, L] additive mask: token i sees j iff j <= i and both are in the same document."""
    doc = doc_ids_from_position_ids(position_ids)
    L = doc.shape[-1]
    causal = torch.ones(L, L, dtype=torch.bool, device=doc.device).tril()
    allowed = causal[None] & (doc[:, :, None] == doc[:, None, :])
    mask = torch.zeros(allowed.shape, dtype=dtype, device=doc.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def cu_seqlens_from_position_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """int32 cumulative document lengths over the flattened batch (the varlen kernels' cu_seqlens)."""
    flat = position_ids.reshape(-1)
    starts = (flat == 0).nonzero().flatten()
    if starts.numel() == 0 or int(starts[0]) != 0:
        starts = torch.cat([torch.zeros(1, dtype=starts.dtype, device=flat.device), starts])
    return torch.cat([starts, torch.tensor([flat.numel()], device=flat.device)]).to(torch.int32)
