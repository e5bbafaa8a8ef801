"""The LLM backbone: load any HF causal LM, extend its vocabulary with the visual tokens, save/load vidgpt LMs.

A *vidgpt LM directory* (docs/CONTRACTS.md) comes in two forms:

- full: a standard HF causal-LM directory (config.json, model.safetensors, tokenizer.json holding the new
  tokens) + vidgpt.json + video_tokenizer/. Plain `AutoModelForCausalLM.from_pretrained` loads it.
- delta: vidgpt.json with `"base"` (the embedded name, a dir or a hub id), new_rows.safetensors (the
  embedding rows of the new tokens; `lm_head` rows too when the head is untied), an optional peft
  adapter in adapter/ (LoRA + trainable-token deltas, merged at load), the tokenizer files and
  video_tokenizer/. It ships in tens of MB on top of the embedded backbone.

Vocabulary extension. New ids start at `offset = len(text_tokenizer)` (not at the embedding size: some
models carry padding rows past the tokenizer; those rows are reused for new tokens). The embedding
matrix is resized to `vocab.total_size` rounded up to `pad_to_multiple_of` (default 64: tensor-core
friendly matmuls for the LM head). The padding rows past `vocab.total_size` are never targets; they
are initialised like the new rows and a constrained sampler never picks them. New rows (and padding
rows) start at the mean of the old rows plus Gaussian noise of `noise * std(old rows)` (seeded), for
the input embedding and, when untied, for the output head.

LoRA goes through peft: `LoraConfig(trainable_token_indices=...)` makes the new rows trainable with
a `TrainableTokensWrapper`; with tied embeddings peft wraps `lm_head` too and shares the delta (tested).
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .embedded import is_embedded_name, load_embedded_model, load_embedded_tokenizer
from .errors import ModelError
from .utils import quiet_hub_progress
from .vocab import UnifiedVocab, VocabSpec

META_NAME = "vidgpt.json"
NEW_ROWS_NAME = "new_rows.safetensors"
ADAPTER_DIR = "adapter"
VIDEO_TOKENIZER_DIR = "video_tokenizer"
TINY_NAME = "tiny-llama"  # a random tiny Llama + toy byte tokenizer, for tests and smoke runs


@dataclass
class VidgptLM:
    """A loaded vidgpt LM: the causal LM, its extended text tokenizer, the vocabulary and the metadata."""

    model: Any  # transformers PreTrainedModel (or a peft PeftModel while training LoRA)
    text_tokenizer: Any  # HF tokenizer holding the new tokens
    vocab: UnifiedVocab
    meta: dict
    video_tokenizer_dir: Path | None
    # weights other than the new rows still equal those of meta["base"] (a delta save is then valid)
    base_intact: bool = False
    extra: dict = field(default_factory=dict)


# --- loading backbones -----------------------------------------------------------------------------


def toy_text_tokenizer(size: int = 256):
    """A byte-level word-piece-free toy tokenizer with `size` ids (no download), for tiny runs and tests.

    Ids 0..2 are <unk>, <s>, </s>; the rest are single characters. It has a small chat template so
    the chat layout works on it.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast

    chars = [chr(c) for c in range(32, 127)] + [chr(c) for c in range(161, 161 + max(0, size - 3 - 95))]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for ch in chars[: size - 3]:
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )
    fast.chat_template = (
        "{% for m in messages %}{{ '<s>' + m['role'] + ':' + m['content'] + '</s>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<s>assistant:' }}{% endif %}"
    )
    return fast


