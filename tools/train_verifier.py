#!/usr/bin/env python3
"""Train the motion verifier (vidgpt.verifier) that `best_of` sampling picks blueprints with, and save it into a model
directory (MODEL/motion_verifier.safetensors, ~54k parameters).

It learns from the true blueprints of the LM's own training shards (captions naming a straight direction), with flips;
held-out compositions are never in those shards. With --candidates it also learns from blueprints the model drew for
training prompts, labelled with what the judge saw them do (held-out compositions still never seen).

    OMP_NUM_THREADS=1 python tools/train_verifier.py --shards data/toyT2/m0 data/toyT2/m1 --out model
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv=None) -> int:
    from vidgpt.backbone import read_meta
    from vidgpt.errors import ConfigError
    from vidgpt.train.verifier_fit import fit_verifier, shard_records, verifier_examples
    from vidgpt.verifier import save_verifier

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", nargs="+", required=True, help="token shard folders (vidgpt data build-lm)")
    ap.add_argument("--out", required=True, help="the model directory to save into (its vidgpt.json gives the code bits)")
    ap.add_argument("--bits", type=int, default=None,
                    help="code bits, for an --out folder without a vidgpt.json (e.g. a variant to compare with "
                         "tools/verifier_candidates.py score)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--junk", type=float, default=0.0,
                    help="add a class 'none' with this many junk blueprints per training clip (still, ghosted, "
                         "vanished, shuffled; vidgpt.train.verifier_fit.junk_examples); 0 = the four directions only")
    ap.add_argument("--candidates", nargs="+", default=[], metavar="FILE",
                    help="also learn from blueprints the model drew for training prompts, labelled with the way the "
                         "judge saw each move or 'none' (tools/verifier_candidates.py build --split train; "
                         "vidgpt.train.verifier_fit.candidate_examples); adds the class 'none'")
    args = ap.parse_args(argv)

    out = Path(args.out)
    if args.junk < 0:
        raise ConfigError(f"--junk {args.junk}: junk blueprints per training clip, >= 0")
    if args.bits is not None:
        if args.bits < 1:
            raise ConfigError(f"--bits {args.bits}: >= 1")
        bits = args.bits
        out.mkdir(parents=True, exist_ok=True)
    else:
        bits = int(((read_meta(out).get("vocab") or {}).get("codebook_bits")) or 0) if (out / "vidgpt.json").is_file() else 0
        if bits < 1:
            raise ConfigError(f"{out}: no vidgpt.json naming vocab.codebook_bits (or give --bits)")
    extra = candidates(args.candidates) if args.candidates else None  # a bad file fails before the shards are read
    t0 = time.time()
    try:
        codes, labels = verifier_examples(shard_records(args.shards))
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"--shards: {e}") from None
    try:
        net, report = fit_verifier(codes, labels, bits, epochs=args.epochs, seed=args.seed, junk=args.junk, extra=extra)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    report.update({"candidates": list(args.candidates), "shards": list(args.shards), "blueprint_shape": list(codes.shape[1:]), "seconds": round(time.time() - t0, 1)})
    path = save_verifier(net, out, report)
    print(json.dumps(report))
    print(path)
    return 0


def candidates(files: list[str]):
    """The --candidates files' examples (vidgpt.train.verifier_fit.candidate_examples), joined; ConfigError, one
    line, for a file that cannot be read, was not built with --split train, or holds no usable candidate."""
    import torch

    from vidgpt.errors import ConfigError
    from vidgpt.train.verifier_fit import candidate_examples

    parts = []
    for f in files:
        try:
            data = torch.load(f)
        except (OSError, RuntimeError) as e:
            raise ConfigError(f"--candidates {f}: cannot read it ({type(e).__name__})") from None
        if data.get("split") != "train" or "observed" not in data:
            raise ConfigError(f"--candidates {f}: not made by verifier_candidates.py build --split train")
        try:
            parts.append(candidate_examples(data))
        except ValueError as e:
            raise ConfigError(f"--candidates {f}: {e}") from None
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


if __name__ == "__main__":
    from vidgpt.errors import run_tool

    run_tool(main, Path(__file__).name)
