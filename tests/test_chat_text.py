"""Chat-form text from the base model (vidgpt.data.chat_text, tools/make_chat_text.py): questions disjoint from
the eval's, answers as the backbone decodes them, records the LM data pipeline reads as chat documents with the
loss on the answers only, deterministic and resumable. Tiny random models built here; no download."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vidgpt.data.chat_text import (RECORDS_FILE, STATE_FILE, ChatTextConfig, answer_batch, chat_sample, eval_overlap,
                                   make_chat_text, question_pool, questions, read_records, trim_answer)
from vidgpt.errors import DataError
from vidgpt.evaluate import TEXT_PROMPTS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy():
    """tiny-llama over the 256-id toy tokenizer (it has a small chat template)."""
    from vidgpt.backbone import load_backbone

    model, tok = load_backbone("tiny-llama")
    return model.eval(), tok


def _lines(d: Path) -> str:
    return (d / RECORDS_FILE).read_text()


# --- questions -------------------------------------------------------------------------------------------------------


def test_questions_are_disjoint_from_the_eval_questions():
    for seed in (0, 1):
        pool = question_pool(seed)
        assert len(pool) == len(set(pool)) > 500
        assert not set(pool) & set(TEXT_PROMPTS)
        assert [q for q in pool if eval_overlap(q)] == []
    # the check itself bites: the eval questions, a reworded copy, and one that shares a content word
    assert all(eval_overlap(p) for p in TEXT_PROMPTS)
    assert "eval question" in eval_overlap("what is the CAPITAL of france")
    assert "'plus'" in eval_overlap("What is 3 plus 4?")
    assert eval_overlap("Name some colors.") is not None


def test_questions_have_a_stable_prefix_per_seed():
    assert questions(40, seed=0) == question_pool(0)[:40] == questions(80, seed=0)[:40]
    assert questions(40, seed=0) != questions(40, seed=1)
    assert sorted(question_pool(0)) == sorted(question_pool(1))
    with pytest.raises(DataError, match="templates make"):
        questions(len(question_pool(0)) + 1)


def test_trim_answer_keeps_full_sentences():
    assert trim_answer("Bees make honey in a hive. They live in groups and some of them st") == "Bees make honey in a hive."
    assert trim_answer("First line of the answer\nsecond li") == "First line of the answer"
    assert trim_answer("Short. tail") is None  # too little left
    assert trim_answer("no sentence end at all in this text") is None


# --- answers ---------------------------------------------------------------------------------------------------------


def test_batched_fast_answers_match_plain_greedy_generation(toy):
    """The batched fast path (left padding) gives what plain transformers greedy decoding gives, one prompt at a time."""
    import torch

    from vidgpt.data.chat_text import _prompt_layout
    from vidgpt.layout import Sample, Turn

    model, tok = toy
    qs = ["Why is sleep important?", "What does a cat eat?", "How do I make tea?"]  # different lengths
    fast = answer_batch(model, tok, qs, max_new_tokens=12)
    plain = answer_batch(model, tok, qs, max_new_tokens=12, fast=False)
    layout = _prompt_layout(tok)
    ref = []
    for q in qs:
        ids = torch.tensor([layout.prompt_ids(Sample([Turn("user", [q])]))])
        with torch.inference_mode():
            g = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                               eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        new = g[0, ids.shape[1]:].tolist()
        finished = tok.eos_token_id in new
        new = new[: new.index(tok.eos_token_id)] if finished else new
        ref.append((tok.decode(new, skip_special_tokens=True).strip(), finished))
    assert fast == plain == ref
    assert any(a for a, _ in fast)


# --- the pipeline reads the records as chat documents ------------------------------------------------------------------


def test_records_are_chat_documents_with_loss_on_the_answer_only(tmp_path, text_tok):
    """Real SmolLM2 tokenizer and chat template, tiny random LM: the shards source formats each record into the
    template, the user turn weighs 0, the answer and its end of turn weigh 1."""
    from vidgpt.generate.tiny import tiny_lm
    from vidgpt.layout import Layout, PROMPT, STRUCTURE, TEXT
    from vidgpt.train.lm_data import LMDataConfig, RecordFormatter, RecordSource, SourceConfig
    from vidgpt.vocab import UnifiedVocab, VocabSpec

    model = tiny_lm(len(text_tok), hidden=32, layers=1)
    out = tmp_path / "chat"
    s = make_chat_text(out, model, text_tok, ChatTextConfig(num=4, max_new_tokens=5, truncated="keep", batch_size=4))
    assert s["pairs"] == 4 and (out / STATE_FILE).is_file()
    recs = read_records(out / RECORDS_FILE)
    assert [r["messages"][0]["content"] for r in recs] == questions(4)
    assert all(r["messages"][1]["content"] for r in recs)

    vocab = UnifiedVocab(VocabSpec(6, 1, 8, 8), offset=len(text_tok))
    cfg = LMDataConfig(sources=[SourceConfig(kind="shards", paths=[str(out)])], holdout_every=0)
    fmt = RecordFormatter(vocab, text_tok, cfg)
    source = RecordSource(cfg.sources[0], fmt, seed=0, split="train", holdout_every=0)  # reads the folder
    docs = [source.next() for _ in range(4)]
    layout = Layout(vocab, text_tok, chat=True)
    eot = layout._ids(layout.wrappers.end_of_turn)
    by_ids = {tuple(d.input_ids): d for d in docs}
    assert len(by_ids) == 4
    for r in recs:
        q, a = r["messages"][0]["content"], r["messages"][1]["content"]
        want = layout.format(chat_sample(r["messages"]))
        d = by_ids[tuple(want.input_ids)]  # the document is the record in the chat template
        text = text_tok.decode(d.input_ids)
        assert text.startswith("<|im_start|>system") and f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n" in text
        on = [i for i, w in enumerate(d.weights) if w > 0]
        assert on == list(range(on[0], len(d.input_ids)))  # the loss is the tail: answer + end of turn
        assert [d.input_ids[i] for i in on] == layout._ids(a) + eot
        assert set(d.kinds[: on[0]]) == {PROMPT} and set(d.kinds[on[0]:]) <= {TEXT, STRUCTURE}
        assert q in text_tok.decode(d.input_ids[: on[0]])


def test_chat_records_need_the_chat_layout_and_well_formed_turns(text_tok):
    from vidgpt.train.lm_data import LMDataConfig, RecordFormatter
    from vidgpt.vocab import UnifiedVocab, VocabSpec

    vocab = UnifiedVocab(VocabSpec(6, 1, 8, 8), offset=len(text_tok))
    rec = {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}
    with pytest.raises(DataError, match="data.chat"):
        RecordFormatter(vocab, text_tok, LMDataConfig(chat=False))(rec, np.random.default_rng(0))
    fmt = RecordFormatter(vocab, text_tok, LMDataConfig())
    for bad in ([{"role": "assistant", "content": "x"}], [{"role": "user", "content": "x"}],
                [{"role": "user", "content": "x"}, {"role": "assistant", "content": 3}]):
        with pytest.raises(DataError, match="record"):
            fmt({"messages": bad}, np.random.default_rng(0))


# --- determinism and resume --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_same_seed_same_file_and_a_rerun_extends_it(tmp_path, toy, temperature):
    model, tok = toy
    cfg = dict(max_new_tokens=6, truncated="keep", batch_size=2, temperature=temperature, seed=3, backbone="tiny-llama")
    make_chat_text(tmp_path / "a", model, tok, ChatTextConfig(num=5, **cfg))
    make_chat_text(tmp_path / "b", model, tok, ChatTextConfig(num=5, **cfg))
    assert _lines(tmp_path / "a") == _lines(tmp_path / "b")  # deterministic for a seed
    # 3 pairs, then a torn half line (a killed run), then extended to 5: the same file as one run to 5
    make_chat_text(tmp_path / "c", model, tok, ChatTextConfig(num=3, **cfg))
    with open(tmp_path / "c" / RECORDS_FILE, "a") as f:
        f.write('{"index": 3, "messa')
    s = make_chat_text(tmp_path / "c", model, tok, ChatTextConfig(num=5, **cfg))
    assert s["pairs"] == 5
    assert _lines(tmp_path / "c") == _lines(tmp_path / "a")
    recs = read_records(tmp_path / "a" / RECORDS_FILE)
    assert [r["index"] for r in recs] == [0, 1, 2, 3, 4]
    assert [r["messages"][0]["content"] for r in recs] == questions(5, seed=3)
    other = dict(cfg, seed=4)
    make_chat_text(tmp_path / "d", model, tok, ChatTextConfig(num=5, **other))
    assert _lines(tmp_path / "d") != _lines(tmp_path / "a")
    with pytest.raises(DataError, match="seed=3"):  # extending with other settings is refused
        make_chat_text(tmp_path / "a", model, tok, ChatTextConfig(num=6, **other))


def test_cli_writes_pairs(tmp_path, capsys, load_tool):
    tool = load_tool("make_chat_text")
    out = tmp_path / "chat"
    assert tool.main(["--backbone", "tiny-llama", "--out", str(out), "--num", "3", "--max-new-tokens", "4",
                      "--truncated", "keep", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["pairs"] == 3 and len(read_records(out / RECORDS_FILE)) == 3
    with pytest.raises(DataError, match="truncated"):
        make_chat_text(out, None, None, ChatTextConfig(truncated="cut"))
