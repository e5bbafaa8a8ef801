"""The ready cache: a delta-form model is rebuilt once, then loaded from its cached full copy."""

import pytest
import torch

from vidgpt.backbone import extend, save_vidgpt_lm
from vidgpt.generate.ready_cache import cache_key, load_ready

pytestmark = pytest.mark.usefixtures("one_thread")


def test_delta_model_is_built_once_then_loaded_ready(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDGPT_READY_CACHE", str(tmp_path / "cache"))
    lm = extend("tiny-llama", None, codebook_bits=6, tiny={"hidden_size": 32, "layers": 1})
    d = save_vidgpt_lm(lm, tmp_path / "delta", form="delta")
    full = save_vidgpt_lm(extend("tiny-llama", None, codebook_bits=6, tiny={"hidden_size": 32, "layers": 1}),
                          tmp_path / "full", form="full")
    ids = torch.tensor([[5, 6, 7, 8]])
    first, how1 = load_ready(d)
    second, how2 = load_ready(d)
    assert (how1, how2) == ("built+cached", "cached")
    with torch.no_grad():
        assert torch.allclose(first.model(ids).logits, second.model(ids).logits, atol=1e-6)
    assert len(second.text_tokenizer) == second.vocab.end
    assert load_ready(full)[1] == "full"  # a full form is ready as it is
    key = cache_key(d)
    (d / "new_rows.safetensors").touch()  # an edited model gets a new entry
    assert cache_key(d) != key
    monkeypatch.setenv("VIDGPT_READY_CACHE", "0")
    assert load_ready(d)[1] == "built"


def test_the_ready_copy_holds_no_hint_and_a_cached_load_carries_the_directorys_hint(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from vidgpt.backbone import base_model
    from vidgpt.parent_hint import ATTR, KEY, attach_parent_hint, load_parent_hint_state, parent_hint_of

    monkeypatch.setenv("VIDGPT_READY_CACHE", str(tmp_path / "cache"))
    lm = extend("tiny-llama", None, codebook_bits=6, tiny={"hidden_size": 32, "layers": 1})
    with torch.no_grad():
        getattr(attach_parent_hint(base_model(lm.model)), KEY).normal_()
    d = save_vidgpt_lm(lm, tmp_path / "delta", form="delta")
    first, how1 = load_ready(d)
    second, how2 = load_ready(d)
    assert (how1, how2) == ("built+cached", "cached")
    ready = tmp_path / "cache" / cache_key(d) / "model.safetensors"
    assert not [k for k in load_file(str(ready)) if ATTR in k]  # the hint is the directory's file, not a weight
    want = load_parent_hint_state(d)[KEY].float()
    for got in (first, second):  # both paths leave the directory's hint on the model, and the build kept it there
        assert torch.equal(getattr(parent_hint_of(base_model(got.model)), KEY).float(), want)
