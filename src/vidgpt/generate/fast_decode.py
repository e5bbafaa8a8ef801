"""Fast decoding: one small forward over the HF model's weights (every supported family) with a preallocated KV cache.

Decoding a 135M model is bound by reading the weights once per step, so what matters is how fast the
matrix-vector kernels stream them. The weights are repacked once, at the first prefill, into
fused matrices (q|k|v, gate|up) stored in the layout that streams fastest on the device:

- CPU, `weights="mkldnn"` (default where oneDNN is built in): each matrix reordered by oneDNN for
  the decode batch (`torch.ops.mkldnn._reorder_linear_weight`), so the rows of one step (both CFG
  rows, several samples, several drafted positions) are served from ONE read of the weights. On the
  2-core AMD EPYC of this project a CFG step (2 rows) costs about what one row costs this way,
  where `F.linear` on the `nn.Linear` layout reads the weights once per row (docs/DECODING.md).
- CPU, `weights="t"`: `x @ W` with W stored [in, out] contiguous (the fallback without oneDNN).
- CUDA, `weights="linear"`: `F.linear` on the fused [out, in] matrices; one decode step is captured
  once as a CUDA graph and replayed (the static cache and a full-length mask keep shapes fixed).
- `dtype="bf16"` packs the linear weights in bfloat16 (half the bytes; an approximation, off by
  default: logits differ from fp32 by about 1e-2).
- CPU, `dtype="int8"`: the decoder layers' matrices in int8 through fbgemm's dynamic linear (8-bit
  activations per call), smoothed per input channel on activation maxima measured on real clips
  (`int8_maxima`, `activation_maxima`; int8_calibration.py): ~3x faster products than the packed fp32
  ones at 2-20 rows on an AVX2 CPU; an approximation (next-code KL ~6e-3 nats on the default model,
  docs/DECODING.md), opt-in. The head stays in the packed fp32 layout unless `int8_head` (its visual rows in int8,
  smoothed on the final norm's maxima: maxima key -1, "head").

Attention on the CPU path reads only the filled part of the cache (no per-step full-cache mask);
left padding is a per-row additive bias sliced to the filled length, given to SDPA as its mask
(layers with soft-capping or a sliding window keep the explicit ops). Norms are `F.rms_norm` in the
model dtype. The lm_head is applied outside the step, to the rows the constrained decoder asks for
(`logits(state, lo, hi)`): inside a visual section one group of 2**(K/S) rows, packed once per range.

`step_many(tokens [R, L])` feeds several positions in one pass and `truncate(n)` drops cache entries
past n: what speculative (Jacobi) decoding needs (jacobi.py).

What is reused from the HF model: the embedding (so Gemma's sqrt(hidden) scaling and GPT-2's learned
positions come with it), the rotary embedding module (so the config's rope settings -- theta,
llama3 / yarn scaling, partial rotary -- are honoured), the norms' weights and epsilons, the MLP's
activation. One forward covers every family; what differs (norm kind and placement, q/k norms,
biases, fused or interleaved projections, partial or no rotary, parallel residual, sliding windows,
attention and final-logit soft-capping) is read off the model by an adapter in fast_families.py:
llama, qwen2, qwen3, mistral, gemma, gemma2, phi3, gpt_neox, gpt2, tied or separate head. Anything
else (another family, a rope type whose frequencies change with the length, unmerged LoRA) falls
back to the plain HF path with a warning that names the reason (`make_backend`); the backend's
`name` says which path ran and `fallback_reason` why.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from .decoding import HFBackend, position_ids
from .fast_families import FAMILIES, LayerSpec, model_spec, unsupported

SUPPORTED_TYPES = FAMILIES
WEIGHT_KINDS = ("auto", "mkldnn", "t", "linear")  # dtype="int8" packs the layers as PackedLinear kind "int8"


def is_llama_shaped(model) -> str | None:
    """None when the fast path can run `model`, else the reason it cannot (fast_families.unsupported; the old name)."""
    return unsupported(model)


def mkldnn_bf16_supported() -> bool:
    """Whether oneDNN can pack bf16 weights on this CPU (it needs AVX512 bw/vl/dq or AVX-NE-CONVERT)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def auto_bf16_weights() -> bool:
    """What dtype="auto" picks on a CPU: bf16 linear weights when the CPU computes bf16 natively (AVX512-BF16 or
    AMX) and oneDNN can pack them; measured on the default model (piece 8): 1.6x faster products, next-code distributions
    within KL 7e-5 nats (TV 0.2%) of fp32 (docs/DECODING.md). Elsewhere bf16 is emulated and slower: fp32."""
    from ..utils import cpu_has_native_bf16

    return cpu_has_native_bf16() and mkldnn_bf16_supported()


