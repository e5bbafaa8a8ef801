"""Padding of the greedy and best-fit packers on a synthetic mixture like the default model's GPU data.

Document lengths (seeded; `--shares`): 35% blueprint-only clips of ~270 tokens, 35% full clips of ~1,010,
10% edits of ~2,000 (each +-5%), 20% text of 50-1,500 (uniform); rows of 2,304 tokens. That mixture has the
last GPU run's mean document (~800 tokens) and greedy padding (21%). Prints the pad share of the row tokens
for the greedy packer, for best fit with several numbers of open rows (evicting the fullest or the oldest
row), and for best fit over all documents sorted longest first (offline: what the mixture allows at best).

  OMP_NUM_THREADS=1 python tools/pack_fill.py --docs 20000
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from vidgpt.errors import run_tool  # noqa: E402
from vidgpt.train.packing import BestFitPacker, Document, Packer  # noqa: E402


SHARES = (0.35, 0.35, 0.10, 0.20)


def mixture_lengths(n: int, seed: int = 0, shares=SHARES) -> list[int]:
    """n document lengths: ~270 / ~1,010 / ~2,000 (+-5%) and uniform 50-1,500, in these shares."""
    rng = np.random.default_rng(seed)
    p = np.asarray(shares, dtype=np.float64)
    kind = rng.choice(4, size=n, p=p / p.sum())
    centre = np.array([270, 1010, 2000, 0])[kind]
    jitter = rng.uniform(0.95, 1.05, size=n)
    text = rng.integers(50, 1501, size=n)
    return [int(t) if k == 3 else int(round(c * j)) for k, c, j, t in zip(kind, centre, jitter, text)]


def pad_share(packer, lengths: list[int]) -> float:
    for n in lengths:
        packer.add(Document([1] * n, [1.0] * n))
    packer.flush()
    s = packer.stats
    return s.pad / (s.pad + s.tokens)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--seq-len", type=int, default=2304)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--open-rows", type=int, nargs="+", default=[2, 4, 8, 16])
    ap.add_argument("--shares", type=float, nargs=4, default=list(SHARES), metavar=("S270", "S1010", "S2000", "TEXT"))
    a = ap.parse_args(argv)
    lengths = mixture_lengths(a.docs, a.seed, a.shares)
    print(f"{a.docs} documents (shares {' / '.join(f'{x:g}' for x in a.shares)}), mean {np.mean(lengths):.0f} "
          f"tokens, rows of {a.seq_len}")
    print("| packer | open rows | pad, evict fullest | pad, evict oldest |")
    print("|---|---|---|---|")
    print(f"| greedy | 1 | {100 * pad_share(Packer(a.seq_len), lengths):.1f}% | |")
    for k in a.open_rows:
        full = pad_share(BestFitPacker(a.seq_len, open_rows=k, evict="fullest"), lengths)
        old = pad_share(BestFitPacker(a.seq_len, open_rows=k, evict="oldest"), lengths)
        print(f"| best_fit | {k} | {100 * full:.1f}% | {100 * old:.1f}% |")
    offline = pad_share(BestFitPacker(a.seq_len, open_rows=len(lengths)), sorted(lengths, reverse=True))
    print(f"| best fit, all documents sorted longest first (offline) | all | {100 * offline:.1f}% | |")
    return 0


if __name__ == "__main__":
    run_tool(main, "pack_fill.py")
