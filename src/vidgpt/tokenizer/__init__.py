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


def blueprint_input(x: torch.Tensor, space_factor: int = 8) -> torch.Tensor:
    """The clip a blueprint is made from: [B,3,T,H,W] (or [3,T,H,W]) at half size, frame by frame.

    H and W are multiples of f = space_factor (latent h = H/f); the blueprint latent is
    ceil(h/2) x ceil(w/2) (vidgpt.layout.blueprint_shape), so the half-size clip is
    f*ceil(h/2) x f*ceil(w/2): plain 2x2 averaging when h and w are even, an antialiased resize otherwise.
    """
    if x.dim() == 4:
        return blueprint_input(x.unsqueeze(0), space_factor)[0]
    b, c, t, h, w = x.shape
    f = space_factor
    th, tw = f * ((h // f + 1) // 2), f * ((w // f + 1) // 2)
    frames = x.transpose(1, 2).reshape(b * t, c, h, w)
    if (th, tw) == (h // 2, w // 2) and h % 2 == 0 and w % 2 == 0:
        small = F.avg_pool2d(frames, 2)
    else:
        small = F.interpolate(frames, size=(th, tw), mode="bilinear", antialias=True, align_corners=False)
    return small.reshape(b, t, c, th, tw).transpose(1, 2).contiguous()


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
