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

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..data.motion_words import reversed_motion
from ..errors import ConfigError, DataError
from ..layout import VISUAL, blueprint_shape
from .lm_data import LMDataConfig, RecordFormatter, RecordSource, RecordTable, SourceConfig, _source_seed
from .packing import Document, collate

PAIR_STREAM = 900  # source index of the pair stream in _source_seed (far from the mixture's sources)


@dataclass
class MotionPair:
    true: Document  # the blueprint under the record's caption
    reversed: Document  # the same codes under the caption with its motion reversed
    caption: str
    reversed_caption: str


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


class PairFormatter:
    """record -> MotionPair, or None when the record has no pair (an edit, an image, no blueprint, no motion word)."""

    def __init__(self, vocab, text_tokenizer, cfg: LMDataConfig):
        # the blueprint section only, always prompted; the records' own loss weights are replaced by the selection
        self.fmt = RecordFormatter(vocab, text_tokenizer, replace(cfg, blueprint=True, blueprint_only=1.0,
                                                                  prompt_dropout=0.0))

    def __call__(self, rec: dict, rng: np.random.Generator, where: str = "record") -> MotionPair | None:
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
        bp = blueprint_shape(shape)
        docs = [later_frames_only(self.fmt({**rec, "caption": c, "captions": [c]}, rng, where), bp) for c in (cap, rev)]
        return MotionPair(docs[0], docs[1], cap, rev)


def pair_source_config(data: LMDataConfig, paths: list[str]) -> SourceConfig:
    """The shards source the pairs come from: `paths` when given, else the first shards source of the mixture."""
    if paths:
        return SourceConfig(kind="shards", paths=list(paths))
    for src in data.sources:
        if src.kind == "shards":
            return src
    raise ConfigError("loss.motion_contrast_weight > 0 needs text-to-video shards: a `shards` source in data.sources "
                      "or loss.motion_contrast_paths")


class MotionPairs:
    """Endless motion pairs of one split (resumable: `state()` / `load()`)."""

    def __init__(self, data: LMDataConfig, paths: list[str], vocab, text_tokenizer, seed: int, split: str = "train",
                 stream: int = 0, n_streams: int = 1):
        src = pair_source_config(data, paths)
        self.source = RecordSource(src, PairFormatter(vocab, text_tokenizer, data),
                                   _source_seed(seed, PAIR_STREAM, split, stream), split, data.holdout_every,
                                   stream, n_streams, RecordTable(src))

    def next(self) -> MotionPair:
        return self.source.next()

    def take(self, n: int) -> list[MotionPair]:
        return [self.next() for _ in range(n)]

    def state(self) -> dict:
        return self.source.state()

    def load(self, state: dict) -> None:
        self.source.load(state)


def pair_batch(pairs: list[MotionPair], pad_id: int = 0) -> dict:
    """Rows true_0, reversed_0, true_1, ...: one document a row, right-padded (weight 0), positions from 0."""
    docs = [d for p in pairs for d in (p.true, p.reversed)]
    L = max(len(d) for d in docs)
    rows = []
    for d in docs:
        pad = L - len(d)
        rows.append({"input_ids": torch.tensor(d.input_ids + [pad_id] * pad, dtype=torch.long),
                     "position_ids": torch.arange(L, dtype=torch.long),
                     "weights": torch.tensor(list(d.weights) + [0.0] * pad, dtype=torch.float32)})
    return collate(rows)


def pair_margins(loss_head, model, batch: dict) -> torch.Tensor:
    """m [P] = NLL(reversed) - NLL(caption) of each pair (pair_batch's row order), in nats a clip."""
    nll = loss_head.row_nll(model, batch)
    return nll[1::2] - nll[0::2]


def contrast_loss(margins: torch.Tensor, beta: float) -> torch.Tensor:
    """-log sigmoid(beta * m), the mean over the pairs."""
    return F.softplus(-beta * margins).mean()
