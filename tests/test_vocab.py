import pytest
import torch

from vidgpt.errors import VocabError
from vidgpt.vocab import SPECIAL_TOKENS, UnifiedVocab, VocabSpec


@pytest.mark.parametrize("bits,sub", [(14, 1), (18, 2), (18, 3), (10, 1)])
def test_codes_ids_round_trip(bits, sub):
    vocab = UnifiedVocab(VocabSpec(codebook_bits=bits, subtokens=sub), offset=49152)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 2**bits, (5, 16, 16), generator=g)
    codes[0, 0, 0] = 0
    codes[0, 0, 1] = 2**bits - 1
    ids = vocab.codes_to_ids(codes)
    assert ids.shape == (codes.numel() * sub,)
    assert bool(vocab.is_visual(ids).all())
    assert int(ids.min()) >= vocab.visual_offset and int(ids.max()) < vocab.end
    back = vocab.ids_to_codes(ids, codes.shape)
    assert torch.equal(back, codes)


def test_subtoken_rows_and_groups():
    vocab = UnifiedVocab(VocabSpec(codebook_bits=18, subtokens=2), offset=100)
    assert vocab.spec.num_visual_rows == 2 * 512  # K=18, S=2 -> 2x512 new rows
    # low bits first, each group in its own block of rows
    code = torch.tensor([(7 << 9) | 5])
    ids = vocab.codes_to_ids(code).tolist()
    assert ids == [vocab.visual_offset + 5, vocab.visual_offset + 512 + 7]
    # a group-1 id in a group-0 position is rejected
    with pytest.raises(VocabError, match="group-0"):
        vocab.ids_to_codes(torch.tensor([ids[1], ids[0]]))


def test_token_strings_match_ids():
    vocab = UnifiedVocab(VocabSpec(codebook_bits=6, subtokens=1, max_latent_t=4, max_latent_hw=8), offset=10)
    names = vocab.token_strings()
    assert len(names) == vocab.num_new_tokens == vocab.end - 10
    assert names[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert names[vocab.t_offset - 10] == "<|t_1|>"
    assert names[vocab.w_offset - 10 + 7] == "<|w_8|>"
    assert names[vocab.visual_offset - 10] == "<|v0_0|>"
    assert vocab.header_ids((2, 3, 8)) == [vocab.t_offset + 1, vocab.h_offset + 2, vocab.w_offset + 7]
    assert vocab.header_value(vocab.h_offset + 2, "h") == 3
    assert vocab.header_value(vocab.h_offset + 2, "t") is None


def test_bad_values():
    vocab = UnifiedVocab(VocabSpec(codebook_bits=8), offset=0)
    with pytest.raises(VocabError, match="outside"):
        vocab.codes_to_ids(torch.tensor([256]))
    with pytest.raises(VocabError, match="outside"):
        vocab.codes_to_ids(torch.tensor([-1]))
    with pytest.raises(VocabError, match="latent frames"):
        vocab.header_ids((0, 4, 4))
    with pytest.raises(VocabError, match="must divide"):
        VocabSpec(codebook_bits=14, subtokens=3)


def test_metadata_round_trip():
    vocab = UnifiedVocab(VocabSpec(codebook_bits=18, subtokens=2), offset=49152)
    again = UnifiedVocab.from_dict(vocab.to_dict())
    assert again.to_dict() == vocab.to_dict()
    d = vocab.to_dict()
    d["visual_offset"] += 1
    with pytest.raises(VocabError, match="visual_offset"):
        UnifiedVocab.from_dict(d)


def test_embedded_gguf_override(tmp_path, monkeypatch):
    from vidgpt.embedded import smollm2_gguf
    from vidgpt.errors import ModelError

    f = tmp_path / "x.gguf"
    f.write_bytes(b"GGUF")
    monkeypatch.setenv("VIDGPT_SMOLLM_GGUF", str(f))
    assert smollm2_gguf() == (tmp_path, "x.gguf")
    monkeypatch.setenv("VIDGPT_SMOLLM_GGUF", str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelError, match="names no file"):
        smollm2_gguf()
