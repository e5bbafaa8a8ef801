"""Per-family adapters for the fast decoder: an HF causal LM -> the weights and switches it runs.

The fast decoder (fast_decode.FastDecoder) has one forward for every family. What differs between
families is where the weights live and a handful of switches; an adapter reads them off the HF
model into a `ModelSpec` (model-wide) and one `LayerSpec` per decoder layer:

| family | adapter | what differs from Llama |
|---|---|---|
| llama, qwen2, qwen3, mistral | `_llama_like` | q/k/v biases (qwen2), per-head q/k RMSNorm (qwen3), sliding windows (mistral: every layer; qwen2/3: layers typed `sliding_attention`) |
| gemma | `_llama_like` | (1 + w) RMSNorm in fp32, embedding times sqrt(hidden) (the HF embedding module does it), gelu-tanh MLP |
| gemma2 | `_llama_like` | + norms after attention and after the MLP, query_pre_attn_scalar, attention and final logit soft-capping, sliding window on alternate layers |
| phi3 | `_llama_like` | fused qkv_proj and gate_up_proj, partial rotary |
| gpt_neox | `_gpt_neox` | LayerNorm with bias, fused qkv interleaved per head (repacked to q|k|v), partial rotary, parallel residual, plain MLP with biases |
| gpt2 | `_gpt2` | learned absolute positions, LayerNorm, Conv1D weights [in, out] (transposed), biases, no rotary |

`unsupported(model)` is None when the fast path computes what the HF model computes, else the
reason it cannot (the caller falls back to the plain path and says why). Weights are read at
packing time (`ModelSpec.layers()`), so the fused copies exist only once packed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

FAMILIES = ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "phi3", "gpt_neox", "gpt2")
# rope types whose frequencies change with the sequence length (the fast path's tables are fixed)
DYNAMIC_ROPE = ("dynamic", "longrope")


# --- norms ------------------------------------------------------------------------------------------


def rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm as HF Llama computes it: statistics in fp32, scaled in the model dtype."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight.to(x.dtype) if weight.dtype != x.dtype else weight, eps)
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


class Norm:
    """One norm layer: "rms" (Llama), "rms1p" (Gemma: x^ * (1 + w), all in fp32) or "layer" (LayerNorm + bias)."""

    __slots__ = ("kind", "weight", "bias", "eps")

    def __init__(self, kind: str, weight: torch.Tensor, eps: float, bias: torch.Tensor | None = None):
        self.kind, self.eps, self.bias = kind, float(eps), None if bias is None else bias.detach()
        w = weight.detach()
        self.weight = 1.0 + w.float() if kind == "rms1p" else w

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "rms":
            return rms(x, self.weight, self.eps)
        if self.kind == "layer":
            return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
        out = F.rms_norm(x.float(), (x.shape[-1],), self.weight, self.eps)
        return out if x.dtype == torch.float32 else out.to(x.dtype)


def _eps(norm) -> float:
    return float(getattr(norm, "variance_epsilon", None) or getattr(norm, "eps", None) or 1e-6)


def _norm_of(module, kind: str | None = None) -> Norm:
    if isinstance(module, torch.nn.LayerNorm):
        return Norm("layer", module.weight, module.eps, module.bias)
    if kind is None:
        kind = "rms1p" if "gemma" in type(module).__name__.lower() else "rms"
    return Norm(kind, module.weight, _eps(module))


def _act(module) -> Callable:
    """The HF activation module as a function (F.silu directly for SiLU: the same op, less call overhead)."""
    if type(module).__name__ in ("SiLU", "SiLUActivation"):
        return F.silu
    return module


# --- specs ------------------------------------------------------------------------------------------


@dataclass
class LayerSpec:
    """One decoder layer, family-independent. Linear weights are [out, in] with an optional bias."""

    qkv: tuple  # (w [(H + 2 KV) * hd, D], b): q | k | v rows, heads contiguous within each
    o: tuple
    up: tuple  # gate | up when gated, else the MLP's first matrix
    down: tuple
    gated: bool
    act: Callable
    norm_attn: Norm  # input of attention
    norm_mlp: Norm  # input of the MLP
    post_attn: Norm | None = None  # gemma2: on the attention output, before the residual add
    post_mlp: Norm | None = None  # gemma2: on the MLP output
    q_norm: Norm | None = None  # qwen3: per head, before the rotation
    k_norm: Norm | None = None
    scale: float = 0.0  # attention score scale (0: head_dim ** -0.5)
    softcap: float | None = None  # gemma2: tanh soft-capping of the attention scores
    window: int | None = None  # sliding window: keys j > i - window
    parallel: bool = False  # gpt_neox: x + attn(ln1 x) + mlp(ln2 x)


@dataclass
class ModelSpec:
    family: str
    n_heads: int
    n_kv: int
    head_dim: int
    embed: Callable  # (ids [R, L], pos [R, L]) -> x [R, L, D]
    rotary: torch.nn.Module | None  # (x, pos [1, L]) -> cos, sin [1, L, rot_dim]; None: no rotary
    final_norm: Norm
    head: torch.nn.Module  # the output embeddings (tied or not)
    layers: Callable  # () -> list[LayerSpec]
    logit_softcap: float | None = None
    windows: tuple = ()


def _bias(m) -> torch.Tensor | None:
    b = getattr(m, "bias", None)
    return None if b is None else b.detach()


def _cat(*mods) -> tuple:
    """Fused (w, b) of several nn.Linear (zeros for a missing bias when another has one)."""
    w = torch.cat([m.weight.detach() for m in mods])
    bs = [_bias(m) for m in mods]
    if all(b is None for b in bs):
        return w, None
    return w, torch.cat([b if b is not None else m.weight.new_zeros(m.weight.shape[0]) for b, m in zip(bs, mods)])


def _lin(m) -> tuple:
    return m.weight.detach(), _bias(m)


def _conv1d(m) -> tuple:
    """transformers' Conv1D (y = x @ W + b, W [in, out]) as (W.T [out, in], b)."""
    return m.weight.detach().t().contiguous(), _bias(m)


