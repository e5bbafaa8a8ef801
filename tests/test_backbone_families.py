"""Any causal LM transformers builds is a backbone: extend -> train (full and LoRA) -> generate / edit / chat.

Each family is a tiny random model built locally from its config (vidgpt.backbone.tiny_config: the
family's own quirks switched on: biases, q/k norms, sliding windows, soft-capping, embedding scaling,
partial rotary, fused projections, absolute positions), saved as a plain HF directory with a toy
tokenizer and given to the CLI as `--backbone DIR`. Generation goes through the public pipeline, on
whatever decoding path it picks for the family.
"""

import json
import math

import numpy as np
import pytest
import torch
import yaml

from vidgpt.backbone import TINY_FAMILIES, describe_dir, tiny_causal_lm, toy_text_tokenizer
from vidgpt.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

CASES = [("llama", False), ("llama", True), ("qwen2", True), ("qwen3", False), ("mistral", False), ("gemma", True),
         ("gemma2", True), ("phi3", False), ("gpt_neox", False), ("gpt2", True)]


def save_backbone(d, family, tied, max_positions=2048, chat=True):
    tok = toy_text_tokenizer(128)
    if not chat:
        tok.chat_template = None
    model = tiny_causal_lm(family, len(tok), hidden_size=32, layers=2, heads=4, kv_heads=2,
                           max_positions=max_positions, tied=tied)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def train(tmp_path, name, model_dir, lora: bool):
    cfg = {"model": {"path": str(model_dir)},
           "lora": {"enabled": lora, "r": 4, "alpha": 8},
           "data": {"sources": [{"kind": "synthetic", "shapes": [[2, 2, 2]], "words": 4}], "chat": True},
           "train": {"steps": 2, "micro_batch_size": 2, "seq_len": 64, "lr": 1e-3, "warmup_steps": 1, "log_every": 1,
                     "eval_every": 0, "eval_batches": 0, "ckpt_every": 0, "save_form": "delta" if lora else "full"}}
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / name
    assert main(["lm", "train", "--config", str(tmp_path / f"{name}.yaml"), "--out", str(out), "--no-progress"]) == 0
    losses = [json.loads(line).get("loss") for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [x for x in losses if x is not None]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    return out / "model"


def test_every_family_has_a_case():
    assert {f for f, _ in CASES} == set(TINY_FAMILIES)
    assert {t for f, t in CASES if f == "llama"} == {True, False}


@pytest.mark.parametrize("family,tied", CASES, ids=[f"{f}-{'tied' if t else 'untied'}" for f, t in CASES])
def test_family_end_to_end(family, tied, tmp_path, video_tok_dir, capsys):
    from transformers import AutoModelForCausalLM

    from vidgpt.generate import VidGPT

    bb = save_backbone(tmp_path / "bb", family, tied)
    assert describe_dir(bb)["extendable"] == "yes"
    ext = tmp_path / "ext"
    assert main(["lm", "extend", "--backbone", str(bb), "--tokenizer", str(video_tok_dir), "--out", str(ext)]) == 0
    plain = AutoModelForCausalLM.from_pretrained(ext)
    assert plain.config.model_type == family and plain.config.tie_word_embeddings == tied
    head, emb = plain.get_output_embeddings().weight, plain.get_input_embeddings().weight
    assert (head.data_ptr() == emb.data_ptr()) == tied

    full = train(tmp_path, "full", ext, lora=False)
    assert AutoModelForCausalLM.from_pretrained(full).config.model_type == family
    delta = train(tmp_path, "lora", ext, lora=True)
    assert json.loads((delta / "vidgpt.json").read_text())["form"] == "delta" and (delta / "adapter").is_dir()

    capsys.readouterr()
    assert main(["lm", "info", str(delta)]) == 0
    assert "form: delta" in capsys.readouterr().out

    for model_dir in (full, delta):
        pipe = VidGPT.from_pretrained(model_dir)
        assert pipe.model.config.model_type == family
        out = pipe.generate("ab", frames=5, height=16, width=16, seed=0, cfg=2.0)
        assert out.videos.shape == (1, 5, 16, 16, 3) and out.videos.dtype == np.uint8
        assert tuple(out.blocks[0].fine.shape) == (2, 2, 2) and int(out.blocks[0].fine.max()) < 64
    # same seed, same tokens (on whichever decoding path the pipeline chose for the family)
    again = pipe.generate("ab", frames=5, height=16, width=16, seed=0, cfg=2.0)
    assert again.token_ids == out.token_ids
    edited = pipe.edit(out.videos[0], "make it blue", task="instruct", seed=0, cfg=1.0)
    assert edited.videos.shape[1:] == (5, 16, 16, 3)
    reply = pipe.chat("draw a dot", frames=1, height=16, width=16, seed=0)
    assert reply.is_clip and reply.frames.shape == (1, 16, 16, 3)


def test_extend_rejects_what_it_cannot_extend(tmp_path, video_tok_dir, capsys):
    from transformers import T5Config, T5ForConditionalGeneration

    t5 = tmp_path / "t5"
    T5ForConditionalGeneration(T5Config(vocab_size=128, d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8)).save_pretrained(t5)
    toy_text_tokenizer(128).save_pretrained(t5)
    assert describe_dir(t5)["extendable"] == "no: encoder-decoder"
    no_chat = save_backbone(tmp_path / "nochat", "llama", False, chat=False)
    short = save_backbone(tmp_path / "short", "gpt2", True, max_positions=512)

    def extend(bb, *extra):
        capsys.readouterr()
        rc = main(["lm", "extend", "--backbone", str(bb), "--tokenizer", str(video_tok_dir), "--out",
                   str(tmp_path / "out"), *extra])
        err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # not the loading bars
        assert len(err) <= 1, err
        return rc, err[0] if err else ""

    rc, err = extend(t5)
    assert rc != 0 and err.startswith("vidgpt: error:") and "encoder-decoder" in err and "t5" in err
    rc, err = extend(no_chat)
    assert rc != 0 and err.startswith("vidgpt: error:") and "no chat template" in err and "--plain-layout" in err
    rc, err = extend(short)
    assert rc != 0 and err.startswith("vidgpt: error:") and "512 positions" in err and "17x128x128" in err
    assert not (tmp_path / "out").exists()
    # what it can do instead: the plain layout, a smaller clip
    assert extend(no_chat, "--plain-layout")[0] == 0
    assert json.loads((tmp_path / "out" / "vidgpt.json").read_text())["layout"]["chat"] is False
    assert extend(short, "--clip", "9x64x64")[0] == 0


def test_info_says_what_a_directory_holds(tmp_path, video_tok_dir, capsys):
    bb = save_backbone(tmp_path / "bb", "qwen3", False)
    capsys.readouterr()
    assert main(["lm", "info", str(bb)]) == 0
    text = capsys.readouterr().out
    assert "hf-model" in text and "qwen3" in text and "chat template: yes" in text and "extend: yes" in text
    assert main(["lm", "info", str(video_tok_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "video-tokenizer"
    assert main(["lm", "info", str(tmp_path)]) != 0
    assert "neither a vidgpt LM" in capsys.readouterr().err
