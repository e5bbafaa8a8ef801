"""The fast decoder runs every backbone family and gives the plain transformers path's tokens.

Each family is a tiny random model built locally from its transformers config (vidgpt.backbone
tiny_config, the family's quirks on), with its 1-D weights (norms, biases) perturbed so that norm
kinds and biases matter, short sliding windows and strong soft-capping so that those matter too
(test_the_family_switches_matter checks the tests can fail). Anything the fast path does not
support falls back to the plain path, with the reason kept on the backend.
"""

import warnings

import pytest
import torch

from vidgpt.backbone import TINY_FAMILIES, tiny_config, toy_text_tokenizer
from vidgpt.generate.decoding import HFBackend, left_pad
from vidgpt.generate.fast_decode import FastDecoder, make_backend

pytestmark = pytest.mark.usefixtures("one_thread")

TIED = {"llama": False, "qwen2": True, "qwen3": False, "mistral": False, "gemma": True, "gemma2": False,
        "phi3": False, "gpt_neox": False, "gpt2": True}
WINDOW = 12  # mistral / gemma2: shorter than the prompts + generated tokens below


def family_lm(family: str, vocab_size: int, tied: bool | None = None, seed: int = 0):
    from transformers import AutoModelForCausalLM

    tied = TIED[family] if tied is None else tied
    cfg = tiny_config(family, vocab_size, hidden_size=64, layers=2, heads=4, kv_heads=2, max_positions=512, tied=tied)
    if family in ("mistral", "gemma2"):
        cfg.sliding_window = WINDOW
    if family == "gemma2":
        cfg.attn_logit_softcapping, cfg.final_logit_softcapping = 1.0, 3.0
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.dim() == 1:  # norm weights and biases away from their initial 1 / 0
                    p.add_(torch.randn_like(p) * 0.3)
                elif family == "gemma2" and ("q_proj" in name or "k_proj" in name):
                    p.mul_(20)  # scores large enough for the soft-cap to bend them
            model.get_input_embeddings().weight.normal_(0, 1.0)
            if not tied:  # logits of about unit spread: samples depend on the seed, greedy has no near-ties
                model.get_output_embeddings().weight.normal_(0, 1.5 / 64**0.5)
    assert (model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()) == tied
    return model


def _max_diff(model, fast, steps=24, V=300):
    """max |logits| difference, plain vs fast, over a left-padded prefill and `steps` greedy steps."""
    ids, mask = left_pad([[5, 6, 7, 8, 9, 10, 11], [11, 12, 13], list(range(20, 36))], 0)
    plain = HFBackend(model)
    a, h = plain.prefill(ids, mask), fast.prefill(ids, mask, max_len=16 + steps + 2)
    diff = (a - fast.logits(h, 0, V)).abs().max().item()
    for _ in range(steps):
        tok = a.argmax(-1)
        a, h = plain.step(tok), fast.step(tok)
        diff = max(diff, (a - fast.logits(h, 0, V)).abs().max().item())
    return diff, a.abs().max().item()


@pytest.mark.parametrize("weights,attention", [("auto", "filled"), ("t", "static")])  # CPU default; the CUDA path's forward
@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_logits_match_plain_path(family, weights, attention):
    model = family_lm(family, 300)
    backend = make_backend(model, weights=weights, attention=attention)
    assert backend.name == "fast" and backend.family == family
    diff, scale = _max_diff(model, backend)
    assert diff < 1e-5 * max(1.0, scale), (diff, scale)


def test_the_family_switches_matter():
    """Turning one family switch off changes the logits: the exactness tests above can fail."""
    def off(model, fn=None, **attrs):
        fast = FastDecoder(model)
        fast.pack(3)
        for lay in fast.layers:
            for k, v in attrs.items():
                setattr(lay, k, v)
        if fn:
            fn(fast)
        return _max_diff(model, fast, steps=16)[0]

    gemma2, mistral, neox, gpt2 = (family_lm(f, 300) for f in ("gemma2", "mistral", "gpt_neox", "gpt2"))
    assert off(gemma2) < 1e-5
    for what in ({"softcap": None}, {"post_attn": None}, {"post_mlp": None}):
        assert off(gemma2, **what) > 1e-3, what
    assert off(gemma2, fn=lambda f: setattr(f, "logit_softcap", None)) > 1e-3
    assert off(gemma2, window=None) > 1e-3 and off(mistral, window=None) > 1e-3
    assert off(neox, parallel=False) > 1e-3
    assert off(gpt2, fn=lambda f: setattr(f, "embed", lambda ids, pos: f.model.transformer.wte(ids))) > 1e-3


