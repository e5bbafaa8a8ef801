"""Bit-structured visual rows: every visual code's row gets a part shared through the code's LFQ bits.

`model.bit_rows: true` (vidgpt.train.lm_trainer) trains, beside the new rows themselves, one matrix A
[S, K/S, H] per run: the row of visual id v (sub-token group g, value c) is

    row(v) = free(v) + bits(c) @ A[g]          bits(c) in {-1, +1}^(K/S), bit i = LFQ channel i

so the head's logit for a code is a free part plus a sum of one term per bit, h . A[g][i] * bit_i. What the
prompt says about a colour sits in a few LFQ bits (tools/object_code_stats.py: per-bit gains), and each bit
is shared by half the codebook: the bitwise part learns from every code the data shows, where a free row
learns only from its own code (thousands of distinct codes, each seen a few times).

Nothing downstream changes: `fold_bit_rows` adds bits @ A into the free rows and zeroes A. The trainer folds
before every checkpoint and before saving the model, so checkpoints and shipped models hold ordinary rows
(A = 0), and generation, probes and `init_from` see plain embeddings. Folding mid-run does not change the run:
with Adam and no weight decay on A's group an update depends only on the gradients, and the gradients only on
the sum free + bits @ A (tests/test_bit_rows.py).

Only the fast loss heads (`loss.head: full | constrained`, vidgpt.train.lm_loss.TokenRows) add the part;
`loss.head: plain` goes through the model's own forward and is refused with bit rows.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbone import base_model
from ..tokenizer.lfq import codes_to_bits
from ..vocab import UnifiedVocab

ATTR = "vidgpt_bit_rows"


class BitRows(nn.Module):
    """A [S, K/S, H] (zeros at start: the model's function is unchanged) and the sign table of each group."""

    def __init__(self, vocab: UnifiedVocab, hidden: int):
        super().__init__()
        s = vocab.spec
        self.v0 = vocab.visual_offset
        self.v1 = vocab.visual_offset + s.num_visual_rows
        self.groups = s.subtokens
        self.A = nn.Parameter(torch.zeros(s.subtokens, s.bits_per_subtoken, hidden))
        self.register_buffer("signs", codes_to_bits(torch.arange(s.rows_per_group), s.bits_per_subtoken),
                             persistent=False)

    def part(self) -> torch.Tensor:
        """[num_visual_rows, H]: bits @ A for every visual id, group after group (as the ids run)."""
        signs = self.signs.to(self.A.dtype)
        return torch.cat([signs @ self.A[g] for g in range(self.groups)], 0)

    def add_to_rows(self, W: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """W = the free rows of ids [lo, hi): the same rows with the bitwise part added where ids are visual."""
        o0, o1 = max(lo, self.v0), min(hi, self.v1)
        if o0 >= o1:
            return W
        part = self.part()[o0 - self.v0 : o1 - self.v0].to(W.dtype)
        if (o0, o1) == (lo, hi):
            return W + part
        return torch.cat([W[: o0 - lo], W[o0 - lo : o1 - lo] + part, W[o1 - lo :]], 0)

    def add_to_lookup(self, emb: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """emb = the free rows looked up for `ids`: the same with the bitwise part added on visual ids."""
        inside = (ids >= self.v0) & (ids < self.v1)
        if not bool(inside.any()):
            return emb
        extra = F.embedding(torch.where(inside, ids - self.v0, 0), self.part()).to(emb.dtype)
        return emb + extra * inside.unsqueeze(-1).to(emb.dtype)


def attach_bit_rows(model, vocab: UnifiedVocab) -> BitRows:
    """Give `model` (plain or peft, after LoRA is applied) a trainable BitRows; returns it."""
    base = base_model(model)
    bits = BitRows(vocab, int(base.config.hidden_size)).to(next(base.parameters()).device)
    base.add_module(ATTR, bits)
    return bits


def bit_rows_of(model) -> BitRows | None:
    return getattr(base_model(model), ATTR, None) if model is not None else None


def _row_tensors(module, v0: int, v1: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(tensor, row index of ids v0..v1-1 in it) pairs that hold the rows `module` uses for the visual ids."""
    ta = getattr(module, "token_adapter", None)
    if ta is None:
        return [(module.weight, torch.arange(v0, v1))]
    active = [a for a in ta.active_adapters if a in ta.trainable_tokens_delta]
    if ta.disable_adapters or ta.merged or not active:
        return [(ta.base_layer.weight, torch.arange(v0, v1))]
    idx = list(ta.token_indices[active[0]])
    where = {t: i for i, t in enumerate(idx)}
    pos = [where.get(v) for v in range(v0, v1)]
    if any(p is None for p in pos):  # visual ids outside the trainable tokens live in the base weight
        return [(ta.base_layer.weight, torch.arange(v0, v1))]
    return [(ta.trainable_tokens_delta[active[0]], torch.tensor(pos))]


@torch.no_grad()
def fold_bit_rows(model) -> bool:
    """free rows += bits @ A, then A = 0 (the model's function is unchanged); False when it has no bit rows."""
    bits = bit_rows_of(model)
    if bits is None:
        return False
    base = base_model(model)
    part = bits.part()
    seen = set()
    for module in (base.get_input_embeddings(), base.get_output_embeddings()):
        if module is None:
            continue
        for t, rows in _row_tensors(module, bits.v0, bits.v1):
            if t.data_ptr() in seen:  # tied head: one tensor
                continue
            seen.add(t.data_ptr())
            t.index_add_(0, rows.to(t.device), part.to(t.dtype))
    bits.A.zero_()
    return True


def detach_bit_rows(model) -> None:
    """Fold, then remove the module (before saving a model: what ships has plain rows and no extra tensor)."""
    if fold_bit_rows(model):
        delattr(base_model(model), ATTR)