def int8_supported() -> bool:
    """Whether this PyTorch has the dynamic int8 linear kernels (fbgemm / x86 engine) that `dtype="int8"` uses."""
    try:
        ops = torch.ops.quantized
        return bool(ops.linear_prepack and ops.linear_dynamic) and any(
            e in torch.backends.quantized.supported_engines for e in ("x86", "fbgemm"))
    except (AttributeError, RuntimeError):
        return False


def quantize_int8(weight: torch.Tensor, bias: torch.Tensor | None):
    """W [out, in] -> a prepacked int8 matrix (symmetric, one scale per output row) for `quantized.linear_dynamic`."""
    w = weight.detach().float().contiguous()
    scale = (w.abs().amax(dim=1) / 127.0).clamp_(min=1e-8)
    zero = torch.zeros(w.shape[0], dtype=torch.long)
    with warnings.catch_warnings():  # the quantized-tensor constructors warn that they are deprecated; fbgemm takes them
        warnings.simplefilter("ignore")
        qw = torch.quantize_per_channel(w, scale.double(), zero, 0, torch.qint8)
        return torch.ops.quantized.linear_prepack(qw, None if bias is None else bias.detach().float())


INT8_ALPHA = 0.7  # smoothing strength, measured on the default model (docs/DECODING.md): 0.5 / 0.7 / 0.85


def smoothing(act_max: torch.Tensor, weight: torch.Tensor, alpha: float = INT8_ALPHA) -> torch.Tensor:
    """Per-input-channel divisor s for int8 (SmoothQuant-style): s_j = max|x_j|^alpha / max|W_:j|^(1-alpha).

    The product is unchanged, (x / s) @ (W * s).T = x @ W.T, but the few channels where activations are
    large (and would set the per-tensor activation scale) are shrunk, and their weights grown to match."""
    ax = act_max.detach().float().to(weight.device).clamp(min=1e-5)
    aw = weight.detach().float().abs().amax(dim=0).clamp(min=1e-5)
    return (ax**alpha / aw ** (1 - alpha)).clamp(min=1e-5)


def default_weight_kind(device: torch.device) -> str:
    if device.type != "cpu":
        return "linear"
    return "mkldnn" if torch.backends.mkldnn.is_available() else "t"