# --- checks -----------------------------------------------------------------------------------------


def _rope_types(cfg) -> set:
    rp = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    dicts = [v for v in rp.values() if isinstance(v, dict)] if isinstance(rp, dict) else []
    dicts = dicts or [rp if isinstance(rp, dict) else {}]
    return {str(d.get("rope_type") or d.get("type") or "default") for d in dicts}


def layer_windows(model) -> list | str:
    """Per layer: its sliding window (None: full attention), as the HF model's masks decide; or a reason."""
    cfg = model.config
    n = cfg.num_hidden_layers if hasattr(cfg, "num_hidden_layers") else cfg.n_layer
    mtype = cfg.model_type
    if mtype in ("llama", "gemma", "gpt_neox", "gpt2"):
        return [None] * n
    window = getattr(cfg, "sliding_window", None)
    if mtype in ("mistral", "phi3"):  # their mask: a window on every layer when the config has one
        return [window] * n
    types = getattr(cfg, "layer_types", None) or ["full_attention"] * n
    unknown = sorted({t for t in types if t not in ("full_attention", "sliding_attention")})
    if unknown:
        return f"layer types {unknown}"
    if "sliding_attention" in types and not window:
        return "sliding_attention layers without a sliding_window"
    return [window if t == "sliding_attention" else None for t in types]


