import pytest
import torch

from vidgpt import layout as L
from vidgpt.errors import LayoutError
from vidgpt.vocab import UnifiedVocab, VocabSpec


def make_vocab(tok, bits=14, sub=1):
    return UnifiedVocab(VocabSpec(codebook_bits=bits, subtokens=sub), offset=len(tok))


def block(shape, bits=14, seed=0, blueprint=True, fine=True):
    g = torch.Generator().manual_seed(seed)
    return L.VisualBlock(
        shape,
        fine=torch.randint(0, 2**bits, shape, generator=g) if fine else None,
        blueprint=torch.randint(0, 2**bits, L.blueprint_shape(shape), generator=g) if blueprint else None,
    )


def samples(bits):
    clip = block((5, 16, 16), bits, seed=1)
    wide = block((3, 4, 7), bits, seed=2)  # non-square, odd width: blueprint 3x2x4
    img = block((1, 16, 16), bits, seed=3)
    src = block((5, 16, 16), bits, seed=4, blueprint=False)
    return {
        "t2v": L.text_to_video("A red circle moves right.", clip),
        "wide": L.text_to_video("a blue square, bouncing", wide),
        "image": L.image("a green star", img),
        "continue": L.continuation(src, block((5, 16, 16), bits, seed=5)),
        "edit": L.edit(src, "Make the circle blue.", block((5, 16, 16), bits, seed=6)),
        "blueprint_only": L.text_to_video("preview", block((2, 6, 6), bits, seed=7, fine=False)),
    }


@pytest.mark.parametrize("chat", [True, False])
@pytest.mark.parametrize("bits,sub", [(14, 1), (18, 2)])
def test_every_layout_round_trips(text_tok, chat, bits, sub):
    lay = L.Layout(make_vocab(text_tok, bits, sub), text_tok, chat=chat)
    for name, s in samples(bits).items():
        f = lay.format(s)
        assert len(f.input_ids) == len(f.kinds)
        back = lay.parse(f.input_ids)
        assert back == s, name
        # assistant visual ids are the only VISUAL kind, and every id of the target block is counted
        tgt = s.turns[-1].blocks()[0]
        n_vis = sum(k == L.VISUAL for k in f.kinds)
        expect = sub * sum(x.numel() for x in (tgt.fine, tgt.blueprint) if x is not None)
        assert n_vis == expect, name
        assert L.block_length(tgt.shape, sub, tgt.blueprint is not None, tgt.fine is not None) == len(
            lay.encode_block(tgt)
        )


def test_chat_uses_backbone_template(text_tok):
    import copy

    vocab = make_vocab(text_tok)
    extended = copy.deepcopy(text_tok)
    extended.add_tokens(vocab.token_strings(), special_tokens=True)
    assert extended.convert_tokens_to_ids("<|v0_0|>") == vocab.visual_offset
    lay = L.Layout(vocab, text_tok, chat=True)
    s = samples(14)["t2v"]
    text = extended.decode(lay.format(s).input_ids)
    assert text.startswith("<|im_start|>system\n")
    assert "<|im_start|>user\nA red circle moves right.<|im_end|>\n<|im_start|>assistant\n<|vision_start|><|t_5|><|h_16|><|w_16|><|blueprint|>" in text
    assert text.endswith("<|vision_end|><|im_end|>\n")
    # the generation prompt stops where the assistant content begins
    prompt = lay.prompt_ids(L.Sample([s.turns[0]]))
    full = lay.format(s).input_ids
    assert full[: len(prompt)] == prompt and full[len(prompt)] == lay.vocab.vision_start_id
    assert lay.parse(prompt).turns[0] == s.turns[0]


def test_multi_turn_chat_round_trip(text_tok):
    lay = L.Layout(make_vocab(text_tok), text_tok, chat=True)
    a, b = block((2, 4, 4), seed=1), block((2, 4, 4), seed=2)
    s = L.Sample([
        L.Turn("user", ["make a red circle"]),
        L.Turn("assistant", ["Here it is: ", a]),
        L.Turn("user", ["now make it blue"]),
        L.Turn("assistant", [b]),
    ])
    f = lay.format(s)
    assert lay.parse(f.input_ids) == s
    kinds = torch.tensor(f.kinds)
    assert int((kinds == L.TEXT).sum()) == len(text_tok("Here it is: ", add_special_tokens=False)["input_ids"])


def test_loss_kinds_exclude_user_clip(text_tok):
    lay = L.Layout(make_vocab(text_tok), text_tok, chat=True)
    s = samples(14)["edit"]
    f = lay.format(s)
    src_len = len(lay.encode_block(s.turns[0].blocks()[0]))
    assert sum(k == L.PROMPT for k in f.kinds) > src_len  # source clip is prompt, not trained


def test_malformed_and_truncated_sequences_fail_clearly(text_tok):
    lay = L.Layout(make_vocab(text_tok), text_tok, chat=True)
    v = lay.vocab
    ids = lay.format(samples(14)["t2v"]).input_ids
    start = ids.index(v.vision_start_id)
    with pytest.raises(LayoutError, match=r"ends at position \d+ inside the fine section .*\(100 of 1280"):
        lay.parse(ids[: start + 4 + 1 + 320 + 1 + 100])
    bad = list(ids)
    bad[start + 2] = v.t_offset  # a t header where h belongs
    with pytest.raises(LayoutError, match=rf"position {start + 2}: expected a <\|h_\*\|>"):
        lay.parse(bad)
    bad = list(ids)
    bad[start + 10] = 42  # a text id inside the blueprint
    with pytest.raises(LayoutError, match=rf"position {start + 10}: expected a visual token in the blueprint"):
        lay.parse(bad)
    bad = list(ids)
    bad.insert(3, v.fine_id)  # a layout token in text
    with pytest.raises(LayoutError, match="outside a visual block"):
        lay.parse(bad)
    with pytest.raises(LayoutError, match="not closed"):
        lay.parse(ids[:-2])
    plain = L.Layout(v, text_tok, chat=False)
    pids = plain.format(samples(14)["t2v"]).input_ids
    with pytest.raises(LayoutError, match="does not end with EOS"):
        plain.parse(pids[:-1])


def test_bad_samples(text_tok):
    lay = L.Layout(make_vocab(text_tok), text_tok, chat=False)
    with pytest.raises(LayoutError, match="image block has t = 1"):
        L.image("x", block((2, 4, 4)))
    with pytest.raises(LayoutError, match="fine codes have shape"):
        L.VisualBlock((1, 4, 4), fine=torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(LayoutError, match="alternate"):
        lay.format(L.Sample([L.Turn("assistant", [block((1, 2, 2))])]))
