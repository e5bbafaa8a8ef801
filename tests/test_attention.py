"""Attention choice and packed sequences: no cross-document leakage under sdpa and eager."""

import pytest
import torch

from vidgpt.attention import (
    block_causal_mask, cu_seqlens_from_position_ids, doc_ids_from_position_ids, pick_attention,
    position_ids_from_doc_lengths,
)
from vidgpt.backbone import tiny_llama


def test_cpu_picks_sdpa():
    assert pick_attention("cpu", torch.float32) == "sdpa"
    assert pick_attention("cpu", torch.bfloat16) == "sdpa"


def test_position_and_doc_ids():
    pos = position_ids_from_doc_lengths([3, 2], total=7)
    assert pos.tolist() == [0, 1, 2, 0, 1, 0, 1]
    assert doc_ids_from_position_ids(pos).tolist() == [[0, 0, 0, 1, 1, 2, 2]]
    assert cu_seqlens_from_position_ids(pos).tolist() == [0, 3, 5, 7]
    mask = block_causal_mask(pos[None])
    allowed = mask[0, 0] == 0
    assert allowed[4, 3] and not allowed[3, 2] and not allowed[2, 3] and allowed[2, 0]


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_packed_logits_equal_unpacked(impl):
    model = tiny_llama(97, hidden_size=32, layers=2, heads=4, kv_heads=2, seed=1).eval()
    model.set_attn_implementation(impl)
    g = torch.Generator().manual_seed(0)
    docs = [torch.randint(3, 97, (n,), generator=g) for n in (5, 9, 3)]
    with torch.no_grad():
        alone = [model(input_ids=d[None], use_cache=False).logits[0] for d in docs]
        packed = torch.cat(docs)[None]
        pos = position_ids_from_doc_lengths([5, 9, 3])[None]
        out = model(input_ids=packed, position_ids=pos, use_cache=False).logits[0]
        # the explicit block-diagonal mask gives the same answer
        out_mask = model(input_ids=packed, position_ids=pos, attention_mask=block_causal_mask(pos), use_cache=False).logits[0]
        # without restarting positions documents would see each other: the check has teeth
        leaky = model(input_ids=packed, use_cache=False).logits[0]
    ref = torch.cat(alone)
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(out_mask, ref, atol=1e-5)
    assert not torch.allclose(leaky[5:], ref[5:], atol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_kernel_packed_matches_unpacked():
    impl = pick_attention("cuda", torch.bfloat16)
    model = tiny_llama(97, hidden_size=128, layers=2, heads=2, kv_heads=2, seed=1).cuda().to(torch.bfloat16).eval()
    model.set_attn_implementation(impl)
    docs = [torch.randint(3, 97, (n,), device="cuda") for n in (40, 72)]
    with torch.no_grad():
        ref = torch.cat([model(input_ids=d[None], use_cache=False).logits[0] for d in docs]).float()
        pos = position_ids_from_doc_lengths([40, 72])[None].cuda()
        out = model(input_ids=torch.cat(docs)[None], position_ids=pos, use_cache=False).logits[0].float()
    assert (out - ref).abs().max() < 0.1
