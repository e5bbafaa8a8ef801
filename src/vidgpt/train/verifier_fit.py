"""Train the motion verifier (vidgpt.verifier) on the true blueprints of LM training shards.

    codes, labels = verifier_examples(shard_records(["data/toyT2/m0"]))
    verifier, report = fit_verifier(codes, labels, bits=14)

Examples are the text-to-video records whose caption names one straight direction (the same word reader the
pipeline applies to prompts, vidgpt.data.motion_words.named_direction); each is used with its three flips (left /
right and up / down swapped with the grid), so the verifier learns the move and not where or what the object is. A
fixed share of the clips (before flipping) is held out and its accuracy reported.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator

import torch

from ..verifier import DIRECTIONS, H_FLIP, NONE, V_FLIP, MotionVerifier

JUNK_KINDS = ("still", "ghost", "vanish", "shuffle")


def shard_records(paths: Iterable[str]) -> Iterator[dict]:
    """The records of token shard folders (vidgpt data build-lm) with a blueprint, their caption and shape."""
    import pyarrow.parquet as pq

    for p in paths:
        files = sorted(glob.glob(f"{p}/**/*.parquet", recursive=True))
        if not files:
            raise FileNotFoundError(f"{p}: no parquet shards")
        for f in files:
            cols = ["blueprint_codes", "blueprint_shape", "caption"]
            yield from pq.read_table(f, columns=cols).to_pylist()


def verifier_examples(records: Iterable[dict], directions=DIRECTIONS) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes [N, T, h, w], labels [N]) of the records with a blueprint of >= 2 latent frames whose caption names one
    of `directions`; every blueprint must have one shape."""
    from ..data.motion_words import named_direction

    codes, labels, shape = [], [], None
    for r in records:
        if r.get("blueprint_codes") is None or r.get("blueprint_shape") is None:
            continue
        d = named_direction(r.get("caption") or "")
        bp = tuple(int(x) for x in r["blueprint_shape"])
        if d not in directions or bp[0] < 2:
            continue
        if shape is not None and bp != shape:
            raise ValueError(f"blueprints of two shapes: {shape} and {bp}")
        shape = bp
        codes.append(torch.tensor(r["blueprint_codes"], dtype=torch.long).view(bp))
        labels.append(directions.index(d))
    if not codes:
        raise ValueError("no record with a blueprint whose caption names one straight direction")
    return torch.stack(codes), torch.tensor(labels)


