"""Reconstruction metrics on videos: PSNR and SSIM.

Inputs are either torch tensors [B,3,T,H,W] / [3,T,H,W] in [-1, 1] (data_range 2) or numpy uint8
arrays [T,H,W,3] / [H,W,3] (data_range 255). Batched tensors give the mean over the batch of the
per-clip value.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _as_video_batch(x) -> tuple[torch.Tensor, float]:
    """-> (float tensor [B,3,T,H,W], default data range)."""
    if isinstance(x, np.ndarray):
        rng = 255.0 if x.dtype == np.uint8 else 2.0
        t = torch.from_numpy(np.ascontiguousarray(x)).float()
        if t.dim() == 3:  # [H,W,3]
            t = t.unsqueeze(0)
        if t.dim() != 4 or t.shape[-1] != 3:
            raise ValueError(f"expected a [T,H,W,3] array, got shape {x.shape}")
        return t.permute(3, 0, 1, 2).unsqueeze(0), rng
    t = x.detach().float()
    if t.dim() == 4:
        t = t.unsqueeze(0)
    if t.dim() != 5:
        raise ValueError(f"expected a [B,3,T,H,W] or [3,T,H,W] tensor, got shape {tuple(x.shape)}")
    return t.cpu(), 2.0


def _as_video_pair(x, y, data_range: float | None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """-> (a, b, data range): both float [B,3,T,H,W] of one shape; the range is `data_range` or x's default."""
    a, rng = _as_video_batch(x)
    b, _ = _as_video_batch(y)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}")
    return a, b, data_range or rng


def psnr_per_clip(x, y, data_range: float | None = None) -> list[float]:
    """PSNR in dB of each clip (MSE over the whole clip); inf where identical."""
    a, b, rng = _as_video_pair(x, y, data_range)
    mse = (a - b).pow(2).flatten(1).mean(1)
    return [math.inf if m == 0 else 10 * math.log10(rng**2 / m) for m in mse.tolist()]


def psnr(x, y, data_range: float | None = None) -> float:
    """Mean over clips of the per-clip PSNR (dB)."""
    vals = psnr_per_clip(x, y, data_range)
    return float(sum(vals) / len(vals))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size) - size // 2) ** 2).float() / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def ssim_per_clip(x, y, data_range: float | None = None) -> list[float]:
    """SSIM (11x11 Gaussian window, sigma 1.5), per frame and channel, averaged per clip."""
    a, b, rng = _as_video_pair(x, y, data_range)
    B, C, T, H, W = a.shape
    win = _gaussian_window(min(11, H, W) | 1, 1.5)
    fa = a.permute(0, 2, 1, 3, 4).reshape(B * T * C, 1, H, W)
    fb = b.permute(0, 2, 1, 3, 4).reshape(B * T * C, 1, H, W)
    c1, c2 = (0.01 * rng) ** 2, (0.03 * rng) ** 2
    mu_a, mu_b = F.conv2d(fa, win), F.conv2d(fb, win)
    saa = F.conv2d(fa * fa, win) - mu_a**2
    sbb = F.conv2d(fb * fb, win) - mu_b**2
    sab = F.conv2d(fa * fb, win) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    return s.view(B, -1).mean(1).tolist()


def ssim(x, y, data_range: float | None = None) -> float:
    """Mean over clips of the per-clip SSIM (1 = identical)."""
    vals = ssim_per_clip(x, y, data_range)
    return float(sum(vals) / len(vals))
