"""The LM head and loss of continued pretraining, without the 65.7k-wide logits where they are not needed.

The trainer (vidgpt.train.lm_trainer) calls one `LossHead` per run: `loss, n = head(model, batch)`, the
weighted next-token cross entropy over the tokens with weight > 0, normalised by their number `n`.
`LossSettings.head` picks how:

- `plain`: `model(...).logits` over the whole vocabulary, then `weighted_lm_loss` (the transformers step).
- `full`: the same objective, computed from the decoder's hidden states: trailing zero-weight columns are
  cut (exact: the model is causal), the head runs only on positions whose next token is trained (prompt
  tokens never reach it), over all rows, in chunks of `chunk_tokens` positions. Equals `plain` to float
  rounding.
- `constrained`: the softmax of each trained position runs over the set the layout allows for its target,
  the set the constrained sampler (vidgpt.generate.constraints) draws from:
  a visual id -> the rows of its sub-token group (16,384 rows at K=14, S=1);
  a layout id other than <|vision_start|> (headers, section markers, <|vision_end|>) -> the layout rows;
  anything else (text, end of turn, EOS, <|vision_start|>, which competes with text) -> all rows.
  This is the negative log-likelihood of the data under the constrained sampler, a different number from
  `plain`'s (smaller: fewer rows compete); `reference_loss` computes it from full logits with a mask, and
  the fast path equals that to float rounding (tests/test_lm_loss.py, tools/bench_train.py).
- `auto` (default): `constrained` on the CPU, `plain` otherwise. The fast heads call the decoder and the rows
  themselves, past any wrapper: with several processes the trainer then leaves the model unwrapped and averages
  the gradients itself (`distributed.average_gradients`; DDP's hooks only fire after a forward through DDP).
  Under FSDP the parameters are shards that only the wrapped forward gathers, so FSDP needs `plain`.

`text_kl_weight` > 0 (LoRA runs, fast heads): keeping the backbone's English by distillation. In every document
that holds no token of the new vocabulary (plain English, chat answers), each trained position adds
KL(base || model) of the next-token distribution (the model's over the rows a text turn samples from: the text rows
and <|vision_start|>), the base being the same model with its adapter switched off (the text rows are frozen, so
that is the embedded backbone itself), times the weight; the mean over those positions is
added to the loss (training only: evaluation losses stay comparable). Cross entropy on a text sample teaches one
token a position; the KL gives the whole distribution the base had there. `text_kl_rows: all` normalises the model's
side over every row instead: the KL then also pays -log(1 - m) for the mass m the model puts on any new row in plain
text (what the all-row perplexity of `vidgpt eval model` counts and a text turn never samples).

`motion_contrast_weight` / `preference_weight` > 0: pair losses the trainer adds (vidgpt.train.motion_pairs: a clip's
blueprint under its caption against the same codes under the caption with the motion reversed;
vidgpt.train.preference_pairs: DPO of a true blueprint over the model's own wrong-way one). `row_nll` gives the
per-document likelihoods they compare (one document a row).

`embed_grad`: `input` (exact) or `head_only`: the input embedding is looked up without gradient, so the
new rows learn through the tied output head only and the backward pass stops at the lowest trainable
layer (with LoRA on the upper layers only, see vidgpt.train.lora_layers). An approximation: its quality
cost is measured by tools/learning_curve.py, never assumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..backbone import base_model
from ..copy_readout import COPY_OFFSETS, apply_copy
from ..errors import ConfigError
from ..parent_hint import parent_hint_of
from ..vocab import UnifiedVocab
from .bit_rows import bit_rows_of

HEADS = ("auto", "plain", "full", "constrained")
EMBED_GRADS = ("input", "head_only")
TEXT_KL_ROWS = ("turn", "all")


@dataclass
class LossSettings:
    head: str = "auto"  # auto | plain | full | constrained (see the module docstring)
    embed_grad: str = "input"  # input | head_only (approximation: new rows learn through the tied head only)
    chunk_tokens: int = 2048  # positions per head matmul (bounds the logits held at once)
    text_kl_weight: float = 0.0  # KL(base || model) on text-only documents (see the module docstring); 0 = off
    text_kl_rows: str = "turn"  # the model's side over: turn (text rows + <|vision_start|>) | all (every row)
    # the contrastive motion loss (vidgpt.train.motion_pairs): clip under its caption vs under the reversed motion
    motion_contrast_weight: float = 0.0  # its weight in the loss; 0 = off
    motion_contrast_pairs: int = 1  # pairs per micro-step (each pair: two blueprint-only documents, ~250 tokens each)
    motion_contrast_beta: float = 1.0  # -log sigmoid(beta * margin), the margin in nats a clip
    motion_contrast_paths: list[str] = field(default_factory=list)  # shards the pairs come from; [] = the first
    #                                                                  shards source of data.sources
    motion_contrast_eval_paths: list[str] = field(default_factory=list)  # held-out pairs for eval_contrast_margin:
    #                                                   every record of these shards; [] = the held-out split of the above
    # DPO on preference pairs from the model's own blueprints (vidgpt.train.preference_pairs, `vidgpt lm build-prefs`)
    preference_weight: float = 0.0  # its weight in the loss; 0 = off
    preference_pairs: int = 1  # pairs a micro-step
    preference_beta: float = 0.1  # -log sigmoid(beta * (margin - reference margin)), margins in nats a blueprint
    preference_paths: list[str] = field(default_factory=list)  # their shards
    preference_eval_paths: list[str] = field(default_factory=list)  # held-out pairs (all records); [] = the held-out
    #                                                                  split (data.holdout_every) of preference_paths

    def check(self) -> "LossSettings":
        if self.text_kl_weight < 0:
            raise ConfigError(f"loss.text_kl_weight={self.text_kl_weight}: must be >= 0")
        if self.text_kl_rows not in TEXT_KL_ROWS:
            raise ConfigError(f"loss.text_kl_rows={self.text_kl_rows!r}: expected one of {', '.join(TEXT_KL_ROWS)}")
        if self.head not in HEADS:
            raise ConfigError(f"loss.head={self.head!r}: expected one of {', '.join(HEADS)}")
        if self.embed_grad not in EMBED_GRADS:
            raise ConfigError(f"loss.embed_grad={self.embed_grad!r}: expected one of {', '.join(EMBED_GRADS)}")
        if self.chunk_tokens < 1:
            raise ConfigError(f"loss.chunk_tokens={self.chunk_tokens}: must be >= 1")
        if self.preference_weight < 0 or self.preference_beta <= 0 or self.preference_pairs < 1:
            raise ConfigError(f"loss.preference_weight={self.preference_weight} (>= 0), preference_beta="
                              f"{self.preference_beta} (> 0), preference_pairs={self.preference_pairs} (>= 1)")
        if self.motion_contrast_weight < 0 or self.motion_contrast_beta <= 0 or self.motion_contrast_pairs < 1:
            raise ConfigError(f"loss.motion_contrast_weight={self.motion_contrast_weight} (>= 0), motion_contrast_beta="
                              f"{self.motion_contrast_beta} (> 0), motion_contrast_pairs={self.motion_contrast_pairs} (>= 1)")
        return self


def weighted_lm_loss(logits: torch.Tensor, input_ids: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Next-token CE: logits [B,L,V], input_ids [B,L], weights [B,L] (weight of predicting token t).

    Returns (sum(w * ce) / #tokens with w > 0, #tokens with w > 0); fp32 math.
    """
    lg = logits[:, :-1].float()
    tgt = input_ids[:, 1:]
    w = weights[:, 1:].to(lg.dtype)
    ce = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), tgt.reshape(-1), reduction="none").view_as(w)
    n = int((w > 0).sum())
    return (ce * w).sum() / max(n, 1), n


