#!/usr/bin/env python3
"""How large is the caption hint, and how much of it says the direction? (issue 11, pieces 31-35)

A caption hint (`model.caption_hint`, vidgpt.parent_hint) adds R @ (the caption window's mean row, centred and scaled)
to the input of every position that predicts a blueprint code. Whether the layers carry the caption's direction to the
positions that draw the moves depends on how large that addition is next to the row it is added to, and on how much of
it changes with the motion word (tools/direction_probe.py: at a direction part of ~0.06-0.08 it is washed out by
layers 8-12; at ~0.35 it stays readable through all 30). For each held-out clip whose caption names a straight move,
the document is built as the trainer builds it, and at the blueprint marker (the position that predicts the first
blueprint code) it reads:

* `hint`: the norm of what the hint adds there (R applied);
* `direction part`: the norm of the part of it that changes with the motion word: the clip's caption is written with
  each of the four directions, and the part is the root mean square over the four of the hint minus their mean;
* `window` / `window direction`: the same two before R (the centred, scaled window mean R reads), i.e. what a gain of
  1 would add;
* `visual row`: the mean norm of the input rows of the blueprint's codes (what the hint is added to).

    python tools/hint_norms.py model runs/p35/checkpoints/step-40 --shards data/toyT2/m0 --n 100

Models: vidgpt model directories or a run's checkpoints (RUN/checkpoints/step-N), as tools/direction_probe.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def hint_norms(lm, recs) -> dict:
    """The figures of the module docstring for one loaded model over `recs` (records naming a straight move)."""
    import torch

    from vidgpt.backbone import base_model
    from vidgpt.errors import ConfigError
    from vidgpt.parent_hint import CAPTION_KEY, hint_part, parent_hint_of, projections_t
    from vidgpt.train.lm_data import LMDataConfig, RecordFormatter

    from direction_probe import DIRECTIONS, direction_of, with_direction

    hint = parent_hint_of(base_model(lm.model))
    if hint is None or not hint.has_caption:
        raise ConfigError("the model has no caption hint (model.caption_hint) to measure")
    if hint.has_prev:
        raise ConfigError("hint_norms.py measures caption hints without previous-frame hints (model.prev_frame_hint)")
    chat = bool((lm.meta.get("layout") or {}).get("chat", True))
    fmt = RecordFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig(chat=chat, loss_on=["visual"]))
    emb_layer = lm.model.get_input_embeddings()
    H = hint.hidden
    R = getattr(hint, CAPTION_KEY).detach().float()
    only_R = projections_t(torch.zeros(H, H), None, R)  # the caption part alone (the parent's P left out)
    unit = projections_t(torch.zeros(H, H), None, torch.ones(H))  # a gain of 1: the window itself
    out = {"hint": [], "direction part": [], "window": [], "window direction": [], "visual row": []}
    for r in recs:
        if direction_of(r["caption"]) is None:
            continue
        parts = {"hint": [], "window": []}
        for k in range(len(DIRECTIONS)):
            cap = with_direction(r["caption"], k)
            doc = fmt({**r, "caption": cap, "captions": [cap]}, np.random.default_rng(0))
            ids = torch.tensor([doc.input_ids])
            at = doc.input_ids.index(lm.vocab.blueprint_id)
            with torch.no_grad():
                h = hint.ids_of(ids, lm.vocab)[:, at].clone()  # [1, slots]: the parent slot, the window (, copy slots)
                h[:, 0] = -1  # the parent slot left out (nothing there at the marker anyway)
                for name, proj in (("hint", only_R), ("window", unit)):
                    parts[name].append(hint_part(h, emb_layer, proj, True, hint.centering(), hint.has_copy)[0].float())
                if k == 0:  # what the hint is added to: the input rows of this document's blueprint codes
                    rest = torch.tensor(doc.input_ids[at + 1:])
                    vis = rest[lm.vocab.is_visual(rest)]
                    out["visual row"].append(float(emb_layer(vis).float().norm(dim=-1).mean()))
        for name, key in (("hint", "direction part"), ("window", "window direction")):
            v = torch.stack(parts[name])  # [4, H]
            out[name].append(float(v.norm(dim=-1).mean()))
            out[key].append(float((v - v.mean(0)).pow(2).sum(-1).mean().sqrt()))
    if not out["hint"]:
        raise ConfigError("no record names a straight move (left / right / up / down)")
    return {k: float(np.mean(v)) for k, v in out.items()} | {"n": len(out["hint"]), "R norm": float(R.norm()),
                                                             "R form": hint.caption_form}


def main(argv=None) -> int:
    from prompt_sensitivity import model_table_main

    return model_table_main(argv, __doc__, hint_norms, ("R form", "R norm", "hint", "direction part", "window", "window direction", "visual row"),
                            "caption hint at the blueprint marker, mean over {n} held-out clips")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from vidgpt.errors import run_tool

    run_tool(main, "hint_norms.py")
