#!/usr/bin/env python3
"""Ship a decoder-only fine-tune (train.train_parts: decoder) over the tokenizer it came from.

Checks before writing anything: same architecture hash, encoder + quantizer weights identical to the
shipped ones once stored in bf16 (the shipped dtype), the same encoder fingerprint, identical codes
from `encode()` on a few clips (synthetic world, random training clips, photos when given), and a
decoder that differs. Then writes DST/model.safetensors in bf16 (the fine-tune's lineage, the old
weights fingerprint, in its metadata so codes files made with the old weights stay valid) and leaves
DST/config.json as it was. --dry-run checks only.

    python tools/ship_decoder_finetune.py --run runs/tokdec --dst tokenizer [--dry-run]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from vidgpt.data.synthetic import WorldConfig, random_training_clip, render_scene, sample_scene
from vidgpt.data.video_io import frames_to_tensor
from vidgpt.tokenizer import VideoTokenizer
from vidgpt.tokenizer.model import CONFIG_NAME, WEIGHTS_NAME


def check_clips(n: int, seed: int = 7) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if i % 2 == 0:
            clip = render_scene(sample_scene(rng, WorldConfig(), split="heldout"), frames=17, height=128, width=128)
        else:
            clip = random_training_clip(rng, 17, 128, 128)
        out.append(frames_to_tensor(clip))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="the fine-tune's output directory (a tokenizer directory)")
    ap.add_argument("--dst", default="tokenizer", help="the shipped tokenizer directory it replaces")
    ap.add_argument("--clips", type=int, default=6, help="clips whose codes must be identical")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    old = VideoTokenizer.from_pretrained(args.dst)
    new = VideoTokenizer.from_pretrained(args.run)
    if new.config_hash() != old.config_hash():
        print(f"error: architecture hash {new.config_hash()} != {old.config_hash()}", file=sys.stderr)
        return 1
    shipped = new.to(torch.bfloat16).float()  # what loading the bf16 file gives
    o, s = old.state_dict(), shipped.state_dict()
    frozen = [k for k in o if not k.startswith("decoder.")]
    same_enc = all(torch.equal(o[k], s[k]) for k in frozen)
    changed = sum(not torch.equal(o[k], s[k]) for k in o if k.startswith("decoder."))
    print(f"encoder+quantizer tensors identical: {same_enc} ({len(frozen)}); decoder tensors changed: {changed}")
    print(f"encoder fingerprint old {old.encoder_fingerprint()} new {shipped.encoder_fingerprint()}; "
          f"weights fingerprint old {old.weights_fingerprint()} new {shipped.weights_fingerprint()}")
    if not same_enc or old.encoder_fingerprint() != shipped.encoder_fingerprint() or not changed:
        print("error: not a decoder-only fine-tune of --dst", file=sys.stderr)
        return 1
    if old.weights_fingerprint() not in shipped.code_compatible:
        shipped.code_compatible.insert(0, old.weights_fingerprint())
    equal = 0
    for x in check_clips(args.clips):
        a, b = old.encode(x), shipped.encode(x)
        equal += bool(torch.equal(a, b))
    print(f"identical codes on {equal}/{args.clips} clips (17x128x128)")
    if equal != args.clips:
        print("error: codes differ", file=sys.stderr)
        return 1
    if args.dry_run:
        return 0
    cfg_before = (Path(args.dst) / CONFIG_NAME).read_bytes()
    modes = {n: (Path(args.dst) / n).stat().st_mode for n in (CONFIG_NAME, WEIGHTS_NAME)}
    shipped.to(torch.bfloat16).save_pretrained(args.dst)  # bf16 weights, as v1 shipped
    for n, mode in modes.items():
        os.chmod(Path(args.dst) / n, mode)
    if (Path(args.dst) / CONFIG_NAME).read_bytes() != cfg_before:
        print(f"warning: {args.dst}/{CONFIG_NAME} was rewritten with different bytes", file=sys.stderr)
    again = VideoTokenizer.from_pretrained(args.dst)
    ok = again.encoder_fingerprint() == old.encoder_fingerprint() and all(torch.equal(old.encode(x), again.encode(x)) for x in check_clips(2, seed=8))
    print(f"wrote {Path(args.dst) / WEIGHTS_NAME}; reloaded: same encoder and codes: {ok}; code_compatible {again.code_compatible}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
