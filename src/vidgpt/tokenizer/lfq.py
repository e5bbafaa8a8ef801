"""Lookup-free quantization (LFQ, MAGVIT-v2).

Each latent position holds K channels; each channel is quantized by its sign to +-1, and the
code is sum(bit_i * 2**i) with bit_i = 1 where channel i is positive. There is no codebook to
learn: the "codebook" is the 2**K corners of the hypercube. Training adds
  - a commitment loss pulling the latent onto the corners, and
  - an entropy penalty: mean per-position entropy of a soft code assignment (make each position
    confident) minus the entropy of the batch-mean assignment (use all codes).
The soft assignment is softmax(-||z - c||^2 * inv_temperature) over the codebook; for large K the
codebook is split into sub-codebooks of at most `group_bits` bits whose entropies add up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


def codes_to_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """LongTensor [...] of codes in [0, 2**bits) -> float tensor [..., bits] of +-1 (bit i = channel i)."""
    shifts = torch.arange(bits, device=codes.device)
    b = (codes.long().unsqueeze(-1) >> shifts) & 1
    return b.float() * 2 - 1


def sticky_signs(z: torch.Tensor, margin: float) -> torch.Tensor:
    """Signs of a normalised latent z [B, K, t, h, w] with hysteresis in time: from latent frame 1 on, a bit whose
    value lies within `margin` of the sign flip keeps the previous latent frame's bit. Returns +-1 floats, same shape.

    A code changes whenever any one of its K bits flips; with it a cell keeps its code unless its latent clearly
    moved, and the decoder gets the same input wherever the bits were clear. Measured on v2 (tokenizer_probes.py
    stability): the cells that change near a moving object change by more than the margin, so it buys little."""
    bits = torch.where(z > 0, 1.0, -1.0)
    if margin <= 0 or z.shape[2] < 2:
        return bits
    unsure = z.abs() < margin
    out = [bits[:, :, 0]]
    for t in range(1, z.shape[2]):
        out.append(torch.where(unsure[:, :, t], out[-1], bits[:, :, t]))
    return torch.stack(out, dim=2)


def bits_to_codes(bits: torch.Tensor) -> torch.Tensor:
    """Tensor [..., K] (any sign-valued tensor; > 0 means bit 1) -> LongTensor [...] of codes."""
    k = bits.shape[-1]
    weights = 2 ** torch.arange(k, device=bits.device, dtype=torch.long)
    return ((bits > 0).long() * weights).sum(-1)


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy in nats along the last dim."""
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1)


def entropy_terms(z: torch.Tensor, inv_temperature: float, group_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean per-sample entropy, entropy of the batch-mean distribution), summed over sub-codebooks.

    z: float [N, K] latents (computed in fp32). The K channels are split into ceil(K/group_bits)
    near-equal groups; each group g of b bits has its own 2**b-entry codebook.
    """
    z = z.float()
    k = z.shape[-1]
    groups = math.ceil(k / group_bits)
    per_sample = z.new_zeros(())
    batch = z.new_zeros(())
    for chunk in torch.tensor_split(z, groups, dim=-1):
        b = chunk.shape[-1]
        codebook = codes_to_bits(torch.arange(2**b, device=z.device), b)  # [2**b, b]
        # -||z-c||^2 = 2 z.c - ||z||^2 - b; the last two are constant over c and drop out of the softmax
        logits = 2 * inv_temperature * chunk @ codebook.t()
        probs = logits.softmax(-1)
        per_sample = per_sample + _entropy(probs).mean()
        batch = batch + _entropy(probs.mean(0))
    return per_sample, batch


@dataclass
class LFQOutput:
    quantized: torch.Tensor  # [B, K, t, h, w] +-1 with straight-through gradients to the latent
    codes: torch.Tensor  # LongTensor [B, t, h, w]
    commitment_loss: torch.Tensor  # scalar
    entropy_loss: torch.Tensor  # scalar: per_sample_entropy - batch_entropy (lower is better)
    per_sample_entropy: torch.Tensor
    batch_entropy: torch.Tensor


def codebook_usage(codes: torch.Tensor, bits: int) -> float:
    """Share of the 2**bits codes that appear in `codes`."""
    return torch.unique(codes).numel() / float(2**bits)


class LFQ(nn.Module):
    """Sign quantizer over K channels with a normalisation in front: per frame (GroupNorm(1, affine=False) over K, h,
    w; norm="frame") or per cell (divided by its RMS over the K channels, so the signs are the latent's own; "rms")."""

    def __init__(self, bits: int, inv_temperature: float = 1.0, group_bits: int = 14, max_positions: int = 4096,
                 norm: str = "frame"):
        super().__init__()
        self.norm = norm
        self.bits = bits
        self.inv_temperature = inv_temperature
        self.group_bits = group_bits
        self.max_positions = max_positions

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """Zero mean / unit variance over (K, h, w) of each frame, or unit RMS over K per cell: [B, K, t, h, w], fp32."""
        z = z.float()
        if self.norm == "rms":
            return z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-5)
        var, mean = torch.var_mean(z, dim=(1, 3, 4), keepdim=True, unbiased=False)
        return (z - mean) * torch.rsqrt(var + 1e-5)

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """Codes only (no losses): [B, K, t, h, w] latent -> LongTensor [B, t, h, w]."""
        return bits_to_codes(z.movedim(1, -1))

    def forward(self, z: torch.Tensor, with_losses: bool = True) -> LFQOutput:
        """z: [B, K, t, h, w] encoder output (before normalisation)."""
        z = self.normalize(z)
        hard = torch.where(z > 0, 1.0, -1.0).to(z.dtype)
        quantized = z + (hard - z).detach()  # straight-through
        codes = self.codes(z)
        zero = z.new_zeros(())
        if not with_losses:
            return LFQOutput(quantized, codes, zero, zero, zero, zero)
        commitment = F.mse_loss(z, hard)
        flat = z.movedim(1, -1).reshape(-1, self.bits)
        if flat.shape[0] > self.max_positions:
            idx = torch.randperm(flat.shape[0], device=flat.device)[: self.max_positions]
            flat = flat[idx]
        per_sample, batch = entropy_terms(flat, self.inv_temperature, self.group_bits)
        return LFQOutput(quantized, codes, commitment, per_sample - batch, per_sample, batch)
