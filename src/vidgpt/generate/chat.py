"""Multi-turn chat: a conversation whose turns hold text and clips, rendered in the chat layout.

    session = ChatSession()
    reply = pipe.chat("make a red circle moving right", session=session)   # a clip
    reply = pipe.chat("now make it blue", session=session)                 # refers to that clip

Earlier clips stay in context as their token blocks (the layout's multi-turn chat rendering), so
"make it blue", "now make it move left" or "continue it" see the clip they refer to: by default the
latest clip; "clip 2", "the first clip", "the second one" pick another. The reply is a clip when the
message asks for one (make/generate/draw/show/continue/change/edit/...); otherwise the model chooses:
the first assistant token may be text or <|vision_start|>, and text stops at end of turn.

Context overflow policy (explicit): when the rendered conversation plus the reply would not fit
the model's max positions, the oldest whole exchanges (a user turn and its answer) are left out of
the context -- a clip is never cut in the middle -- but the exchange holding the clip being referred
to is always kept, as is the new message. If even that does not fit, GenerationError. The session's
own history keeps every turn; `session.dropped` says how many exchanges the last call left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import GenerationError
from ..layout import DEFAULT_CONTINUE, Sample, Turn, VisualBlock, block_length
from .constraints import StructureConstraint
from .decoding import constrained_decode
from .sampling import SamplingConfig, make_generator

CLIP_WORDS = (
    "make", "generate", "draw", "show", "continue", "change", "edit", "create", "render", "animate",
    "turn", "move", "add", "remove", "paint", "film", "video", "clip", "picture", "image",
)
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5}


def wants_clip(message: str) -> bool:
    """Simple rule: the message asks for a clip when it uses one of CLIP_WORDS."""
    words = re.findall(r"[a-z]+", message.lower())
    return any(w in CLIP_WORDS or w.rstrip("s") in CLIP_WORDS for w in words)


@dataclass
class Clip:
    """A clip of the conversation: which turn holds it, its block and (when decoded) its frames."""

    turn: int
    block: VisualBlock
    frames: np.ndarray | None = None
    path: str | None = None


@dataclass
class ChatSession:
    turns: list[Turn] = field(default_factory=list)
    clips: list[Clip] = field(default_factory=list)
    dropped: int = 0  # exchanges left out of the context by the last call

    def reset(self) -> None:
        self.turns.clear()
        self.clips.clear()
        self.dropped = 0

    def add(self, role: str, content: list, frames: np.ndarray | None = None) -> None:
        if self.turns and self.turns[-1].role == role:
            raise GenerationError(f"two {role} turns in a row; turns alternate user/assistant")
        if not self.turns and role != "user":
            raise GenerationError("a conversation starts with a user turn")
        self.turns.append(Turn(role, list(content)))
        for seg in content:
            if isinstance(seg, VisualBlock):
                self.clips.append(Clip(len(self.turns) - 1, seg, frames))

    def referred_clip(self, message: str) -> Clip | None:
        """The clip a message refers to: 'clip N' / 'the first|second... clip', else the latest."""
        if not self.clips:
            return None
        m = re.search(r"\bclip\s*#?\s*(\d+)", message.lower())
        idx = int(m.group(1)) if m else None
        if idx is None:
            for word, n in _ORDINALS.items():
                if re.search(rf"\b{word}\b", message.lower()):
                    idx = n
                    break
        if idx is not None and 1 <= idx <= len(self.clips):
            return self.clips[idx - 1]
        return self.clips[-1]


@dataclass
class ChatReply:
    text: str
    block: VisualBlock | None
    frames: np.ndarray | None  # uint8 [T, H, W, 3] when the reply is a clip
    referred: Clip | None
    prompt_ids: list[int]
    token_ids: list[int]
    session: ChatSession

    @property
    def is_clip(self) -> bool:
        return self.block is not None


def context_turns(pipe, session: ChatSession, new_user: Turn, keep_turn: int | None, reply_len: int) -> tuple[list[Turn], int, list[int]]:
    """Apply the overflow policy: (turns to render, exchanges dropped, prompt ids)."""
    turns = session.turns
    exchanges = [(i, i + 1) for i in range(0, len(turns) - 1, 2)]
    keep = [True] * len(exchanges)
    dropped = 0

    def render() -> list[int]:
        chosen = [t for k, (a, b) in enumerate(exchanges) if keep[k] for t in turns[a : b + 1]]
        return pipe.layout.prompt_ids(Sample(chosen + [new_user]))

    ids = render()
    k = 0
    while len(ids) + reply_len > pipe.max_positions:
        while k < len(exchanges) and (not keep[k] or (keep_turn is not None and exchanges[k][0] <= keep_turn <= exchanges[k][1])):
            k += 1
        if k >= len(exchanges):
            raise GenerationError(
                f"the conversation does not fit the model's {pipe.max_positions} positions even with only the "
                f"referred clip and the new message ({len(ids)} + {reply_len} tokens); /reset or ask for a smaller clip"
            )
        keep[k] = False
        dropped += 1
        ids = render()
    chosen = [t for k2, (a, b) in enumerate(exchanges) if keep[k2] for t in turns[a : b + 1]]
    return chosen, dropped, ids


def chat(
    pipe,
    messages,
    session: ChatSession | None = None,
    frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    mode: str | None = None,
    seed: int | None = None,
    cfg: float = 3.0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    max_text_tokens: int = 128,
    decode: bool = True,
    progress: bool = False,
) -> ChatReply:
    """Answer a user message (a string, or a list of {"role","content"} messages ending with a user one).

    mode: "clip", "text" or None (decide: a clip when `wants_clip(message)`, else the model's choice).
    The size of a new clip: the referred clip's shape when the message refers to one, else
    frames/height/width (default: the model's default clip, `pipe.default_clip`; limited by its vocabulary).
    """
    if not pipe.layout.chat:
        raise GenerationError("this model uses the plain layout; chat needs a model with \"layout\": {\"chat\": true}")
    session = session if session is not None else ChatSession()
    if isinstance(messages, str):
        message, attach = messages, None
    else:
        msgs = list(messages)
        if not msgs or msgs[-1].get("role") != "user":
            raise GenerationError("messages must end with a user message")
        session.reset()
        for m in msgs[:-1]:
            content = m["content"] if isinstance(m["content"], list) else [m["content"]]
            session.add(m["role"], content)
        last = msgs[-1]["content"]
        attach = [s for s in last if isinstance(s, VisualBlock)] if isinstance(last, list) else None
        message = "".join(s for s in last if isinstance(s, str)) if isinstance(last, list) else last
    if not isinstance(message, str) or not message.strip():
        raise GenerationError("the message is empty")
    message = message.strip()
    referred = session.referred_clip(message)
    if mode is None:
        mode = "clip" if wants_clip(message) else "either"
    if mode not in ("clip", "text", "either"):
        raise GenerationError(f"mode={mode!r}: choose clip, text or either")

    # the shape of a new clip
    if mode == "text":
        shape = None
    elif frames is None and height is None and width is None and referred is not None:
        shape = referred.block.shape
    else:
        shape = pipe.latent_shape(*pipe.resolve_clip(frames or None, height or None, width or None))
    sections = pipe.sections()
    S = pipe.vocab.spec.subtokens
    reply_len = max(
        block_length(shape, S, "blueprint" in sections, "fine" in sections) if mode != "text" else 0,
        max_text_tokens if mode != "clip" else 0,
    ) + len(pipe.tail_ids)

    content = list(attach or []) + [message]
    new_user = Turn("user", content)
    keep_turn = referred.turn if referred is not None else None
    turns, dropped, prompt_ids = context_turns(pipe, session, new_user, keep_turn, reply_len)
    session.dropped = dropped

    sampling = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p, cfg=cfg if mode == "clip" else 1.0)
    uncond = None
    if sampling.use_cfg:
        # the same context with the message left out, or (a model that contrasts motion) with its motion reversed
        negative = pipe.default_negative(message)
        negative_content = list(attach or []) + ([negative] if negative else [])
        uncond = [pipe.layout.prompt_ids(Sample(turns + [Turn("user", negative_content)]))]
    gen = make_generator(seed, pipe.device)
    if mode == "clip":
        # a clip is asked for: the pipeline's own block sampler, so the model's decode options (fine_temperature,
        # speculative windows, and for a new clip best_of with the motion verifier) apply as in `generate` and `edit`.
        # A turn about a clip (an edit in context) draws one blueprint, as `edit` does: picking among 4 did not make
        # motion edits change the way (model/README.md, "Fine temperature 0.3, ...")
        from ..data.motion_words import named_direction

        new_clip = referred is None and not attach
        blocks, rows = pipe.sample_blocks([prompt_ids], uncond, shape, sections, sampling, gen, progress, "chat",
                                          directions=[named_direction(message) if new_clip else None])
        session.add("user", content)
        return _clip_reply(pipe, session, blocks[0], referred, prompt_ids, rows[0], decode, progress)
    # text, or the model's choice of text or a clip
    left = pipe.max_positions - len(prompt_ids)
    con = StructureConstraint(
        pipe.vocab, 1, shape=shape, sections=sections, allow_text=mode == "either", text_only=mode == "text",
        stop_id=pipe.stop_id, max_text_tokens=min(max_text_tokens, max(1, left - len(pipe.tail_ids))), pad_id=pipe.pad_id,
    )
    out = constrained_decode(
        pipe.backend, [prompt_ids], con, sampling, gen, uncond_prompts=uncond,
        pad_id=pipe.pad_id, vocab_size=pipe.vocab.end, max_steps=reply_len,
    )
    ids = out.tokens[0].tolist()
    session.add("user", content)
    if out.kinds[0] == "block":
        ids = ids + pipe.tail_ids
        sample = pipe.layout.parse(prompt_ids + ids)
        return _clip_reply(pipe, session, sample.turns[-1].blocks()[-1], referred, prompt_ids, ids, decode, progress)
    if pipe.stop_id in ids:
        ids = ids[: ids.index(pipe.stop_id)]
    text = pipe.text_of(ids) or "..."
    session.add("assistant", [text])
    return ChatReply(text, None, None, referred, prompt_ids, ids + pipe.tail_ids, session)


def _clip_reply(pipe, session: ChatSession, block, referred, prompt_ids, ids, decode: bool, progress: bool) -> ChatReply:
    """The reply that is a clip: `block` decoded (unless not `decode`) and added to the session."""
    video = None
    if decode:
        video = pipe.to_frames(pipe.decode_blocks([block], progress=progress))[0]
    session.add("assistant", [block], frames=video)
    return ChatReply("", block, video, referred, prompt_ids, ids, session)


__all__ = ["ChatReply", "ChatSession", "Clip", "DEFAULT_CONTINUE", "chat", "context_turns", "wants_clip"]
