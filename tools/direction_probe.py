#!/usr/bin/env python3
"""Where does the LM hold the caption's direction? A linear probe on its hidden states (issue 11).

The blueprint's motion word is worth ~0.1 nats a changed cell to the CPU-trained LMs (tools/prompt_sensitivity.py
--swap motion --section blueprint) where a small model trained from scratch on the same codes reached ~0.5. Either
the direction never reaches the positions that draw the moves (the caption is not read there), or it does and the
model does not turn it into codes. This tells the two apart: for clips whose caption names a straight move
(left / right / up / down), it reads the hidden state of every layer at four positions of the teacher-forced
document and fits a linear (multinomial logistic) classifier of the named direction, cross-validated over clips:

* `caption end`: the last id before the visual block (what the text says, summarised by the backbone);
* `blueprint start`: the blueprint marker (it predicts the blueprint's first code; nothing moved yet);
* `frame 0 end`: the last code of blueprint frame 0 (it predicts frame 1's first code; it has seen the caption and
  the whole first frame, and no code that shows the move);
* `first move`: the position that predicts the first cell of blueprint frame 1 where the object arrives or leaves,
  with frame 1's codes before it replaced by frame 0's (the object held still), so that no code it reads shows the
  move and only the caption can say which way: where the direction has to be used.

A direction held at ~100% at `frame 0 end` in the last layers means the caption is read where the moves are drawn,
and the missing weight is in turning it into codes; near chance (25%) means the direction does not get there. The
caption is the record's short one ("red circle, moving right"), as the trainer's first caption style.

At `first move` the codes before it say something of the direction too (which cell changes first depends on the way
the object goes), so every clip is also read with its motion word drawn at random (seeded, uniform over the four,
independent of the clip's: the codes show one way and the caption names any), and two more probes are fitted on
those states: of the caption's direction (what the position holds of the caption alone) and of the clip's (what it
holds of the codes).

    OMP_NUM_THREADS=1 python tools/direction_probe.py model --shards data/toyT2/m0 --n 400
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

POSITIONS = ("caption end", "blueprint start", "frame 0 end", "first move")
DIRECTIONS = ("left", "right", "up", "down")


def direction_of(caption: str) -> int | None:
    """Index in DIRECTIONS of the straight move a caption names ("..., moving right"), else None."""
    words = caption.replace(",", " ").split()
    named = [d for d in DIRECTIONS if d in words]
    return DIRECTIONS.index(named[0]) if len(named) == 1 and "moving" in words else None


def probe_document(ids: list[int], vocab, rec, subtokens: int = 1) -> tuple[list[int], list[int]] | None:
    """(the document's ids up to the last probed position, blueprint frame 1 held still as frame 0; the positions of
    POSITIONS, in order), or None when no blueprint cell of frame 1 changed."""
    from vidgpt.train.lm_data import changed_cells

    vs = ids.index(vocab.vision_start_id)
    bp = ids.index(vocab.blueprint_id, vs)
    t, h, w = (int(v) for v in rec["blueprint_shape"])
    frame = h * w * subtokens
    changed = changed_cells(np.asarray(rec["blueprint_object_mask"], dtype=bool), (t, h, w)).reshape(t, h * w)
    if t < 2 or not changed[1].any():
        return None
    first = int(np.argmax(changed[1]))
    ids = list(ids[: bp + frame + first * subtokens + 1])
    ids[bp + 1 + frame:] = ids[bp + 1: bp + 1 + first * subtokens]  # frame 1 before the first change: frame 0's
    return ids, [vs - 1, bp, bp + frame, bp + frame + first * subtokens]


def with_direction(caption: str, k: int) -> str:
    """The caption with its straight-move word replaced by DIRECTIONS[k]."""
    words = caption.split(" ")
    return " ".join(DIRECTIONS[k] + w[len(w.rstrip(",.")):] if w.rstrip(",.") in DIRECTIONS else w for w in words)


def hidden_at(lm, recs, random_caption: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """([clips, positions, layers + 1, H] hidden states at POSITIONS, [clips] the clips' directions, [clips] their
    captions' directions); random_caption: each caption's motion word drawn uniformly at random (seeded)."""
    import torch

    from vidgpt.backbone import base_model
    from vidgpt.parent_hint import parent_hint_of
    from vidgpt.train.lm_data import LMDataConfig, RecordFormatter

    chat = bool((lm.meta.get("layout") or {}).get("chat", True))
    fmt = RecordFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig(chat=chat, loss_on=["visual"]))
    hint = parent_hint_of(base_model(lm.model))
    emb_layer = lm.model.get_input_embeddings()
    feats, labels, named = [], [], []
    rng = np.random.default_rng(seed)
    for r in recs:
        label = direction_of(r["caption"])
        if label is None:
            continue
        cap = with_direction(r["caption"], int(rng.integers(len(DIRECTIONS)))) if random_caption else r["caption"]
        doc = fmt({**r, "caption": cap, "captions": [cap]}, np.random.default_rng(0))
        probed = probe_document(doc.input_ids, lm.vocab, r, lm.vocab.spec.subtokens)
        if probed is None:
            continue
        ids, at = torch.tensor([probed[0]]), probed[1]
        with torch.no_grad():
            emb = emb_layer(ids)
            if hint is not None:  # the model's parent (and previous-frame) hints, as in training
                emb = hint.add(emb, hint.ids_of(ids, lm.vocab), emb_layer)
            hs = lm.model(inputs_embeds=emb, output_hidden_states=True).hidden_states
        feats.append(torch.stack([h[0, at] for h in hs], 1).float().numpy())  # [positions, layers + 1, H]
        labels.append(label)
        named.append(direction_of(cap))
    return np.stack(feats), np.array(labels), np.array(named)


def cv_accuracy(x: np.ndarray, y: np.ndarray, folds: int = 5, weight_decay: float = 1e-2, steps: int = 300,
                seed: int = 0) -> float:
    """Held-out accuracy of a multinomial logistic regression of y on x [N, D] (features standardised on each
    training fold), over `folds` folds of a seeded permutation."""
    import torch

    n = len(y)
    order = np.random.default_rng(seed).permutation(n)
    right = 0
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
        xt = torch.tensor((x[train] - mu) / sd, dtype=torch.float32)
        yt = torch.tensor(y[train])
        lin = torch.nn.Linear(x.shape[1], len(DIRECTIONS))
        opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(lin(xt), yt) + weight_decay * lin.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            pred = lin(torch.tensor((x[test] - mu) / sd, dtype=torch.float32)).argmax(-1).numpy()
        right += int((pred == y[test]).sum())
    return right / n


def main(argv=None) -> int:
    import torch

    from vidgpt.errors import ConfigError

    from prompt_sensitivity import add_model_arguments, held_out_records, load_model_or_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(ap)
    ap.add_argument("--n", type=int, default=400, help="clips read (every record of the folder, in order; the probe "
                    "asks what the states hold, not what the LM generalises, so training records count)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--layers", default="", help="comma-separated layers to report (default: 0, then every 4th, the last)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    recs = held_out_records(args.shards, 1, args.n, need_blueprint=True)
    out = []
    for m in args.models:
        lm = load_model_or_checkpoint(Path(m))
        lm.model.eval()
        x, y, _ = hidden_at(lm, recs)
        if len(set(y.tolist())) < 2 or len(y) < 2 * args.folds:
            raise ConfigError(f"{args.shards}: {len(y)} clips naming a straight move; the probe needs more")
        xs, ys, named = hidden_at(lm, recs, random_caption=True)
        n_layers = x.shape[2]
        layers = [int(v) for v in args.layers.split(",")] if args.layers else sorted(
            {0, *range(4, n_layers - 1, 4), n_layers - 1})
        acc = {p: {layer: cv_accuracy(x[:, i, layer], y, args.folds) for layer in layers}
               for i, p in enumerate(POSITIONS)}
        last = len(POSITIONS) - 1
        acc[f"{POSITIONS[last]}, random caption: the caption's way"] = {
            layer: cv_accuracy(xs[:, last, layer], named, args.folds) for layer in layers}
        acc[f"{POSITIONS[last]}, random caption: the codes' way"] = {
            layer: cv_accuracy(xs[:, last, layer], ys, args.folds) for layer in layers}
        out.append({"model": m, "n": int(len(y)), "chance": float(np.bincount(y).max() / len(y)), "accuracy": acc})
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    for r in out:
        layers = list(next(iter(r["accuracy"].values())))
        print(f"\n{r['model']}: direction named by the caption, linear probe, {args.folds}-fold held-out accuracy "
              f"over {r['n']} clips (majority class {r['chance']:.2f})")
        print("| position | " + " | ".join(f"layer {k}" for k in layers) + " |\n|---|" + "---|" * len(layers))
        for p, row in r["accuracy"].items():
            print(f"| {p} | " + " | ".join(f"{row[k]:.2f}" for k in layers) + " |")
    return 0


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from vidgpt.errors import run_tool

    run_tool(main, "direction_probe.py")
