#!/usr/bin/env python3
"""Does the copy read-out copy from where the caption's move comes from? (issue 11, piece 37 on)

The copy read-out (`model.copy_readout`, vidgpt.copy_readout) mixes into the distribution of every position that
predicts a blueprint code of frame t >= 1 (weight lam) a copy of the previous frame's cells around it, cell o = (dy, dx)
weighted softmax_o(s), s[o] = G[o] . (B m) + b[o], m the caption window's (centred) mean row. The scores depend on
the caption only, so one position per document says everything; a score difference is the log-ratio of two cells'
copy weights. For each held-out clip whose caption names a straight move, the document is
built with each of the four directions, and it reads:

* `way margin`: the mean score of the offsets the move comes from (for "moving right": (0, -1) and (0, -2), the
  cells to the left) minus that of the offsets on the other side ((0, 1), (0, 2)), in nats: > 0 where the read-out
  copies the right way;
* `way right`: the share of (clip, direction) where, of the eight offsets 1-2 cells along the two axes, the one with
  the highest score lies on the side the move comes from (chance 0.25);
* `caption part`: the root mean square over the four directions of the scores minus their mean (how much the motion
  word moves them, in nats);
* `self`: the mean score of the cell itself (0, 0) ("stay") less the mean of all 25 offsets;
* `weight`: the mixture's lam (form "mixture") or the tilt's gain beta (form "tilt"), the same at every position.

    python tools/copy_scores.py runs/p37/model --shards data/toyT2/m0 --n 100

Models: vidgpt model directories or a run's checkpoints (RUN/checkpoints/step-N), as tools/direction_probe.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# (dy, dx) a straight move comes from, per direction (image rows grow downwards: "up" comes from below)
SOURCE = {"left": (0, 1), "right": (0, -1), "up": (1, 0), "down": (-1, 0)}


def copy_scores(lm, recs) -> dict:
    """The figures of the module docstring for one loaded model over `recs` (records naming a straight move)."""
    import torch

    from vidgpt.backbone import base_model
    from vidgpt.copy_readout import COPY_GAIN_KEY, COPY_MIX_KEY, COPY_OFFSETS
    from vidgpt.errors import ConfigError
    from vidgpt.parent_hint import parent_hint_of
    from vidgpt.train.lm_data import LMDataConfig, RecordFormatter

    from direction_probe import DIRECTIONS, direction_of, with_direction

    hint = parent_hint_of(base_model(lm.model))
    if hint is None or not hint.has_copy:
        raise ConfigError("the model has no copy read-out (model.copy_readout) to measure")
    chat = bool((lm.meta.get("layout") or {}).get("chat", True))
    fmt = RecordFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig(chat=chat, loss_on=["visual"]))
    emb_layer = lm.model.get_input_embeddings()
    C = len(COPY_OFFSETS)
    index = {o: i for i, o in enumerate(COPY_OFFSETS)}
    axis = [(dy * d, dx * d) for dy, dx in SOURCE.values() for d in (1, 2)]  # the eight offsets along the axes
    out = {"way margin": [], "way right": [], "caption part": [], "self": []}
    for r in recs:
        if direction_of(r["caption"]) is None:
            continue
        per_way = []
        for k, way in enumerate(DIRECTIONS):
            cap = with_direction(r["caption"], k)
            doc = fmt({**r, "caption": cap, "captions": [cap]}, np.random.default_rng(0))
            ids = torch.tensor([doc.input_ids])
            with torch.no_grad():
                hints = hint.ids_of(ids, lm.vocab)[0]  # [L, slots]
                at = torch.nonzero((hints[:, -C:] >= 0).any(-1)).flatten()
                if at.numel() == 0:
                    raise ConfigError("a held-out clip's blueprint has one frame: nothing to copy from")
                h = hints[at[:1]].clone()
                h[:, -C:] = 0  # every offset present: the scores themselves, not masked at the grid's edge
                s = hint.copy_terms(h, emb_layer)[1][0].float()
            per_way.append(s)
            dy, dx = SOURCE[way]
            src = [index[(dy * d, dx * d)] for d in (1, 2)]
            opp = [index[(-dy * d, -dx * d)] for d in (1, 2)]
            out["way margin"].append(float(s[src].mean() - s[opp].mean()))
            best = max(axis, key=lambda o: float(s[index[o]]))
            out["way right"].append(float(best in [(dy * d, dx * d) for d in (1, 2)]))
            out["self"].append(float(s[index[(0, 0)]] - s.mean()))
        v = torch.stack(per_way)  # [4, C]
        out["caption part"].append(float((v - v.mean(0)).pow(2).sum(-1).mean().sqrt()))
    if not out["caption part"]:
        raise ConfigError("no record names a straight move (left / right / up / down)")
    if hint.copy_form == "mixture":
        weight = float(torch.sigmoid(getattr(hint, COPY_MIX_KEY).detach().float()))
    else:
        weight = float(getattr(hint, COPY_GAIN_KEY).detach().float())
    return {k: float(np.mean(v)) for k, v in out.items()} | {"n": len(out["caption part"]), "form": hint.copy_form,
                                                             "weight": weight}


def main(argv=None) -> int:
    from prompt_sensitivity import model_table_main

    return model_table_main(argv, __doc__, copy_scores, ("way margin", "way right", "caption part", "self", "form", "weight"),
                            "copy read-out scores (nats), mean over {n} held-out clips x 4 directions")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from vidgpt.errors import run_tool

    run_tool(main, "copy_scores.py")