def resolve_head(settings: LossSettings, device, *, sharded: bool = False) -> str:
    """The head a run uses: `auto` -> constrained on the CPU (one process or data parallel), else plain."""
    settings.check()
    if settings.head != "auto":
        return settings.head
    return "constrained" if torch.device(device).type == "cpu" and not sharded else "plain"


def trim_batch(batch: dict) -> dict:
    """Cut the columns after the last trained token of every row; in each row, let the positions after its
    last trained token continue the row's last document instead of restarting at 0 (padding).

    Both exact for a causal model: no trained prediction reads those columns. The second keeps a row that
    holds one document plus padding a single sequence, so transformers needs no block-diagonal mask and
    sdpa runs its causal kernel (on the CPU, the masked path is much slower).
    """
    w = batch["weights"]
    cols = torch.nonzero(w.sum(0) > 0)
    if cols.numel() == 0:
        return batch
    keep = int(cols[-1]) + 1
    out = {k: v[:, :keep] for k, v in batch.items()} if keep < w.shape[1] else dict(batch)
    w, pos = out["weights"], out["position_ids"]
    ar = torch.arange(w.shape[1], device=w.device)
    last = torch.where(w > 0, ar, torch.full_like(ar, -1)).amax(1)  # last trained column per row (-1: none)
    tail = ar.unsqueeze(0) > last.unsqueeze(1)
    if tail.any() and (last >= 0).all():
        base = pos.gather(1, last.unsqueeze(1))
        cont = base + (ar.unsqueeze(0) - last.unsqueeze(1))
        out["position_ids"] = torch.where(tail, cont, pos)
    return out


