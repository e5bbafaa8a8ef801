"""A tiny random VidGPT (random Llama + random video tokenizer) for tests, benchmarks and smoke runs.

Its output is noise, but every code path -- constraint, CFG, fast decode, decoding to frames --
runs exactly as with a trained model, in about a second on a CPU.
"""

from __future__ import annotations

import torch

from ..vocab import UnifiedVocab, VocabSpec


def tiny_lm(vocab_size: int, hidden: int = 48, layers: int = 2, heads: int = 4, kv_heads: int = 2,
            max_positions: int = 2048, seed: int = 0, rope_scaling: dict | None = None, tied: bool = False):
    """A random LlamaForCausalLM (GQA; tied or separate head) covering `vocab_size` ids."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    kw = {}
    if rope_scaling is not None:
        kw["rope_scaling"] = rope_scaling
    cfg = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=max_positions,
        tie_word_embeddings=tied, rms_norm_eps=1e-5, **kw,
    )
    model = LlamaForCausalLM(cfg).eval()
    # logits of about unit spread, so samples vary with the seed but are not uniform noise
    with torch.no_grad():
        model.model.embed_tokens.weight.normal_(0, 1.0)
        if not tied:
            model.lm_head.weight.normal_(0, 1.5 / hidden**0.5)
    return model


def tiny_video_tokenizer(bits: int, seed: int = 0):
    from ..tokenizer import TokenizerConfig, VideoTokenizer

    torch.manual_seed(seed)
    return VideoTokenizer(TokenizerConfig(codebook_bits=bits, channels=8, norm_groups=4)).eval()


def tiny_pipeline(text_tokenizer=None, bits: int = 6, subtokens: int = 1, max_latent_t: int = 8, max_latent_hw: int = 8,
                  chat: bool = True, max_positions: int = 2048, fast: bool = True, seed: int = 0, meta: dict | None = None,
                  decode_options: dict | None = None, **lm_kwargs):
    """A VidGPT over the embedded SmolLM2 tokenizer with a tiny random LM and video tokenizer."""
    from ..embedded import load_embedded_tokenizer
    from .pipeline import VidGPT

    text_tokenizer = text_tokenizer or load_embedded_tokenizer()
    vocab = UnifiedVocab(VocabSpec(bits, subtokens, max_latent_t, max_latent_hw), offset=len(text_tokenizer))
    model = tiny_lm(vocab.total_size, max_positions=max_positions, seed=seed, **lm_kwargs)
    meta = {"format": "vidgpt-lm", "version": 1, "vocab": vocab.to_dict(), "layout": {"chat": chat}, **(meta or {})}
    return VidGPT(model, text_tokenizer, vocab, tiny_video_tokenizer(bits, seed), chat=chat, meta=meta, fast=fast,
                  decode_options=decode_options)
