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

from ..verifier import DIRECTIONS, H_FLIP, V_FLIP, MotionVerifier


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


def flipped(codes: torch.Tensor, labels: torch.Tensor, directions=DIRECTIONS) -> tuple[torch.Tensor, torch.Tensor]:
    """The examples and their three flips (horizontal, vertical, both), the labels moved with them."""
    h = torch.tensor([directions.index(H_FLIP[d]) for d in directions])
    v = torch.tensor([directions.index(V_FLIP[d]) for d in directions])
    xs = [codes, codes.flip(-1), codes.flip(-2), codes.flip(-1).flip(-2)]
    ys = [labels, h[labels], v[labels], v[h[labels]]]
    return torch.cat(xs), torch.cat(ys)


def fit_verifier(codes: torch.Tensor, labels: torch.Tensor, bits: int, epochs: int = 6, lr: float = 1e-3,
                 batch: int = 128, width: int = 48, holdout: float = 0.125, seed: int = 0,
                 directions=DIRECTIONS) -> tuple[MotionVerifier, dict]:
    """A MotionVerifier trained on (codes, labels) with flips (AdamW, cross entropy); returns it (eval mode) and
    {"clips", "heldout_clips", "heldout_accuracy", "train_accuracy", "epochs"}."""
    g = torch.Generator().manual_seed(seed)
    n = codes.shape[0]
    order = torch.randperm(n, generator=g)
    k = int(round(n * holdout))
    test, train = order[:k], order[k:]
    x, y = flipped(codes[train], labels[train], directions)
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
    return net, report
