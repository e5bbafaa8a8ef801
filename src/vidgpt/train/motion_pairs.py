"""The contrastive motion loss: a clip should be likelier under its caption than under the caption moving the other way.

Cross entropy teaches the motion word only through the few codes where the object arrives or leaves, and there it is
worth a few hundredths of a nat (model/README.md, "What would close the gap"): the model learns what a moving object
looks like long before it learns which way the caption said. This loss trains that difference itself. For a
text-to-video record of the run's data whose caption names a direction, growth or spin, two documents are made from
the same codes, cut to the blueprint section (the part the prompt decides; `data.blueprint_only`'s form): one with
the caption, one with `data.motion_words.reversed_motion(caption)`. With S the summed negative log-likelihood of the
blueprint's codes of latent frames >= 1 (frame 0 shows where the object starts, which the motion word does not say;
the later frames are where it went), the margin is

    m = S(reversed caption) - S(caption) = log p(x | caption) - log p(x | reversed caption)

the log Bayes factor of the clip between the two captions, and the loss is -log sigmoid(beta * m) (DPO's form with
the roles turned: one output, two prompts): the model as a classifier between the caption and its reverse. It
saturates once the clip is clearly the caption's, so it cannot be won by wrecking the reversed caption's loss without
end. `loss.motion_contrast_weight` > 0 turns it on: every micro-step adds weight x the mean over
`loss.motion_contrast_pairs` pairs to the main loss. The pairs come from one shards source (the first in
`data.sources`, or `loss.motion_contrast_paths`), train split, their own resumable stream; the run logs the mean
margin of its pairs (`contrast_margin`) and, at each evaluation, of held-out ones (`eval_contrast_margin`, nats a clip,
and the share of held-out clips the caption wins, `eval_contrast_true_lower`): the teacher-forced motion gap,
measured while the run trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data.motion_words import reversed_motion
from ..errors import ConfigError, DataError
from ..layout import VISUAL, VisualBlock, blueprint_shape
from .lm_data import LMDataConfig, RecordSource, RecordTable, SourceConfig, _source_seed, kind_weights, to_document
from .packing import Document, collate, pack

PAIR_STREAM = 900  # source index of the pair stream in _source_seed (far from the mixture's sources)


@dataclass
class Pair:
    """Two documents the loss compares: `better` should be the likelier one. Here (motion contrast) the blueprint under
    the record's caption and the same codes under the caption with its motion reversed; in
    vidgpt.train.preference_pairs a true blueprint and the model's own wrong-way one, under one caption."""

    better: Document
    worse: Document
    caption: str
    other: str  # what `worse` differs by: the reversed caption here, a note on the sample there
    ref_margin: float = 0.0  # the reference model's margin (DPO); 0 = none


def later_frames_only(doc: Document, bp_shape: tuple) -> Document:
    """The document with weight 1 on its blueprint codes of latent frames >= 1 and 0 elsewhere."""
    vis = [i for i, k in enumerate(doc.kinds) if k == VISUAL]
    n = int(np.prod(bp_shape))
    if len(vis) != n:
        raise DataError(f"a blueprint-only document holds {len(vis)} video codes, its blueprint {n}")
    w = [0.0] * len(doc)
    for i in vis[int(bp_shape[1]) * int(bp_shape[2]):]:
        w[i] = 1.0
    return Document(list(doc.input_ids), w, list(doc.kinds))


def blueprint_document(layout, weights_by_kind: dict, caption: str, shape: tuple, bp_codes, where: str = "record") -> Document:
    """The text-to-video document of `caption` cut to its blueprint section (data.blueprint_only's form), weighted on
    the blueprint's codes of latent frames >= 1 only."""
    from .. import layout as L

    bp = blueprint_shape(shape)
    codes = np.asarray(bp_codes, dtype=np.int64)
    if codes.size != int(np.prod(bp)):
        raise DataError(f"{where}: {codes.size} blueprint codes for a {'x'.join(map(str, bp))} blueprint")
    f = layout.format(L.text_to_video(caption, VisualBlock(shape, fine=None, blueprint=codes.reshape(bp))))
    return later_frames_only(to_document(f.input_ids, f.kinds, weights_by_kind), bp)


