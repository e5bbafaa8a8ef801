"""How much a caption's colour word tells about the codes that show the object, in LM token shards.

The default model learns "red" -> red object codes only as fast as the data lets it: when an object spans a few
edge cells, their codes mix the object's colour with the background and the edge's position, so a colour word says
little about them. This prints, for the blueprint and the fine codes of single-object clips (shards written by
`vidgpt data build-lm` with object masks):

  cells   mean object cells per clip (codes whose cell the object touches in some frame of its latent step);
  first   the first object code in raster order (what the model must pick before it has seen the object):
          distinct values, plug-in entropy H and H given the colour word (nats), the gain H - H|colour, and the
          same gain with the colour words shuffled across clips (the estimator's bias on rare codes);
  all     the same over every object code.
  bits    the same gain summed over the code's K bits, each bit on its own (binary entropies; the bias is tiny):
          what a head that predicts each LFQ bit could learn from the colour word, with 2 outcomes a bit
          instead of 2^K a code.

A larger gain means the colour word pins the codes down; it is the ceiling of the probe that
`tools/prompt_sensitivity.py` measures on a model.

  python tools/object_code_stats.py data/lm9h/t2v_s1 data/lm9h/t2v_s2
"""

from __future__ import annotations

import argparse
import collections
import glob
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from vidgpt.data.world.palette import BACKGROUND_COLORS, OBJECT_COLORS  # noqa: E402
from vidgpt.errors import DataError, run_tool  # noqa: E402


def colour_of(caption: str) -> str | None:
    """The object colour a caption names (background colours such as 'dark blue' are not object colours)."""
    text = caption.lower()
    for name in sorted(BACKGROUND_COLORS, key=len, reverse=True):
        text = text.replace(name, " ")
    for name in sorted(OBJECT_COLORS, key=len, reverse=True):
        if name in text:
            return name
    return None


def entropy(counts: collections.Counter) -> float:
    n = sum(counts.values())
    return -sum(c / n * math.log(c / n) for c in counts.values()) if n else 0.0


def conditional_entropy(pairs: list[tuple[str, int]]) -> float:
    by = collections.defaultdict(collections.Counter)
    for cond, code in pairs:
        by[cond][code] += 1
    n = len(pairs)
    return sum(sum(c.values()) / n * entropy(c) for c in by.values()) if n else 0.0


def summarize(rows, codes_key: str, mask_key: str) -> dict:
    first, every, cells = [], [], []
    for r in rows:
        colour = colour_of(r["caption"])
        mask = np.asarray(r[mask_key], dtype=np.uint8)
        codes = np.asarray(r[codes_key], dtype=np.int64)
        if colour is None or mask.size != codes.size or not mask.any():
            continue
        cells.append(int(mask.sum()))
        idx = np.flatnonzero(mask)
        first.append((colour, int(codes[idx[0]])))
        every.extend((colour, int(c)) for c in codes[idx])
    if not first:
        raise DataError(f"no single-object clips with {mask_key} in these shards")

    def block(pairs):
        h = entropy(collections.Counter(c for _, c in pairs))
        hc = conditional_entropy(pairs)
        # plug-in entropies of many rare codes overstate what a label explains: the same gain with the colour
        # words shuffled across clips is that bias, and the gain above it is what the colour word really tells
        rng = np.random.default_rng(0)
        labels = [c for c, _ in pairs]
        rng.shuffle(labels)
        shuffled = h - conditional_entropy(list(zip(labels, (c for _, c in pairs))))
        return {"n": len(pairs), "distinct": len({c for _, c in pairs}), "H": h, "H|colour": hc, "gain": h - hc,
                "shuffled": shuffled}

    K = max(1, int(max(c for _, c in every)).bit_length())
    return {"clips": len(first), "cells": float(np.mean(cells)), "first": block(first), "all": block(every),
            "first_bits": bit_gain(first, K), "all_bits": bit_gain(every, K)}


def bit_gain(pairs: list[tuple[str, int]], K: int) -> dict:
    """Per-bit colour gain summed over the K bits of the codes, and the same with shuffled colour words."""
    codes = np.array([c for _, c in pairs], dtype=np.int64)
    bits = (codes[:, None] >> np.arange(K)) & 1
    labels = np.array([c for c, _ in pairs])

    def h2(p):
        p = np.clip(p, 1e-12, 1 - 1e-12)
        return -(p * np.log(p) + (1 - p) * np.log(1 - p))

    def gain(lab):
        g = h2(bits.mean(0))
        for v in set(lab.tolist()):
            sel = lab == v
            g = g - sel.mean() * h2(bits[sel].mean(0))
        return g

    g = gain(labels)
    rng = np.random.default_rng(0)
    return {"gain": float(g.sum()), "per_bit": g.round(3).tolist(), "shuffled": float(gain(rng.permutation(labels)).sum())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shards", nargs="+", help="shard directories (build-lm output)")
    ap.add_argument("--max-clips", type=int, default=0, help="read at most this many clips (0 = all)")
    ap.add_argument("--kinds", default="video,image", help="record kinds to read (default video,image)")
    args = ap.parse_args(argv)
    import pyarrow.parquet as pq

    kinds = set(args.kinds.split(","))
    rows = []
    for d in args.shards:
        files = sorted(glob.glob(os.path.join(d, "*.parquet")))
        if not files:
            raise DataError(f"{d}: no parquet shards")
        for f in files:
            t = pq.read_table(f, columns=["caption", "kind", "codes", "blueprint_codes", "object_mask",
                                          "blueprint_object_mask"])
            rows.extend(r for r in t.to_pylist() if r["kind"] in kinds)
    if args.max_clips:
        rows = rows[: args.max_clips]
    print(f"{len(rows)} clips from {', '.join(args.shards)}")
    print("| codes | clips | object cells / clip | which | n | distinct | H (nats) | H given colour | gain | gain, colours shuffled | bit gain (shuffled) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, ck, mk in (("blueprint", "blueprint_codes", "blueprint_object_mask"), ("fine", "codes", "object_mask")):
        s = summarize(rows, ck, mk)
        for which in ("first", "all"):
            b = s[which]
            print(f"| {name} | {s['clips']} | {s['cells']:.1f} | {which} | {b['n']} | {b['distinct']} | {b['H']:.2f} | "
                  f"{b['H|colour']:.2f} | {b['gain']:.2f} | {b['shuffled']:.2f} | "
                  f"{s[which + '_bits']['gain']:.2f} ({s[which + '_bits']['shuffled']:.2f}) |")
        print(f"  {name}, per-bit gain over all object codes (nats, bit 0 first): {s['all_bits']['per_bit']}")
    return 0


if __name__ == "__main__":
    run_tool(main, os.path.basename(__file__))
