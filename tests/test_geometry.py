"""The clip geometry's one home: latent and blueprint shapes, block lengths, factors from the tokenizer."""

from types import SimpleNamespace

import pytest

from vidgpt.errors import GenerationError
from vidgpt.geometry import ClipGeometry, block_length, blueprint_shape, factors_of, section_lengths
from vidgpt.generate.constraints import StructureConstraint, section_plan
from vidgpt.generate.progress import ClipProgress
from vidgpt.vocab import UnifiedVocab, VocabSpec


def test_default_8x_clip_numbers():
    g = ClipGeometry(17, 128, 128).check(64, 64)
    assert g.latent == (5, 16, 16) and g.blueprint_latent == (5, 8, 8)
    assert g.section_lengths() == {"blueprint": 320, "fine": 1280}
    assert g.block_length() == 1607 == block_length((5, 16, 16))
    assert ClipGeometry.from_latent((5, 16, 16)) == g


def test_16x_tokenizer_shapes():
    g = ClipGeometry(17, 128, 128, space_factor=16).check(64, 64)
    assert g.latent == (5, 8, 8) and g.blueprint_latent == (5, 4, 4) and g.multiple == 32
    with pytest.raises(GenerationError, match="multiple of 32"):
        ClipGeometry(17, 112, 128, space_factor=16).check()


def test_odd_latent_blueprint_rounds_up_and_sections_sum():
    assert blueprint_shape((3, 5, 7)) == (3, 3, 4)
    assert section_lengths((3, 5, 7), 2) == {"blueprint": 72, "fine": 210}
    vocab = UnifiedVocab(VocabSpec(4, 2, 8, 8), offset=10)
    assert len(section_plan(vocab, (3, 5, 7), ("blueprint", "fine"))) == 72 + 210 + 3  # + 2 markers + end


@pytest.mark.parametrize("kw,match", [({"frames": 6}, "1\\+4n"), ({"height": 40}, "multiple of 16"),
                                      ({"frames": 0}, "positive"), ({"frames": 37}, "at most 33 frames")])
def test_bad_requests_name_the_rule(kw, match):
    args = {"frames": 17, "height": 64, "width": 64, **kw}
    with pytest.raises(GenerationError, match=match):
        ClipGeometry(**args).check(max_latent_t=9, max_latent_hw=64)


def test_factors_come_from_the_tokenizer_then_its_config_then_defaults():
    assert factors_of(None) == (4, 8)
    assert factors_of(SimpleNamespace(space_factor=16, time_factor=4)) == (4, 16)
    assert factors_of(SimpleNamespace(config=SimpleNamespace(space_factor=16))) == (4, 16)
    assert factors_of(None, {"space_factor": 16}) == (4, 16)


def test_pipeline_asks_the_geometry_with_the_tokenizer_factor(text_tok):
    from vidgpt.generate.tiny import tiny_pipeline

    pipe = tiny_pipeline(text_tok, bits=6, max_latent_hw=16)
    assert pipe.latent_shape(17, 128, 128) == (5, 16, 16)
    pipe.space_factor = 16  # what a 16x tokenizer's `space_factor` property gives the pipeline
    assert pipe.latent_shape(17, 128, 128) == (5, 8, 8) and pipe.size_multiple == 32
    con = StructureConstraint(pipe.vocab, 1, shape=(5, 8, 8))
    assert len(con.remaining_plan()) == pipe.geometry(17, 128, 128).block_length()


def test_one_progress_bar_names_the_section(monkeypatch):
    monkeypatch.setenv("VIDGPT_PROGRESS", "0")
    bar = ClipProgress((5, 16, 16), 1, ("blueprint", "fine"))
    assert bar.bar is None and bar.total == 1607
    seen = []
    for _ in range(bar.total):
        seen.append(bar.section)
        bar.update(1)
    assert seen[:4] == ["header"] * 4 and seen[4] == "blueprint" and seen[4 + 321] == "fine"
    assert seen.count("blueprint") == 321 and seen.count("fine") == 1282  # marker + ids (+ end)


def test_no_bar_when_stderr_is_not_a_terminal(monkeypatch, capsys):
    monkeypatch.delenv("VIDGPT_PROGRESS", raising=False)
    bar = ClipProgress((1, 2, 2), 1, ("fine",), enabled=True)  # pytest's stderr is not a TTY
    bar.update(3)
    bar.close()
    assert bar.bar is None and capsys.readouterr().err == ""


def test_a_16x_tokenizer_works_end_to_end(text_tok):
    import torch

    from vidgpt.generate.pipeline import VidGPT
    from vidgpt.generate.tiny import tiny_lm
    from vidgpt.tokenizer import TokenizerConfig, VideoTokenizer

    torch.manual_seed(0)
    vt = VideoTokenizer(TokenizerConfig(codebook_bits=6, channels=8, norm_groups=4, patch_size=2, space_factor=16)).eval()
    vocab = UnifiedVocab(VocabSpec(6, 1, 8, 8), offset=len(text_tok))
    pipe = VidGPT(tiny_lm(vocab.total_size), text_tok, vocab, vt, meta={"layout": {"chat": True}})
    assert (pipe.space_factor, pipe.time_factor) == (16, 4)
    out = pipe.generate("a red ball", frames=17, height=128, width=128, seed=0)
    assert out.blocks[0].fine.shape == (5, 8, 8) and out.blocks[0].blueprint.shape == (5, 4, 4)
    assert out.videos.shape == (1, 17, 128, 128, 3)
    assert len(out.token_ids[0]) == pipe.geometry(17, 128, 128).block_length() + len(pipe.tail_ids)
    with pytest.raises(GenerationError, match="multiple of 32"):
        pipe.generate("x", frames=5, height=48, width=64)
