"""A small 3D patch discriminator: [B, 3, T, H, W] -> patch logits [B, 1, t', h', w']."""

from __future__ import annotations

import torch
import torch.nn as nn


class PatchDiscriminator3D(nn.Module):
    """Strided Conv3d stack (LeakyReLU, GroupNorm); each output logit judges one space-time patch.

    Images (T=1) work too: time kernels are 3 with padding 1 and time is strided only while T > 1.
    """

    def __init__(self, channels: int = 32, layers: int = 3, groups: int = 8):
        super().__init__()
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        cin = 3
        for i in range(layers):
            cout = channels * 2**i
            self.convs.append(nn.Conv3d(cin, cout, 4, stride=1, padding=0))
            self.norms.append(nn.GroupNorm(min(groups, cout), cout) if i > 0 else nn.Identity())
            cin = cout
        self.out = nn.Conv3d(cin, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for conv, norm in zip(self.convs, self.norms):
            st = 2 if h.shape[2] > 2 else 1
            # pad so that a 4-kernel with stride 2 halves H, W (and T when long enough)
            h = nn.functional.pad(h, (1, 2, 1, 2, 1, 2), mode="replicate")
            h = nn.functional.conv3d(h, conv.weight, conv.bias, stride=(st, 2, 2))
            h = nn.functional.leaky_relu(norm(h), 0.2)
        return self.out(h)