def candidate_examples(data: dict, directions=DIRECTIONS + (NONE,)) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes [M, T, h, w], labels [M]) from blueprints the model drew and the judge watched (tools/
    verifier_candidates.py build --split train: data["codes"] [n, K, T, h, w], data["verdicts"] [n, K, 3] with the
    colour's verdict second, data["observed"] n lists of K motion names): a candidate whose object the judge found
    (its colour right) is labelled with the straight direction it saw it move, or `none` when it saw no straight move
    (still, diagonal, not tracked); one whose colour is wrong is left out (the verifier is not told the colour)."""
    if NONE not in directions:
        raise ValueError(f"candidate_examples: the directions need the class {NONE!r}, got {directions}")
    codes, labels = [], []
    for cands, verdicts, seen in zip(data["codes"], data["verdicts"], data["observed"]):
        for c, v, o in zip(cands, verdicts, seen):
            if not bool(v[1]):
                continue
            codes.append(c)
            labels.append(directions.index(o if o in directions else NONE))
    if not codes:
        raise ValueError("candidate_examples: no candidate with its colour right")
    return torch.stack(codes), torch.tensor(labels)


def flipped(codes: torch.Tensor, labels: torch.Tensor, directions=DIRECTIONS) -> tuple[torch.Tensor, torch.Tensor]:
    """The examples and their three flips (horizontal, vertical, both), the labels moved with them."""
    h = torch.tensor([directions.index(H_FLIP[d]) for d in directions])
    v = torch.tensor([directions.index(V_FLIP[d]) for d in directions])
    xs = [codes, codes.flip(-1), codes.flip(-2), codes.flip(-1).flip(-2)]
    ys = [labels, h[labels], v[labels], v[h[labels]]]
    return torch.cat(xs), torch.cat(ys)


def background_codes(codes: torch.Tensor) -> torch.Tensor:
    """codes [N, T, h, w] -> [N, T]: each frame's most common code (the background of a one-object blueprint)."""
    N, T = codes.shape[:2]
    return codes.reshape(N * T, -1).mode(-1).values.view(N, T)


def junk_examples(codes: torch.Tensor, g: torch.Generator, kinds=JUNK_KINDS) -> torch.Tensor:
    """One blueprint for each of `codes` [N, T >= 2, h, w] that moves no straight way, the kind drawn at random per
    clip from `kinds`: the failures of sampled blueprints, made from true ones -
      still    every frame is the first (nothing moves)
      ghost    the first frame's object stays where it was in every later frame while the moved one appears too
      vanish   one later frame (or more) is the background alone (the object dissolves)
      shuffle  the frames after the first in a random order that is not the true one (the object jumps)"""
    N, T = codes.shape[:2]
    if T < 2:
        raise ValueError(f"junk_examples: blueprints of >= 2 frames, got {tuple(codes.shape)}")
    if not kinds or any(k not in JUNK_KINDS for k in kinds):
        raise ValueError(f"junk_examples: kinds from {JUNK_KINDS}, got {kinds}")
    out = codes.clone()
    bg = background_codes(codes)  # [N, T]
    which = torch.randint(len(kinds), (N,), generator=g)
    for i in range(N):
        kind = kinds[int(which[i])]
        c = out[i]
        if kind == "still":
            c[:] = codes[i, :1]
        elif kind == "ghost":
            first = codes[i, 0] != bg[i, 0]  # the object's cells in the first frame
            for t in range(1, T):
                c[t][first] = codes[i, 0][first]
        elif kind == "vanish":
            ts = torch.randperm(T - 1, generator=g)[: 1 + int(torch.randint(max(1, T - 2), (1,), generator=g))] + 1
            for t in ts.tolist():
                c[t] = bg[i, t]
        else:  # shuffle
            if T < 3:  # nothing to reorder: one later frame; make it still instead
                c[:] = codes[i, :1]
                continue
            perm = torch.arange(1, T)
            while torch.equal(perm, torch.arange(1, T)):
                perm = torch.randperm(T - 1, generator=g) + 1
            c[1:] = codes[i, perm]
    return out


def fit_verifier(codes: torch.Tensor, labels: torch.Tensor, bits: int, epochs: int = 6, lr: float = 1e-3,
                 batch: int = 128, width: int = 48, holdout: float = 0.125, seed: int = 0,
                 directions=DIRECTIONS, junk: float = 0.0,
                 extra: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[MotionVerifier, dict]:
    """A MotionVerifier trained on (codes, labels) with flips (AdamW, cross entropy); returns it (eval mode) and
    {"clips", "heldout_clips", "heldout_accuracy", "train_accuracy", "epochs"}. junk > 0: a class "none" is added to
    `directions`, and junk x the training clips of junk_examples (made from the training clips, flipped with them)
    are its examples; the report adds "junk" and "heldout_junk_accuracy" (junk made from the held-out clips).
    extra: more training examples (codes, labels indexing `directions` + ("none",)), e.g. candidate_examples; with
    them the class "none" is added as for junk, and the report adds "extra" (their count)."""
    g = torch.Generator().manual_seed(seed)
    n = codes.shape[0]
    order = torch.randperm(n, generator=g)
    k = int(round(n * holdout))
    test, train = order[:k], order[k:]
    if junk < 0:
        raise ValueError(f"fit_verifier: junk {junk} must be >= 0")
    if junk > 0 or extra is not None:
        directions = tuple(directions) + (NONE,)
    if junk > 0:
        m = int(round(len(train) * junk))
        src = train[torch.randint(len(train), (m,), generator=g)]
        codes_tr = torch.cat([codes[train], junk_examples(codes[src], g)])
        labels_tr = torch.cat([labels[train], torch.full((m,), directions.index(NONE))])
    else:
        codes_tr, labels_tr = codes[train], labels[train]
    if extra is not None:
        if extra[0].shape[1:] != codes.shape[1:] or int(extra[1].max()) >= len(directions):
            raise ValueError(f"fit_verifier: extra examples {tuple(extra[0].shape)} do not fit blueprints "
                             f"{tuple(codes.shape[1:])} and {len(directions)} classes")
        codes_tr, labels_tr = torch.cat([codes_tr, extra[0]]), torch.cat([labels_tr, extra[1]])
    x, y = flipped(codes_tr, labels_tr, directions)
    torch.manual_seed(seed)
    net = MotionVerifier(bits, width, tuple(directions))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-2)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g)
        for s in range(0, x.shape[0], batch):
            b = perm[s : s + batch]
            loss = torch.nn.functional.nll_loss(net(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()

    def accuracy(cx, cy) -> float:
        if cx.shape[0] == 0:
            return float("nan")
        with torch.no_grad():
            return float((net(cx).argmax(-1) == cy).float().mean())

    report = {"clips": int(n), "heldout_clips": int(k), "epochs": int(epochs),
              "train_accuracy": accuracy(codes[train], labels[train]),
              "heldout_accuracy": accuracy(codes[test], labels[test])}
    if extra is not None:
        report["extra"] = int(extra[0].shape[0])
    if junk > 0 and k > 0:
        held_junk = junk_examples(codes[test], g)
        report.update(junk=float(junk), heldout_junk_accuracy=accuracy(
            held_junk, torch.full((k,), directions.index(NONE))))
    return net, report