def tiny_llama(vocab_size: int, hidden_size: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2,
               intermediate_size: int | None = None, max_positions: int = 4096, seed: int = 0):
    """A random Llama-shaped causal LM (tied embeddings), for tests and smoke runs."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
        pad_token_id=2,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LlamaForCausalLM(cfg)


# Tiny random models of each family transformers builds (tests, smoke runs; no download). Each entry sets
# what makes the family differ: biases, q/k norms, sliding windows, soft-capping, embedding scaling,
# partial rotary, fused projections, absolute positions, parallel residuals, tied or untied heads.
TINY_FAMILIES = ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "phi3", "gpt_neox", "gpt2")


def tiny_config(family: str, vocab_size: int, hidden_size: int = 64, layers: int = 2, heads: int = 4,
                kv_heads: int = 2, max_positions: int = 4096, tied: bool | None = None):
    """The transformers config of a tiny `family` model (see TINY_FAMILIES); tied=None: the family's default."""
    from transformers import AutoConfig

    if family not in TINY_FAMILIES:
        raise ModelError(f"tiny-{family}: unknown family (known: {', '.join(TINY_FAMILIES)})")
    ids = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}
    head_dim = hidden_size // heads
    if family == "gpt2":
        kw = {"n_embd": hidden_size, "n_layer": layers, "n_head": heads, "n_positions": max_positions,
              "n_inner": 2 * hidden_size}
    elif family == "gpt_neox":
        kw = {"hidden_size": hidden_size, "num_hidden_layers": layers, "num_attention_heads": heads,
              "intermediate_size": 2 * hidden_size, "max_position_embeddings": max_positions, "rotary_pct": 0.25,
              "use_parallel_residual": True}
    else:
        kw = {"hidden_size": hidden_size, "intermediate_size": 2 * hidden_size, "num_hidden_layers": layers,
              "num_attention_heads": heads, "num_key_value_heads": kv_heads, "max_position_embeddings": max_positions}
        if family in ("qwen3", "gemma", "gemma2"):
            kw["head_dim"] = head_dim
        if family == "qwen2":
            kw["use_sliding_window"] = False
        if family == "mistral":
            kw["sliding_window"] = 32  # shorter than a clip: the window matters
        if family == "gemma2":
            kw.update(sliding_window=32, final_logit_softcapping=30.0, attn_logit_softcapping=50.0,
                      query_pre_attn_scalar=head_dim)
        if family == "phi3":
            kw["partial_rotary_factor"] = 0.5
    cfg = AutoConfig.for_model(family, vocab_size=vocab_size, **kw, **ids)
    if tied is not None:
        cfg.tie_word_embeddings = bool(tied)
    return cfg


def tiny_causal_lm(family: str, vocab_size: int, seed: int = 0, **shape):
    """A random tiny causal LM of `family` (tiny_config's shape arguments), in fp32."""
    import torch
    from transformers import AutoModelForCausalLM

    cfg = tiny_config(family, vocab_size, **shape)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(cfg)


def is_tiny_name(name) -> bool:
    """tiny-llama (the historical name) or tiny-<family> for any family in TINY_FAMILIES."""
    s = str(name)
    return s == TINY_NAME or (s.startswith("tiny-") and s[5:] in TINY_FAMILIES)


def load_backbone(name: str, dtype=None, attn_implementation: str | None = None, tiny: dict | None = None):
    """(model, text_tokenizer) for the embedded default, a local HF directory, `tiny-llama`, or a hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if is_embedded_name(name):
        tok = load_embedded_tokenizer()
        model = load_embedded_model(dtype=dtype)
        _drop_gguf_marks(model)
    elif is_tiny_name(name):
        tiny = dict(tiny or {})
        tok = toy_text_tokenizer(int(tiny.pop("text_vocab", 256)))
        family = str(name)[5:]
        if family == "llama" and "tied" not in tiny:
            model = tiny_llama(len(tok), **tiny)
        else:
            shape = {k: tiny[k] for k in ("hidden_size", "layers", "heads", "kv_heads", "tied") if k in tiny}
            if "max_positions" in tiny:
                shape["max_positions"] = tiny["max_positions"]
            model = tiny_causal_lm(family, len(tok), seed=int(tiny.get("seed", 0)), **shape)
    else:
        path = Path(name)
        kwargs: dict = {}
        if dtype is not None:
            kwargs["dtype"] = dtype
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        if path.exists() and not path.is_dir():
            raise ModelError(f"{path}: a backbone is a model directory or a hub id, not a file")
        if path.is_dir() and not (path / "config.json").is_file():
            raise ModelError(f"{path}: not a transformers model directory (no config.json)")
        check_causal_lm_config(name)
        try:  # a local directory, or a hub id (downloads; never exercised in tests)
            tok = AutoTokenizer.from_pretrained(str(name))
            with quiet_hub_progress():
                model = AutoModelForCausalLM.from_pretrained(str(name), **kwargs)
        except (OSError, ValueError) as e:
            raise ModelError(f"{name}: cannot load a causal LM ({str(e).splitlines()[0]})") from e
    set_attention(model, attn_implementation)
    return model, tok


def check_causal_lm_config(name) -> None:
    """ModelError (one line) unless `name` (a dir or hub id) holds a decoder-only causal LM transformers can build."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        cfg = AutoConfig.from_pretrained(str(name))
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"{name}: cannot read the model config ({str(e).splitlines()[0]})") from e
    mtype = getattr(cfg, "model_type", "?")
    if getattr(cfg, "is_encoder_decoder", False):
        raise ModelError(f"{name}: an encoder-decoder model ({mtype}); vidgpt extends decoder-only causal LMs")
    if mtype not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelError(f"{name}: model type {mtype!r} has no causal-LM class in transformers; vidgpt extends decoder-only causal LMs")