class PackedLinear:
    """y = x @ W.T (+ b) with W [out, in] stored in the layout `kind` streams fastest.

    rows: the batch the weight is packed for (oneDNN picks its blocking from it; any batch works).
    dtype: the storage and compute dtype of the product (outputs come back in x's dtype).
    """

    __slots__ = ("kind", "w", "b", "dtype", "smooth")
    # kind "int8": weights in int8 (one scale per output row), each call's activations quantized to 8 bits on the
    # fly (fbgemm's dynamic linear, `reduce_range` as AVX2 needs); an approximation, ~3.5x fewer bytes than fp32

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, kind: str, rows: int = 2, dtype=None,
                 smooth: torch.Tensor | None = None):
        w = weight.detach()
        self.dtype = dtype or w.dtype
        self.kind = kind
        self.b = None if bias is None else bias.detach()
        self.smooth = None
        if smooth is not None:  # int8: x / s @ (W * s).T, the input's outlier channels moved into the weights
            if kind != "int8":
                raise ValueError("smooth applies to kind 'int8' only")
            self.smooth = smooth.to(w.device, torch.float32)
            w = w.float() * self.smooth[None]
        if kind == "mkldnn":
            self.w = torch.ops.mkldnn._reorder_linear_weight(w.to(self.dtype).contiguous(), max(1, int(rows)))
        elif kind == "t":
            self.w = w.to(self.dtype).t().contiguous()
        elif kind == "linear":
            self.w = w.to(self.dtype)
        elif kind == "int8":
            self.dtype = torch.float32
            self.w = quantize_int8(w, self.b)
            self.b = None  # inside the packed matrix
        else:
            raise ValueError(f"weight kind {kind!r}: expected one of {WEIGHT_KINDS[1:]}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out_dtype = x.dtype
        if x.dtype != self.dtype:
            x = x.to(self.dtype)
        if self.kind == "mkldnn":
            y = torch.ops.mkldnn._linear_pointwise(x, self.w, None, "none", [], "")
        elif self.kind == "int8":
            y = torch.ops.quantized.linear_dynamic(x if self.smooth is None else x / self.smooth, self.w, True)
        elif self.kind == "t":
            y = x @ self.w
        else:
            y = F.linear(x, self.w)
        if y.dtype != out_dtype:
            y = y.to(out_dtype)
        if self.b is not None:
            y = y + self.b
        return y


class _Layer:
    """One decoder layer's weights (a fast_families.LayerSpec), fused and packed."""

    MATRICES = ("qkv", "o", "gate_up", "down")

    def __init__(self, spec: LayerSpec, kind: str, rows: int, dtype, maxima: dict | None = None):
        """maxima (kind "int8"): per-input-channel max |x| of each matrix's input (`FastDecoder.activation_maxima`),
        from which the int8 smoothing is set; None: no smoothing."""
        for name, (w, b) in zip(self.MATRICES, (spec.qkv, spec.o, spec.up, spec.down)):
            smooth = None
            if kind == "int8" and maxima is not None and name in maxima:
                smooth = smoothing(maxima[name], w)
            setattr(self, name, PackedLinear(w, b, kind, rows, dtype, smooth=smooth))
        self.gated, self.act = spec.gated, spec.act
        self.norm1, self.norm2 = spec.norm_attn, spec.norm_mlp
        self.post_attn, self.post_mlp = spec.post_attn, spec.post_mlp
        self.q_norm, self.k_norm = spec.q_norm, spec.k_norm
        self.scale = spec.scale
        self.softcap = spec.softcap
        self.window = spec.window
        self.parallel = spec.parallel


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class FastDecoder:
    """Prefill + cached decode over an HF causal LM of a supported family, with repacked fused weights.

    weights: "auto" (CUDA: "linear"; CPU: "mkldnn" where oneDNN is built, else "t"), or one of them.
    dtype: "fp32"/None keeps the model dtype (exact up to float rounding); "bf16" packs the linear
    layers in bfloat16 (an approximation); "auto" is bf16 on a CPU that computes it natively
    (`auto_bf16_weights`), else fp32 (what the CLI uses unless told --fp32-weights).
    attention: "filled" (CPU default: attend over the written part of the cache) or "static" (the
    whole preallocated cache under a mask, fixed shapes: what a CUDA graph needs; CUDA default).
    """

    name = "fast"

    def __init__(self, model, use_cuda_graph: bool | None = None, weights: str = "auto", dtype: str | None = None,
                 attention: str | None = None, int8_maxima: dict | None = None, int8_head: bool = False):
        spec = model_spec(model)  # ValueError with the reason when the family or its options are not supported
        if weights not in WEIGHT_KINDS:
            raise ValueError(f"weights={weights!r}: expected one of {WEIGHT_KINDS}")
        self.model = model
        cfg = model.config
        self.cfg = cfg
        self.spec = spec
        self.family = spec.family
        self.n_heads, self.n_kv, self.head_dim = spec.n_heads, spec.n_kv, spec.head_dim
        self.embed = spec.embed
        self.final_norm = spec.final_norm
        self.head_weight = spec.head.weight  # [V, D] (tied or not)
        self.head_bias = getattr(spec.head, "bias", None)
        self.logit_softcap = spec.logit_softcap
        self.windows = sorted({w for w in spec.windows if w})  # the distinct sliding windows
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.weight_kind = default_weight_kind(self.device) if weights == "auto" else weights
        if self.weight_kind == "mkldnn" and (self.device.type != "cpu" or not torch.backends.mkldnn.is_available()):
            raise ValueError("weights='mkldnn' needs a CPU model and a PyTorch built with oneDNN")
        if dtype == "auto":  # bf16 weights where the CPU computes them natively (docs/DECODING.md), else exact
            dtype = "bf16" if self.device.type == "cpu" and auto_bf16_weights() else None
        int8 = False
        if dtype in (None, "fp32", "float32", "model"):
            self.mm_dtype = self.dtype
        elif dtype == "int8":  # the layers' matrices in int8 (fbgemm dynamic linear); the head stays as packed
            if self.device.type != "cpu" or not int8_supported():
                raise ValueError("dtype='int8' needs a CPU model and PyTorch's fbgemm/x86 quantized kernels")
            self.mm_dtype = self.dtype
            int8 = True
        elif dtype in ("bf16", "bfloat16"):
            self.mm_dtype = torch.bfloat16
            if self.weight_kind == "mkldnn" and not mkldnn_bf16_supported():
                if weights != "auto":
                    raise ValueError("weights='mkldnn' with dtype='bf16' needs a CPU with AVX512 (bw/vl/dq) or "
                                     "AVX-NE-CONVERT; use weights='t'")
                self.weight_kind = "t"  # oneDNN's bf16 reorder needs AVX512 here; plain bf16 matmuls still run
        else:
            raise ValueError(f"dtype={dtype!r}: expected 'fp32', 'bf16', 'int8' or 'auto'")
        self.layer_kind = "int8" if int8 else self.weight_kind  # the decoder layers' matrices; the head: weight_kind
        if use_cuda_graph is None:
            use_cuda_graph = self.device.type == "cuda"
        self.use_cuda_graph = use_cuda_graph
        self.attention = attention or ("static" if (use_cuda_graph or self.device.type == "cuda") else "filled")
        if self.attention not in ("filled", "static"):
            raise ValueError(f"attention={attention!r}: expected 'filled' or 'static'")
        if use_cuda_graph and self.attention != "static":
            raise ValueError("CUDA graphs need attention='static'")
        self._graph = None
        self.cache = None
        self.layers: list[_Layer] | None = None
        self._packed_rows = None
        self._heads: dict[tuple[int, int], PackedLinear] = {}
        # dtype="int8": per layer, per matrix, the max |x| of its input channels; None: calibrated on the first prompt
        self.int8_maxima = int8_maxima
        if int8_head and not int8:
            raise ValueError("int8_head needs dtype='int8'")
        self.int8_head = bool(int8_head)  # the head's packed ranges in int8 too (smoothed on maxima[-1]["head"])

    # --- weights --------------------------------------------------------------------------
    def pack_rows(self, rows: int) -> int:
        """The batch the weights are packed for: oneDNN blocking for 1-2 rows serves up to ~8 well."""
        return 2 if rows <= 2 else 4

    @torch.inference_mode()
    def pack(self, rows: int = 2) -> None:
        """(Re)pack the layer weights for decode batches of about `rows` rows (done at prefill)."""
        want = self.pack_rows(rows) if self.weight_kind == "mkldnn" else 0
        if self.layers is not None and self._packed_rows == want:
            return
        maxima = self.int8_maxima if self.layer_kind == "int8" else None
        self.layers = [_Layer(layer, self.layer_kind, want or rows, self.mm_dtype,
                              None if maxima is None else maxima.get(i))
                       for i, layer in enumerate(self.spec.layers())]
        self._packed_rows = want
        self._heads.clear()

    @torch.inference_mode()
    def activation_maxima(self, ids: torch.Tensor) -> dict[int, dict[str, torch.Tensor]]:
        """Per layer, per matrix (qkv, o, gate_up, down): the max |x| of each input channel over the sequence ids
        [R, L], computed with the exact (unquantized) weights; under key -1, "head": the final norm's output (the
        head's input). What int8 smoothing is calibrated on; a real clip's ids (prompt + visual codes) calibrate
        best (docs/DECODING.md)."""
        maxima: dict[int, dict[str, torch.Tensor]] = {}

        class Observe:
            def __init__(self, inner, into, name):
                self.inner, self.into, self.name = inner, into, name

            def __call__(self, x):
                m = x.detach().abs().reshape(-1, x.shape[-1]).amax(dim=0).float()
                old = self.into.get(self.name)
                self.into[self.name] = m if old is None else torch.maximum(old, m)
                return self.inner(x)

        ids = torch.as_tensor(ids, device=self.device).long()
        if ids.dim() == 1:
            ids = ids[None]
        want = self.pack_rows(ids.shape[0]) if self.weight_kind == "mkldnn" else 0
        layers = []
        for i, spec in enumerate(self.spec.layers()):
            lay = _Layer(spec, self.weight_kind, want or ids.shape[0], self.dtype)
            maxima[i] = {}
            for name in _Layer.MATRICES:
                setattr(lay, name, Observe(getattr(lay, name), maxima[i], name))
            layers.append(lay)
        maxima[-1] = {}
        final_norm = self.final_norm
        kept = (self.layers, self._packed_rows)
        self.layers, self._packed_rows = layers, want
        self.final_norm = lambda x: Observe(lambda y: y, maxima[-1], "head")(final_norm(x))
        try:
            self.prefill(ids, torch.ones_like(ids, dtype=torch.bool))
        finally:
            self.layers, self._packed_rows = kept
            self.final_norm = final_norm
            self.cache = None  # sized for the calibration ids: the next prefill allocates its own
        return maxima

    # --- rotary tables --------------------------------------------------------------------
    def _rope_tables(self, max_len: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """cos, sin [max_len, rot_dim] (rot_dim < head_dim: partial rotary); None, None without rotary (gpt2)."""
        if self.spec.rotary is None:
            self.rot_dim = 0
            return None, None
        pos = torch.arange(max_len, device=self.device)[None]
        dummy = torch.zeros(1, device=self.device, dtype=self.dtype)
        cos, sin = self.spec.rotary(dummy, pos)
        self.rot_dim = cos.shape[-1]
        return cos[0].to(self.dtype), sin[0].to(self.dtype)

    # --- the forward ----------------------------------------------------------------------
    def _qkv(self, lay: _Layer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """Normed input -> rotated q [R, H, L, hd], k [R, KV, L, hd], v [R, KV, L, hd]."""
        R, L, _ = x.shape
        H, KV, hd = self.n_heads, self.n_kv, self.head_dim
        h = lay.norm1(x)
        qkv = lay.qkv(h).view(R, L, H + 2 * KV, hd)
        if lay.q_norm is not None:  # qwen3: RMSNorm per head before the rotation
            q = lay.q_norm(qkv[:, :, :H])
            k = lay.k_norm(qkv[:, :, H : H + KV])
            qk = torch.cat([q, k], dim=2)
        else:
            qk = qkv[:, :, : H + KV]
        if cos is None:  # gpt2: positions were added to the embedding
            pass
        elif self.rot_dim == hd:
            qk = qk * cos + _rotate_half(qk) * sin  # one rotation for q and k together
        else:  # partial rotary (phi3, gpt_neox): the first rot_dim dims of each head turn
            r = qk[..., : self.rot_dim]
            qk = torch.cat([r * cos + _rotate_half(r) * sin, qk[..., self.rot_dim :]], dim=-1)
        q = qk[:, :, :H].transpose(1, 2)
        k = qk[:, :, H:].transpose(1, 2)
        v = qkv[:, :, H + KV :].transpose(1, 2)
        return q, k, v

    def _mlp_and_out(self, lay: _Layer, x: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """x (the layer's input) + attention output o (before o_proj) -> the layer's output."""
        a = lay.o(o)
        if lay.post_attn is not None:  # gemma2: a norm on the attention output
            a = lay.post_attn(a)
        if lay.parallel:  # gpt_neox: both branches read the layer input (HF's order of the sum)
            return self._mlp(lay, lay.norm2(x)) + a + x
        x = x + a
        m = self._mlp(lay, lay.norm2(x))
        if lay.post_mlp is not None:
            m = lay.post_mlp(m)
        return x + m

    @staticmethod
    def _mlp(lay: _Layer, h: torch.Tensor) -> torch.Tensor:
        if lay.gated:
            g, u = lay.gate_up(h).chunk(2, dim=-1)
            return lay.down(lay.act(g) * u)
        return lay.down(lay.act(lay.gate_up(h)))

    def _forward_filled(self, ids: torch.Tensor, pos: torch.Tensor, start: int,
                        extra: torch.Tensor | None = None) -> torch.Tensor:
        """ids [R, L] at cache slots [start, start + L); attends over slots [0, start + L).

        pos [R, L] positions (rope or learned); extra [R, L, D]: added to the input embeddings (parent hints). A
        sliding-window layer attends over the last `window` slots only (a single position reads only those keys).
        Returns final-normed hidden states [R, L, D].
        """
        R, L = ids.shape
        n = start + L
        KV, G, hd = self.n_kv, self.n_heads // self.n_kv, self.head_dim
        biases = {None: self._bias(start, L)}  # additive [R, 1, 1, L, n - lo] per window (None: full)
        for w in self.windows:
            biases[w] = self._bias(start, L, w)
        x = self.embed(ids, pos)
        if extra is not None:
            x = x + extra.to(x.dtype)
        cos = sin = None
        if self.cos is not None:
            cos = self.cos[pos].unsqueeze(2)  # [R, L, 1, rot_dim]
            sin = self.sin[pos].unsqueeze(2)
        masks: dict = {}  # the full-attention bias as SDPA's mask [R, 1, G*L, n] (broadcast over the kv heads)
        for i, lay in enumerate(self.layers):
            q, k, v = self._qkv(lay, x, cos, sin)
            kc, vc = self.cache[i, 0], self.cache[i, 1]
            kc[:, :, start:n] = k
            vc[:, :, start:n] = v
            lo = max(0, n - lay.window) if (lay.window and L == 1) else 0
            keys, vals = kc[:, :, lo:n], vc[:, :, lo:n]
            # GQA without repeating keys: query heads grouped by their kv head, [R, KV, G*L, hd]
            if not lay.softcap and not lay.window:  # one fused kernel (~20% faster here than the ops below)
                if "full" not in masks:
                    b = biases[None]
                    masks["full"] = None if b is None else b.expand(R, 1, G, L, n).reshape(R, 1, G * L, n)
                o = F.scaled_dot_product_attention(q.reshape(R, KV, G * L, hd), keys, vals, attn_mask=masks["full"],
                                                   scale=lay.scale or None)
                o = o.view(R, self.n_heads, L, hd).transpose(1, 2).reshape(R, L, self.n_heads * hd)
                x = self._mlp_and_out(lay, x, o)
                continue
            s = (q.reshape(R, KV, G * L, hd) @ keys.transpose(-1, -2)) * (lay.scale or hd**-0.5)
            if lay.softcap:  # gemma2
                s = torch.tanh(s / lay.softcap) * lay.softcap
            bias = biases[lay.window]
            if bias is not None:
                s = (s.view(R, KV, G, L, n - lo) + bias).view(R, KV, G * L, n - lo)
            o = s.softmax(-1) @ vals  # [R, KV, G*L, hd]
            o = o.view(R, self.n_heads, L, hd).transpose(1, 2).reshape(R, L, self.n_heads * hd)
            x = self._mlp_and_out(lay, x, o)
        return self.final_norm(x)

    def _forward_static(self, ids: torch.Tensor, pos: torch.Tensor, cache_pos: torch.Tensor, attn_mask: torch.Tensor,
                        extra: torch.Tensor | None = None) -> torch.Tensor:
        """Fixed-shape forward for CUDA graphs: cache slots from a tensor, mask [R, 1, L, max_len] bool."""
        R, L = ids.shape
        x = self.embed(ids, pos)
        if extra is not None:
            x = x + extra.to(x.dtype)
        cos = sin = None
        if self.cos is not None:
            cos = self.cos[pos].unsqueeze(2)
            sin = self.sin[pos].unsqueeze(2)
        masks = {None: attn_mask}
        for w in self.windows:  # keys j > i - window (i: the query's slot)
            masks[w] = attn_mask & (self.arange[None, :] > cache_pos[:, None] - w)
        for i, lay in enumerate(self.layers):
            q, k, v = self._qkv(lay, x, cos, sin)
            kc, vc = self.cache[i, 0], self.cache[i, 1]
            kc.index_copy_(2, cache_pos, k.to(kc.dtype))
            vc.index_copy_(2, cache_pos, v.to(vc.dtype))
            o = self._attend_static(lay, q, kc, vc, masks[lay.window])
            x = self._mlp_and_out(lay, x, o.transpose(1, 2).reshape(R, L, self.n_heads * self.head_dim))
        return self.final_norm(x)

    def _attend_static(self, lay: _Layer, q, kc, vc, mask) -> torch.Tensor:
        scale = lay.scale or self.head_dim**-0.5
        if not lay.softcap:
            return F.scaled_dot_product_attention(q, kc, vc, attn_mask=mask, scale=scale, enable_gqa=self.n_kv != self.n_heads)
        G = self.n_heads // self.n_kv  # soft-capped scores: SDPA has no hook for them
        kc, vc = kc.repeat_interleave(G, dim=1), vc.repeat_interleave(G, dim=1)
        s = torch.tanh((q @ kc.transpose(-1, -2)) * scale / lay.softcap) * lay.softcap
        return s.masked_fill(~mask, float("-inf")).softmax(-1) @ vc

    def _bias(self, start: int, L: int, window: int | None = None) -> torch.Tensor | None:
        """Additive attention bias for queries at slots [start, start+L) over keys [0, start+L)
        (one query with a window: over the keys [start + 1 - window, start + 1) it reads)."""
        n = start + L
        if L == 1:
            lo = max(0, n - window) if window else 0
            return None if self.no_pad else self.pad_bias[:, None, None, None, lo:n]
        j = torch.arange(n, device=self.device)
        qpos = torch.arange(start, n, device=self.device)[:, None]
        ok = (j[None] <= qpos) & (self.key_valid[:, None, :n] | (j[None] == qpos))  # pad queries see themselves
        if window:
            ok &= j[None] > qpos - window
        return torch.zeros(ok.shape, dtype=self.dtype, device=self.device).masked_fill_(~ok, float("-inf"))[:, None, None]

    # --- backend API ------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, max_len: int | None = None,
                extra: torch.Tensor | None = None) -> torch.Tensor:
        """Run the left-padded prompt [R, L] (mask [R, L]); returns hidden [R, D] of the last position.
        extra [R, L, D]: added to the input embeddings (vidgpt.parent_hint), here and in step / step_many.

        The cache holds `max_len` positions (prompt + everything to be generated). Buffers are kept
        and refilled in place when the next call has the same R and max_len, so a captured CUDA
        graph stays valid across calls.
        """
        ids, mask = ids.to(self.device), mask.to(self.device).bool()
        R, L = ids.shape
        if self.layer_kind == "int8" and self.int8_maxima is None and self.layers is None:
            # no calibration given: the first prompt's (a rough one; a clip's ids calibrate better)
            self.int8_maxima = self.activation_maxima(ids[:1, -int(mask[0].sum()):])
        self.pack(R)
        max_len = max(int(max_len or 0), L + 1)
        shape = (len(self.layers), 2, R, self.n_kv, max_len, self.head_dim)
        if self.cache is None or tuple(self.cache.shape) != shape:
            self.cache = torch.zeros(shape, device=self.device, dtype=self.dtype)
            self.cos, self.sin = self._rope_tables(max_len + 1)
            self.key_valid = torch.ones(R, max_len, dtype=torch.bool, device=self.device)
            self.pad_bias = torch.zeros(R, max_len, dtype=self.dtype, device=self.device)
            self.step_tok = torch.zeros(R, 1, dtype=torch.long, device=self.device)
            self.step_extra = torch.zeros(R, 1, self.head_weight.shape[1], dtype=self.dtype, device=self.device)
            self.step_cache_pos = torch.zeros(1, dtype=torch.long, device=self.device)
            self.pos_shift = torch.zeros(R, 1, dtype=torch.long, device=self.device)
            self.arange = torch.arange(max_len, device=self.device)
            self._graph = None
        self.max_len = max_len
        # keys a row may ever see: its real prompt tokens and everything generated
        self.key_valid.fill_(True)
        self.key_valid[:, :L] = mask
        self.pad_bias.zero_().masked_fill_(~self.key_valid, float("-inf"))
        self.no_pad = bool(mask.all())
        pads = L - mask.long().sum(-1)
        self.pos_shift.copy_(pads.view(R, 1))  # pads per row
        if self.attention == "static":
            causal = torch.ones(L, max_len, dtype=torch.bool, device=self.device).tril()
            attn = causal[None] & self.key_valid[:, None, :]
            attn |= torch.eye(L, max_len, dtype=torch.bool, device=self.device)[None]  # pad queries see themselves
            h = self._forward_static(ids, position_ids(mask), torch.arange(L, device=self.device), attn[:, None], extra)
        else:
            h = self._forward_filled(ids, position_ids(mask), 0, extra)
        # decode-step state lives in tensors so a captured graph replays it
        self.step_cache_pos.fill_(L)
        self._pos = L
        return h[:, -1]

    def _decode_step(self) -> torch.Tensor:
        p = self.step_cache_pos
        pos = (p.view(1, 1) - self.pos_shift).clamp(min=0)  # [R, 1] rope positions
        attn = (self.key_valid & (self.arange <= p)[None])[:, None, None, :]
        return self._forward_static(self.step_tok, pos, p, attn, self.step_extra)[:, -1]

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """Feed one token per row [R]; returns hidden [R, D] for the next position (extra [R, 1, D]: see prefill)."""
        if self._pos >= self.max_len:
            raise RuntimeError(f"KV cache of {self.max_len} positions is full")
        if self.attention == "filled":
            out = self.step_many(tokens.view(-1, 1), extra)[:, -1]
            return out
        self.step_tok.copy_(tokens.view(-1, 1))
        if extra is None:
            self.step_extra.zero_()
        else:
            self.step_extra.copy_(extra.view_as(self.step_extra))
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

    @torch.inference_mode()
    def step_many(self, tokens: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """Feed L tokens per row [R, L] at the next L positions; returns hidden [R, L, D] (filled attention).
        extra [R, L, D]: see prefill."""
        if self.attention != "filled":
            raise RuntimeError("step_many needs attention='filled'")
        tokens = tokens.to(self.device)
        R, L = tokens.shape
        start = self._pos
        if start + L > self.max_len:
            raise RuntimeError(f"KV cache of {self.max_len} positions is full")
        slots = torch.arange(start, start + L, device=self.device)[None]
        pos = (slots - self.pos_shift).clamp(min=0)
        h = self._forward_filled(tokens, pos, start, extra)
        self._pos = start + L
        self.step_cache_pos.fill_(self._pos)
        return h

    @torch.inference_mode()
    def truncate(self, n: int) -> None:
        """Forget the cache past position n (the entries are overwritten by the next steps)."""
        if not (0 < n <= self._pos):
            raise ValueError(f"truncate({n}): the cache holds {self._pos} positions")
        self._pos = n
        self.step_cache_pos.fill_(n)

    @torch.inference_mode()
    def keep_rows(self, n: int) -> None:
        """Go on with the first n rows only (their cache kept): e.g. the conditional rows once guidance stops."""
        R = self.cache.shape[2]
        if not (0 < n <= R):
            raise ValueError(f"keep_rows({n}): the cache holds {R} rows")
        if n == R:
            return
        self.cache = self.cache[:, :, :n].contiguous()
        self.key_valid = self.key_valid[:n].contiguous()
        self.pad_bias = self.pad_bias[:n].contiguous()
        self.step_tok = self.step_tok[:n].contiguous()
        self.step_extra = self.step_extra[:n].contiguous()
        self.pos_shift = self.pos_shift[:n].contiguous()
        self.no_pad = bool(self.key_valid.all())
        self._graph = None
        self.pack(n)

    @property
    def supports_step_many(self) -> bool:
        """Several positions per pass need the filled-cache attention (the CUDA-graph path decodes one at a time)."""
        return self.attention == "filled"

    @property
    def position(self) -> int:
        return self._pos

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
    def logits(self, hidden: torch.Tensor, lo: int, hi: int, positions=None) -> torch.Tensor:
        """Logits of vocabulary rows [lo, hi) only: hidden [R, D] (or [R, L, D]) -> [..., hi - lo] (float32);
        `positions` (the window positions of an [R, L, D] hidden) is for wrappers that add per-position terms."""
        out = self._head(hidden, lo, hi)
        if self.logit_softcap:  # gemma2: final logits soft-capped, as HF does after the head
            out = torch.tanh(out / self.logit_softcap) * self.logit_softcap
        return out.float()

    def _head(self, hidden: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        if self.weight_kind == "linear" or hi - lo < 256:
            w = self.head_weight[lo:hi]
            out = hidden @ w.T
            if self.head_bias is not None:
                out = out + self.head_bias[lo:hi]
            return out
        head = self._heads.get((lo, hi))
        if head is None:  # a visual group: packed once, reused every step
            if len(self._heads) >= 8:
                self._heads.clear()
            b = None if self.head_bias is None else self.head_bias[lo:hi]
            kind, smooth = self.weight_kind, None
            if self.int8_head:
                kind = "int8"
                m = (self.int8_maxima or {}).get(-1, {}).get("head")
                smooth = None if m is None else smoothing(m, self.head_weight[lo:hi])
            head = self._heads[(lo, hi)] = PackedLinear(self.head_weight[lo:hi], b, kind, self._packed_rows or 2,
                                                        self.dtype, smooth=smooth)
        return head(hidden)


FastLlama = FastDecoder  # the historical name (it began as a Llama-only decoder)


def make_backend(model, fast: bool = True, **options):
    """The fast backend when the model's family and options are supported (and `fast`), else the plain
    HF one; a fallback warns with the reason, which the backend keeps as `fallback_reason`."""
    why = None
    if fast:
        why = unsupported(model)
        if why is None:
            return FastDecoder(model, **options)
        warnings.warn(f"fast decoding unavailable ({why}); using the plain transformers path", stacklevel=2)
    backend = HFBackend(model)
    backend.fallback_reason = why or "fast decoding turned off"
    return backend