@pytest.fixture(scope="module")
def toy_tok():
    return toy_text_tokenizer(128)


def family_pipeline(tok, family, fast=True, decode_options=None):
    from vidgpt.generate.pipeline import VidGPT
    from vidgpt.generate.tiny import tiny_video_tokenizer
    from vidgpt.vocab import UnifiedVocab, VocabSpec

    vocab = UnifiedVocab(VocabSpec(6, 1, 8, 8), offset=len(tok))
    meta = {"format": "vidgpt-lm", "version": 1, "vocab": vocab.to_dict(), "layout": {"chat": True}}
    return VidGPT(family_lm(family, vocab.total_size), tok, vocab, tiny_video_tokenizer(6), chat=True, meta=meta,
                  fast=fast, decode_options=decode_options)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_greedy_and_seeded_tokens_equal_plain_path(toy_tok, family):
    fast, plain = family_pipeline(toy_tok, family), family_pipeline(toy_tok, family, fast=False)
    assert fast.backend.name == "fast" and plain.backend.name == "plain"
    for kw in ({"temperature": 0.0, "cfg": 3.0}, {"temperature": 1.0, "seed": 5, "cfg": 2.0, "num": 2}):
        a = fast.generate("ab", frames=5, height=16, width=16, decode=False, **kw)
        b = plain.generate("ab", frames=5, height=16, width=16, decode=False, **kw)
        assert a.token_ids == b.token_ids
        assert len(a.prompt_ids) + len(a.token_ids[0]) > WINDOW + 8  # the windows slide within a clip


@pytest.mark.parametrize("family", ["gemma2", "gpt_neox"])
def test_speculative_decoding_gives_the_plain_paths_tokens(toy_tok, family):
    """Several positions a pass (step_many, truncate) under sliding windows and soft-caps."""
    kw = {"temperature": 1.0, "seed": 3, "cfg": 2.0}
    ref = family_pipeline(toy_tok, family, fast=False).generate("ab", frames=5, height=16, width=16, decode=False, **kw)
    spec = family_pipeline(toy_tok, family, decode_options={"speculative": 4})
    out = spec.generate("ab", frames=5, height=16, width=16, decode=False, **kw)
    assert out.token_ids == ref.token_ids
    assert spec.last_stats["passes"] < spec.last_stats["tokens"]


def _rope(family, params):
    from transformers import AutoModelForCausalLM

    cfg = tiny_config(family, 100, hidden_size=32, layers=1, heads=2, kv_heads=1, max_positions=256)
    cfg.rope_parameters = {"rope_theta": 10000.0, **params}
    if "original_max_position_embeddings" in params:
        cfg.original_max_position_embeddings = params["original_max_position_embeddings"]
    return AutoModelForCausalLM.from_config(cfg).eval()


def _opt():
    from transformers import OPTConfig, OPTForCausalLM

    return OPTForCausalLM(OPTConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, ffn_dim=64,
                                    num_attention_heads=2, word_embed_proj_dim=32)).eval()


@pytest.mark.parametrize("make,reason", [
    (_opt, "model type 'opt'"),
    (lambda: _rope("phi3", {"rope_type": "longrope", "partial_rotary_factor": 0.5, "short_factor": [1.0] * 4,
                             "long_factor": [2.0] * 4, "original_max_position_embeddings": 64}), "rope type 'longrope'"),
    (lambda: _rope("llama", {"rope_type": "dynamic", "factor": 2.0}), "rope type 'dynamic'"),
], ids=["opt", "phi3-longrope", "llama-dynamic-rope"])
def test_unsupported_falls_back_to_the_plain_path_and_says_why(make, reason):
    model = make()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend = make_backend(model)
    assert isinstance(backend, HFBackend) and backend.name == "plain"
    assert reason in backend.fallback_reason
    assert any("fast decoding unavailable" in str(w.message) and reason in str(w.message) for w in caught)
    with pytest.raises(ValueError, match=reason.replace("'", ".")):
        FastDecoder(model)
    assert make_backend(model, fast=False).fallback_reason == "fast decoding turned off"
