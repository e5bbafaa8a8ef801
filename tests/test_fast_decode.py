"""The fast static-cache decoder matches the plain transformers path."""

import warnings

import pytest
import torch

from vidgpt.generate.decoding import HFBackend, left_pad
from vidgpt.generate.fast_decode import FastLlama, make_backend
from vidgpt.generate.tiny import tiny_lm, tiny_pipeline


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("rope", [None, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                          "high_freq_factor": 4.0, "original_max_position_embeddings": 64}])
def test_logits_match_plain_path_with_left_padding(rope):
    model = tiny_lm(300, hidden=64, max_positions=256, rope_scaling=rope, tied=rope is None)
    ids, mask = left_pad([[5, 6, 7, 8, 9], [11, 12], [13, 14, 15, 16, 17, 18, 19]], 0)
    plain, fast = HFBackend(model), FastLlama(model)
    a, h = plain.prefill(ids, mask), fast.prefill(ids, mask, max_len=40)
    assert torch.allclose(a, fast.logits(h, 0, 300), atol=1e-4)
    for _ in range(12):
        tok = a.argmax(-1)
        a, h = plain.step(tok), fast.step(tok)
        assert torch.allclose(a, fast.logits(h, 0, 300), atol=1e-4)
        assert torch.allclose(a[:, 100:164], fast.logits(h, 100, 164), atol=1e-4)  # sliced head


def test_greedy_and_seeded_tokens_equal_plain_path(text_tok):
    fast = tiny_pipeline(text_tok, bits=6, fast=True)
    plain = tiny_pipeline(text_tok, bits=6, fast=False)
    assert fast.backend.name == "fast" and plain.backend.name == "plain"
    for kw in ({"temperature": 0.0, "cfg": 3.0}, {"temperature": 1.0, "seed": 5, "cfg": 2.0, "num": 2}):
        a = fast.generate("a red ball", frames=5, height=32, width=32, **kw)
        b = plain.generate("a red ball", frames=5, height=32, width=32, **kw)
        assert a.token_ids == b.token_ids


def test_buffers_are_reused_between_calls():
    model = tiny_lm(200, hidden=32)
    fast = FastLlama(model)
    ids, mask = left_pad([[1, 2, 3]], 0)
    fast.prefill(ids, mask, max_len=10)
    cache = fast.cache
    first = [fast.logits(fast.step(torch.tensor([4])), 0, 200)]
    fast.prefill(ids, mask, max_len=10)
    assert fast.cache is cache
    assert torch.allclose(fast.logits(fast.step(torch.tensor([4])), 0, 200), first[0])


def test_non_llama_model_falls_back_with_a_warning():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=32, n_layer=1, n_head=2, n_positions=64)).eval()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        backend = make_backend(model)
    assert isinstance(backend, HFBackend)
    assert any("fast decoding unavailable" in str(x.message) for x in w)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_graph_matches_eager_on_gpu():
    model = tiny_lm(300, hidden=64).cuda()
    ids, mask = left_pad([[5, 6, 7], [8, 9]], 0)
    eager, graph = FastLlama(model, use_cuda_graph=False), FastLlama(model, use_cuda_graph=True)
    a, b = eager.prefill(ids, mask, 20), graph.prefill(ids, mask, 20)
    for _ in range(5):
        tok = eager.logits(a, 0, 300).argmax(-1)
        a, b = eager.step(tok), graph.step(tok)
        assert torch.allclose(a, b, atol=1e-4)
