"""The light loader (generate/light_model.py): the fast decoder's weights without transformers' model classes.

What it must keep: the fast decoder's logits and a seeded clip's tokens equal to the HF-loaded model's, the text
tokenizer equal to AutoTokenizer's, and a fallback (None) wherever it cannot load a model. The ready cache keeps
only its most recently used copies.
"""

import json
import os
import time
from pathlib import Path

import pytest
import torch

from vidgpt.backbone import extend, save_vidgpt_lm, tiny_causal_lm
from vidgpt.generate.fast_decode import FastDecoder
from vidgpt.generate.light_model import LightLlama, light_unsupported
from vidgpt.generate.light_tokenizer import LightTextTokenizer, load_light_tokenizer
from vidgpt.generate.ready_cache import cache_key, evict, load_light, load_ready

pytestmark = pytest.mark.usefixtures("one_thread")
MODEL = Path(__file__).resolve().parents[1] / "model"


@pytest.mark.parametrize("tied", [True, False])
def test_fast_decoder_on_light_weights_equals_the_hf_model(tmp_path, tied):
    hf = tiny_causal_lm("llama", 96, hidden_size=32, layers=2, heads=4, kv_heads=2, tied=tied).eval()
    hf.save_pretrained(tmp_path / "m")
    light = LightLlama.from_dir(tmp_path / "m")
    assert light.tied == tied and LightLlama.can_load(tmp_path / "m") is None
    pos = torch.arange(40)[None]
    cos_hf, sin_hf = hf.model.rotary_emb(torch.zeros(1), pos)
    cos, sin = light.fast_spec().rotary(torch.zeros(1), pos)
    assert torch.equal(cos, cos_hf) and torch.equal(sin, sin_hf)

    ids = torch.randint(0, 96, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # a left-padded CFG row
    out = []
    for model in (hf, light):
        dec = FastDecoder(model)
        h = dec.prefill(ids, mask, max_len=16)
        logits = [dec.logits(h, 0, 96)]
        for t in (5, 9, 11):
            logits.append(dec.logits(dec.step(torch.tensor([[t], [t]])), 0, 96))
        out.append(torch.stack(logits))
    assert torch.isfinite(out[0]).all()
    assert torch.allclose(out[0], out[1], atol=1e-6, rtol=0)
    with pytest.raises(NotImplementedError):
        light(ids)


def test_what_the_light_loader_refuses(tmp_path):
    assert light_unsupported({"model_type": "qwen2"}).startswith("model type")
    assert "rope type" in light_unsupported({"model_type": "llama", "rope_scaling": {"rope_type": "llama3"}})
    assert "biases" in light_unsupported({"model_type": "llama", "attention_bias": True})
    assert light_unsupported({"model_type": "llama", "rope_parameters": {"rope_type": "default"}}) is None
    assert LightLlama.can_load(tmp_path).startswith("no config.json")
    tiny_causal_lm("qwen2", 64, hidden_size=32, layers=1, heads=4, kv_heads=2).save_pretrained(tmp_path / "q")
    assert LightLlama.can_load(tmp_path / "q").startswith("model type")
    with pytest.raises(ValueError):
        LightLlama.from_dir(tmp_path / "q")


def test_a_clip_from_the_light_load_has_the_same_tokens(tmp_path, monkeypatch, video_tok_dir):
    from vidgpt.generate import VidGPT

    monkeypatch.setenv("VIDGPT_READY_CACHE", str(tmp_path / "cache"))
    lm = extend("tiny-llama", video_tok_dir, tiny={"hidden_size": 32, "layers": 2})
    delta = save_vidgpt_lm(lm, tmp_path / "delta", form="delta")
    full = save_vidgpt_lm(lm, tmp_path / "full", form="full")
    assert load_light(delta) is None  # not yet in the ready cache: the caller loads (and caches) it
    for d, how in ((full, "full+light"), (delta, "cached+light")):
        plain = VidGPT.from_pretrained(d, device="cpu")
        light = VidGPT.from_pretrained(d, device="cpu", light=True)
        assert light.loaded_from == how and isinstance(light.model, LightLlama)
        assert VidGPT.from_pretrained(d, device="cpu", light=True, fast=False).loaded_from != how  # plain path: HF
        a = plain.generate("ab", frames=5, height=16, width=16, seed=3, cfg=2.0, progress=False)
        b = light.generate("ab", frames=5, height=16, width=16, seed=3, cfg=2.0, progress=False)
        assert a.token_ids == b.token_ids and len(a.token_ids[0]) > 8


@pytest.mark.skipif(not (MODEL / "tokenizer.json").is_file(), reason="no shipped model/")
def test_the_light_text_tokenizer_equals_autotokenizer_on_the_shipped_model():
    from transformers import AutoTokenizer

    auto, light = AutoTokenizer.from_pretrained(str(MODEL)), load_light_tokenizer(MODEL)
    assert isinstance(light, LightTextTokenizer)
    assert len(auto) == len(light) > 60000
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
        assert getattr(auto, attr) == getattr(light, attr), attr
    assert sorted(auto.all_special_ids) == light.all_special_ids
    visual = sorted(t for t in auto.get_vocab() if t.startswith("<|v"))[:4]
    text = "a red circle moving right " + "".join(visual) + " then<|im_end|>\n"
    assert auto(text, add_special_tokens=False)["input_ids"] == light(text, add_special_tokens=False)["input_ids"]
    ids = auto(text)["input_ids"]
    for skip in (False, True):
        assert auto.decode(ids, skip_special_tokens=skip) == light.decode(ids, skip_special_tokens=skip)
    msgs = [{"role": "user", "content": "a red circle"}, {"role": "assistant", "content": "".join(visual)}]
    for m, gen in ((msgs, False), (msgs[:1], True)):
        assert auto.apply_chat_template(m, tokenize=False, add_generation_prompt=gen) == \
            light.apply_chat_template(m, tokenize=False, add_generation_prompt=gen)


def test_the_ready_cache_keeps_its_most_recently_used_copies(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("VIDGPT_READY_CACHE", str(root))
    monkeypatch.setenv("VIDGPT_READY_KEEP", "2")
    dirs = []
    for i in range(3):
        lm = extend("tiny-llama", None, codebook_bits=6, tiny={"hidden_size": 32, "layers": 1}, seed=i)
        dirs.append(save_vidgpt_lm(lm, tmp_path / f"delta{i}", form="delta"))
    stranger = root / "not-a-copy"
    stranger.mkdir(parents=True)
    for i, d in enumerate(dirs):
        assert load_ready(d)[1] == "built+cached"
        os.utime(root / cache_key(d), (time.time() - 100 + i, time.time() - 100 + i))  # distinct ages
        if i == 1:
            assert load_ready(dirs[0])[1] == "cached"  # a use makes a copy young again
    kept = {p.name for p in root.iterdir()}
    assert kept == {cache_key(dirs[0]), cache_key(dirs[2]), "not-a-copy"}
    assert evict(root, keep=1, spare=root / cache_key(dirs[2])) == []  # never the copy being loaded
    assert evict(root, keep=1) == [root / cache_key(dirs[2])]
    assert json.loads((root / cache_key(dirs[0]) / "source.json").read_text())["model"] == str(dirs[0].resolve())
