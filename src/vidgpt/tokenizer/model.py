"""VideoTokenizer: causal 3D CNN encoder -> LFQ -> causal 3D CNN decoder.

Shapes: video [B, 3, 1+4n, H, W] in [-1, 1] (H, W multiples of f = config.space_factor, 8 or 16)
-> latent [B, K, 1+n, H/f, W/f] -> codes LongTensor [B, 1+n, H/f, W/f] in [0, 2**K). An image is a
1-frame video; because the network is causal, the first latent frame of any clip depends on its
first frame only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import from_dict, to_dict
from ..errors import ConfigError, TokenizerError
from .config import TokenizerConfig
from .layers import AdaptiveGroupNorm, CausalConv3d, Downsample, FrameGroupNorm, ResBlock, Upsample, depth_to_space, space_to_depth
from .lfq import LFQ, LFQOutput, bits_to_codes, codes_to_bits, sticky_signs

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TIME_FACTOR = 4
SPACE_FACTOR = 8  # the default; a tokenizer's own is `tok.space_factor` (config.space_factor)


class Encoder(nn.Module):
    """[B, 3, T, H, W] -> [B, K, t, H/f, W/f] (pre-quantization latent)."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        ch = [cfg.channels * m for m in cfg.channel_mults]
        pm, g = cfg.pad_mode, cfg.norm_groups
        self.patch = cfg.patch_size
        self.conv_in = CausalConv3d(3 * self.patch**2, ch[0], 3, pad_mode=pm)
        self.stages = nn.ModuleList()
        strides = cfg.downsample_strides()
        cin = ch[0]
        for i, c in enumerate(ch):
            blocks: list[nn.Module] = []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(cin, c, g, pm, time_kernel=cfg.res_time_kernel))
                cin = c
            if i < len(ch) - 1:
                blocks.append(Downsample(c, c, time=strides[i][0], pad_mode=pm, space=strides[i][1]))
            self.stages.append(nn.Sequential(*blocks))
        self.mid = nn.Sequential(*[ResBlock(cin, cin, g, pm, time_kernel=cfg.res_time_kernel) for _ in range(cfg.num_res_blocks)])
        self.norm_out = FrameGroupNorm(cin, g)
        self.conv_out = nn.Conv3d(cin, cfg.codebook_bits, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(space_to_depth(x, self.patch))
        for stage in self.stages:
            h = stage(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Quantized latent [B, K, t, h, w] -> video [B, 3, 1+4(t-1), f*h, f*w] (unclamped)."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        ch = [cfg.channels * m for m in cfg.channel_mults]
        pm, g, k = cfg.pad_mode, cfg.norm_groups, cfg.codebook_bits
        zc = k if cfg.adaptive_norm else None
        strides = cfg.downsample_strides()
        self.patch = cfg.patch_size
        self.conv_in = CausalConv3d(k, ch[-1], 3, pad_mode=pm)
        self.mid = nn.ModuleList([ResBlock(ch[-1], ch[-1], g, pm, zc, cfg.res_time_kernel) for _ in range(cfg.num_res_blocks)])
        self.stages = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        cin = ch[-1]
        for i in reversed(range(len(ch))):
            blocks = nn.ModuleList()
            for _ in range(cfg.decoder_blocks):
                blocks.append(ResBlock(cin, ch[i], g, pm, zc, cfg.res_time_kernel))
                cin = ch[i]
            self.stages.append(blocks)
            if i > 0:
                ft, fs = strides[i - 1]
                self.upsamples.append(Upsample(cin, ch[i - 1], time=ft, pad_mode=pm, space=fs))
                cin = ch[i - 1]
            else:
                self.upsamples.append(nn.Identity())
        self.norm_out = AdaptiveGroupNorm(cin, g, k) if zc else FrameGroupNorm(cin, g)
        self.conv_out = CausalConv3d(cin, 3 * self.patch**2, 3, pad_mode=pm)
        self.adaptive = bool(zc)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        z = q if self.adaptive else None
        h = self.conv_in(q)
        for block in self.mid:
            h = block(h, z)
        for blocks, up in zip(self.stages, self.upsamples):
            for block in blocks:
                h = block(h, z)
            h = up(h)
        h = self.norm_out(h, z) if self.adaptive else self.norm_out(h)
        return depth_to_space(self.conv_out(F.silu(h)), self.patch)


@dataclass
class TokenizerOutput:
    recon: torch.Tensor  # [B, 3, T, H, W] unclamped reconstruction
    lfq: LFQOutput


def set_space_padding(module: nn.Module, mode: str) -> int:
    """Pad every spatially padded conv of `module` with `mode` (replicate) instead of zeros; returns how many.

    The convs are built with zero padding (layers.CausalConv3d pads time itself, space through nn.Conv3d);
    nn.Conv3d applies another `padding_mode` with the same padding sizes, so the weights' shapes do not change.
    """
    n = 0
    for m in module.modules():
        if isinstance(m, nn.Conv3d) and any(p > 0 for p in m.padding[1:]):
            m.padding_mode = mode
            n += 1
    return n


class VideoTokenizer(nn.Module):
    """Encode videos/images to LFQ codes and decode them back. See the module docstring for shapes."""

    def __init__(self, config: TokenizerConfig | None = None):
        super().__init__()
        self.config = config or TokenizerConfig()
        c = self.config
        self.encoder = Encoder(c)
        self.quantizer = LFQ(c.codebook_bits, c.inv_temperature, c.entropy_group_bits, c.entropy_max_positions, c.lfq_norm)
        self.decoder = Decoder(c)
        if c.space_pad_mode != "zeros":
            set_space_padding(self, c.space_pad_mode)
        # weights fingerprints of earlier tokenizers with this one's encoder (it is their decoder-only
        # fine-tune): codes files and shards that name only those stay valid (accepts_codes_of)
        self.code_compatible: list[str] = []

    # --- shapes -------------------------------------------------------------------------------
    @property
    def codebook_bits(self) -> int:
        return self.config.codebook_bits

    @property
    def codebook_size(self) -> int:
        return 2**self.config.codebook_bits

    @property
    def space_factor(self) -> int:
        """Pixels per code along H and W (8: 17x128x128 -> 5x16x16; 16: -> 5x8x8)."""
        return self.config.space_factor

    @property
    def time_factor(self) -> int:
        """Frames per code after the first (the first frame has a code frame of its own)."""
        return TIME_FACTOR

    def latent_shape(self, T: int, H: int, W: int) -> tuple[int, int, int]:
        """Video (T, H, W) -> code grid (t, h, w)."""
        f = self.space_factor
        return 1 + (T - 1) // TIME_FACTOR, H // f, W // f

    def video_shape(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        """Code grid (t, h, w) -> video (T, H, W)."""
        f = self.space_factor
        return 1 + (t - 1) * TIME_FACTOR, h * f, w * f

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # --- training path -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, with_losses: bool = True) -> TokenizerOutput:
        """x: [B, 3, T, H, W] in [-1, 1] (not validated; use encode/decode for user input)."""
        out = self.quantizer(self.encoder(x), with_losses=with_losses)
        return TokenizerOutput(self.decoder(out.quantized.to(x.dtype)), out)

    # --- inference API -------------------------------------------------------------------------
    def check_video(self, x: torch.Tensor) -> None:
        """Raise TokenizerError unless x is a float [B,3,1+4n,H,W] or [3,1+4n,H,W] in about [-1, 1]."""
        if not isinstance(x, torch.Tensor):
            raise TokenizerError(f"video must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() not in (4, 5):
            raise TokenizerError(f"video must be [B,3,T,H,W] or [3,T,H,W], got shape {tuple(x.shape)}")
        c, T, H, W = x.shape[-4:]
        if c != 3:
            raise TokenizerError(f"video must have 3 channels in dim -4, got shape {tuple(x.shape)}")
        if T < 1 or (T - 1) % TIME_FACTOR:
            raise TokenizerError(f"video has {T} frames; the tokenizer needs 1+4n frames (1, 5, 9, 13, 17, ...)")
        f = self.space_factor
        if H % f or W % f or H == 0 or W == 0:
            raise TokenizerError(f"video is {H}x{W}; height and width must be positive multiples of {f} for this tokenizer")
        if not x.is_floating_point():
            raise TokenizerError(f"video has dtype {x.dtype}; expected floats in [-1, 1] (convert uint8 with frames_to_tensor)")
        lo, hi = float(x.min()), float(x.max())
        if not (lo == lo and hi == hi) or lo < -1.5 or hi > 1.5:  # NaN or out of range
            raise TokenizerError(f"video values span [{lo:.3g}, {hi:.3g}]; expected [-1, 1] (0..255 passed by mistake?)")

    def check_codes(self, codes: torch.Tensor) -> None:
        """Raise TokenizerError unless codes is an integer [B,t,h,w] or [t,h,w] in [0, 2**K)."""
        if not isinstance(codes, torch.Tensor):
            raise TokenizerError(f"codes must be a torch.Tensor, got {type(codes).__name__}")
        if codes.dim() not in (3, 4):
            raise TokenizerError(f"codes must be [B,t,h,w] or [t,h,w], got shape {tuple(codes.shape)}")
        if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
            raise TokenizerError(f"codes must be an integer tensor, got {codes.dtype}")
        if codes.numel() == 0:
            raise TokenizerError(f"codes are empty, shape {tuple(codes.shape)}")
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0 or hi >= self.codebook_size:
            raise TokenizerError(f"codes span [{lo}, {hi}]; this tokenizer has {self.codebook_size} codes (K={self.codebook_bits})")

    @torch.inference_mode()
    def encode(self, x: torch.Tensor, sticky: float = 0.0) -> torch.Tensor:
        """Video [B,3,T,H,W] (or [3,T,H,W]) in [-1,1] -> LongTensor codes [B,t,h,w] (or [t,h,w]).

        sticky: a hysteresis margin in time (lfq.sticky_signs: from latent frame 1 on, a bit within this of the flip
        keeps the previous latent frame's value; 0 = plain signs). A probe (tools/tokenizer_probes.py stability
        --sticky): the codes that change near a moving object are not near-flip bits, so it buys little."""
        self.check_video(x)
        batched = x.dim() == 5
        x = x if batched else x.unsqueeze(0)
        x = x.to(self.device, next(self.parameters()).dtype)
        z = self.quantizer.normalize(self.encoder(x))
        codes = bits_to_codes(sticky_signs(z, sticky).movedim(1, -1)) if sticky > 0 else self.quantizer.codes(z)
        return codes if batched else codes[0]

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """LongTensor codes [B,t,h,w] (or [t,h,w]) -> video [B,3,T,H,W] (or [3,T,H,W]) clamped to [-1,1]."""
        self.check_codes(codes)
        batched = codes.dim() == 4
        codes = codes if batched else codes.unsqueeze(0)
        q = codes_to_bits(codes.to(self.device), self.codebook_bits).movedim(-1, 1)
        video = self.decoder(q.to(next(self.parameters()).dtype)).float().clamp(-1, 1)
        return video if batched else video[0]

    # --- saving / loading ----------------------------------------------------------------------
    def config_hash(self) -> str:
        """Hash of the architecture fields (codes from tokenizers with different hashes don't mix)."""
        return self.config.architecture_hash()

    def _fingerprint(self, prefixes: tuple[str, ...] | None = None) -> str:
        h = hashlib.sha256(self.config_hash().encode())
        for name, t in sorted(self.state_dict().items()):
            if prefixes is None or name.startswith(prefixes):
                h.update(name.encode())
                h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def weights_fingerprint(self) -> str:
        """Short hash over the architecture and all weights (identifies one trained tokenizer)."""
        return self._fingerprint()

    def encoder_fingerprint(self) -> str:
        """Short hash over the architecture and the encoder + quantizer weights only: what fixes the codes.

        Two tokenizers with the same encoder fingerprint give the same codes for every input (e.g. one
        and its decoder-only fine-tune, `train.train_parts: decoder`), so codes made by one are valid
        for the other."""
        return self._fingerprint(("encoder.", "quantizer."))

    def accepts_codes_of(self, encoder_fingerprint: str | None = None, weights_fingerprint: str | None = None) -> bool:
        """Whether codes made by the tokenizer with these fingerprints are this tokenizer's codes.

        The encoder fingerprint decides when given. Metadata written before it existed has only the
        weights fingerprint: accepted when it is this tokenizer's own or one of `code_compatible`
        (the weights fingerprints of the tokenizers it was decoder-fine-tuned from)."""
        if encoder_fingerprint:
            return encoder_fingerprint == self.encoder_fingerprint()
        if weights_fingerprint:
            return weights_fingerprint == self.weights_fingerprint() or weights_fingerprint in self.code_compatible
        return False

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config.json and model.safetensors into `directory` (each file atomically)."""
        from safetensors.torch import save_file

        from ..utils import atomic_path, atomic_write_text

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        meta = {"format": "pt", "config_hash": self.config_hash(), "encoder_fingerprint": self.encoder_fingerprint()}
        if self.code_compatible:
            meta["code_compatible"] = ",".join(self.code_compatible)
        with atomic_path(d / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp), metadata=meta)
        cfg = {"model_type": "vidgpt-lfq-video-tokenizer", **to_dict(self.config)}
        atomic_write_text(d / CONFIG_NAME, json.dumps(cfg, indent=2) + "\n")
        return d

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device | None = None) -> "VideoTokenizer":
        """Load a tokenizer directory written by save_pretrained; TokenizerError names the path if bad."""
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        d = Path(directory)
        if not d.is_dir():
            raise TokenizerError(f"{d}: tokenizer directory not found")
        cfg_path, w_path = d / CONFIG_NAME, d / WEIGHTS_NAME
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise TokenizerError(f"{p}: missing (a tokenizer directory holds {CONFIG_NAME} and {WEIGHTS_NAME})")
        try:
            raw = json.loads(cfg_path.read_text())
            if not isinstance(raw, dict):
                raise ValueError("expected a JSON object")
            raw.pop("model_type", None)
            config = from_dict(TokenizerConfig, raw, where=str(cfg_path))
        except (ValueError, ConfigError) as e:
            raise TokenizerError(f"{cfg_path}: malformed tokenizer config ({' '.join(str(e).split())})") from e
        model = cls(config)
        try:
            state = load_file(str(w_path))
            with safe_open(str(w_path), framework="pt") as f:
                meta = f.metadata() or {}
        except (SafetensorError, OSError, ValueError) as e:
            raise TokenizerError(f"{w_path}: cannot read weights ({e})") from e
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).splitlines()[0]
            raise TokenizerError(f"{w_path}: weights do not match {cfg_path.name} ({first})") from e
        model.code_compatible = [fp for fp in meta.get("code_compatible", "").split(",") if fp]
        model.eval()
        if device is not None:
            model.to(device)
        return model
