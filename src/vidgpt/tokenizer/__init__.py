"""The LFQ video tokenizer: videos/images <-> discrete codes (MAGVIT-v2 line).

    tok = VideoTokenizer.from_pretrained(default_tokenizer_dir())
    codes = tok.encode(video)            # [B,3,17,128,128] in [-1,1] -> LongTensor [B,5,16,16]
    video = tok.decode(codes)            # -> [B,3,17,128,128] in [-1,1]
    blueprint = tok.encode(blueprint_input(video))   # [B,5,8,8]
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from .config import TokenizerConfig
from .lfq import LFQ, bits_to_codes, codebook_usage, codes_to_bits
from .model import VideoTokenizer


def default_tokenizer_dir() -> Path:
    """$VIDGPT_TOKENIZER if set, else the repository's shipped `tokenizer/` directory."""
    env = os.environ.get("VIDGPT_TOKENIZER")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "tokenizer"


def blueprint_input(x: torch.Tensor) -> torch.Tensor:
    """Halve H and W of a video [B,3,T,H,W] or [3,T,H,W] by 2x2 area averaging, frame by frame."""
    if x.dim() == 4:
        return blueprint_input(x.unsqueeze(0))[0]
    b, c, t, h, w = x.shape
    frames = x.transpose(1, 2).reshape(b * t, c, h, w)
    small = F.avg_pool2d(frames, 2)
    return small.reshape(b, t, c, h // 2, w // 2).transpose(1, 2).contiguous()


__all__ = [
    "LFQ",
    "TokenizerConfig",
    "VideoTokenizer",
    "bits_to_codes",
    "blueprint_input",
    "codebook_usage",
    "codes_to_bits",
    "default_tokenizer_dir",
]
