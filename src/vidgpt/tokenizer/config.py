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
# Architecture fields added later: they enter the hash only when not at their default, so the
# codes of tokenizers trained before them keep their hash.
LATER_ARCHITECTURE_FIELDS = {"patch_size": 1, "space_factor": 8, "res_time_kernel": 3, "space_pad_mode": "zeros",
                             "lfq_norm": "frame"}
# Architecture fields that change what the codes mean but not the weights' shapes: a run may start from a
# tokenizer that differs from its config only in these (train.init_from, a warm start that re-learns the codes).
WEIGHT_COMPATIBLE_FIELDS = ("space_pad_mode", "lfq_norm")


@dataclass
class TokenizerConfig:
    """MAGVIT-v2-style causal 3D CNN tokenizer with lookup-free quantization.

    Compression is 4x in time and `space_factor` x `space_factor` in space (8 or 16):
    [3, 1+4n, H, W] -> codes [1+n, H/f, W/f]. The encoder first folds `patch_size` x `patch_size`
    pixel patches into channels (space-to-depth; the decoder ends with the inverse), so no
    convolution runs at full resolution when patch_size > 1: most of the compute sits where the
    resolution is low (what makes CPU training affordable). Between the stages of `channel_mults`
    sit len(channel_mults) - 1 downsamplings: the first log2(space_factor / patch_size) halve H and
    W, the last two halve time (a downsampling may do both). The seed's shape is patch_size 1 with
    4 stages (3 spatial downsamplings, the last two also in time).
    """

    codebook_bits: int = 14  # K: bits per latent position; vocabulary 2**K
    channels: int = 32  # base width; stage i has channels * channel_mults[i]
    channel_mults: list[int] = field(default_factory=lambda: [1, 2, 2, 4])
    num_res_blocks: int = 1  # residual blocks per stage (and in the middle)
    norm_groups: int = 8  # GroupNorm groups (computed per frame, so the network stays causal)
    pad_mode: str = "replicate"  # causal front padding in time: "replicate" the first frame or "zeros"
    adaptive_norm: bool = True  # decoder GroupNorms conditioned on the quantized latent
    patch_size: int = 1  # pixels folded into channels before the first conv (1, 2, 4 or 8)
    space_factor: int = 8  # spatial compression: 8 (17x128x128 -> 5x16x16) or 16 (-> 5x8x8)
    res_time_kernel: int = 3  # residual blocks' conv kernel in time: 3 (3D) or 1 (per frame; cheaper)
    # spatial padding of the 3x3 convs: "zeros" (v1) lets the frame's border reach every latent cell of a small
    # grid, so one flat colour codes to ~35 different codes over a 64 px image; "replicate" makes a flat region
    # code to one code wherever it is (a constant input stays constant through every layer)
    space_pad_mode: str = "zeros"
    # residual blocks per decoder stage when more than num_res_blocks: decoder capacity that does not change the
    # codes (not in the architecture hash; the encoder fingerprint stays). A warm start from a tokenizer with fewer
    # appends the extra blocks with their last conv at zero, so training starts from the source's exact output.
    decoder_res_blocks: int | None = None
    # what the sign quantizer normalises its input by: "frame" = mean and variance over (K, h, w) of each frame (a
    # cell's bits then depend on the rest of the frame: the threshold moves with the background), "rms" = each cell's
    # root mean square over its K channels (a cell's bits are the signs of its own latent; no weights change)
    lfq_norm: str = "frame"

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
        if self.space_factor not in (4, 8, 16, 32):
            raise ValueError(f"space_factor must be 4, 8, 16 or 32, got {self.space_factor}")
        if self.patch_size not in (1, 2, 4, 8, 16) or self.patch_size > self.space_factor:
            raise ValueError(f"patch_size must be a power of two <= space_factor={self.space_factor}, got {self.patch_size}")
        if self.res_time_kernel not in (1, 3):
            raise ValueError(f"res_time_kernel must be 1 or 3, got {self.res_time_kernel}")
        downs = len(self.channel_mults) - 1
        if downs < 2 or downs < self.spatial_downsamplings:
            raise ValueError(
                f"channel_mults has {len(self.channel_mults)} entries: needs at least "
                f"{max(2, self.spatial_downsamplings) + 1} (two time downsamplings and log2({self.space_factor}/{self.patch_size}) spatial ones)"
            )
        if self.pad_mode not in ("replicate", "zeros"):
            raise ValueError(f"pad_mode must be 'replicate' or 'zeros', got {self.pad_mode!r}")
        if self.space_pad_mode not in ("replicate", "zeros"):
            raise ValueError(f"space_pad_mode must be 'replicate' or 'zeros', got {self.space_pad_mode!r}")
        for m in self.channel_mults:
            if (self.channels * m) % self.norm_groups:
                raise ValueError(f"channels*{m} = {self.channels * m} is not divisible by norm_groups={self.norm_groups}")
        if self.decoder_res_blocks is not None and self.decoder_res_blocks < self.num_res_blocks:
            raise ValueError(f"decoder_res_blocks ({self.decoder_res_blocks}) must be >= num_res_blocks ({self.num_res_blocks})")
        if self.lfq_norm not in ("frame", "rms"):
            raise ValueError(f"lfq_norm must be 'frame' or 'rms', got {self.lfq_norm!r}")
        if self.entropy_group_bits < 1:
            raise ValueError("entropy_group_bits must be >= 1")

    @property
    def decoder_blocks(self) -> int:
        """Residual blocks in each decoder stage."""
        return self.decoder_res_blocks or self.num_res_blocks

    @property
    def spatial_downsamplings(self) -> int:
        """How many of the downsampling layers halve H and W (the patch folding does the rest)."""
        return (self.space_factor // self.patch_size).bit_length() - 1

    def downsample_strides(self) -> list[tuple[bool, bool]]:
        """(halves time, halves space) for each downsampling layer, encoder order."""
        n = len(self.channel_mults) - 1
        return [(i >= n - 2, i < self.spatial_downsamplings) for i in range(n)]

    def architecture_hash(self) -> str:
        """Short hash of the fields that fix the meaning of the codes."""
        d = to_dict(self)
        arch = {k: d[k] for k in ARCHITECTURE_FIELDS}
        arch.update({k: d[k] for k, default in LATER_ARCHITECTURE_FIELDS.items() if d[k] != default})
        return hashlib.sha256(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:16]