class BlueprintPairFormatter:
    """What both pair formatters hold: the layout and the kind weights their blueprint documents are made with."""

    def __init__(self, vocab, text_tokenizer, cfg: LMDataConfig):
        from ..layout import Layout

        self.layout = Layout(vocab, text_tokenizer, chat=cfg.chat)
        self.wk = kind_weights(cfg)

    def document(self, caption: str, shape: tuple, bp_codes, where: str) -> Document:
        return blueprint_document(self.layout, self.wk, caption, shape, bp_codes, where)


class PairFormatter(BlueprintPairFormatter):
    """record -> Pair, or None when the record has no pair (an edit, an image, no blueprint, no motion word)."""

    def __call__(self, rec: dict, rng: np.random.Generator, where: str = "record") -> Pair | None:
        if rec.get("codes") is None or rec.get("edit") or rec.get("blueprint_codes") is None:
            return None
        shape = tuple(int(x) for x in rec.get("shape") or ())
        if len(shape) != 3 or shape[0] < 2:
            return None  # an image: nothing moves
        caps = [c for c in (rec.get("captions") or [rec.get("caption") or ""]) if c and reversed_motion(c)]
        if not caps:
            return None
        cap = caps[int(rng.integers(len(caps)))]
        rev = reversed_motion(cap)
        docs = [self.document(c, shape, rec["blueprint_codes"], where) for c in (cap, rev)]
        return Pair(docs[0], docs[1], cap, rev)


def pair_source_config(data: LMDataConfig, paths: list[str]) -> SourceConfig:
    """The shards source the pairs come from: `paths` when given, else the first shards source of the mixture."""
    if paths:
        return SourceConfig(kind="shards", paths=list(paths))
    for src in data.sources:
        if src.kind == "shards":
            return src
    raise ConfigError("loss.motion_contrast_weight > 0 needs text-to-video shards: a `shards` source in data.sources "
                      "or loss.motion_contrast_paths")


class PairStream:
    """Endless pairs of one split from a RecordSource whose formatter makes Pairs (resumable: `state()` / `load()`)."""

    source: RecordSource

    def next(self) -> Pair:
        return self.source.next()

    def take(self, n: int) -> list[Pair]:
        return [self.next() for _ in range(n)]

    def state(self) -> dict:
        return self.source.state()

    def load(self, state: dict) -> None:
        self.source.load(state)


class MotionPairs(PairStream):
    """Motion pairs (caption vs reversed caption) from a shards source of text-to-video records."""

    def __init__(self, data: LMDataConfig, paths: list[str], vocab, text_tokenizer, seed: int, split: str = "train",
                 holdout_every: int | None = None):
        src = pair_source_config(data, paths)
        hold = data.holdout_every if holdout_every is None else holdout_every
        self.source = RecordSource(src, PairFormatter(vocab, text_tokenizer, data),
                                   _source_seed(seed, PAIR_STREAM, split, 0), split, hold, 0, 1, RecordTable(src))


def pair_batch(pairs: list[Pair], pad_id: int = 0) -> dict:
    """Rows better_0, worse_0, better_1, ...: one document a row (packing's rows, padded to the longest)."""
    docs = [d for p in pairs for d in (p.better, p.worse)]
    L = max(len(d) for d in docs)
    return collate([row for d in docs for row in pack([d], L, pad_id)])


def pair_margins(loss_head, model, batch: dict) -> torch.Tensor:
    """m [P] = NLL(worse) - NLL(better) of each pair (pair_batch's row order), in nats a clip."""
    nll = loss_head.row_nll(model, batch)
    return nll[1::2] - nll[0::2]


def contrast_loss(margins: torch.Tensor, beta: float, ref: torch.Tensor | None = None) -> torch.Tensor:
    """-log sigmoid(beta * (m - ref)), the mean over the pairs (ref: the reference model's margins, DPO; None = 0)."""
    return F.softplus(-beta * (margins if ref is None else margins - ref)).mean()


def ref_margins(pairs: list[Pair], device=None) -> torch.Tensor:
    return torch.tensor([p.ref_margin for p in pairs], dtype=torch.float32, device=device)