def unsupported(model) -> str | None:
    """None when the fast path can run `model`, else the reason it cannot (said to the caller)."""
    if hasattr(model, "fast_spec"):  # light_model.LightLlama: weights read without the HF module
        return None
    cfg = getattr(model, "config", None)
    mtype = getattr(cfg, "model_type", None)
    if mtype not in FAMILIES:
        return f"model type {mtype!r} is not one of the fast path's families {FAMILIES}"
    dynamic = _rope_types(cfg) & set(DYNAMIC_ROPE)
    if dynamic:
        return f"rope type {sorted(dynamic)[0]!r} changes its frequencies with the length (the fast path's tables are fixed)"
    rot = getattr(_inner(model), "rotary_emb", None)
    if rot is not None and str(getattr(rot, "rope_type", "default")) in DYNAMIC_ROPE:
        return f"rope type {rot.rope_type!r} changes its frequencies with the length"
    for name, mod in model.named_modules():
        if "lora" in type(mod).__name__.lower():
            return "unmerged LoRA adapters (merge them first)"
    windows = layer_windows(model)
    if isinstance(windows, str):
        return windows
    if mtype == "gpt2":
        if getattr(cfg, "add_cross_attention", False):
            return "gpt2 with cross-attention"
        if getattr(cfg, "reorder_and_upcast_attn", False):
            return "gpt2 reorder_and_upcast_attn"
        return None
    if mtype == "gpt_neox":
        return None
    inner = _inner(model)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "rotary_emb"):
        return "no .model.layers / .model.rotary_emb"
    layer = inner.layers[0]
    attn, mlp = layer.self_attn, layer.mlp
    if not (hasattr(attn, "qkv_proj") or all(hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj"))):
        return "attention without q/k/v projections"
    if not hasattr(attn, "o_proj"):
        return "attention without o_proj"
    if not (hasattr(mlp, "gate_up_proj") or all(hasattr(mlp, n) for n in ("gate_proj", "up_proj"))) or not hasattr(mlp, "down_proj"):
        return "MLP without gate/up/down projections"
    return None


def _inner(model):
    return getattr(model, "gpt_neox", None) or getattr(model, "transformer", None) or getattr(model, "model", None)


# --- adapters ---------------------------------------------------------------------------------------


def _llama_like(model) -> ModelSpec:
    cfg, inner = model.config, model.model
    n_heads = cfg.num_attention_heads
    n_kv = getattr(cfg, "num_key_value_heads", None) or n_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    windows = layer_windows(model)
    norm_kind = "rms1p" if cfg.model_type in ("gemma", "gemma2") else "rms"
    softcap = getattr(cfg, "attn_logit_softcapping", None) if cfg.model_type == "gemma2" else None

    def layer_spec(i, layer) -> LayerSpec:
        a, m = layer.self_attn, layer.mlp
        qkv = _lin(a.qkv_proj) if hasattr(a, "qkv_proj") else _cat(a.q_proj, a.k_proj, a.v_proj)
        up = _lin(m.gate_up_proj) if hasattr(m, "gate_up_proj") else _cat(m.gate_proj, m.up_proj)
        act = getattr(m, "act_fn", None) or getattr(m, "activation_fn")
        qn, kn = getattr(a, "q_norm", None), getattr(a, "k_norm", None)
        pre_ff = getattr(layer, "pre_feedforward_layernorm", None)
        sandwich = pre_ff is not None  # gemma2: post_attention_layernorm is on the attention output
        return LayerSpec(
            qkv=qkv, o=_lin(a.o_proj), up=up, down=_lin(m.down_proj), gated=True, act=_act(act),
            norm_attn=_norm_of(layer.input_layernorm, norm_kind),
            norm_mlp=_norm_of(pre_ff if sandwich else layer.post_attention_layernorm, norm_kind),
            post_attn=_norm_of(layer.post_attention_layernorm, norm_kind) if sandwich else None,
            post_mlp=_norm_of(layer.post_feedforward_layernorm, norm_kind) if sandwich else None,
            q_norm=None if qn is None else _norm_of(qn), k_norm=None if kn is None else _norm_of(kn),
            scale=float(getattr(a, "scaling", 0.0) or 0.0), softcap=softcap, window=windows[i],
        )

    return ModelSpec(
        family=cfg.model_type, n_heads=n_heads, n_kv=n_kv, head_dim=head_dim,
        embed=lambda ids, pos: inner.embed_tokens(ids), rotary=inner.rotary_emb,
        final_norm=_norm_of(inner.norm, norm_kind), head=model.get_output_embeddings(),
        layers=lambda: [layer_spec(i, layer) for i, layer in enumerate(inner.layers)],
        logit_softcap=getattr(cfg, "final_logit_softcapping", None) if cfg.model_type == "gemma2" else None,
        windows=tuple(windows),
    )


def _gpt_neox(model) -> ModelSpec:
    cfg, inner = model.config, model.gpt_neox
    H = cfg.num_attention_heads
    hd = cfg.hidden_size // H

    def qkv(attn) -> tuple:
        # HF views the fused output as [H, 3, hd] (q, k, v per head); the decoder wants [3, H, hd]
        w = attn.query_key_value.weight.detach()
        w = w.view(H, 3, hd, w.shape[-1]).transpose(0, 1).reshape(3 * H * hd, w.shape[-1])
        b = _bias(attn.query_key_value)
        return w, None if b is None else b.view(H, 3, hd).transpose(0, 1).reshape(-1)

    def layer_spec(layer) -> LayerSpec:
        a, m = layer.attention, layer.mlp
        return LayerSpec(
            qkv=qkv(a), o=_lin(a.dense), up=_lin(m.dense_h_to_4h), down=_lin(m.dense_4h_to_h), gated=False,
            act=_act(m.act), norm_attn=_norm_of(layer.input_layernorm), norm_mlp=_norm_of(layer.post_attention_layernorm),
            scale=float(getattr(a, "scaling", 0.0) or 0.0), parallel=bool(layer.use_parallel_residual),
        )

    return ModelSpec(
        family="gpt_neox", n_heads=H, n_kv=H, head_dim=hd, embed=lambda ids, pos: inner.embed_in(ids),
        rotary=inner.rotary_emb, final_norm=_norm_of(inner.final_layer_norm), head=model.get_output_embeddings(),
        layers=lambda: [layer_spec(layer) for layer in inner.layers], windows=(None,) * len(inner.layers),
    )


def _gpt2(model) -> ModelSpec:
    cfg, inner = model.config, model.transformer
    H = cfg.n_head
    hd = cfg.n_embd // H

    def layer_spec(block) -> LayerSpec:
        a, m = block.attn, block.mlp
        return LayerSpec(
            qkv=_conv1d(a.c_attn), o=_conv1d(a.c_proj), up=_conv1d(m.c_fc), down=_conv1d(m.c_proj), gated=False,
            act=_act(m.act), norm_attn=_norm_of(block.ln_1), norm_mlp=_norm_of(block.ln_2),
            scale=float(getattr(a, "scaling", hd**-0.5)),
        )

    return ModelSpec(
        family="gpt2", n_heads=H, n_kv=H, head_dim=hd, embed=lambda ids, pos: inner.wte(ids) + inner.wpe(pos),
        rotary=None, final_norm=_norm_of(inner.ln_f), head=model.get_output_embeddings(),
        layers=lambda: [layer_spec(block) for block in inner.h], windows=(None,) * len(inner.h),
    )


def model_spec(model) -> ModelSpec:
    """The fast decoder's view of `model` (call `unsupported(model)` first: ValueError with its reason)."""
    why = unsupported(model)
    if why:
        raise ValueError(why)
    if hasattr(model, "fast_spec"):
        return model.fast_spec()
    mtype = model.config.model_type
    if mtype == "gpt_neox":
        return _gpt_neox(model)
    if mtype == "gpt2":
        return _gpt2(model)
    return _llama_like(model)
