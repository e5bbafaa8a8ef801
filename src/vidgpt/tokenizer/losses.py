"""Training losses for the tokenizer: reconstruction, LFQ terms, hinge GAN with LeCam."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import TokenizerConfig
from .model import TokenizerOutput


def entropy_weight_at(cfg: TokenizerConfig, step: int) -> float:
    """entropy_weight * boost at step 0, decaying linearly to entropy_weight over entropy_decay_steps."""
    if cfg.entropy_decay_steps <= 0 or step >= cfg.entropy_decay_steps:
        return cfg.entropy_weight
    frac = step / cfg.entropy_decay_steps
    return cfg.entropy_weight * (cfg.entropy_boost + (1.0 - cfg.entropy_boost) * frac)


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Finite differences along W and H of [B, C, T, H, W] (or any [..., H, W])."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


BACKGROUND_RADIUS = 45.0 / 127.5  # the judge's (vidgpt.data.judge): this close to the border median is background


def foreground_mask(target: torch.Tensor, radius: float = BACKGROUND_RADIUS) -> torch.Tensor:
    """float [B, 1, T, H, W]: 1 where a pixel of [B, 3, T, H, W] (in [-1, 1]) is farther than `radius`
    from its frame's background colour, the median of the two-pixel border (the judge's own rule)."""
    x = target.float()
    border = torch.cat([x[..., :2, :].flatten(-2), x[..., -2:, :].flatten(-2), x[..., :, :2].flatten(-2), x[..., :, -2:].flatten(-2)], -1)
    bg = border.median(-1).values[..., None, None]  # [B, 3, T, 1, 1]
    return ((x - bg).pow(2).sum(1, keepdim=True) > radius**2).float()


def reconstruction_loss(
    recon: torch.Tensor, target: torch.Tensor, l1_weight: float, l2_weight: float, grad_weight: float = 0.0,
    object_weight: float = 0.0,
) -> torch.Tensor:
    """l1_weight * |x - y| + l2_weight * (x - y)^2 + grad_weight * |grad x - grad y|, means over all
    elements (fp32). The gradient term is a sharpness loss: it weighs edges, which a plain pixel
    loss averages away next to large flat areas. object_weight > 0 weighs the pixels that stand out
    from their frame's background (`foreground_mask`: objects, and textures) 1 + object_weight times
    as much (a weighted mean, so the loss keeps its scale): small objects are a few percent of a frame."""
    diff = recon.float() - target.float()
    loss = diff.new_zeros(())
    if object_weight:
        w = 1.0 + object_weight * foreground_mask(target)

        def mean(v: torch.Tensor, wv: torch.Tensor) -> torch.Tensor:
            return (v * wv).mean() / wv.mean()
    else:
        w = None

        def mean(v: torch.Tensor, wv) -> torch.Tensor:
            return v.mean()
    if l1_weight:
        loss = loss + l1_weight * mean(diff.abs(), w)
    if l2_weight:
        loss = loss + l2_weight * mean(diff.pow(2), w)
    if grad_weight:
        gx, gy = image_gradients(diff)
        wx = wy = None
        if w is not None:  # a difference counts as foreground where either of its two pixels is
            wx, wy = torch.maximum(w[..., :, 1:], w[..., :, :-1]), torch.maximum(w[..., 1:, :], w[..., :-1, :])
        loss = loss + grad_weight * 0.5 * (mean(gx.abs(), wx) + mean(gy.abs(), wy))
    return loss


def tokenizer_loss(
    out: TokenizerOutput,
    target: torch.Tensor,
    cfg: TokenizerConfig,
    step: int,
    l1_weight: float = 1.0,
    l2_weight: float = 0.0,
    grad_weight: float = 0.0,
    object_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Reconstruction + commitment + (scheduled) entropy. Returns (loss, logs)."""
    rec = reconstruction_loss(out.recon, target, l1_weight, l2_weight, grad_weight, object_weight)
    ew = entropy_weight_at(cfg, step)
    loss = rec + cfg.commitment_weight * out.lfq.commitment_loss + ew * out.lfq.entropy_loss
    logs = {
        "rec": rec.item(),
        "commit": out.lfq.commitment_loss.item(),
        "entropy": out.lfq.entropy_loss.item(),
        "sample_entropy": out.lfq.per_sample_entropy.item(),
        "batch_entropy": out.lfq.batch_entropy.item(),
        "entropy_weight": ew,
    }
    return loss, logs


def cell_means(x: torch.Tensor, space_factor: int) -> torch.Tensor:
    """Each latent cell's mean colour: video [B, 3, 1+4n, H, W] -> [B, 3, 1+n, H/f, W/f] (frame 0 alone, then groups of
    4 frames, as the causal encoder folds time)."""
    first = x[:, :, :1]
    if x.shape[2] > 1:
        b, c, t, h, w = x.shape
        rest = x[:, :, 1:].reshape(b, c, (t - 1) // 4, 4, h, w).mean(3)
        first = torch.cat([first, rest], 2)
    return F.avg_pool3d(first, (1, space_factor, space_factor))


def cell_colour_loss(head: nn.Module, quantized: torch.Tensor, x: torch.Tensor, space_factor: int) -> torch.Tensor:
    """MSE between a linear read-out of the quantized bits (`head`: a 1x1x1 conv K -> 3) and each cell's mean colour:
    an auxiliary that asks the codes to say the cell's colour plainly, so a colour survives the sign quantizer."""
    return F.mse_loss(head(quantized.float()), cell_means(x.float(), space_factor))


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real_logits.float()).mean() + F.relu(1 + fake_logits.float()).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.float().mean()


class LeCam(nn.Module):
    """LeCam regularisation: keep D's outputs near EMAs of its past outputs on the other side."""

    def __init__(self, decay: float = 0.99):
        super().__init__()
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))

    def forward(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        r, f = real_logits.float().mean().detach(), fake_logits.float().mean().detach()
        self.ema_real.mul_(self.decay).add_((1 - self.decay) * r)
        self.ema_fake.mul_(self.decay).add_((1 - self.decay) * f)
        return F.relu(real_logits.float() - self.ema_fake).pow(2).mean() + F.relu(self.ema_real - fake_logits.float()).pow(2).mean()