def _need_adapter(model) -> None:
    if not callable(getattr(model, "disable_adapter", None)):
        raise ConfigError("loss.text_kl_weight needs a LoRA run (the base is the model with its adapter off)")


def is_text_row(input_ids: torch.Tensor, new_from: int) -> bool:
    """Whether a row (any shape of ids) holds no id >= new_from (the new vocabulary: layout and visual tokens): a
    plain-text or chat-text row, the text KL's kind."""
    return not bool((input_ids >= new_from).any())


def text_only_positions(input_ids: torch.Tensor, position_ids: torch.Tensor, weights: torch.Tensor,
                        new_from: int) -> torch.Tensor:
    """Bool [B, L]: the positions whose next token is trained (weight > 0) inside a document (documents restart
    at position id 0) that holds no id >= new_from (the new vocabulary: layout and visual tokens)."""
    new = (input_ids >= new_from).long()
    doc = (position_ids == 0).long().cumsum(1)  # document index per column (0: a row's lead-in before any start)
    has_new = torch.zeros(input_ids.shape[0], int(doc.max()) + 1, dtype=torch.long, device=input_ids.device)
    has_new.scatter_reduce_(1, doc, new, reduce="amax")
    clean = has_new.gather(1, doc) == 0
    trained = torch.zeros_like(clean)
    trained[:, :-1] = weights[:, 1:] > 0
    return clean & trained


# --- where the head's rows live ------------------------------------------------------------------------------


