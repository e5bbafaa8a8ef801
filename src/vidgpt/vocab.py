"""The unified vocabulary: visual codes and layout tokens appended to an LLM's text vocabulary.

New ids start at `offset` (the size of the backbone's text vocabulary) in this order::

    offset + 0 .. 3            <|vision_start|> <|vision_end|> <|blueprint|> <|fine|>
    then max_t tokens          <|t_1|> .. <|t_{max_t}|>        latent frames of a block
    then max_hw tokens         <|h_1|> .. <|h_{max_hw}|>       latent rows
    then max_hw tokens         <|w_1|> .. <|w_{max_hw}|>       latent columns
    visual_offset ..           S groups of 2**(K/S) rows:      <|v{g}_{value}|>

A visual code of K bits is written as S sub-tokens, low bits first: sub-token g carries
bits [g*b, (g+1)*b) with b = K/S, and lives in its own block of 2**b rows, so the LLM needs
S * 2**(K/S) new rows instead of 2**K (K=18, S=2 -> 1,024 rows instead of 262,144).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import VocabError

SPECIAL_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|blueprint|>", "<|fine|>")


@dataclass(frozen=True)
class VocabSpec:
    """What fixes the new rows: K bits per code, S sub-tokens per code, header ranges."""

    codebook_bits: int = 14
    subtokens: int = 1
    max_latent_t: int = 64  # 1 + 4*63 = 253 frames per block
    max_latent_hw: int = 64  # 512 px per side at 8x compression

    def __post_init__(self) -> None:
        if self.codebook_bits < 1 or self.codebook_bits > 32:
            raise VocabError(f"codebook_bits={self.codebook_bits}: must be in 1..32")
        if self.subtokens < 1 or self.codebook_bits % self.subtokens:
            raise VocabError(
                f"subtokens={self.subtokens}: must divide codebook_bits={self.codebook_bits}"
            )
        if self.max_latent_t < 1 or self.max_latent_hw < 1:
            raise VocabError("max_latent_t and max_latent_hw must be >= 1")

    @property
    def bits_per_subtoken(self) -> int:
        return self.codebook_bits // self.subtokens

    @property
    def rows_per_group(self) -> int:
        return 2**self.bits_per_subtoken

    @property
    def num_visual_rows(self) -> int:
        return self.subtokens * self.rows_per_group


class UnifiedVocab:
    """Maps visual codes and layout tokens to ids past the text vocabulary, and back."""

    def __init__(self, spec: VocabSpec, offset: int):
        if offset < 0:
            raise VocabError(f"offset={offset}: must be >= 0")
        self.spec = spec
        self.offset = int(offset)
        self.vision_start_id = offset
        self.vision_end_id = offset + 1
        self.blueprint_id = offset + 2
        self.fine_id = offset + 3
        self.t_offset = offset + len(SPECIAL_TOKENS)
        self.h_offset = self.t_offset + spec.max_latent_t
        self.w_offset = self.h_offset + spec.max_latent_hw
        self.visual_offset = self.w_offset + spec.max_latent_hw
        self.end = self.visual_offset + spec.num_visual_rows  # one past the last new id

    # --- sizes -------------------------------------------------------------------------
    @property
    def num_new_tokens(self) -> int:
        return self.end - self.offset

    @property
    def total_size(self) -> int:
        """Size of the whole vocabulary (text + new tokens)."""
        return self.end

    @property
    def special_ids(self) -> tuple[int, int, int, int]:
        return (self.vision_start_id, self.vision_end_id, self.blueprint_id, self.fine_id)

    # --- token strings (for the HF tokenizer) ------------------------------------------
    def token_strings(self) -> list[str]:
        """Every new token as a string, in id order (offset first)."""
        s = self.spec
        out = list(SPECIAL_TOKENS)
        out += [f"<|t_{n}|>" for n in range(1, s.max_latent_t + 1)]
        out += [f"<|h_{n}|>" for n in range(1, s.max_latent_hw + 1)]
        out += [f"<|w_{n}|>" for n in range(1, s.max_latent_hw + 1)]
        out += [f"<|v{g}_{v}|>" for g in range(s.subtokens) for v in range(s.rows_per_group)]
        return out

    # --- shape header ------------------------------------------------------------------
    def header_ids(self, shape: tuple[int, int, int]) -> list[int]:
        """The three ids `<|t_t|><|h_h|><|w_w|>` for a latent shape."""
        t, h, w = (int(x) for x in shape)
        s = self.spec
        if not (1 <= t <= s.max_latent_t):
            raise VocabError(f"latent frames t={t} outside 1..{s.max_latent_t}")
        for name, v in (("h", h), ("w", w)):
            if not (1 <= v <= s.max_latent_hw):
                raise VocabError(f"latent {name}={v} outside 1..{s.max_latent_hw}")
        return [self.t_offset + t - 1, self.h_offset + h - 1, self.w_offset + w - 1]

    def header_value(self, token_id: int, axis: str) -> int | None:
        """The number a header id carries on `axis` ('t', 'h' or 'w'), or None if it is not one."""
        lo, n = {
            "t": (self.t_offset, self.spec.max_latent_t),
            "h": (self.h_offset, self.spec.max_latent_hw),
            "w": (self.w_offset, self.spec.max_latent_hw),
        }[axis]
        if lo <= token_id < lo + n:
            return token_id - lo + 1
        return None

    # --- visual codes <-> ids ------------------------------------------------------------
    def group_range(self, group: int) -> tuple[int, int]:
        """[lo, hi) ids of sub-token group `group`."""
        lo = self.visual_offset + group * self.spec.rows_per_group
        return lo, lo + self.spec.rows_per_group

    def codes_to_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """LongTensor of codes (any shape) -> 1-D ids, S sub-tokens per code, row-major."""
        codes = torch.as_tensor(codes).long().reshape(-1)
        s = self.spec
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= 2**s.codebook_bits):
            bad = int(codes.min()) if int(codes.min()) < 0 else int(codes.max())
            raise VocabError(f"visual code {bad} outside 0..{2**s.codebook_bits - 1}")
        b, mask = s.bits_per_subtoken, s.rows_per_group - 1
        groups = [((codes >> (g * b)) & mask) + self.group_range(g)[0] for g in range(s.subtokens)]
        return torch.stack(groups, dim=-1).reshape(-1)

    def ids_to_codes(self, ids: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """1-D ids (S per code, in group order) -> codes, reshaped to `shape` when given."""
        ids = torch.as_tensor(ids).long().reshape(-1)
        s = self.spec
        if ids.numel() % s.subtokens:
            raise VocabError(f"{ids.numel()} visual ids is not a multiple of {s.subtokens} sub-tokens")
        per = ids.reshape(-1, s.subtokens)
        codes = torch.zeros(per.shape[0], dtype=torch.long)
        for g in range(s.subtokens):
            lo, hi = self.group_range(g)
            col = per[:, g]
            bad = (col < lo) | (col >= hi)
            if bool(bad.any()):
                i = int(bad.nonzero()[0, 0])
                raise VocabError(
                    f"id {int(col[i])} at visual position {i * s.subtokens + g} is not a group-{g} visual token "
                    f"(expected {lo}..{hi - 1})"
                )
            codes |= (col - lo) << (g * s.bits_per_subtoken)
        if shape is not None:
            codes = codes.reshape(shape)
        return codes

    def is_visual(self, ids: torch.Tensor) -> torch.Tensor:
        ids = torch.as_tensor(ids)
        return (ids >= self.visual_offset) & (ids < self.end)

    def is_new(self, ids: torch.Tensor) -> torch.Tensor:
        ids = torch.as_tensor(ids)
        return (ids >= self.offset) & (ids < self.end)

    # --- metadata --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        s = self.spec
        return {
            "offset": self.offset,
            "visual_offset": self.visual_offset,
            "codebook_bits": s.codebook_bits,
            "subtokens": s.subtokens,
            "max_latent_t": s.max_latent_t,
            "max_latent_hw": s.max_latent_hw,
            "num_new_tokens": self.num_new_tokens,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "UnifiedVocab":
        try:
            spec = VocabSpec(
                codebook_bits=int(d["codebook_bits"]),
                subtokens=int(d.get("subtokens", 1)),
                max_latent_t=int(d.get("max_latent_t", 64)),
                max_latent_hw=int(d.get("max_latent_hw", 64)),
            )
            vocab = cls(spec, int(d["offset"]))
        except KeyError as e:
            raise VocabError(f"vocabulary metadata lacks {e.args[0]!r}") from e
        if "visual_offset" in d and int(d["visual_offset"]) != vocab.visual_offset:
            raise VocabError(
                f"vocabulary metadata says visual_offset={d['visual_offset']} but the layout gives {vocab.visual_offset}"
            )
        return vocab

    def __repr__(self) -> str:
        s = self.spec
        return (
            f"UnifiedVocab(K={s.codebook_bits}, S={s.subtokens}, offset={self.offset}, "
            f"visual_offset={self.visual_offset}, new_tokens={self.num_new_tokens})"
        )
