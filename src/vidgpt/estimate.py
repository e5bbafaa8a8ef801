"""Back-of-envelope numbers: tokens, training compute, GPU-hours, cost, and one clip's inference.

Formulas (defaults: 8 fps, 128x128, 17-frame clips, SmolLM2-135M, H100 bf16 dense 989 TFLOP/s):

  latent grid         t = 1 + (T - 1) // 4,  h = H // 8,  w = W // 8     (4x time, 8x8 space)
  tokens per clip     t * h * w                       17x128x128 -> 5*16*16 = 1,280
  seconds per clip    T / fps                         17 / 8 = 2.125 s
  tokens per second   tokens_per_clip / (T / fps)     1280 / 2.125 = 602.4
  tokens per minute   60 * tokens per second          ~36,141   ("about 36,000 a minute")
  tokens per hour     3600 * tokens per second        ~2.168 M  ("about 2.16 M an hour")
  tokens per image    h * w (t = 1)                   128x128 -> 256
  corpus tokens       hours * tokens_per_hour + images * tokens_per_image
                      100,000 h -> ~216.8 B            ("about 216 B")
  training FLOPs      tokens * (6 * P + 12 * L * D * S)
                      6P: forward + backward through the weights (Kaplan et al.);
                      12 L D S: attention scores and weighted sums at sequence length S over L
                      layers of width D (PaLM's MFU accounting, no causal discount)
  GPU-hours           training FLOPs / (MFU * peak FLOP/s) / 3600
  cost                GPU-hours * price per GPU-hour
  inference FLOPs     n * 2 * P + 2 * L * D * n^2 for n generated tokens (forward only, KV cache:
                      token i attends to i earlier ones at 4 L D FLOPs each)
  inference seconds   max(FLOPs / (MFU * peak), n * bytes_per_param * P / bandwidth)
                      (batch-1 decoding reads all weights once per token: usually memory-bound)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import ConfigError


@dataclass
class EstimateInputs:
    fps: float = 8.0
    size: int = 128  # square frames unless height / width are given
    height: int | None = None
    width: int | None = None
    frames: int = 17
    hours: float = 100_000.0
    images: int = 0
    image_size: int = 128
    params: float = 135e6  # SmolLM2-135M
    layers: int = 30
    hidden: int = 576
    seq_len: int = 8192
    mfu: float = 0.4
    gpu_peak_tflops: float = 989.0  # H100 SXM bf16 dense
    price_per_gpu_hour: float = 2.0
    bandwidth_gbs: float = 3350.0  # H100 SXM HBM3
    bytes_per_param: float = 2.0  # bf16
    blueprint: bool = True  # inference writes the 2x-downsampled blueprint before the fine tokens


def latent_shape(frames: int, height: int, width: int) -> tuple[int, int, int]:
    if frames < 1 or (frames - 1) % 4 or height % 8 or width % 8 or height <= 0 or width <= 0:
        raise ConfigError(f"estimate: need frames = 1 + 4k and sides divisible by 8, got {frames}x{height}x{width}")
    return 1 + (frames - 1) // 4, height // 8, width // 8


def estimate(inp: EstimateInputs) -> dict:
    """All the numbers as a flat dict (see the module docstring for the formulas)."""
    if inp.fps <= 0 or not 0 < inp.mfu <= 1 or inp.gpu_peak_tflops <= 0 or inp.params <= 0:
        raise ConfigError("estimate: fps, params and peak must be > 0 and mfu in (0, 1]")
    h, w = inp.height or inp.size, inp.width or inp.size
    t_lat, h_lat, w_lat = latent_shape(inp.frames, h, w)
    tokens_per_clip = t_lat * h_lat * w_lat
    clip_seconds = inp.frames / inp.fps
    tokens_per_second = tokens_per_clip / clip_seconds
    _, ih, iw = latent_shape(1, inp.image_size, inp.image_size)
    tokens_per_image = ih * iw
    video_tokens = inp.hours * 3600.0 * tokens_per_second
    total_tokens = video_tokens + inp.images * tokens_per_image

    attn_per_token = 12.0 * inp.layers * inp.hidden * inp.seq_len
    train_flops = total_tokens * (6.0 * inp.params + attn_per_token)
    flops_per_s = inp.mfu * inp.gpu_peak_tflops * 1e12
    gpu_hours = train_flops / flops_per_s / 3600.0

    _, bh, bw = latent_shape(inp.frames, max(8, 8 * (h // 16)), max(8, 8 * (w // 16)))
    blueprint_tokens = t_lat * bh * bw if inp.blueprint else 0
    n = tokens_per_clip + blueprint_tokens
    infer_flops = 2.0 * inp.params * n + 2.0 * inp.layers * inp.hidden * n * n
    compute_s = infer_flops / flops_per_s
    memory_s = n * inp.bytes_per_param * inp.params / (inp.bandwidth_gbs * 1e9)
    return {
        **{k: v for k, v in asdict(inp).items()},
        "height": h,
        "width": w,
        "latent_shape": [t_lat, h_lat, w_lat],
        "tokens_per_clip": tokens_per_clip,
        "clip_seconds": clip_seconds,
        "tokens_per_second": tokens_per_second,
        "tokens_per_minute": tokens_per_second * 60.0,
        "tokens_per_hour": tokens_per_second * 3600.0,
        "tokens_per_image": tokens_per_image,
        "video_tokens": video_tokens,
        "total_tokens": total_tokens,
        "train_flops_per_token": 6.0 * inp.params + attn_per_token,
        "train_flops": train_flops,
        "gpu_hours": gpu_hours,
        "cost_usd": gpu_hours * inp.price_per_gpu_hour,
        "inference_tokens_per_clip": n,
        "inference_flops_per_clip": infer_flops,
        "inference_seconds_compute": compute_s,
        "inference_seconds_memory": memory_s,
        "inference_seconds_per_clip": max(compute_s, memory_s),
    }


def _si(x: float) -> str:
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:,.2f}{unit}"
    return f"{x:,.2f}"


def format_report(r: dict) -> str:
    """A readable multi-line report of estimate()'s numbers."""
    t, lh, lw = r["latent_shape"]
    return "\n".join([
        f"clip {r['frames']}x{r['height']}x{r['width']} at {r['fps']:g} fps = {r['clip_seconds']:.3f} s"
        f" -> latent {t}x{lh}x{lw} = {r['tokens_per_clip']:,} tokens",
        f"tokens: {r['tokens_per_second']:,.1f}/s, {r['tokens_per_minute']:,.0f}/min, {r['tokens_per_hour']:,.0f}/h;"
        f" image {r['image_size']}x{r['image_size']} = {r['tokens_per_image']} tokens",
        f"corpus: {r['hours']:,.0f} h of video + {r['images']:,} images = {_si(r['total_tokens'])} tokens",
        f"training: {r['params'] / 1e6:,.0f}M params, {r['layers']} layers x {r['hidden']} hidden, seq {r['seq_len']}:"
        f" {r['train_flops']:.3e} FLOPs ({r['train_flops_per_token']:.3e}/token)",
        f"compute: {r['gpu_hours']:,.1f} GPU-hours at MFU {r['mfu']:g} of {r['gpu_peak_tflops']:g} TFLOP/s"
        f" = ${r['cost_usd']:,.0f} at ${r['price_per_gpu_hour']:g}/GPU-hour",
        f"inference: one clip = {r['inference_tokens_per_clip']:,} tokens"
        f" ({'blueprint + fine' if r['blueprint'] else 'fine only'}), {r['inference_flops_per_clip']:.3e} FLOPs,"
        f" ~{r['inference_seconds_per_clip']:.2f} s (compute {r['inference_seconds_compute']:.3f} s,"
        f" weight reads {r['inference_seconds_memory']:.3f} s at {r['bandwidth_gbs']:g} GB/s)",
    ])
