"""vidgpt.row_init: how the new visual rows start (mean, the code's bits, the text embedding of its colour)."""

import numpy as np
import pytest
import torch

from vidgpt.backbone import extend
from vidgpt.errors import ModelError
from vidgpt.row_init import add_colour_words, code_colours, colour_names, colour_weights, word_embeddings

TINY = {"hidden_size": 32, "layers": 2, "heads": 4, "kv_heads": 2, "text_vocab": 64}


def _rows(lm):
    return lm.model.get_input_embeddings().weight.detach().clone()


def test_bit_row_init_gives_each_code_its_bit_structure():
    """row_init=bits: visual rows = the mean init + bits(code) @ R; codes one bit apart start closer than codes
    that differ in every bit, text, layout and padding rows do not move, and the scale is as asked."""
    mean = extend("tiny-llama", None, codebook_bits=6, seed=0, tiny=TINY)
    bits = extend("tiny-llama", None, codebook_bits=6, seed=0, tiny=TINY, row_init="bits", row_init_scale=1.0)
    w0, w1 = _rows(mean), _rows(bits)
    v0 = bits.vocab.visual_offset
    n = bits.vocab.spec.num_visual_rows
    assert torch.equal(w0[:v0], w1[:v0])
    assert torch.equal(w0[v0 + n :], w1[v0 + n :])
    part = (w1 - w0)[v0 : v0 + n]
    text_std = float(w0[: bits.vocab.offset].std())
    assert 0.5 * text_std < float(part.std()) < 2.0 * text_std
    assert (part[0b000000] - part[0b111111]).norm() > 2 * (part[0b000000] - part[0b000001]).norm()
    # linear in the signs: complementary codes sum to zero
    assert torch.allclose(part[0b101010] + part[0b010101], torch.zeros_like(part[0]), atol=1e-5)
    with pytest.raises(ModelError):
        extend("tiny-llama", None, codebook_bits=6, seed=0, tiny=TINY, row_init="nope")


def test_colour_weights_pick_the_nearest_named_colour():
    names, palette = colour_names()
    assert {"red", "blue", "black", "dark green"} <= set(names)
    rgb = np.stack([palette[names.index("red")] + 5, palette[names.index("black")]])
    p = colour_weights(rgb, palette)
    assert np.allclose(p.sum(1), 1.0)
    assert names[int(p[0].argmax())] == "red" and p[0].max() > 0.9
    assert names[int(p[1].argmax())] == "black"


def test_colour_rows_move_each_code_towards_its_colour_word():
    """A code that decodes red starts nearer the text embedding of " red" than of " blue", and vice versa;
    the text rows do not move; scale 0 changes nothing."""
    lm = extend("tiny-llama", None, codebook_bits=6, seed=0, tiny=TINY)
    names, palette = colour_names()
    red, blue = palette[names.index("red")], palette[names.index("blue")]
    rgb = np.stack([red if c % 2 == 0 else blue for c in range(64)]).astype(np.float32)
    before = _rows(lm)
    add_colour_words(lm.model, lm.vocab, lm.text_tokenizer, rgb, scale=0.0)
    assert torch.equal(before, _rows(lm))
    add_colour_words(lm.model, lm.vocab, lm.text_tokenizer, rgb, scale=1.0)
    after = _rows(lm)
    v0 = lm.vocab.visual_offset
    assert torch.equal(before[:v0], after[:v0])
    words = word_embeddings(lm.model, lm.text_tokenizer, ["red", "blue"])
    for code, (near, far) in ((0, (0, 1)), (1, (1, 0))):
        row = after[v0 + code]
        assert (row - words[near]).norm() < (row - words[far]).norm()
    with pytest.raises(ModelError):
        add_colour_words(lm.model, lm.vocab, lm.text_tokenizer, rgb[:10])


def test_code_colours_reads_each_codes_flat_decode():
    class Painter:
        """A stand-in decoder: code c decodes to a flat grey of level c / 3 in [-1, 1]."""

        def decode(self, codes):
            b, t, h, w = codes.shape
            level = codes[:, 0, 0, 0].float() / 3 * 2 - 1
            return level.view(b, 1, 1, 1, 1).expand(b, 3, t, 8 * h, 8 * w)

    rgb = code_colours(Painter(), bits=2, batch=3)
    assert rgb.shape == (4, 3)
    assert np.allclose(rgb[:, 0], [0, 85, 170, 255], atol=0.01)
