"""TokenizerConfig: the architecture of the video tokenizer and the weights of its LFQ losses."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from ..config import to_dict

# Fields that change what the codes mean (the rest only steer training).
ARCHITECTURE_FIELDS = (
    "codebook_bits",
    "channels",
    "channel_mults",
    "num_res_blocks",
    "norm_groups",
    "pad_mode",
    "adaptive_norm",
)


@dataclass
class TokenizerConfig:
    """MAGVIT-v2-style causal 3D CNN tokenizer with lookup-free quantization.

    Compression is fixed at 4x in time and 8x8 in space: [3, 1+4n, H, W] -> codes [1+n, H/8, W/8].
    `channel_mults` must have 4 entries (3 spatial downsamplings; the last two also halve time).
    """

    codebook_bits: int = 14  # K: bits per latent position; vocabulary 2**K
    channels: int = 32  # base width; stage i has channels * channel_mults[i]
    channel_mults: list[int] = field(default_factory=lambda: [1, 2, 2, 4])
    num_res_blocks: int = 1  # residual blocks per stage (and in the middle)
    norm_groups: int = 8  # GroupNorm groups (computed per frame, so the network stays causal)
    pad_mode: str = "replicate"  # causal front padding in time: "replicate" the first frame or "zeros"
    adaptive_norm: bool = True  # decoder GroupNorms conditioned on the quantized latent

    # LFQ losses (see lfq.py)
    commitment_weight: float = 0.25
    entropy_weight: float = 0.1
    entropy_boost: float = 1.0  # entropy weight multiplier at step 0 (e.g. 3.0) ...
    entropy_decay_steps: int = 0  # ... decayed linearly to 1.0 over this many steps
    inv_temperature: float = 1.0  # sharpness of the soft code assignment used by the entropy terms
    entropy_group_bits: int = 14  # entropy over sub-codebooks of at most this many bits (K=18 -> 2x9)
    entropy_max_positions: int = 4096  # random subset of positions for the entropy terms (memory)

    def __post_init__(self) -> None:
        if not 1 <= self.codebook_bits <= 30:
            raise ValueError(f"codebook_bits must be in 1..30, got {self.codebook_bits}")
        if len(self.channel_mults) != 4:
            raise ValueError(f"channel_mults needs 4 entries (8x spatial compression), got {self.channel_mults}")
        if self.pad_mode not in ("replicate", "zeros"):
            raise ValueError(f"pad_mode must be 'replicate' or 'zeros', got {self.pad_mode!r}")
        for m in self.channel_mults:
            if (self.channels * m) % self.norm_groups:
                raise ValueError(f"channels*{m} = {self.channels * m} is not divisible by norm_groups={self.norm_groups}")
        if self.entropy_group_bits < 1:
            raise ValueError("entropy_group_bits must be >= 1")

    def architecture_hash(self) -> str:
        """Short hash of the fields that fix the meaning of the codes."""
        arch = {k: to_dict(self)[k] for k in ARCHITECTURE_FIELDS}
        return hashlib.sha256(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:16]
