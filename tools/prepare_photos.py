#!/usr/bin/env python3
"""Collect the photos found offline (Debian wallpaper packages, scikit-image data) into a train and a
held-out folder, resized to a max side, so tokenizer training never sees the photos its real-clip
evaluation pans over.

    python tools/prepare_photos.py --out data/photos [--max-side 512] [--heldout-every 6]

Every `heldout-every`-th photo (in find_photos order) goes to OUT/heldout, the rest to OUT/train.
Install the photos first with: apt-get install plasma-workspace-wallpapers mate-backgrounds gnome-backgrounds
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from vidgpt.data.photos import find_photos, load_photo


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data/photos")
    ap.add_argument("--max-side", type=int, default=512)
    ap.add_argument("--heldout-every", type=int, default=6)
    args = ap.parse_args()
    out = Path(args.out)
    counts = {"train": 0, "heldout": 0}
    skipped: list = []
    for i, path in enumerate(find_photos(skipped=skipped)):
        split = "heldout" if i % args.heldout_every == args.heldout_every - 1 else "train"
        try:
            arr = load_photo(path, max_side=args.max_side)
        except Exception as e:  # noqa: BLE001 - report and go on
            skipped.append((path, str(e)))
            continue
        (out / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(out / split / f"{i:03d}_{path.stem[:40]}.png")
        counts[split] += 1
    print(f"{counts['train']} train and {counts['heldout']} held-out photos in {out}; {len(skipped)} skipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
