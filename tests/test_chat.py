"""Chat: earlier clips stay in context, references pick the right clip, overflow policy."""

import pytest

from vidgpt.errors import GenerationError
from vidgpt.generate.chat import ChatSession, wants_clip
from vidgpt.generate.tiny import tiny_pipeline


pytestmark = pytest.mark.usefixtures("one_thread")


def contains(seq, sub):
    return any(seq[i : i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


def test_second_turn_sees_the_first_clip(pipe):
    s = ChatSession()
    r1 = pipe.chat("make a red circle moving right", session=s, frames=5, height=16, width=16, seed=0)
    assert r1.is_clip and r1.frames.shape == (5, 16, 16, 3)
    r2 = pipe.chat("now make it blue", session=s, seed=1)
    assert r2.is_clip and r2.referred is s.clips[0]
    assert r2.block.shape == r1.block.shape  # the referred clip's shape
    assert contains(r2.prompt_ids, pipe.layout.encode_block(r1.block))
    assert [t.role for t in s.turns] == ["user", "assistant", "user", "assistant"]
    # a third turn can refer back to the first clip by number
    r3 = pipe.chat("continue clip 1", session=s, seed=2)
    assert r3.referred is s.clips[0]
    assert contains(r3.prompt_ids, pipe.layout.encode_block(r2.block))


def test_text_turn_and_rules(pipe):
    assert wants_clip("Please draw a cat") and wants_clip("continue it") and not wants_clip("how are you?")
    s = ChatSession()
    r = pipe.chat("hello there", session=s, mode="text", seed=0, max_text_tokens=5)
    assert not r.is_clip and s.turns[-1].role == "assistant" and isinstance(s.turns[-1].content[0], str)
    r = pipe.chat("what is up?", session=s, seed=0, frames=1, height=16, width=16, max_text_tokens=5)
    assert s.turns[-1].content[0] == (r.block if r.is_clip else r.text)  # the model chose either


def test_messages_list_and_empty_message(pipe):
    r = pipe.chat([{"role": "user", "content": "draw a dot"}], frames=1, height=16, width=16, seed=0)
    assert r.is_clip and r.session.clips
    with pytest.raises(GenerationError, match="empty"):
        pipe.chat("   ")


def test_overflow_drops_oldest_but_keeps_referred(text_tok):
    small = tiny_pipeline(text_tok, bits=6, max_positions=400)
    s = ChatSession()
    kw = dict(frames=5, height=32, width=32)  # a block of 2x4x4 (+ blueprint): 47 tokens
    small.chat("make a red circle", session=s, seed=0, **kw)
    for k in range(6):
        small.chat(f"make shape {k}", session=s, seed=10 + k, **kw)
    assert s.dropped > 0
    first = s.clips[0].block
    r = small.chat("change clip 1 to green", session=s, seed=9)
    assert r.referred.block is first
    assert contains(r.prompt_ids, small.layout.encode_block(first))  # kept although oldest
    assert not contains(r.prompt_ids, small.layout.encode_block(s.clips[1].block))  # the next oldest went
    assert len(r.prompt_ids) + len(r.token_ids) <= small.max_positions


def test_overflow_raises_when_even_the_referred_clip_does_not_fit(text_tok):
    small = tiny_pipeline(text_tok, bits=6, max_positions=160)
    s = ChatSession()
    small.chat("make a dot", session=s, seed=0, frames=5, height=32, width=32)
    with pytest.raises(GenerationError, match="does not fit"):
        small.chat("make it blue " * 20, session=s, seed=1)


def test_a_clip_turn_guides_away_from_the_message_with_its_motion_reversed(pipe, monkeypatch):
    """On a model that contrasts motion, the guidance's other row is the same context with the message's motion
    reversed; otherwise (or when the message names no motion) the message is left out."""
    import vidgpt.generate.chat as chat

    rows = []
    real = pipe.sample_blocks
    monkeypatch.setattr(pipe, "sample_blocks", lambda *a, **k: rows.append(a[1]) or real(*a, **k))
    reversed_ids = pipe.layout.prompt_ids(chat.Sample([chat.Turn("user", ["make a red circle moving left"])]))
    empty_ids = pipe.layout.prompt_ids(chat.Sample([chat.Turn("user", [])]))
    for contrast, want in ((True, reversed_ids), (False, empty_ids)):
        monkeypatch.setattr(pipe, "contrast_motion", contrast)
        pipe.chat("make a red circle moving right", session=ChatSession(), frames=5, height=16, width=16, seed=0)
        assert rows[-1] == [want], contrast


def test_a_clip_turn_draws_with_the_pipelines_sampler_and_the_asked_direction(pipe, monkeypatch):
    """A turn that asks for a clip goes through VidGPT.sample_blocks (so best_of, fine_temperature and speculative
    windows apply as in `generate`), with the direction a new clip's message names (none for a turn about a clip:
    an edit draws one blueprint, as `edit` does); the session keeps the user's message, not the guidance's negative
    row."""
    calls = []
    real = pipe.sample_blocks
    monkeypatch.setattr(pipe, "sample_blocks", lambda *a, **k: calls.append(k.get("directions")) or real(*a, **k))
    monkeypatch.setattr(pipe, "contrast_motion", True)
    s = ChatSession()
    r = pipe.chat("make a red circle moving right", session=s, frames=5, height=16, width=16, seed=0)
    assert r.block is not None and calls[-1] == ["right"]
    user_turns = [t for t in s.turns if t.role == "user"]
    assert user_turns[-1].content == ["make a red circle moving right"]  # not "... moving left", the negative
    r = pipe.chat("now make it move left instead", session=s, frames=5, height=16, width=16, seed=1, mode="clip")
    assert r.referred is not None and calls[-1] == [None]
    assert [t.content for t in s.turns if t.role == "user"][-1] == ["now make it move left instead"]
