import math

import torch

from vidgpt.tokenizer.lfq import LFQ, bits_to_codes, codebook_usage, codes_to_bits, entropy_terms


def test_codes_bits_round_trip_k14_k18():
    for k in (14, 18):
        codes = torch.randint(0, 2**k, (3, 5, 7))
        codes[0, 0, 0], codes[0, 0, 1] = 0, 2**k - 1
        bits = codes_to_bits(codes, k)
        assert bits.shape == (3, 5, 7, k) and set(bits.unique().tolist()) == {-1.0, 1.0}
        assert torch.equal(bits_to_codes(bits), codes)


def test_bit_order_is_little_endian():
    bits = torch.tensor([1.0, -1.0, 1.0])  # bit0 = 1, bit2 = 1
    assert bits_to_codes(bits).item() == 5


def test_entropy_uniform_usage_beats_collapse_and_confident_is_zero():
    k = 10
    # confident latents spread over all codes vs. all latents on one code
    uniform = codes_to_bits(torch.arange(2**k), k) * 5.0
    collapsed = codes_to_bits(torch.zeros(2**k, dtype=torch.long), k) * 5.0
    ps_u, b_u = entropy_terms(uniform, 1.0, 14)
    ps_c, b_c = entropy_terms(collapsed, 1.0, 14)
    assert ps_u.item() < 1e-3 and ps_c.item() < 1e-3  # deterministic assignment: ~0 per-sample entropy
    assert (ps_u - b_u).item() < (ps_c - b_c).item() - 5.0
    assert abs(b_u.item() - k * math.log(2)) < 1e-2


def test_grouped_entropy_for_k18_is_small_and_finite():
    z = torch.randn(512, 18)
    ps, b = entropy_terms(z, 1.0, 14)  # 2 groups of 9 bits
    assert torch.isfinite(ps) and torch.isfinite(b)
    assert 0 < b.item() <= 18 * math.log(2) + 1e-4


def test_straight_through_gradient_and_outputs():
    lfq = LFQ(bits=12)
    z = torch.randn(2, 12, 3, 4, 4, requires_grad=True)
    out = lfq(z)
    assert out.codes.shape == (2, 3, 4, 4) and out.codes.dtype == torch.long
    assert set(out.quantized.detach().unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(out.codes, bits_to_codes(out.quantized.movedim(1, -1)))
    (out.quantized.sum() + out.commitment_loss + 0.1 * out.entropy_loss).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_codebook_usage():
    assert codebook_usage(torch.tensor([0, 1, 1, 3]), 2) == 0.75


def test_rms_norm_codes_a_cell_by_its_own_signs():
    """norm="rms": a cell's code is the signs of its own latent, whatever the rest of the frame holds; "frame" lets
    the frame's mean move the threshold (a cell's code changes when another cell changes)."""
    torch.manual_seed(0)
    z = torch.randn(1, 6, 1, 4, 4)
    other = z.clone()
    other[:, :, :, 1:, :] += 3.0  # every cell but the first row changes
    rms, frame = LFQ(6, norm="rms"), LFQ(6)
    assert torch.equal(rms(z).codes, bits_to_codes(torch.where(z > 0, 1.0, -1.0).movedim(1, -1)))
    assert torch.equal(rms(z).codes[..., 0, :], rms(other).codes[..., 0, :])
    assert not torch.equal(frame(z).codes[..., 0, :], frame(other).codes[..., 0, :])
    out = rms(z)
    assert torch.allclose(rms.normalize(z).pow(2).mean(1), torch.ones(1, 1, 4, 4), atol=1e-4)
    assert torch.isfinite(out.commitment_loss) and torch.isfinite(out.entropy_loss)


def test_lfq_norm_is_a_code_changing_field_that_keeps_the_weights():
    from vidgpt.tokenizer.config import WEIGHT_COMPATIBLE_FIELDS, TokenizerConfig

    a, b = TokenizerConfig(), TokenizerConfig(lfq_norm="rms")
    assert a.architecture_hash() != b.architecture_hash() and "lfq_norm" in WEIGHT_COMPATIBLE_FIELDS
    import pytest

    with pytest.raises(ValueError, match="lfq_norm"):
        TokenizerConfig(lfq_norm="cell")


def test_sticky_signs_keep_unsure_bits_from_the_latent_frame_before():
    from vidgpt.tokenizer.lfq import sticky_signs

    z = torch.tensor([0.9, 0.1, -0.05, -0.8, 0.02])  # one bit over 5 latent frames
    z = z.view(1, 1, 5, 1, 1)
    assert sticky_signs(z, 0.0).flatten().tolist() == [1, 1, -1, -1, 1]
    # margin 0.2: 0.1, -0.05 and 0.02 are unsure and keep the frame before's bit; -0.8 is sure and flips
    assert sticky_signs(z, 0.2).flatten().tolist() == [1, 1, 1, -1, -1]
    # the first latent frame is never changed, even when unsure
    assert sticky_signs(torch.tensor([0.05, -0.9]).view(1, 1, 2, 1, 1), 0.2).flatten().tolist() == [1, -1]


def test_encode_with_a_sticky_margin_changes_only_unsure_bits():
    from vidgpt.tokenizer import TokenizerConfig, VideoTokenizer
    from vidgpt.tokenizer.lfq import codes_to_bits

    tok = VideoTokenizer(TokenizerConfig(codebook_bits=6, channels=8, norm_groups=4)).eval()
    x = torch.rand(1, 3, 9, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    plain, sticky = tok.encode(x), tok.encode(x, sticky=0.3)
    assert torch.equal(plain[:, 0], sticky[:, 0]) and plain.shape == sticky.shape
    with torch.inference_mode():
        z = tok.quantizer.normalize(tok.encoder(x))
    diff = codes_to_bits(plain, 6) != codes_to_bits(sticky, 6)  # [1, t, h, w, K]
    assert bool((z.movedim(1, -1).abs()[diff] < 0.3).all())
    assert torch.equal(tok.encode(x, sticky=0.0), plain)
