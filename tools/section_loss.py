#!/usr/bin/env python3
"""Held-out visual loss of an LM split by where the codes are: the blueprint's first latent frame, its later frames
(where the motion is drawn) and the fine section; teacher-forced, true captions.

The trainer's eval loss mixes text, blueprint-only and whole documents; this says which section a change moved. For
models with previous-frame hints (vidgpt.parent_hint, `model.prev_frame_hint`) `--zero-prev` also scores each with
its Q set to zero: what the hints themselves add (or cost) on top of the rest of the model. Records are those the
trainer holds out (global index % --holdout-every == 0 over the shard folder's files, as tools/prompt_sensitivity.py).

    OMP_NUM_THREADS=1 python tools/section_loss.py model runs/p30/checkpoints/step-0000040 \
        --shards data/toyT2/m0 --holdout-every 40 --n 20 --zero-prev
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SECTIONS = ("blueprint frame 0", "blueprint frames >= 1", "fine")


def section_positions(doc, rec, subtokens: int = 1) -> dict[str, list[int]]:
    """{section: positions of its codes in the document}: the blueprint's ids come first (its latent frames in order,
    one frame = its cells x S sub-tokens), then the fine section's."""
    from vidgpt.layout import VISUAL

    vis = [i for i, k in enumerate(doc.kinds) if k == VISUAL]
    nbp = len(rec["blueprint_codes"]) * subtokens
    if len(vis) != nbp + len(rec["codes"]) * subtokens:
        raise ValueError(f"{len(vis)} video ids for {len(rec['blueprint_codes'])} + {len(rec['codes'])} codes")
    frame = nbp // int(rec["shape"][0])
    return {SECTIONS[0]: vis[:frame], SECTIONS[1]: vis[frame:nbp], SECTIONS[2]: vis[nbp:]}


def prev_hint(lm):
    """The model's hint module when it has previous-frame hints (its Q), else None."""
    from vidgpt.backbone import base_model
    from vidgpt.parent_hint import parent_hint_of

    hint = parent_hint_of(base_model(lm.model))
    return hint if hint is not None and hint.has_prev else None


def section_losses(lm, recs, zero_prev: bool = False) -> dict[str, float]:
    """Mean per-code loss (the trainer's constrained head) of each section over `recs`."""
    import torch

    from vidgpt.parent_hint import PREV_KEY
    from vidgpt.train.lm_data import LMDataConfig, RecordFormatter
    from vidgpt.train.lm_loss import LossHead, LossSettings
    from vidgpt.train.packing import collate, pack

    from prompt_sensitivity import _weighted_at

    hint = prev_hint(lm)
    saved = None
    if zero_prev and hint is not None:
        saved = getattr(hint, PREV_KEY).detach().clone()
        with torch.no_grad():
            getattr(hint, PREV_KEY).zero_()
    chat = bool((lm.meta.get("layout") or {}).get("chat", True))
    fmt = RecordFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig(chat=chat, loss_on=["visual"]))
    head = LossHead(lm.vocab, LossSettings(head="constrained"))
    out: dict[str, list[float]] = {s: [] for s in SECTIONS}
    try:
        for r in recs:
            doc = fmt(r, np.random.default_rng(0))
            for name, at in section_positions(doc, r, lm.vocab.spec.subtokens).items():
                if not at:
                    continue
                d = _weighted_at(doc, at)
                with torch.no_grad():
                    out[name].append(float(head(lm.model, collate(list(pack(iter([d]), len(d)))))[0]))
    finally:
        if saved is not None:
            with torch.no_grad():
                getattr(hint, PREV_KEY).copy_(saved)
    return {k: float(np.mean(v)) if v else float("nan") for k, v in out.items()}


def main(argv=None) -> int:
    import torch

    from vidgpt.errors import ConfigError

    from prompt_sensitivity import add_model_arguments, held_out_records, load_model_or_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(ap)
    ap.add_argument("--holdout-every", type=int, default=40, help="the run's data.holdout_every")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--zero-prev", action="store_true", help="also score models with previous-frame hints with Q = 0")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    recs = held_out_records(args.shards, args.holdout_every, args.n, need_blueprint=True)
    if not recs:
        raise ConfigError(f"{args.shards}: no held-out records with a blueprint")
    rows = []
    for m in args.models:
        lm = load_model_or_checkpoint(Path(m))
        lm.model.eval()
        rows.append({"model": m, **section_losses(lm, recs)})
        if args.zero_prev and prev_hint(lm) is not None:
            rows.append({"model": m + " (Q = 0)", **section_losses(lm, recs, zero_prev=True)})
    if args.json:
        print(json.dumps({"n": len(recs), "rows": rows}, indent=1))
        return 0
    print(f"{len(recs)} held-out clips of {args.shards}; mean loss a code (nats), teacher-forced, true captions")
    print(f"| model | {' | '.join(SECTIONS)} |\n|---|" + "---|" * len(SECTIONS))
    for r in rows:
        print(f"| {r['model']} | " + " | ".join(f"{r[s]:.4f}" for s in SECTIONS) + " |")
    return 0


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from vidgpt.errors import run_tool

    run_tool(main, "section_loss.py")