def context_length(config) -> int | None:
    """The positions a model config declares (max_position_embeddings, n_positions, ...); None when unknown."""
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx"):
        v = getattr(config, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def check_extension(name, model, text_tokenizer, vocab: UnifiedVocab, *, chat: bool,
                    clip: tuple[int, int, int] | None = (17, 128, 128), prompt_tokens: int = 64,
                    space_factor: int = 8) -> None:
    """ModelError (one line) when the extended backbone cannot serve vidgpt's layout.

    chat: the chat layout needs the tokenizer's chat template. clip: frames, height, width of the clip one
    context must hold (with its blueprint and a prompt of `prompt_tokens`); None skips the check.
    """
    if chat and not getattr(text_tokenizer, "chat_template", None):
        raise ModelError(f"{name}: the tokenizer has no chat template; use the plain layout "
                         "(`lm extend --plain-layout`, data.chat: false)")
    if clip is not None:
        from .geometry import block_length, latent_shape

        frames, height, width = clip
        need = block_length(latent_shape(frames, height, width, space_factor=space_factor), vocab.spec.subtokens) + prompt_tokens
        ctx = context_length(model.config)
        if ctx is not None and ctx < need:
            raise ModelError(
                f"{name}: a context of {ctx} positions is too short for one {frames}x{height}x{width} clip "
                f"({need} tokens with blueprint and prompt); choose a longer-context backbone or a smaller clip (--clip)"
            )


def set_attention(model, attn: str | None) -> str | None:
    """Switch `model` to attention kernel `attn`; a family that refuses it (Gemma2's soft-capping has no sdpa
    path) keeps a kernel it supports (eager), with a warning. Returns the kernel in use."""
    if not attn or not hasattr(model, "set_attn_implementation"):
        return getattr(getattr(model, "config", None), "_attn_implementation", None)
    try:
        model.set_attn_implementation(attn)
    except (ValueError, ImportError) as e:
        import warnings

        warnings.warn(f"{type(model).__name__}: attention {attn!r} unavailable ({str(e).splitlines()[0][:120]}); using eager",
                      stacklevel=2)
        model.set_attn_implementation("eager")
        return "eager"
    return attn


def _drop_gguf_marks(model) -> None:
    """A GGUF-loaded model is dequantised; forget the quantisation so it saves as a plain HF model."""
    for attr in ("quantization_config",):
        if hasattr(model.config, attr):
            try:
                delattr(model.config, attr)
            except AttributeError:
                pass
    for attr in ("hf_quantizer", "quantization_method"):
        if getattr(model, attr, None) is not None:
            try:
                setattr(model, attr, None)
            except AttributeError:
                pass
    model.is_quantized = False
    model.config._name_or_path = "smollm2-135m"


# --- vocabulary extension ------------------------------------------------------------------------------


def codebook_bits_of(tokenizer_dir: str | Path) -> int:
    """K from a video tokenizer directory's config.json (key `codebook_bits`)."""
    cfg = Path(tokenizer_dir) / "config.json"
    if not cfg.is_file():
        raise ModelError(f"{tokenizer_dir}: not a video tokenizer directory (no config.json)")
    try:
        return int(json.loads(cfg.read_text())["codebook_bits"])
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{cfg}: no integer `codebook_bits` ({e})") from e


def _space_factor_of(tokenizer_dir) -> int:
    """The video tokenizer's spatial compression (config.json `space_factor`; 8 when absent)."""
    try:
        return int(json.loads((Path(tokenizer_dir) / "config.json").read_text()).get("space_factor") or 8)
    except (TypeError, OSError, ValueError):
        return 8


def default_subtokens(bits: int) -> int:
    """S for K: one sub-token up to 16 bits (65,536 rows), else the smallest S dividing K with <= 16 bits each."""
    if bits <= 16:
        return 1
    for s in range(2, bits + 1):
        if bits % s == 0 and bits // s <= 16:
            return s
    return bits


def add_vocab_tokens(text_tokenizer, spec: VocabSpec) -> UnifiedVocab:
    """Add the new tokens to the HF tokenizer as special added tokens; check their ids match the vocab's."""
    from tokenizers import AddedToken

    vocab = UnifiedVocab(spec, offset=len(text_tokenizer))
    strings = vocab.token_strings()
    clash = [s for s in strings[:8] if s in text_tokenizer.get_vocab()]
    if clash:
        raise ModelError(f"the text tokenizer already holds {clash[0]!r}; is it extended already?")
    tokens = [AddedToken(s, special=True, normalized=False, single_word=False) for s in strings]
    added = text_tokenizer.add_tokens(tokens, special_tokens=True)
    if added != len(strings):
        raise ModelError(f"the text tokenizer added {added} of {len(strings)} new tokens")
    got = text_tokenizer.convert_tokens_to_ids([strings[0], strings[-1]])
    if got != [vocab.offset, vocab.end - 1]:
        raise ModelError(f"new token ids {got} differ from the vocabulary's {[vocab.offset, vocab.end - 1]}")
    return vocab


def resize_with_mean_init(model, vocab: UnifiedVocab, pad_to_multiple_of: int = 64, noise: float = 0.02,
                          seed: int = 0) -> int:
    """Resize input (and untied output) embeddings for `vocab`; new rows = mean of old rows + noise. Returns rows."""
    import torch

    emb = model.get_input_embeddings()
    old_rows = emb.weight.shape[0]
    rows = vocab.total_size
    if pad_to_multiple_of and pad_to_multiple_of > 1:
        rows = -(-rows // pad_to_multiple_of) * pad_to_multiple_of
    rows = max(rows, old_rows)
    model.resize_token_embeddings(rows, mean_resizing=False)
    gen = torch.Generator().manual_seed(seed)
    from .row_init import embedding_weights

    with torch.no_grad():
        for w in embedding_weights(model):
            old = w[: vocab.offset].float()
            mean, std = old.mean(0), old.std()
            n = rows - vocab.offset
            fresh = mean + noise * std * torch.randn(n, w.shape[1], generator=gen)
            w[vocab.offset :] = fresh.to(w.dtype)
    model.config.vocab_size = rows
    return rows


def extend_backbone(model, text_tokenizer, spec: VocabSpec, pad_to_multiple_of: int = 64, seed: int = 0,
                    noise: float = 0.02, row_init: str = "mean", row_init_scale: float = 1.0,
                    tokenizer_dir=None) -> UnifiedVocab:
    """Add the vocab's tokens to the tokenizer and the model (in place); returns the vocabulary.

    New rows start at the mean of the old ones plus `noise`; `row_init` other than "mean" adds structure on top
    (vidgpt.row_init: the code's bits, the text embedding of its colour)."""
    from .row_init import apply_row_init

    vocab = add_vocab_tokens(text_tokenizer, spec)
    resize_with_mean_init(model, vocab, pad_to_multiple_of=pad_to_multiple_of, noise=noise, seed=seed)
    apply_row_init(model, vocab, text_tokenizer, row_init, scale=row_init_scale, seed=seed, tokenizer_dir=tokenizer_dir)
    return vocab


def make_meta(vocab: UnifiedVocab, backbone: str, *, chat: bool = True, base: str | None = None,
              embedding_rows: int | None = None) -> dict:
    meta = {
        "format": "vidgpt-lm",
        "version": 1,
        "vocab": vocab.to_dict(),
        "layout": {"chat": chat},
        "backbone": str(backbone),
        "video_tokenizer": VIDEO_TOKENIZER_DIR,
        "prompt_expansion": False,
    }
    if embedding_rows is not None:
        meta["embedding_rows"] = int(embedding_rows)
    if base is not None:
        meta["base"] = str(base)
    return meta


def extend(backbone: str, tokenizer_dir: str | Path | None, *, codebook_bits: int | None = None,
           subtokens: int | None = None, seed: int = 0, pad_to_multiple_of: int = 64, chat: bool = True,
           tiny: dict | None = None, max_latent_t: int = 64, max_latent_hw: int = 64,
           clip: tuple[int, int, int] | None = (17, 128, 128), row_init: str = "mean",
           row_init_scale: float = 1.0) -> VidgptLM:
    """Load `backbone`, extend it for the video tokenizer in `tokenizer_dir` (K from its config.json).

    Refuses (ModelError) what it cannot extend: not a decoder-only causal LM, no chat template when
    `chat`, a context shorter than one `clip` (frames, height, width; None: no check).
    """
    if codebook_bits is None:
        if tokenizer_dir is None:
            raise ModelError("give a video tokenizer directory or codebook_bits")
        codebook_bits = codebook_bits_of(tokenizer_dir)
    if subtokens is None:
        subtokens = default_subtokens(codebook_bits)
    if codebook_bits // subtokens > 16:
        raise ModelError(
            f"K={codebook_bits} with S={subtokens} gives 2**{codebook_bits // subtokens} rows per sub-token; use more sub-tokens"
        )
    try:
        spec = VocabSpec(codebook_bits, subtokens, max_latent_t, max_latent_hw)
    except Exception as e:
        raise ModelError(str(e)) from e
    model, tok = load_backbone(backbone, tiny=tiny)
    probe = UnifiedVocab(spec, offset=len(tok))
    check_extension(backbone, model, tok, probe, chat=chat, clip=clip, space_factor=_space_factor_of(tokenizer_dir))
    vocab = extend_backbone(model, tok, spec, pad_to_multiple_of=pad_to_multiple_of, seed=seed, row_init=row_init,
                            row_init_scale=row_init_scale, tokenizer_dir=tokenizer_dir)
    rows = model.get_input_embeddings().weight.shape[0]
    base = "smollm2-135m" if is_embedded_name(backbone) else str(backbone)
    meta = make_meta(vocab, base, chat=chat, base=base, embedding_rows=rows)
    model.eval()
    return VidgptLM(model, tok, vocab, meta, Path(tokenizer_dir) if tokenizer_dir else None, base_intact=True,
                    extra={"tiny": tiny} if tiny else {})


# --- LoRA ---------------------------------------------------------------------------------------------------


def _module_name(model, module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name.split(".")[-1]
    raise ModelError("cannot find the embedding module by name")


def apply_lora(lm: VidgptLM, r: int = 16, alpha: int = 32, dropout: float = 0.0,
               target_modules: list[str] | str = "all-linear", train_new_rows: bool = True):
    """Wrap lm.model in a peft LoRA model; the new token rows stay trainable (TrainableTokensWrapper)."""
    from peft import LoraConfig, get_peft_model

    model = lm.model
    indices = list(range(lm.vocab.offset, model.get_input_embeddings().weight.shape[0]))
    trainable: dict[str, list[int]] | None = None
    if train_new_rows:
        trainable = {_module_name(model, model.get_input_embeddings()): indices}
        out = model.get_output_embeddings()
        if out is not None and out.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
            trainable[_module_name(model, out)] = indices
    targets = target_modules
    if isinstance(targets, list) and len(targets) == 1 and targets[0] == "all-linear":
        targets = "all-linear"
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                     trainable_token_indices=trainable, task_type="CAUSAL_LM")
    lm.model = get_peft_model(model, cfg)
    return lm.model


def is_peft(model) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, PeftModel)


def base_model(model):
    """The transformers model under a peft wrapper (the model itself when it has none)."""
    return model.get_base_model() if is_peft(model) else model


def merge_lora(lm: VidgptLM) -> VidgptLM:
    """Merge a peft adapter into the weights (in place); the model is plain transformers afterwards."""
    if is_peft(lm.model):
        lm.model = lm.model.merge_and_unload()
        lm.base_intact = False
    return lm


# --- saving and loading vidgpt LM directories -------------------------------------------------------------


def _copy_video_tokenizer(src: Path | None, dst: Path) -> None:
    if src is None or not Path(src).is_dir():
        return
    shutil.copytree(src, dst / VIDEO_TOKENIZER_DIR, dirs_exist_ok=True)


def _new_rows(model, vocab: UnifiedVocab) -> dict:
    """Rows [offset:] of the input embedding (and of the untied head) of a plain or peft model."""
    import torch

    base = base_model(model)
    emb = base.get_input_embeddings()
    w_in = getattr(getattr(emb, "token_adapter", None), "base_layer", emb).weight
    rows = {"embed_tokens": w_in[vocab.offset :].detach().to(torch.float32).cpu().contiguous()}
    out = base.get_output_embeddings()
    if out is not None:
        w_out = getattr(getattr(out, "token_adapter", None), "base_layer", out).weight
        if w_out.data_ptr() != w_in.data_ptr():
            rows["lm_head"] = w_out[vocab.offset :].detach().to(torch.float32).cpu().contiguous()
    return rows


def save_vidgpt_lm(lm: VidgptLM, out: str | Path, form: str = "full") -> Path:
    """Write `lm` as a vidgpt LM directory (atomically). form: "full" or "delta".

    full: a peft model is merged first (lm.model becomes the merged model).
    delta: needs the weights besides the new rows to equal meta["base"] (an untrained extension, or LoRA
    on one); writes new_rows.safetensors, adapter/ when LoRA is on, tokenizer files, vidgpt.json.
    """
    out = Path(out)
    if form not in ("full", "delta"):
        raise ModelError(f"form={form!r}: expected 'full' or 'delta'")
    meta = dict(lm.meta)
    # the parent hint (vidgpt.parent_hint) ships as a file of its own, not inside the backbone's weights
    with parent_hint_detached(lm) as hint:
        if hint is not None:
            meta["parent_hint"] = True
        else:
            meta.pop("parent_hint", None)
        _save_dir(lm, out, form, meta, hint)
    return out


@contextmanager
def parent_hint_detached(lm: VidgptLM):
    """The parent hint module (vidgpt.parent_hint; None without one) taken off lm's model for the body and yielded,
    put back after on lm.model as it is then (a full save merges the LoRA and replaces lm.model): the hint is a file
    of its own, never one of the backbone's weights."""
    from .parent_hint import ATTR

    hint = getattr(base_model(lm.model), ATTR, None)
    if hint is not None:
        delattr(base_model(lm.model), ATTR)
    try:
        yield hint
    finally:
        if hint is not None:
            base_model(lm.model).add_module(ATTR, hint)


def attach_directory_hint(model, directory: Path) -> None:
    """The model directory's parent hint (parent_hint.safetensors, when it has one) attached to `model`, frozen: kept
    on the model so a re-save (tools/ship_model.py) writes it again."""
    from .parent_hint import attach_parent_hint, load_parent_hint_state

    hint = load_parent_hint_state(directory)
    if hint is not None:
        attach_parent_hint(base_model(model), hint).requires_grad_(False)


def _save_dir(lm: VidgptLM, out: Path, form: str, meta: dict, hint) -> None:
    from safetensors.torch import save_file

    from .parent_hint import save_parent_hint
    from .utils import atomic_dir

    with atomic_dir(out) as tmp:
        if form == "full":
            merge_lora(lm)
            meta.pop("base", None)
            with quiet_hub_progress():
                lm.model.save_pretrained(tmp)
        else:
            if not lm.base_intact or "base" not in meta:
                raise ModelError(
                    f"{out}: a delta save needs the base weights untouched (an extension or LoRA on it); save the full form"
                )
            save_file(_new_rows(lm.model, lm.vocab), str(tmp / NEW_ROWS_NAME), metadata={"offset": str(lm.vocab.offset)})
            if is_peft(lm.model):
                lm.model.save_pretrained(tmp / ADAPTER_DIR)
                readme = tmp / ADAPTER_DIR / "README.md"
                if readme.exists():
                    readme.unlink()
            if lm.extra.get("tiny"):
                meta["tiny"] = lm.extra["tiny"]
        lm.text_tokenizer.save_pretrained(tmp)
        if hint is not None:
            save_parent_hint(hint, tmp)
        meta["form"] = form
        (tmp / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        _copy_video_tokenizer(lm.video_tokenizer_dir, tmp)


def read_meta(directory: str | Path) -> dict:
    d = Path(directory)
    p = d / META_NAME
    if not p.is_file():
        raise ModelError(f"{d}: not a vidgpt model (no vidgpt.json); make one with `vidgpt lm extend`")
    try:
        meta = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ModelError(f"{p}: not valid JSON ({e})") from e
    if meta.get("format") != "vidgpt-lm" or "vocab" not in meta:
        raise ModelError(f"{p}: not a vidgpt-lm metadata file (format={meta.get('format')!r})")
    return meta


def load_vidgpt_lm(directory: str | Path, dtype=None, device=None, attn_implementation: str | None = None,
                   merge_adapter: bool = True) -> VidgptLM:
    """Load a vidgpt LM directory (full or delta form) in eval mode."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = Path(directory)
    meta = read_meta(d)
    vocab = UnifiedVocab.from_dict(meta["vocab"])
    tok = AutoTokenizer.from_pretrained(str(d))
    if len(tok) != vocab.end:
        raise ModelError(f"{d}: the tokenizer has {len(tok)} tokens but vidgpt.json says {vocab.end}")
    base_intact = False
    if "base" in meta and (d / NEW_ROWS_NAME).is_file():
        model, _ = load_backbone(meta["base"], dtype=None, tiny=meta.get("tiny"))
        rows = load_file(str(d / NEW_ROWS_NAME))
        n_rows = vocab.offset + rows["embed_tokens"].shape[0]
        model.resize_token_embeddings(n_rows, mean_resizing=False)
        model.config.vocab_size = n_rows
        with torch.no_grad():
            emb = model.get_input_embeddings().weight
            emb[vocab.offset :] = rows["embed_tokens"].to(emb.dtype)
            out = model.get_output_embeddings()
            if "lm_head" in rows and out is not None:
                out.weight[vocab.offset :] = rows["lm_head"].to(out.weight.dtype)
        base_intact = True
        if (d / ADAPTER_DIR).is_dir():
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(d / ADAPTER_DIR))
            if merge_adapter:
                model = model.merge_and_unload()
                base_intact = False
        if dtype is not None:
            model = model.to(dtype)
    elif (d / "config.json").is_file():
        kwargs: dict = {}
        if dtype is not None:
            kwargs["dtype"] = dtype
        with quiet_hub_progress():
            model = AutoModelForCausalLM.from_pretrained(str(d), **kwargs)
    else:
        raise ModelError(f"{d}: vidgpt.json present but neither model weights (config.json) nor {NEW_ROWS_NAME}")
    set_attention(model, attn_implementation)
    if device is not None:
        model = model.to(device)
    model.eval()
    attach_directory_hint(model, d)
    vt = d / meta.get("video_tokenizer", VIDEO_TOKENIZER_DIR)
    lm = VidgptLM(model, tok, vocab, meta, vt if vt.is_dir() else None, base_intact=base_intact)
    if meta.get("tiny"):
        lm.extra["tiny"] = meta["tiny"]
    return lm


# --- what a directory holds (`vidgpt lm info`) -----------------------------------------------------------------


def _config_summary(cfg) -> dict:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    get = lambda *keys: next((getattr(cfg, k) for k in keys if isinstance(getattr(cfg, k, None), int)), None)  # noqa: E731
    return {
        "model_type": getattr(cfg, "model_type", None),
        "architectures": list(getattr(cfg, "architectures", None) or []),
        "causal_lm": getattr(cfg, "model_type", None) in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and not getattr(cfg, "is_encoder_decoder", False),
        "encoder_decoder": bool(getattr(cfg, "is_encoder_decoder", False)),
        "layers": get("num_hidden_layers", "n_layer"),
        "hidden_size": get("hidden_size", "n_embd", "d_model"),
        "heads": get("num_attention_heads", "n_head"),
        "kv_heads": get("num_key_value_heads"),
        "vocab_size": get("vocab_size"),
        "context": context_length(cfg),
        "tied_head": bool(getattr(cfg, "tie_word_embeddings", False)),
        "sliding_window": getattr(cfg, "sliding_window", None),
    }


def _tokenizer_summary(d: Path) -> dict:
    files = {p.name for p in d.iterdir()} if d.is_dir() else set()
    if not files & {"tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model"}:
        return {"present": False}
    chat = "chat_template.jinja" in files or "chat_template.json" in files
    cfg = d / "tokenizer_config.json"
    if cfg.is_file():
        try:
            chat = chat or bool(json.loads(cfg.read_text()).get("chat_template"))
        except (ValueError, OSError):
            pass
    return {"present": True, "chat_template": chat}


def describe_dir(directory: str | Path) -> dict:
    """What `directory` holds: a vidgpt LM (full/delta), a plain HF model, a video tokenizer or a training run."""
    from .copy_readout import COPY_KEY
    from .parent_hint import CAPTION_KEY, PREV_KEY, caption_form_of, saved_hint_shapes

    d = Path(directory)
    if not d.is_dir():
        raise ModelError(f"{d}: not a directory")
    files = sorted(p.name for p in d.iterdir())
    info: dict = {"path": str(d), "size_mib": round(sum(f.stat().st_size for f in d.rglob("*") if f.is_file()) / 2**20, 2)}
    if (d / META_NAME).is_file():
        meta = read_meta(d)
        vocab = meta["vocab"]
        info.update(kind="vidgpt-lm", form=meta.get("form", "full"), base=meta.get("base"), backbone=meta.get("backbone"),
                    codebook_bits=vocab.get("codebook_bits"), subtokens=vocab.get("subtokens"),
                    text_vocab=vocab.get("offset"), new_tokens=vocab.get("num_new_tokens"),
                    embedding_rows=meta.get("embedding_rows"), chat_layout=bool((meta.get("layout") or {}).get("chat", True)),
                    adapter=(d / ADAPTER_DIR).is_dir(), video_tokenizer=(d / meta.get("video_tokenizer", VIDEO_TOKENIZER_DIR)).is_dir(),
                    tokenizer=_tokenizer_summary(d), parent_hint=bool(hints := saved_hint_shapes(d)),
                    prev_frame_hint=PREV_KEY in hints, caption_hint=CAPTION_KEY in hints,
                    caption_form=caption_form_of(hints[CAPTION_KEY]) if CAPTION_KEY in hints else None,
                    copy_readout=COPY_KEY in hints)
        if (d / "config.json").is_file():
            from transformers import AutoConfig

            info["model"] = _config_summary(AutoConfig.from_pretrained(str(d)))
        return info
    if (d / "checkpoints").is_dir() or ((d / "model").is_dir() and (d / "log.jsonl").is_file()):
        steps = sorted(p.name for p in (d / "checkpoints").iterdir() if p.name.startswith("step-")) if (d / "checkpoints").is_dir() else []
        info.update(kind="training-run", checkpoints=steps, model=(d / "model" / META_NAME).is_file(),
                    sharded=any((d / "checkpoints" / s).glob("pytorch_model_fsdp_*") for s in steps[-1:]))
        return info
    if (d / "config.json").is_file():
        raw = json.loads((d / "config.json").read_text())
        if "codebook_bits" in raw and ("model_type" not in raw or "tokenizer" in str(raw.get("model_type"))):
            info.update(kind="video-tokenizer", codebook_bits=raw["codebook_bits"], space_factor=raw.get("space_factor"))
            return info
        from transformers import AutoConfig

        try:
            cfg = AutoConfig.from_pretrained(str(d))
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"{d}/config.json: not a transformers config ({str(e).splitlines()[0]})") from e
        info.update(kind="hf-model", model=_config_summary(cfg), tokenizer=_tokenizer_summary(d),
                    weights=[f for f in files if f.endswith((".safetensors", ".bin", ".gguf"))])
        m = info["model"]
        info["extendable"] = (
            "no: encoder-decoder" if m["encoder_decoder"] else "no: not a causal LM" if not m["causal_lm"]
            else "no: no tokenizer files" if not info["tokenizer"]["present"] else "yes"
        )
        return info
    raise ModelError(f"{d}: neither a vidgpt LM, a transformers model, a video tokenizer nor a training run "
                     f"(holds {', '.join(files[:6]) or 'nothing'})")


def format_description(info: dict) -> str:
    """Readable lines for `vidgpt lm info`."""
    k = info["kind"]
    lines = [f"{info['path']}: {k} ({info['size_mib']} MiB)"]
    m = info.get("model")
    if isinstance(m, dict):
        lines.append(f"  model: {m['model_type']} ({', '.join(m['architectures']) or '?'}), {m['layers']} layers, hidden "
                     f"{m['hidden_size']}, heads {m['heads']}/{m['kv_heads'] or m['heads']}, vocab {m['vocab_size']}, "
                     f"context {m['context']}, {'tied' if m['tied_head'] else 'untied'} head")
    if k == "vidgpt-lm":
        lines.append(f"  form: {info['form']}" + (f" on base {info['base']}" if info.get("base") else "")
                     + (", LoRA adapter" if info["adapter"] else "")
                     + (", parent hints" if info.get("parent_hint") else "")
                     + (" + previous-frame hints" if info.get("prev_frame_hint") else "")
                     + (f" + caption hints ({info.get('caption_form') or 'matrix'} R)" if info.get("caption_hint") else "")
                     + (" + copy read-out" if info.get("copy_readout") else ""))
        lines.append(f"  vocabulary: {info['text_vocab']} text + {info['new_tokens']} new tokens (K={info['codebook_bits']}, "
                     f"S={info['subtokens']}), {info['embedding_rows']} embedding rows")
        lines.append(f"  layout: {'chat' if info['chat_layout'] else 'plain'}; video tokenizer: "
                     f"{'present' if info['video_tokenizer'] else 'missing'}")
    elif k == "hf-model":
        t = info["tokenizer"]
        lines.append(f"  tokenizer: {'present' if t['present'] else 'missing'}"
                     + (f", chat template: {'yes' if t.get('chat_template') else 'no'}" if t["present"] else ""))
        lines.append(f"  weights: {', '.join(info['weights']) or 'none'}; vidgpt lm extend: {info['extendable']}")
    elif k == "training-run":
        lines.append(f"  checkpoints: {', '.join(info['checkpoints']) or 'none'}{' (sharded, FSDP)' if info['sharded'] else ''}; "
                     f"final model: {'model/' if info['model'] else 'not yet'}")
    elif k == "video-tokenizer":
        lines.append(f"  codebook: K={info['codebook_bits']} bits")
    return "\n".join(lines)
