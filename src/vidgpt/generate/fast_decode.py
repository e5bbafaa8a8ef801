"""Fast decoding: a small Llama forward over the HF model's own weights with a static KV cache.

The pattern is gpt-fast's: a prefill of the (left-padded) prompt, then one-token decode steps that
write into a preallocated cache `[layers, 2, R, kv_heads, max_len, head_dim]` at a position held in
a tensor, so on CUDA one decode step is captured once as a CUDA graph and replayed (hundreds of
kernel launches become one). On CPU it runs eagerly. The lm_head is applied outside the step to the
rows the constrained decoder asks for only (`logits(state, lo, hi)`), which inside a visual section
is one group of 2**(K/S) rows instead of the whole vocabulary.

What is reused from the HF model: every weight tensor (no copies), the rotary embedding module (so
the config's rope settings -- theta, llama3 / yarn scaling -- are honoured), the RMSNorm epsilon.
Supported: LlamaForCausalLM-shaped models (llama, and qwen2/mistral without sliding windows):
RMSNorm, RoPE, GQA, SwiGLU MLP, optional q/k/v biases, tied or separate head. Anything else falls
back to the plain HF path with a warning (`make_backend`).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from .decoding import HFBackend, position_ids

SUPPORTED_TYPES = ("llama", "qwen2", "mistral")


def is_llama_shaped(model) -> str | None:
    """None when the fast path can run `model`, else the reason it cannot."""
    cfg = getattr(model, "config", None)
    mtype = getattr(cfg, "model_type", None)
    if mtype not in SUPPORTED_TYPES:
        return f"model type {mtype!r} is not Llama-shaped"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"hidden_act={cfg.hidden_act!r}"
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True) and mtype != "llama":
        return "sliding-window attention"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "rotary_emb"):
        return "no .model.layers / .model.rotary_emb"
    layer = inner.layers[0]
    for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
        if not hasattr(layer.self_attn, name):
            return f"attention without {name}"
    for name in ("gate_proj", "up_proj", "down_proj"):
        if not hasattr(layer.mlp, name):
            return f"MLP without {name}"
    if "lora" in type(layer.self_attn.q_proj).__name__.lower():
        return "unmerged LoRA adapters (merge them first)"
    return None


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm exactly as HF Llama computes it (statistics in fp32)."""
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class FastLlama:
    """Prefill + static-cache decode over a Llama-shaped HF causal LM (weights shared, not copied)."""

    name = "fast"

    def __init__(self, model, use_cuda_graph: bool | None = None):
        why = is_llama_shaped(model)
        if why:
            raise ValueError(why)
        self.model = model
        cfg = model.config
        self.cfg = cfg
        self.inner = model.model
        self.layers = list(self.inner.layers)
        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.eps = cfg.rms_norm_eps
        self.head_weight = model.get_output_embeddings().weight  # [V, D] (tied or not)
        self.head_bias = getattr(model.get_output_embeddings(), "bias", None)
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        if use_cuda_graph is None:
            use_cuda_graph = self.device.type == "cuda"
        self.use_cuda_graph = use_cuda_graph
        self._graph = None
        self.cache = None

    # --- rotary tables --------------------------------------------------------------------
    def _rope_tables(self, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(max_len, device=self.device)[None]
        dummy = torch.zeros(1, device=self.device, dtype=self.dtype)
        cos, sin = self.inner.rotary_emb(dummy, pos)
        return cos[0], sin[0]  # [max_len, head_dim]

    # --- the forward ----------------------------------------------------------------------
    def _forward(self, ids: torch.Tensor, pos: torch.Tensor, cache_pos: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """ids [R, L], pos [R, L] rope positions, cache_pos [L] cache slots, attn_mask [R, 1, L, max_len] bool.

        Writes the new keys/values into the cache and returns final-normed hidden states [R, L, D].
        """
        R, L = ids.shape
        x = self.inner.embed_tokens(ids)
        cos = self.cos[pos].unsqueeze(1)  # [R, 1, L, hd]
        sin = self.sin[pos].unsqueeze(1)
        for i, layer in enumerate(self.layers):
            a = layer.self_attn
            h = _rms(x, layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon)
            q = a.q_proj(h).view(R, L, self.n_heads, self.head_dim).transpose(1, 2)
            k = a.k_proj(h).view(R, L, self.n_kv, self.head_dim).transpose(1, 2)
            v = a.v_proj(h).view(R, L, self.n_kv, self.head_dim).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            kc, vc = self.cache[i, 0], self.cache[i, 1]
            kc.index_copy_(2, cache_pos, k.to(kc.dtype))
            vc.index_copy_(2, cache_pos, v.to(vc.dtype))
            o = F.scaled_dot_product_attention(
                q, kc, vc, attn_mask=attn_mask, scale=getattr(a, "scaling", self.head_dim**-0.5),
                enable_gqa=self.n_kv != self.n_heads,
            )
            x = x + a.o_proj(o.transpose(1, 2).reshape(R, L, self.n_heads * self.head_dim))
            m = layer.mlp
            h = _rms(x, layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon)
            x = x + m.down_proj(F.silu(m.gate_proj(h)) * m.up_proj(h))
        return _rms(x, self.inner.norm.weight, self.inner.norm.variance_epsilon)

    # --- backend API ------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
        """Run the left-padded prompt [R, L] (mask [R, L]); returns hidden [R, D] of the last position.

        The cache holds `max_len` positions (prompt + everything to be generated). Buffers are kept
        and refilled in place when the next call has the same R and max_len, so a captured CUDA
        graph stays valid across calls.
        """
        ids, mask = ids.to(self.device), mask.to(self.device).bool()
        R, L = ids.shape
        max_len = max(int(max_len or 0), L + 1)
        shape = (len(self.layers), 2, R, self.n_kv, max_len, self.head_dim)
        if getattr(self, "cache", None) is None or tuple(self.cache.shape) != shape:
            self.cache = torch.zeros(shape, device=self.device, dtype=self.dtype)
            self.cos, self.sin = self._rope_tables(max_len + 1)
            self.key_valid = torch.ones(R, max_len, dtype=torch.bool, device=self.device)
            self.step_tok = torch.zeros(R, 1, dtype=torch.long, device=self.device)
            self.step_cache_pos = torch.zeros(1, dtype=torch.long, device=self.device)
            self.pos_shift = torch.zeros(R, 1, dtype=torch.long, device=self.device)
            self.arange = torch.arange(max_len, device=self.device)
            self._graph = None
        self.max_len = max_len
        # keys a row may ever see: its real prompt tokens and everything generated
        self.key_valid.fill_(True)
        self.key_valid[:, :L] = mask
        causal = torch.ones(L, max_len, dtype=torch.bool, device=self.device).tril()
        attn = causal[None] & self.key_valid[:, None, :]
        attn |= torch.eye(L, max_len, dtype=torch.bool, device=self.device)[None]  # pad queries see themselves
        h = self._forward(ids, position_ids(mask), torch.arange(L, device=self.device), attn[:, None])
        # decode-step state lives in tensors so a captured graph replays it
        self.step_cache_pos.fill_(L)
        self.pos_shift.copy_((L - mask.long().sum(-1)).view(R, 1))  # pads per row
        self._pos = L
        return h[:, -1]

    def _decode_step(self) -> torch.Tensor:
        p = self.step_cache_pos
        pos = (p.view(1, 1) - self.pos_shift).clamp(min=0)  # [R, 1] rope positions
        attn = (self.key_valid & (self.arange <= p)[None])[:, None, None, :]
        return self._forward(self.step_tok, pos, p, attn)[:, -1]

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row [R]; returns hidden [R, D] for the next position."""
        if self._pos >= self.max_len:
            raise RuntimeError(f"static KV cache of {self.max_len} positions is full")
        self.step_tok.copy_(tokens.view(-1, 1))
        if self.use_cuda_graph:
            if self._graph is None:
                self._capture()
            self._graph.replay()
            out = self._graph_out
        else:
            out = self._decode_step()
        self.step_cache_pos += 1
        self._pos += 1
        return out

    def _capture(self) -> None:
        """Record one decode step as a CUDA graph (after warm-up runs on a side stream).

        The warm-up runs write the current token's keys/values into the current slot, which is
        exactly what the real step writes, so they leave the cache as it should be.
        """
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):
                self._decode_step()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            self._graph_out = self._decode_step()
        self._graph = g

    @torch.inference_mode()
    def logits(self, hidden: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Logits of vocabulary rows [lo, hi) only: hidden [R, D] -> [R, hi - lo] (float32)."""
        w = self.head_weight[lo:hi]
        out = hidden @ w.T
        if self.head_bias is not None:
            out = out + self.head_bias[lo:hi]
        return out.float()


def make_backend(model, fast: bool = True):
    """The fast backend when the model is Llama-shaped (and `fast`), else the plain HF one."""
    if fast:
        why = is_llama_shaped(model)
        if why is None:
            return FastLlama(model)
        warnings.warn(f"fast decoding unavailable ({why}); using the plain transformers path", stacklevel=2)
    return HFBackend(model)
