"""Causal 3D building blocks. Tensors are [B, C, T, H, W]; nothing ever looks at a later frame.

- CausalConv3d pads k_t-1 frames in front only (replicating the first frame, or zeros), so output
  frame j depends on input frames <= j (<= stride*j when strided in time).
- Norms are GroupNorm computed per frame, so statistics never mix frames.
- Upsample is depth-to-space; in time the first frame expands to 1 frame and later ones to 2.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalConv3d(nn.Module):
    """Conv3d with front-only temporal padding and 'same' spatial padding (kernel k x k x k, or
    time_kernel x k x k when time_kernel is given; stride s)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int = 3,
        stride: tuple[int, int, int] = (1, 1, 1),
        pad_mode: str = "replicate",
        time_kernel: int | None = None,
    ):
        super().__init__()
        kt = kernel if time_kernel is None else time_kernel
        self.time_pad = kt - 1
        self.pad_mode = pad_mode
        self.conv = nn.Conv3d(cin, cout, (kt, kernel, kernel), stride=stride, padding=(0, kernel // 2, kernel // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_pad:
            if self.pad_mode == "replicate":
                front = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)
            else:
                front = x.new_zeros(x.shape[0], x.shape[1], self.time_pad, x.shape[3], x.shape[4])
            x = torch.cat([front, x], dim=2)
        return self.conv(x)


class FrameGroupNorm(nn.Module):
    """GroupNorm with statistics over (C/G, H, W) of each frame separately (causal); fp32 stats."""

    def __init__(self, channels: int, groups: int, affine: bool = True, eps: float = 1e-6):
        super().__init__()
        self.groups = groups
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        g = x.float().view(b, self.groups, c // self.groups, t, h, w)
        var, mean = torch.var_mean(g, dim=(2, 4, 5), keepdim=True, unbiased=False)
        y = ((g - mean) * torch.rsqrt(var + self.eps)).view(b, c, t, h, w).to(x.dtype)
        if self.weight is not None:
            y = y * self.weight.view(1, c, 1, 1, 1).to(y.dtype) + self.bias.view(1, c, 1, 1, 1).to(y.dtype)
        return y


def expand_latent(z: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of a latent [B, K, t, h, w] to (T, H, W), causal in time:
    latent frame 0 -> frame 0, latent frame j -> frames (j-1)*f+1 .. j*f with f = (T-1)/(t-1)."""
    t, (T, H, W) = z.shape[2], size
    if T != t:
        f = (T - 1) // (t - 1) if t > 1 else 0
        z = torch.cat([z[:, :, :1], z[:, :, 1:].repeat_interleave(f, dim=2)], dim=2)
    if (H, W) != tuple(z.shape[3:]):
        z = F.interpolate(z, size=(z.shape[2], H, W), mode="nearest")
    return z


class AdaptiveGroupNorm(nn.Module):
    """Per-frame GroupNorm whose scale and shift come from the quantized latent (decoder only)."""

    def __init__(self, channels: int, groups: int, latent_channels: int):
        super().__init__()
        self.norm = FrameGroupNorm(channels, groups, affine=False)
        self.to_scale_shift = nn.Conv3d(latent_channels, 2 * channels, 1)
        nn.init.zeros_(self.to_scale_shift.weight)
        nn.init.zeros_(self.to_scale_shift.bias)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        scale, shift = self.to_scale_shift(expand_latent(z, tuple(x.shape[2:])).to(x.dtype)).chunk(2, dim=1)
        return self.norm(x) * (1 + scale) + shift


class ResBlock(nn.Module):
    """norm-SiLU-conv x2 with a residual path; `latent_channels` makes the norms adaptive.
    `time_kernel` is the convs' kernel in time (3: full 3D; 1: frame by frame, the time mixing left
    to the resampling layers)."""

    def __init__(self, cin: int, cout: int, groups: int, pad_mode: str, latent_channels: int | None = None, time_kernel: int = 3):
        super().__init__()

        def norm(c: int) -> nn.Module:
            return AdaptiveGroupNorm(c, groups, latent_channels) if latent_channels else FrameGroupNorm(c, groups)

        self.norm1, self.conv1 = norm(cin), CausalConv3d(cin, cout, 3, pad_mode=pad_mode, time_kernel=time_kernel)
        self.norm2, self.conv2 = norm(cout), CausalConv3d(cout, cout, 3, pad_mode=pad_mode, time_kernel=time_kernel)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()
        self.adaptive = bool(latent_channels)

    def _norm(self, norm: nn.Module, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        return norm(x, z) if self.adaptive else norm(x)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self._norm(self.norm1, x, z)))
        h = self.conv2(F.silu(self._norm(self.norm2, h, z)))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Strided causal conv: with `space`, H and W halve; with `time`, T = 1+2m -> 1+m (frame 0 maps
    to frame 0 alone)."""

    def __init__(self, cin: int, cout: int, time: bool, pad_mode: str, space: bool = True):
        super().__init__()
        s = 2 if space else 1
        self.conv = CausalConv3d(cin, cout, 3, stride=(2 if time else 1, s, s), pad_mode=pad_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Causal conv to cout*r channels, then depth-to-space: with `space`, H and W double; with
    `time`, T -> 2T-1."""

    def __init__(self, cin: int, cout: int, time: bool, pad_mode: str, space: bool = True):
        super().__init__()
        self.ft = 2 if time else 1
        self.fs = 2 if space else 1
        self.cout = cout
        r = self.ft * self.fs * self.fs
        self.conv = CausalConv3d(cin, cout * r, 3, pad_mode=pad_mode)
        with torch.no_grad():  # ICNR init: all sub-positions start equal (no checkerboard)
            w = self.conv.conv.weight.view(cout, r, *self.conv.conv.weight.shape[1:])
            w.copy_(w[:, :1].expand_as(w))
            b = self.conv.conv.bias.view(cout, r)
            b.copy_(b[:, :1].expand_as(b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        ft, fs = self.ft, self.fs
        y = self.conv(x).view(b, self.cout, ft, fs, fs, t, h, w)
        y = y.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, self.cout, t * ft, fs * h, fs * w)
        return y[:, :, ft - 1 :]  # in time: drop the extra frame in front of frame 0


def space_to_depth(x: torch.Tensor, p: int) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, C*p*p, T, H/p, W/p], frame by frame (channel index c*p*p + dy*p + dx)."""
    if p == 1:
        return x
    b, c, t, h, w = x.shape
    y = x.view(b, c, t, h // p, p, w // p, p).permute(0, 1, 4, 6, 2, 3, 5)
    return y.reshape(b, c * p * p, t, h // p, w // p)


def depth_to_space(x: torch.Tensor, p: int) -> torch.Tensor:
    """Inverse of space_to_depth: [B, C*p*p, T, h, w] -> [B, C, T, h*p, w*p]."""
    if p == 1:
        return x
    b, cpp, t, h, w = x.shape
    c = cpp // (p * p)
    y = x.view(b, c, p, p, t, h, w).permute(0, 1, 4, 5, 2, 6, 3)
    return y.reshape(b, c, t, h * p, w * p)
