"""Calibrate int8 decoding for a model: write `<model>/int8_maxima.safetensors`.

Generates a few clips with the exact fp32 fast path, runs each clip's ids (prompt + assistant turn) through
`FastDecoder.activation_maxima` and keeps, per decoder matrix, the channel-wise max |x| over all of them;
`vidgpt generate --int8-weights` (and `decode_options={"dtype": "int8"}`) smooth the int8 matrices with it.

    OMP_NUM_THREADS=2 python tools/calibrate_int8.py --model model

Then check what it costs with `python tools/decode_precision.py --model model --dtypes int8` (other prompts
than the calibration ones).
"""

from __future__ import annotations

import argparse

import torch

from vidgpt.generate.fast_decode import FastDecoder
from vidgpt.generate.int8_calibration import merge_maxima, save_maxima
from vidgpt.generate.pipeline import VidGPT

PROMPTS = "a green square moving down|an orange circle bouncing|a white star moving left|a blue hexagon growing"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="model")
    ap.add_argument("--prompts", default=PROMPTS, help="'|'-separated")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    pipe = VidGPT.from_pretrained(a.model, device="cpu", decode_options={"dtype": "fp32", "speculative": 4})
    dec = FastDecoder(pipe.model, dtype="fp32")
    maxima = None
    for p in a.prompts.split("|"):
        r = pipe.generate(p, seed=a.seed, decode=False)
        maxima = merge_maxima(maxima, dec.activation_maxima(torch.tensor([r.prompt_ids + r.token_ids[0]])))
        print(f"calibrated on {p!r} ({len(r.prompt_ids) + len(r.token_ids[0])} ids)", flush=True)
    print(save_maxima(a.model, maxima))


if __name__ == "__main__":
    main()
