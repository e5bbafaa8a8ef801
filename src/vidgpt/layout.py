"""Sequence layout: how prompts, clips, chat turns and edits become one token sequence, and back.

A clip (or image, t = 1) is a *visual block*::

    <|vision_start|> <|t_t|><|h_h|><|w_w|>            shape header of the fine latent (NaViT-style)
      [<|blueprint|>  t*bh*bw*S visual ids]            optional coarse section, bh = ceil(h/2), bw = ceil(w/2)
      [<|fine|>       t*h*w*S visual ids]              optional fine section
    <|vision_end|>

The blueprint is the tokenizer's codes of the clip downsampled 2x in space, so it comes before the
fine section and the model draws coarse-to-fine in one context. A block holds at least one section.

A *sample* is a list of turns (user, assistant, alternating, starting with user); each turn's content
is a list of segments: text strings and visual blocks. Task layouts are built by the helpers below:
text-to-video / image (prompt -> clip), continuation (clip + "continue" -> clip) and edit
(clip + instruction -> clip; inpaint / outpaint / interpolate are edits whose source is the masked,
cropped or sparse clip). Two renderings:

- chat: inside the backbone's own chat template (wrappers are read off the template itself);
- plain: `user content` then `assistant content` then EOS, no wrappers (one user and one assistant
  turn; the assistant content is the final visual block).

`Layout.format` returns token ids plus a per-token *kind* (PROMPT, TEXT, VISUAL, STRUCTURE) from which
the trainer builds its loss mask; `Layout.parse` inverts it and raises LayoutError saying where a
malformed or truncated sequence broke.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, Union

import torch

from .errors import LayoutError
from .geometry import block_length, blueprint_shape  # noqa: F401  (the clip geometry's one home; re-exported)
from .vocab import UnifiedVocab

# token kinds, for loss masks
PROMPT = 0  # anything the model is given: user turns, template wrappers, system prompt
TEXT = 1  # assistant text
VISUAL = 2  # assistant visual ids
STRUCTURE = 3  # assistant block markers, shape headers, end of turn / EOS

DEFAULT_CONTINUE = "Continue the video."


@dataclass
class VisualBlock:
    """One clip or image in a sequence: its fine latent shape and the codes of each section present."""

    shape: tuple[int, int, int]
    fine: torch.Tensor | None = None  # LongTensor [t, h, w]
    blueprint: torch.Tensor | None = None  # LongTensor [t, ceil(h/2), ceil(w/2)]

    def __post_init__(self) -> None:
        self.shape = tuple(int(x) for x in self.shape)  # type: ignore[assignment]
        if len(self.shape) != 3:
            raise LayoutError(f"visual block shape {self.shape}: expected (t, h, w)")
        if self.fine is None and self.blueprint is None:
            raise LayoutError("a visual block needs fine codes, blueprint codes or both")
        if self.fine is not None:
            self.fine = torch.as_tensor(self.fine).long()
            if tuple(self.fine.shape) != self.shape:
                raise LayoutError(f"fine codes have shape {tuple(self.fine.shape)}, header says {self.shape}")
        if self.blueprint is not None:
            self.blueprint = torch.as_tensor(self.blueprint).long()
            if tuple(self.blueprint.shape) != blueprint_shape(self.shape):
                raise LayoutError(
                    f"blueprint codes have shape {tuple(self.blueprint.shape)}, expected {blueprint_shape(self.shape)}"
                )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VisualBlock):
            return NotImplemented

        def same(a, b):
            return (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))

        return self.shape == other.shape and same(self.fine, other.fine) and same(self.blueprint, other.blueprint)

    def __repr__(self) -> str:
        parts = [s for s, v in (("blueprint", self.blueprint), ("fine", self.fine)) if v is not None]
        return f"VisualBlock(shape={self.shape}, sections={'+'.join(parts)})"


Segment = Union[str, VisualBlock]


@dataclass
class Turn:
    role: str  # "user" or "assistant"
    content: list[Segment] = field(default_factory=list)

    def blocks(self) -> list[VisualBlock]:
        return [s for s in self.content if isinstance(s, VisualBlock)]

    def text(self) -> str:
        return "".join(s for s in self.content if isinstance(s, str))


@dataclass
class Sample:
    turns: list[Turn]

    def blocks(self) -> list[VisualBlock]:
        return [b for t in self.turns for b in t.blocks()]


@dataclass
class Formatted:
    input_ids: list[int]
    kinds: list[int]  # one of PROMPT, TEXT, VISUAL, STRUCTURE per id

    def __len__(self) -> int:
        return len(self.input_ids)


# --- task builders ------------------------------------------------------------------------------


def text_to_video(prompt: str, block: VisualBlock) -> Sample:
    return Sample([Turn("user", [prompt]), Turn("assistant", [block])])


def image(prompt: str, block: VisualBlock) -> Sample:
    if block.shape[0] != 1:
        raise LayoutError(f"an image block has t = 1, got t = {block.shape[0]}")
    return text_to_video(prompt, block)


def continuation(source: VisualBlock, target: VisualBlock, instruction: str = DEFAULT_CONTINUE) -> Sample:
    return Sample([Turn("user", [source, instruction]), Turn("assistant", [target])])


def edit(source: VisualBlock, instruction: str, target: VisualBlock) -> Sample:
    return Sample([Turn("user", [source, instruction]), Turn("assistant", [target])])


def _normalise(content: Sequence[Segment]) -> list[Segment]:
    """Merge adjacent strings and drop empty ones (what parse gives back)."""
    out: list[Segment] = []
    for seg in content:
        if isinstance(seg, str):
            if not seg:
                continue
            if out and isinstance(out[-1], str):
                out[-1] = out[-1] + seg
                continue
        elif not isinstance(seg, VisualBlock):
            raise LayoutError(f"turn content must be text or VisualBlock, got {type(seg).__name__}")
        out.append(seg)
    return out


class _ChatWrappers:
    """The text a chat template puts around user and assistant contents, read off the template.

    The template is rendered once with sentinel contents for two exchanges; the pieces between
    sentinels are: preamble+user prefix, user->assistant, assistant->user, and the assistant tail.
    """

    def __init__(self, text_tokenizer):
        marks = ["\x01U0\x01", "\x01A0\x01", "\x01U1\x01", "\x01A1\x01"]
        msgs = [{"role": r, "content": m} for r, m in zip(["user", "assistant", "user", "assistant"], marks)]
        try:
            full = text_tokenizer.apply_chat_template(msgs, tokenize=False)
            gen = text_tokenizer.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True)
        except Exception as e:  # no template, or one that refuses
            raise LayoutError(f"the backbone's tokenizer has no usable chat template ({e})") from e
        pieces, rest = [], full
        for m in marks:
            if m not in rest:
                raise LayoutError("the backbone's chat template does not keep message contents verbatim")
            before, rest = rest.split(m, 1)
            pieces.append(before)
        pieces.append(rest)
        self.head, self.user_to_assistant, self.assistant_to_user, _, self.tail = pieces
        if pieces[3] != self.user_to_assistant:
            raise LayoutError("the backbone's chat template wraps turns differently in later exchanges")
        if not gen.startswith(self.head + marks[0]) or gen[len(self.head + marks[0]) :] != self.user_to_assistant:
            raise LayoutError("the backbone's chat template has a generation prompt that differs from its turns")
        # the assistant's end-of-turn text (trained on) is the tail; the rest of assistant_to_user is the next prefix
        if self.assistant_to_user.startswith(self.tail):
            self.end_of_turn = self.tail
            self.user_prefix = self.assistant_to_user[len(self.tail) :]
        else:
            self.end_of_turn, self.user_prefix = "", self.assistant_to_user


class Layout:
    """Formats samples into token ids and parses them back, for one vocabulary and text tokenizer."""

    def __init__(self, vocab: UnifiedVocab, text_tokenizer, chat: bool = True):
        self.vocab = vocab
        self.text_tokenizer = text_tokenizer
        self.chat = chat
        self.S = vocab.spec.subtokens
        self.wrappers = _ChatWrappers(text_tokenizer) if chat else None
        eos = getattr(text_tokenizer, "eos_token_id", None)
        if not chat and eos is None:
            raise LayoutError("plain layout needs an EOS token and the text tokenizer has none")
        self.eos_id = eos
        self._cache: dict[str, list[int]] = {}

    # --- text -------------------------------------------------------------------------------
    def _ids(self, text: str) -> list[int]:
        if not text:
            return []
        if text in self._cache:
            return self._cache[text]
        ids = list(self.text_tokenizer(text, add_special_tokens=False)["input_ids"])
        if len(text) < 512:
            self._cache[text] = ids
        return ids

    def _text(self, ids: list[int]) -> str:
        return self.text_tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    # --- blocks -----------------------------------------------------------------------------
    def encode_block(self, block: VisualBlock) -> list[int]:
        v = self.vocab
        ids = [v.vision_start_id, *v.header_ids(block.shape)]
        if block.blueprint is not None:
            ids.append(v.blueprint_id)
            ids.extend(v.codes_to_ids(block.blueprint).tolist())
        if block.fine is not None:
            ids.append(v.fine_id)
            ids.extend(v.codes_to_ids(block.fine).tolist())
        ids.append(v.vision_end_id)
        return ids

    def decode_block(self, ids: Sequence[int], start: int = 0) -> tuple[VisualBlock, int]:
        """Parse the block beginning at `ids[start]`; returns it and the index after its end."""
        v = self.vocab
        n = len(ids)

        def need(i: int, what: str) -> int:
            if i >= n:
                raise LayoutError(f"sequence ends at position {n} inside the visual block starting at {start}: expected {what}")
            return int(ids[i])

        if need(start, "<|vision_start|>") != v.vision_start_id:
            raise LayoutError(f"position {start}: expected <|vision_start|>, got {self._describe(ids[start])}")
        shape = []
        for k, axis in enumerate("thw"):
            tok = need(start + 1 + k, f"the <|{axis}_*|> header token")
            val = v.header_value(tok, axis)
            if val is None:
                raise LayoutError(
                    f"position {start + 1 + k}: expected a <|{axis}_*|> shape header token, got {self._describe(tok)}"
                )
            shape.append(val)
        i = start + 4
        sections: dict[str, torch.Tensor] = {}
        for marker, name, sec_shape in (
            (v.blueprint_id, "blueprint", blueprint_shape(shape)),
            (v.fine_id, "fine", tuple(shape)),
        ):
            if need(i, "a section marker or <|vision_end|>") != marker:
                continue
            count = sec_shape[0] * sec_shape[1] * sec_shape[2] * self.S
            body = ids[i + 1 : i + 1 + count]
            if len(body) < count:
                raise LayoutError(
                    f"sequence ends at position {n} inside the {name} section of the block starting at {start} "
                    f"({len(body)} of {count} visual ids)"
                )
            body_t = torch.as_tensor(list(body), dtype=torch.long)
            bad = ~v.is_visual(body_t)
            if bool(bad.any()):
                j = int(bad.nonzero()[0, 0])
                raise LayoutError(
                    f"position {i + 1 + j}: expected a visual token in the {name} section "
                    f"({j} of {count}), got {self._describe(body[j])}"
                )
            try:
                sections[name] = v.ids_to_codes(body_t, sec_shape)
            except Exception as e:
                raise LayoutError(f"{name} section of the block starting at {start}: {e}") from e
            i += 1 + count
        if not sections:
            raise LayoutError(f"position {i}: expected <|blueprint|> or <|fine|> after the shape header, got {self._describe(need(i, 'a section'))}")
        if need(i, "<|vision_end|>") != v.vision_end_id:
            raise LayoutError(f"position {i}: expected <|vision_end|>, got {self._describe(ids[i])}")
        block = VisualBlock(tuple(shape), fine=sections.get("fine"), blueprint=sections.get("blueprint"))
        return block, i + 1

    def _describe(self, tok) -> str:
        tok = int(tok)
        if self.vocab.offset <= tok < self.vocab.end:
            return f"id {tok} ({self.vocab.token_strings()[tok - self.vocab.offset]})"
        try:
            return f"id {tok} ({self._text([tok])!r})"
        except Exception:
            return f"id {tok}"

    # --- whole samples ------------------------------------------------------------------------
    def _content(self, content: Sequence[Segment], out_ids: list[int], out_kinds: list[int], assistant: bool) -> None:
        for seg in _normalise(content):
            if isinstance(seg, str):
                ids = self._ids(seg)
                out_ids += ids
                out_kinds += [TEXT if assistant else PROMPT] * len(ids)
            else:
                ids = self.encode_block(seg)
                out_ids += ids
                if assistant:
                    is_vis = self.vocab.is_visual(torch.tensor(ids)).tolist()
                    out_kinds += [VISUAL if x else STRUCTURE for x in is_vis]
                else:
                    out_kinds += [PROMPT] * len(ids)

    def _check_turns(self, sample: Sample) -> None:
        if not sample.turns:
            raise LayoutError("a sample needs at least one turn")
        for k, turn in enumerate(sample.turns):
            want = "user" if k % 2 == 0 else "assistant"
            if turn.role != want:
                raise LayoutError(f"turn {k} has role {turn.role!r}; turns alternate user/assistant starting with user")
        if not self.chat:
            if len(sample.turns) != 2:
                raise LayoutError("the plain layout holds exactly one user and one assistant turn (use chat for more)")
            content = _normalise(sample.turns[1].content)
            if len(content) != 1 or not isinstance(content[0], VisualBlock):
                raise LayoutError("in the plain layout the assistant turn is exactly one visual block")

    def format(self, sample: Sample, add_generation_prompt: bool = False) -> Formatted:
        """Token ids and kinds for a whole sample.

        With `add_generation_prompt`, the sample must end with a user turn and the ids end where the
        assistant's content begins (what generation feeds the model).
        """
        self._check_turns(sample) if not add_generation_prompt else None
        if add_generation_prompt and sample.turns and sample.turns[-1].role != "user":
            raise LayoutError("a generation prompt must end with a user turn")
        ids: list[int] = []
        kinds: list[int] = []

        def wrap(text: str, kind: int) -> None:
            t = self._ids(text)
            ids.extend(t)
            kinds.extend([kind] * len(t))

        if self.chat:
            w = self.wrappers
            for k, turn in enumerate(sample.turns):
                if turn.role == "user":
                    wrap(w.head if k == 0 else w.user_prefix, PROMPT)
                    self._content(turn.content, ids, kinds, assistant=False)
                    if k + 1 < len(sample.turns) or add_generation_prompt:
                        wrap(w.user_to_assistant, PROMPT)
                else:
                    self._content(turn.content, ids, kinds, assistant=True)
                    wrap(w.end_of_turn, STRUCTURE)
        else:
            for turn in sample.turns:
                self._content(turn.content, ids, kinds, assistant=turn.role == "assistant")
            if not add_generation_prompt:
                ids.append(self.eos_id)
                kinds.append(STRUCTURE)
        return Formatted(ids, kinds)

    def prompt_ids(self, sample: Sample) -> list[int]:
        """Ids that end where the next assistant turn's content begins."""
        return self.format(sample, add_generation_prompt=True).input_ids

    def _split_items(self, ids: Sequence[int]) -> list[Segment]:
        """Split ids into decoded text runs and visual blocks."""
        items: list[Segment] = []
        run: list[int] = []
        i, n = 0, len(ids)
        v = self.vocab
        while i < n:
            tok = int(ids[i])
            if tok == v.vision_start_id:
                if run:
                    items.append(self._text(run))
                    run = []
                block, i = self.decode_block(ids, i)
                items.append(block)
                continue
            if v.offset <= tok < v.end:
                raise LayoutError(f"position {i}: {self._describe(tok)} outside a visual block")
            run.append(tok)
            i += 1
        if run:
            items.append(self._text(run))
        return items

    def parse(self, ids: Sequence[int]) -> Sample:
        """Invert `format` (with or without the trailing assistant turn)."""
        ids = [int(x) for x in (ids.tolist() if isinstance(ids, torch.Tensor) else ids)]
        if self.chat:
            return self._parse_chat(self._split_items(ids))
        if not ids or ids[-1] != self.eos_id:
            raise LayoutError(f"sequence of {len(ids)} ids does not end with EOS: truncated")
        items = self._split_items(ids[:-1])
        if not items or not isinstance(items[-1], VisualBlock):
            raise LayoutError("plain sequence does not end with a visual block before EOS")
        return Sample([Turn("user", _normalise(items[:-1])), Turn("assistant", [items[-1]])])

    def _parse_chat(self, items: list[Segment]) -> Sample:
        w = self.wrappers
        # flatten into (text with \x02k\x02 placeholders for block k); blocks go back in by index
        blocks: list[VisualBlock] = []
        text = ""
        for it in items:
            if isinstance(it, VisualBlock):
                text += f"\x02{len(blocks)}\x02"
                blocks.append(it)
            else:
                text += it

        def unpack(s: str) -> list[Segment]:
            out: list[Segment] = []
            for k, part in enumerate(s.split("\x02")):
                if k % 2:
                    out.append(blocks[int(part)])
                elif part:
                    out.append(part)
            return _normalise(out)

        if not text.startswith(w.head):
            raise LayoutError("sequence does not start with the chat template's opening (system prompt / user prefix)")
        pos = len(w.head)
        turns: list[Turn] = []
        while True:
            end = text.find(w.user_to_assistant, pos)
            if end < 0:
                raise LayoutError(f"character {pos}: user turn {len(turns)} never hands over to the assistant")
            turns.append(Turn("user", unpack(text[pos:end])))
            pos = end + len(w.user_to_assistant)
            if pos == len(text):
                return Sample(turns)  # a generation prompt
            end = text.find(w.assistant_to_user, pos)
            if end >= 0:
                turns.append(Turn("assistant", unpack(text[pos:end])))
                pos = end + len(w.assistant_to_user)
                continue
            if w.end_of_turn and not text.endswith(w.end_of_turn):
                raise LayoutError(f"character {pos}: the last assistant turn is not closed (truncated)")
            turns.append(Turn("assistant", unpack(text[pos : len(text) - len(w.end_of_turn)])))
            return Sample(turns)
