"""A locality term for the tokenizer's encoder (issue 9, for issue 11's LM): a cell's code should not change when only
pixels far from it change.

`tools/tokenizer_probes.py stability` found that with v2 a moving object changes the codes of a halo about four cells
wide around it (28% of the fine cells that never see the object change code between latent frames): the encoder's
receptive field lets far pixels move a cell's bits (holding the quantizer's per-frame normalisation fixed changes
almost nothing: tokenizer/README.md, "Local codes"). For the LM that means the motion
word has to decide dozens of mostly-background codes a frame. This term trains it away: each clip of a batch is
encoded twice, as it is and with one flat rectangle pasted into every frame (`paste_rectangles`), and the quantizer's
normalised inputs of the cells more than `radius` cells from the rectangle are asked to stay the same
(`locality_loss`: mean squared difference over those cells, both sides trained). The codes of a cell then depend
on the pixels near it, what the LM can learn to predict from the object's position.
"""

from __future__ import annotations

import torch


def paste_rectangles(x: torch.Tensor, space_factor: int, radius: int, generator: torch.Generator,
                     max_cells: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, 3, T, H, W] in [-1, 1] -> (x with one flat rectangle of a random colour pasted into every frame of each
    clip, far: bool [B, 1, 1, H/f, W/f], True for the cells whose Chebyshev distance in cells from the cells the
    rectangle touches is more than `radius`). Sizes 1/2 cell to `max_cells` cells a side, anywhere in the frame."""
    b, _, _, h, w = x.shape
    f = space_factor
    hc, wc = h // f, w // f
    out = x.clone()
    far = torch.ones(b, 1, 1, hc, wc, dtype=torch.bool)
    rows, cols = torch.arange(hc), torch.arange(wc)
    for i in range(b):
        rh, rw = (int(v) for v in torch.randint(f // 2, max_cells * f + 1, (2,), generator=generator))
        rh, rw = min(rh, h), min(rw, w)
        y0 = int(torch.randint(0, h - rh + 1, (1,), generator=generator))
        x0 = int(torch.randint(0, w - rw + 1, (1,), generator=generator))
        colour = torch.rand(3, generator=generator) * 2 - 1
        out[i, :, :, y0 : y0 + rh, x0 : x0 + rw] = colour.view(3, 1, 1, 1).to(x.device, x.dtype)
        r0, r1 = y0 // f - radius, (y0 + rh - 1) // f + radius
        c0, c1 = x0 // f - radius, (x0 + rw - 1) // f + radius
        near = ((rows >= r0) & (rows <= r1))[:, None] & ((cols >= c0) & (cols <= c1))[None, :]
        far[i, 0, 0] = ~near
    return out, far.to(x.device)


def locality_loss(z: torch.Tensor, z_pasted: torch.Tensor, far: torch.Tensor) -> torch.Tensor:
    """Mean over the far cells (bool [B, 1, 1|t, h, w]) of the mean squared difference over K of two normalised
    latents [B, K, t, h, w]; 0 when no cell is far."""
    diff = (z.float() - z_pasted.float()).pow(2).mean(1, keepdim=True)  # [B, 1, t, h, w]
    weight = far.expand_as(diff).float()
    return (diff * weight).sum() / weight.sum().clamp_min(1.0)
