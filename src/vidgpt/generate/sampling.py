"""Turning logits into tokens: classifier-free guidance, temperature, top-k, top-p, seeded draws.

Every function works on a batch of logits `[B, V]` (V may be a slice of the vocabulary: the
constrained decoder samples among the rows of one visual group only and adds the slice's offset).

The decode loop draws with `PositionalNoise`: the token at step i inverts the CDF of p at a
uniform u_i that depends only on the seed and i (an exact draw from p, one random number per row
and position). So a token is a deterministic function of its logits and its position, which is
what lets speculative (Jacobi) decoding give exactly the tokens the one-token-a-step loop gives for
the same seed (jacobi.py).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from ..errors import GenerationError


@dataclass
class SamplingConfig:
    """How to draw each token. temperature 0 means greedy (argmax)."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    cfg: float = 1.0  # guidance scale; 1.0 = no guidance (no unconditional rows are run)
    # guidance scale from the blueprint's second latent frame on (where a sample commits to its motion), None = cfg
    late_cfg: float | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise GenerationError(f"temperature={self.temperature}: must be >= 0 (0 = greedy)")
        if self.top_k is not None and self.top_k < 1:
            raise GenerationError(f"top_k={self.top_k}: must be >= 1")
        if self.top_p is not None and not (0 < self.top_p <= 1):
            raise GenerationError(f"top_p={self.top_p}: must be in (0, 1]")
        if self.cfg < 0:
            raise GenerationError(f"cfg={self.cfg}: guidance scale must be >= 0")
        if self.late_cfg is not None and self.late_cfg < 0:
            raise GenerationError(f"late_cfg={self.late_cfg}: guidance scale must be >= 0")

    @property
    def use_cfg(self) -> bool:
        return self.cfg != 1.0 or (self.late_cfg is not None and self.late_cfg != 1.0)


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator on `device`, seeded with `seed` (a random seed when None)."""
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


def apply_cfg(logits: torch.Tensor, scale: float, n_cond: int) -> torch.Tensor:
    """Rows [0, n_cond) are conditional, then G >= 1 groups of n_cond negative rows: u + s * (c - u), where u is the
    mean of sample i's G negative rows (G = 1: the plain unconditional or negative-prompt guidance; G > 1: several
    negative prompts at once, e.g. every other direction of a motion, `evaluate.other_motion_prompts`).

    logits: [(1 + G) * n_cond, ...] -> [n_cond, ...] (float32).
    """
    groups = logits.shape[0] // n_cond - 1
    if groups < 1 or logits.shape[0] != (groups + 1) * n_cond:
        raise GenerationError(f"guidance: {logits.shape[0]} rows is not {n_cond} conditional rows and whole groups "
                              "of negative rows")
    c = logits[:n_cond].float()
    u = logits[n_cond:].float()
    u = u.view(groups, n_cond, *u.shape[1:]).mean(0) if groups > 1 else u
    return u + scale * (c - u)


def negative_groups(negatives) -> list[list[str]]:
    """One negative prompt or a list of them per sample -> G groups of one prompt per sample (group-major, what
    decoding.constrained_decode's uncond_prompts take flattened). A sample with fewer than G prompts has its list
    repeated, and G is the least common multiple of the lists' lengths, so every sample's negatives weigh equally
    in apply_cfg's mean."""
    lists = [[n] if isinstance(n, str) else list(n) for n in negatives]
    if any(not lst for lst in lists):
        raise GenerationError("guidance: a sample has an empty list of negative prompts")
    G = math.lcm(*(len(lst) for lst in lists)) if lists else 1
    return [[lst[g % len(lst)] for lst in lists] for g in range(G)]


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set logits outside the top-k / nucleus top-p to -inf. logits: [B, V] float (already tempered)."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass of the tokens ranked above it already reaches top_p
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample(logits: torch.Tensor, config: SamplingConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one index per row of `logits` [B, V] -> LongTensor [B] (greedy when temperature == 0)."""
    logits = logits.float()
    if config.temperature == 0:
        return logits.argmax(-1)
    logits = filter_logits(logits / config.temperature, config.top_k, config.top_p)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class PositionalNoise:
    """Uniform draws keyed by (seed, position): `noise(i, n)` is the same n numbers whenever asked for position i.

    `shifted(k)` reads the same numbers k positions on: a decode that starts k tokens into a turn (the second pass
    of `follow_blueprint`) draws with the numbers a one-pass decode of the whole turn would have used there."""

    def __init__(self, generator: torch.Generator | None, device: torch.device | str = "cpu"):
        g = generator if generator is not None else make_generator(None)
        self.base = int(torch.randint(0, 2**62, (1,), generator=g, device=g.device).item())
        self.device = torch.device(device)
        self.shift = 0
        self._gen = torch.Generator(device="cpu")

    def __call__(self, index: int, n: int) -> torch.Tensor:
        self._gen.manual_seed((self.base + 0x9E3779B97F4A7C15 * (int(index) + self.shift + 1)) % (2**63 - 1))
        return torch.rand(int(n), generator=self._gen, dtype=torch.float64).to(self.device)

    def shifted(self, k: int) -> "PositionalNoise":
        out = copy.copy(self)
        out.shift = self.shift + int(k)
        out._gen = torch.Generator(device="cpu")
        return out

    @property
    def stream_seed(self) -> int:
        """A seed for draws that are not keyed by position (the SJD path's stream), distinct for each shift."""
        return (self.base ^ 0x5D3A_1F0B_77C2_9E41 ^ (0x9E3779B97F4A7C15 * self.shift)) % (2**63 - 1)


def sample_with_noise(logits: torch.Tensor, config: SamplingConfig, uniform: torch.Tensor | None) -> torch.Tensor:
    """Draw one index per row of `logits` [B, V] by inverting the CDF at `uniform` [B] (greedy when temperature == 0).

    One uniform per row and position makes the draw a deterministic function of the logits and the
    position (an exact draw from softmax(logits / T) after top-k / top-p), which is what lets
    speculative decoding reproduce the one-token loop's tokens.
    """
    logits = logits.float()
    if config.temperature == 0 or uniform is None:
        return logits.argmax(-1)
    logits = filter_logits(logits / config.temperature, config.top_k, config.top_p)
    cdf = logits.softmax(-1).double().cumsum(-1)
    x = (uniform.to(cdf.dtype).view(-1, 1) * cdf[:, -1:]).contiguous()
    return torch.searchsorted(cdf, x, right=True).view(-1).clamp_(max=logits.shape[-1] - 1)
