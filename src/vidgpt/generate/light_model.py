"""A torch-only Llama for the fast decoder: what `vidgpt generate` loads instead of the transformers model.

The fast decoder (fast_decode.FastDecoder) never runs the HF module: it reads the weights once and packs them. Yet
building that module cost the CLI seconds a clip on the 2-core CPU, most of them importing transformers' model
classes (docs/DECODING.md, "Loading"). `LightLlama` holds the same tensors, read from a plain safetensors directory
(the ready cache's copy of a delta-form model, or a full-form model), and hands the fast decoder its `ModelSpec`
directly. It computes nothing itself; the fast decoder's logits from it equal those from the HF model
(tests/test_light_model.py).

Llama-shaped configs with the default rope only (`light_unsupported` says why not otherwise); the plain path,
perplexity and every other family load the HF model as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from .fast_families import LayerSpec, ModelSpec, Norm, _rope_types

WEIGHTS_NAME = "model.safetensors"


def light_unsupported(config: dict) -> str | None:
    """None when `LightLlama` computes what the HF model of this config.json computes, else why not."""
    if config.get("model_type") != "llama":
        return f"model type {config.get('model_type')!r} (the light loader knows llama only)"
    kinds = _rope_types(SimpleNamespace(**config))  # the fast path's own reading of rope settings
    if kinds != {"default"}:
        return f"rope type {sorted(kinds - {'default'})[0]!r}"
    if config.get("attention_bias") or config.get("mlp_bias"):
        return "biases in attention or MLP"
    if config.get("hidden_act", "silu") != "silu":
        return f"activation {config.get('hidden_act')!r}"
    if int(config.get("pretraining_tp", 1) or 1) != 1:
        return "pretraining_tp != 1"
    return None


def rope_theta(config: dict) -> float:
    rope = config.get("rope_parameters") or {}
    return float(rope.get("rope_theta") or config.get("rope_theta") or 10000.0)


class _Rotary:
    """Default rope as HF Llama computes it: (x, pos [1, L]) -> cos, sin [1, L, head_dim] in x's dtype."""

    def __init__(self, head_dim: int, theta: float, device):
        exps = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim
        self.inv_freq = 1.0 / (theta**exps)

    def __call__(self, x: torch.Tensor, pos: torch.Tensor):
        freqs = pos[..., None].float() * self.inv_freq.to(pos.device)  # [1, L, hd/2]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


class LightLlama(torch.nn.Module):
    """The weights of a Llama causal LM and its config, for FastDecoder only (no forward of its own)."""

    def __init__(self, config: dict, tensors: dict[str, torch.Tensor]):
        super().__init__()
        why = light_unsupported(config)
        if why:
            raise ValueError(f"LightLlama: {why}")
        self.config = SimpleNamespace(**config)
        self.config.model_type = "llama"
        self.names = sorted(tensors)
        embed = tensors["model.embed_tokens.weight"]
        # one parameter (what callers read the device and dtype from); the rest are buffers
        self.embed_tokens = torch.nn.Parameter(embed, requires_grad=False)
        for name in self.names:
            if name != "model.embed_tokens.weight":
                self.register_buffer(name.replace(".", "__"), tensors[name], persistent=False)
        self.tied = "lm_head.weight" not in tensors

    @classmethod
    def from_dir(cls, directory, dtype=None) -> "LightLlama":
        """Read config.json and model.safetensors (one file) of a plain HF directory."""
        from safetensors.torch import load_file

        d = Path(directory)
        config = json.loads((d / "config.json").read_text())
        tensors = load_file(str(d / WEIGHTS_NAME))
        if dtype is not None:
            tensors = {k: v.to(dtype) for k, v in tensors.items()}
        return cls(config, tensors)

    @staticmethod
    def can_load(directory) -> str | None:
        """None when `from_dir` can load this directory, else why not."""
        d = Path(directory)
        if not (d / "config.json").is_file() or not (d / WEIGHTS_NAME).is_file():
            return f"no config.json + {WEIGHTS_NAME} in {d}"
        return light_unsupported(json.loads((d / "config.json").read_text()))

    def tensor(self, name: str) -> torch.Tensor:
        if name == "model.embed_tokens.weight":
            return self.embed_tokens.detach()
        return getattr(self, name.replace(".", "__"))

    def get_output_embeddings(self):
        return SimpleNamespace(weight=self.tensor("model.embed_tokens.weight" if self.tied else "lm_head.weight"),
                               bias=None)

    def fast_spec(self) -> ModelSpec:
        """What fast_families._llama_like reads off the HF model, read off the tensors."""
        cfg = self.config
        n_heads = cfg.num_attention_heads
        n_kv = getattr(cfg, "num_key_value_heads", None) or n_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
        eps = float(cfg.rms_norm_eps)
        t = self.tensor

        def layer_spec(i: int) -> LayerSpec:
            p = f"model.layers.{i}."
            qkv = torch.cat([t(p + f"self_attn.{n}_proj.weight") for n in "qkv"])
            up = torch.cat([t(p + "mlp.gate_proj.weight"), t(p + "mlp.up_proj.weight")])
            return LayerSpec(
                qkv=(qkv, None), o=(t(p + "self_attn.o_proj.weight"), None), up=(up, None),
                down=(t(p + "mlp.down_proj.weight"), None), gated=True, act=F.silu,
                norm_attn=Norm("rms", t(p + "input_layernorm.weight"), eps),
                norm_mlp=Norm("rms", t(p + "post_attention_layernorm.weight"), eps),
                scale=head_dim**-0.5,
            )

        embed = self.tensor("model.embed_tokens.weight")
        n = cfg.num_hidden_layers
        return ModelSpec(
            family="llama", n_heads=n_heads, n_kv=n_kv, head_dim=head_dim,
            embed=lambda ids, pos: F.embedding(ids, embed),
            rotary=_Rotary(head_dim, rope_theta(vars(cfg)), embed.device),
            final_norm=Norm("rms", t("model.norm.weight"), eps), head=self.get_output_embeddings(),
            layers=lambda: [layer_spec(i) for i in range(n)], windows=(None,) * n,
        )

    def forward(self, *args, **kwargs):
        raise NotImplementedError("LightLlama holds weights for the fast decoder only; load the HF model "
                                  "(VidGPT.from_pretrained(..., light=False)) for the plain path")