class _FrozenRowsProduct(torch.autograd.Function):
    """hs [M, H] (bf16) @ rows^T for frozen rows held twice in bf16: [H, K] for the product, [K, H] for its input
    gradient. The input gradient is grad [M, K] @ rows; computed from the transposed copy (a B with strides (1, K), what
    autograd would do) oneDNN's AMX blocking heuristic divides by zero for some shapes in torch 2.13 on this CPU
    (SIGFPE, the process dies: M = 32 with K = 49,152 text rows and H = 576 killed pieces 32 and 32b; found with
    gdb). With a contiguous B no crashing M was found in 1..199 (the transposed B: only M = 32)."""

    @staticmethod
    def forward(ctx, hs: torch.Tensor, rows_t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(rows)
        return hs @ rows_t

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (rows,) = ctx.saved_tensors
        return grad.to(rows.dtype) @ rows, None, None


class TokenRows:
    """The effective weight of an embedding or tied head module (peft trainable-token deltas applied).

    `rows(lo, hi)` slices it and `lookup(ids)` embeds with it, both differentiable, without building the
    merged 65.8k-row copy that peft's wrapper makes on every call (when the trainable ids are one range).
    """

    def __init__(self, head, bits=None):
        self.module = head
        self.bits = bits  # vidgpt.train.bit_rows.BitRows: a bitwise part added to the visual rows (or None)
        self.plain = None
        self.base = None
        ta = getattr(head, "token_adapter", None)
        if ta is None:
            self.plain = head.weight
            return
        active = [a for a in ta.active_adapters if a in ta.trainable_tokens_delta]
        if ta.disable_adapters or ta.merged or not active:
            self.plain = ta.base_layer.weight
            return
        self.ta, self.active = ta, active
        self.base = ta.base_layer.weight
        idx = list(ta.token_indices[active[0]])
        contiguous = len(active) == 1 and idx == list(range(idx[0], idx[0] + len(idx))) if idx else False
        self.span = (idx[0], idx[0] + len(idx)) if contiguous else None
        self.delta = ta.trainable_tokens_delta[active[0]]
        emb = ta.base_layer
        if isinstance(emb, torch.nn.Embedding):
            quirks = emb.max_norm is not None or emb.scale_grad_by_freq or ta._get_embed_scale() is not None
            pad_inside = emb.padding_idx is not None and self.span and self.span[0] <= emb.padding_idx < self.span[1]
            if quirks or pad_inside:
                self.span = None  # lookup() then goes through peft's own forward

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        emb = self._lookup(ids)
        return emb if self.bits is None else self.bits.add_to_lookup(emb, ids)

    def _lookup(self, ids: torch.Tensor) -> torch.Tensor:
        if self.plain is not None or self.span is None or not isinstance(self.ta.base_layer, torch.nn.Embedding):
            return self.module(ids)
        c0, c1 = self.span
        inside = (ids >= c0) & (ids < c1)
        old = F.embedding(torch.where(inside, 0, ids), self.base)
        new = F.embedding(torch.where(inside, ids - c0, 0), self.delta).to(old.dtype)
        return torch.where(inside.unsqueeze(-1), new, old)

    @property
    def num_rows(self) -> int:
        return (self.plain if self.plain is not None else self.base).shape[0]

    def rows(self, lo: int, hi: int) -> torch.Tensor:
        W = self._rows(lo, hi)
        return W if self.bits is None else self.bits.add_to_rows(W, lo, hi)

    def logits(self, hs: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """hs [N, H] @ rows(lo, hi).T, one product per stretch of rows that live in one tensor (the frozen base rows,
        the trainable-token deltas), concatenated along the logits. The same values as the one product, without
        building the [hi - lo, H] weight copy, and backward computes no gradient for the frozen stretches: over all
        65.8k rows the merged copy, its full-size weight gradient and their transposes cost more than the products
        themselves (docs/TRAINING_CPU.md, "One document a row")."""
        cuts = {lo, hi}
        if self.plain is None and self.span is not None:
            cuts |= {c for c in self.span if lo < c < hi}
        cuts = sorted(cuts)
        parts = [self._stretch_logits(hs, a, b) for a, b in zip(cuts, cuts[1:])]
        return parts[0] if len(parts) == 1 else torch.cat(parts, -1)

    def _stretch_logits(self, hs: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """hs @ rows(lo, hi).T; rows of a frozen tensor under CPU bf16 autocast come from a cached bf16 transposed
        copy (autocast would otherwise cast, and transpose, the same frozen rows again at every call)."""
        W = self.rows(lo, hi)
        if W.requires_grad or hs.device.type != "cpu" or not torch.is_autocast_enabled("cpu") \
                or torch.get_autocast_dtype("cpu") != torch.bfloat16 or W.dtype != torch.float32:
            return hs @ W.t()
        src = self.plain if self.plain is not None else self.base
        cache = self.module.__dict__.setdefault("_vidgpt_bf16_rows", {})  # (lo, hi) -> (version, rows^T, rows)
        stamp = (src.data_ptr(), src._version)
        hit = cache.get((lo, hi))
        if hit is None or hit[0] != stamp:
            rows = W.detach().to(torch.bfloat16).contiguous()
            hit = cache[(lo, hi)] = (stamp, rows.t().contiguous(), rows)
        return _FrozenRowsProduct.apply(hs.to(torch.bfloat16), hit[1], hit[2])

    def _rows(self, lo: int, hi: int) -> torch.Tensor:
        if self.plain is not None:
            return self.plain[lo:hi]
        if self.span is None:  # general case: merge every delta into a full copy, then slice
            return self.ta.get_merged_weights(self.active)[lo:hi]
        c0, c1 = self.span
        parts = []
        if lo < min(hi, c0):
            parts.append(self.base[lo : min(hi, c0)])
        if max(lo, c0) < min(hi, c1):
            parts.append(self.delta[max(lo, c0) - c0 : min(hi, c1) - c0].to(self.base.dtype))
        if max(lo, c1) < hi:
            parts.append(self.base[max(lo, c1) : hi])
        return parts[0] if len(parts) == 1 else torch.cat(parts, 0)


def HeadRows(model) -> TokenRows:
    head = base_model(model).get_output_embeddings()
    if head is None:
        raise ConfigError("the model has no output embeddings (lm_head); use loss.head=plain")
    return TokenRows(head, bit_rows_of(model))


# --- target groups ------------------------------------------------------------------------------------------


def target_groups(tgt: torch.Tensor, vocab: UnifiedVocab, num_rows: int, head: str) -> list[tuple[int, int, torch.Tensor]]:
    """[(lo, hi, positions)] : the row range each trained target's softmax runs over (see the docstring)."""
    if head == "full":
        return [(0, num_rows, torch.arange(tgt.numel(), device=tgt.device))]
    groups = []
    taken = torch.zeros_like(tgt, dtype=torch.bool)
    S = vocab.spec.subtokens
    for g in range(S):
        lo, hi = vocab.group_range(g)
        m = (tgt >= lo) & (tgt < hi)
        taken |= m
        groups.append((lo, hi, torch.nonzero(m).flatten()))
    lay = (tgt > vocab.vision_start_id) & (tgt < vocab.visual_offset)
    taken |= lay
    groups.append((vocab.vision_start_id + 1, vocab.visual_offset, torch.nonzero(lay).flatten()))
    groups.append((0, num_rows, torch.nonzero(~taken).flatten()))
    return [g for g in groups if g[2].numel() > 0]


def allowed_mask(tgt: torch.Tensor, vocab: UnifiedVocab, num_rows: int, head: str) -> torch.Tensor:
    """Bool [N, num_rows]: the rows each target's softmax runs over (for `reference_loss`)."""
    mask = torch.zeros(tgt.numel(), num_rows, dtype=torch.bool, device=tgt.device)
    for lo, hi, pos in target_groups(tgt.reshape(-1), vocab, num_rows, head):
        mask[pos.unsqueeze(1), torch.arange(lo, hi, device=tgt.device).unsqueeze(0)] = True
    return mask


def reference_loss(logits: torch.Tensor, input_ids: torch.Tensor, weights: torch.Tensor, vocab: UnifiedVocab,
                   head: str = "constrained") -> tuple[torch.Tensor, int]:
    """The objective of `head` computed the plain way: full logits, masked outside the allowed rows, CE."""
    if head in ("plain", "full"):
        return weighted_lm_loss(logits, input_ids, weights)
    lg = logits[:, :-1].float().reshape(-1, logits.shape[-1])
    tgt = input_ids[:, 1:].reshape(-1)
    w = weights[:, 1:].reshape(-1).to(lg.dtype)
    lg = lg.masked_fill(~allowed_mask(tgt, vocab, lg.shape[-1], head), float("-inf"))
    sel = w > 0
    ce = F.cross_entropy(lg[sel], tgt[sel], reduction="none")
    n = int(sel.sum())
    return (ce * w[sel]).sum() / max(n, 1), n


# --- the head ------------------------------------------------------------------------------------------------------


class LossHead:
    """`loss, n = LossHead(vocab, settings, device)(model, batch)`: the run's loss (see the module docstring)."""

    def __init__(self, vocab: UnifiedVocab, settings: LossSettings | None = None, device="cpu", *,
                 sharded: bool = False, plain_loss=None):
        self.vocab = vocab
        self.settings = (settings or LossSettings()).check()
        self.head = resolve_head(self.settings, device, sharded=sharded)
        if self.head != "plain" and sharded:
            raise ConfigError(f"loss.head={self.head}: the fast heads read whole parameters, which FSDP shards (its "
                              "forward has to go through the wrapped model); use loss.head=plain or auto")
        if self.head == "plain" and self.settings.embed_grad != "input":
            raise ConfigError("loss.embed_grad=head_only needs loss.head full or constrained (the plain head "
                              "goes through the model's own forward)")
        if self.settings.text_kl_weight > 0 and self.head == "plain":
            raise ConfigError("loss.text_kl_weight needs loss.head full or constrained")
        self._plain_loss = plain_loss  # the trainer passes its weighted_lm_loss (tests patch it there)
        self.timing: dict[str, float] | None = None  # set to {} to collect body/head seconds (tools/bench_train.py)
        self.last_text_kl: float | None = None  # the last training call's mean KL to the base (None: no such positions)

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, int]:
        if self.head == "plain":
            logits = model(input_ids=batch.get("model_input_ids", batch["input_ids"]), position_ids=batch["position_ids"],
                           use_cache=False).logits
            return (self._plain_loss or weighted_lm_loss)(logits, batch["input_ids"], batch["weights"])
        import time

        batch = trim_batch(batch)
        t0 = time.perf_counter()
        h = self.hidden_states(model, batch)
        t1 = time.perf_counter()
        if self.settings.text_kl_weight > 0 and torch.is_grad_enabled() and self.joint_text_ok(batch):
            loss, n, kl = self.joint_text_loss(model, batch, h)
            self.last_text_kl = float(kl.detach())
        elif self.settings.text_kl_weight > 0 and torch.is_grad_enabled():
            loss, n = self.loss_from_hidden(model, h, batch["input_ids"], batch["weights"], batch.get("model_input_ids"))
            kl = self.text_kl(model, batch, h)
            self.last_text_kl = None if kl is None else float(kl.detach())
            if kl is not None:
                loss = loss + self.settings.text_kl_weight * kl
        else:
            loss, n = self.loss_from_hidden(model, h, batch["input_ids"], batch["weights"], batch.get("model_input_ids"))
        if self.timing is not None:
            self.timing["body_fwd"] = self.timing.get("body_fwd", 0.0) + t1 - t0
            self.timing["head_fwd"] = self.timing.get("head_fwd", 0.0) + time.perf_counter() - t1
        return loss, n

    def hidden_states(self, model, batch: dict) -> torch.Tensor:
        """The decoder's last hidden states [B, L, H] (after the final norm)."""
        base = base_model(model)
        body = base.get_decoder() if hasattr(base, "get_decoder") else base.model
        kw = {"position_ids": batch["position_ids"], "use_cache": False}
        rows = TokenRows(base.get_input_embeddings(), bit_rows_of(base))
        ids = batch.get("model_input_ids", batch["input_ids"])  # noisy inputs (input_noise.py)
        grad_rows = torch.is_grad_enabled() and self.settings.embed_grad == "input"

        def lookup(x: torch.Tensor) -> torch.Tensor:
            with torch.set_grad_enabled(grad_rows):
                return rows.lookup(x)

        emb = lookup(ids)
        hint = parent_hint_of(base)
        if hint is not None:  # each fine position told its next cell's blueprint parent (vidgpt.parent_hint)
            emb = hint.add(emb, hint.ids_of(ids, self.vocab), lookup)
        return body(inputs_embeds=emb, **kw).last_hidden_state

    def text_kl(self, model, batch: dict, h: torch.Tensor) -> torch.Tensor | None:
        """Mean KL(base || model) over the trained positions of the documents without new-vocabulary tokens."""
        _need_adapter(model)
        pos = text_only_positions(batch["input_ids"], batch["position_ids"], batch["weights"], self.vocab.vision_start_id)
        rows_used = torch.nonzero(pos.any(1)).flatten()
        if rows_used.numel() == 0:
            return None
        sub = {k: v[rows_used] for k, v in batch.items()}
        with torch.no_grad(), model.disable_adapter():
            ht = self.hidden_states(model, sub)
        sel = pos[rows_used]
        hs, ht = h[rows_used][sel], ht[sel]  # [P, H]
        rows = HeadRows(model)
        n_text = self.vocab.vision_start_id  # the base vocabulary: rows [0, offset)
        # the model's side: the rows a text turn samples from (the text rows and <|vision_start|>), so mass it puts on
        # starting a clip in plain text is paid for; with text_kl_rows "all", every row (mass on any new row paid for);
        # the base has only the text rows
        hi = n_text + 1 if self.settings.text_kl_rows == "turn" else rows.num_rows
        total = hs.new_zeros((), dtype=torch.float32)
        for _, logp_t, logp_s in self._kl_chunks(rows, hs, ht, hi):
            total = total + (logp_t.exp() * (logp_t - logp_s[:, :n_text])).sum()
        return total / hs.shape[0]

    def _kl_chunks(self, rows: TokenRows, hs: torch.Tensor, ht: torch.Tensor, hi: int):
        """(chunk slice, the base's log-softmax over the text rows [c, n_text] (no gradient: the KL's target), the
        model's over rows [0, hi) [c, hi]) for chunks of at most 512 positions of hs / ht [P, H]."""
        n_text = self.vocab.vision_start_id  # the base vocabulary: rows [0, offset)
        step = max(1, min(self.settings.chunk_tokens, 512))
        for s in range(0, hs.shape[0], step):
            with torch.no_grad():  # the base's side is the target
                logp_t = rows.logits(ht[s : s + step], 0, n_text).float().log_softmax(-1)
            yield slice(s, s + step), logp_t, rows.logits(hs[s : s + step], 0, hi).float().log_softmax(-1)

    def joint_text_ok(self, batch: dict) -> bool:
        """Whether `joint_text_loss` applies: the KL's model side over every row (text_kl_rows all), a fast head whose
        softmax for a text target runs over every row too, and every trained position of the batch in a text-only
        document (a micro-batch of text rows, or one text row)."""
        if self.settings.text_kl_rows != "all" or self.head not in ("constrained", "full"):
            return False
        trained = batch["weights"][:, 1:] > 0
        if not bool(trained.any()):
            return False
        pos = text_only_positions(batch["input_ids"], batch["position_ids"], batch["weights"], self.vocab.vision_start_id)
        return bool(torch.equal(pos[:, :-1], trained))

    def joint_text_loss(self, model, batch: dict, h: torch.Tensor) -> tuple[torch.Tensor, int, torch.Tensor]:
        """(CE + text_kl_weight x KL, trained positions, KL) of a batch that `joint_text_ok` accepts, from one product
        of the model's rows a position: the CE's softmax and the KL's model side are the same log-softmax over every
        row, computed once instead of twice (the same values as `loss_from_hidden` + `text_kl`)."""
        _need_adapter(model)
        ids, w = batch["input_ids"], batch["weights"][:, 1:]
        sel = w > 0
        hs, tgt, wt = h[:, :-1][sel], ids[:, 1:][sel], w[sel].float()
        with torch.no_grad(), model.disable_adapter():
            ht = self.hidden_states(model, batch)[:, :-1][sel]
        rows = HeadRows(model)
        n_text, n = self.vocab.vision_start_id, int(hs.shape[0])
        ce = hs.new_zeros((), dtype=torch.float32)
        kl = hs.new_zeros((), dtype=torch.float32)
        for c, logp_t, logp_s in self._kl_chunks(rows, hs, ht, rows.num_rows):
            ce = ce - (logp_s.gather(1, tgt[c, None]).squeeze(1) * wt[c]).sum()
            kl = kl + (logp_t.exp() * (logp_t - logp_s[:, :n_text])).sum()
        kl = kl / n
        return ce / n + self.settings.text_kl_weight * kl, n, kl

    def loss_from_hidden(self, model, h: torch.Tensor, input_ids: torch.Tensor, weights: torch.Tensor,
                         model_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        w = weights[:, 1:].reshape(-1)
        sel = torch.nonzero(w > 0).flatten()
        n = int(sel.numel())
        if n == 0:
            return h.sum() * 0.0, 0
        ce = self.selected_ce(model, h, input_ids, sel, model_ids)
        return (ce * w[sel].float()).sum() / n, n

    def copy_terms(self, model, model_ids: torch.Tensor, sel: torch.Tensor):
        """The copy read-out's (ids [N, C], scores [N, C], its tensors) at the flat positions `sel` of [B, L-1]
        (vidgpt.copy_readout), or None when the model has none. Its trained tensors always take part in the graph (a zero
        gradient where no position copies), so every rank of a data-parallel step has a gradient for them."""
        base = base_model(model)
        hint = parent_hint_of(base)
        if hint is None or not hint.has_copy:
            return None
        C = len(COPY_OFFSETS)
        hints = hint.ids_of(model_ids, self.vocab)[:, :-1]
        hints = hints.reshape(-1, hints.shape[-1])[sel]
        ids = hints.new_full((hints.shape[0], C), -1)
        scores = torch.zeros(hints.shape[0], C, device=hints.device) + 0.0 * sum(
            p.sum() for p in hint.copy_params().values() if p.requires_grad)
        at = torch.nonzero((hints[:, -C:] >= 0).any(-1)).flatten()
        if at.numel():
            W = base.get_input_embeddings().weight.detach()
            got_ids, got = hint.copy_terms(hints[at], lambda x: F.embedding(x, W))
            ids = ids.index_copy(0, at, got_ids)
            scores = scores.index_copy(0, at, got.float())
        return ids, scores, hint.copy_params()

    def selected_ce(self, model, h: torch.Tensor, input_ids: torch.Tensor, sel: torch.Tensor,
                    model_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The CE [N] (fp32, under this head's row sets) of predicting token t+1 at the flat positions `sel` of
        [B, L-1] (row-major), from the hidden states h [B, L, H]; with the copy read-out added to the logits (its
        copied ids read from `model_ids`, the ids the model was fed; default input_ids)."""
        H = h.shape[-1]
        hs = h[:, :-1].reshape(-1, H)[sel]
        tgt = input_ids[:, 1:].reshape(-1)[sel]
        rows = HeadRows(model)
        copy = self.copy_terms(model, input_ids if model_ids is None else model_ids, sel)
        step = self.settings.chunk_tokens
        parts, where = [], []
        for lo, hi, pos in target_groups(tgt, self.vocab, rows.num_rows, self.head):
            for s in range(0, pos.numel(), step):
                p = pos[s : s + step]
                logits = rows.logits(hs[p], lo, hi).float()
                if copy is not None:
                    logits = apply_copy(logits, copy[0][p], copy[1][p], copy[2], lo)
                parts.append(F.cross_entropy(logits, tgt[p] - lo, reduction="none"))
                where.append(p)
        ce = torch.cat(parts)
        return torch.zeros_like(ce).index_copy(0, torch.cat(where), ce)

    def row_nll(self, model, batch: dict) -> torch.Tensor:
        """Per row: the summed negative log-likelihood [B] of the tokens with weight > 0 (weights only select; the
        fast heads' row sets, or the full vocabulary with the plain head). One document per row is the caller's job."""
        ids, w = batch["input_ids"], batch["weights"][:, 1:]
        sel = torch.nonzero(w.reshape(-1) > 0).flatten()
        if self.head == "plain":
            logits = model(input_ids=ids, position_ids=batch["position_ids"], use_cache=False).logits[:, :-1]
            ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1])[sel], ids[:, 1:].reshape(-1)[sel],
                                 reduction="none")
        else:
            if sel.numel() == 0:
                return self.hidden_states(model, batch).sum() * 0.0 + w.new_zeros(ids.shape[0])
            ce = self.selected_ce(model, self.hidden_states(model, batch), ids, sel, batch.get("model_input_ids"))
        rows = torch.div(sel, w.shape[1], rounding_mode="floor")
        return torch.zeros(ids.shape[0], dtype=ce.dtype, device=ce.device).index_add(0, rows, ce)
