"""What a cheaper weight format costs in the model's choices: next-code distributions against fp32.

Generates clips with the exact fp32 fast path, then teacher-forces each clip's ids (prompt + assistant
turn, conditional row) through `FastDecoder(model, dtype=D)` for every D asked for and compares, at every
visual position, the distribution over the visual codes with fp32's: KL(fp32 || D) in nats, total
variation, and whether the most likely code is the same.

    OMP_NUM_THREADS=2 python tools/decode_precision.py --model model --dtypes bf16,int8,int8:prompt

(int8: smoothed on the model's int8_maxima.safetensors, tools/calibrate_int8.py; int8:prompt: on the prompt only;
int8+head: the head's visual rows in int8 too, smoothed on the file's final-norm maxima when it has them.)

Prints one table row per dtype (mean / p99 / max KL, mean / p99 TV, argmax agreement) and, with --out,
writes them as JSON. docs/DECODING.md keeps the figures.
"""

from __future__ import annotations

import argparse
import json

import torch

from vidgpt.generate.fast_decode import FastDecoder
from vidgpt.generate.pipeline import VidGPT

DEFAULT_PROMPTS = "a red circle moving right|a blue square moving left|a yellow triangle moving up"


@torch.inference_mode()
def visual_logprobs(dec: FastDecoder, vocab, prompt_ids: list[int], ids: list[int], chunk: int = 256) -> torch.Tensor:
    """log-softmax over the visual rows at every position whose next id is visual: [N, rows]."""
    full = torch.tensor([prompt_ids + ids])
    pos = len(prompt_ids) - 1  # the hidden state that predicts id j is position j - 1's: start at the prompt's last
    dec.prefill(full[:, :pos], torch.ones(1, pos, dtype=torch.bool), max_len=full.shape[1] + 1)
    lo, hi = vocab.group_range(0)
    out = []
    while pos < full.shape[1] - 1:
        L = min(chunk, full.shape[1] - 1 - pos)
        h = dec.step_many(full[:, pos : pos + L])[0]  # hidden of positions pos .. pos+L-1
        nxt = full[0, pos + 1 : pos + 1 + L]
        keep = (nxt >= lo) & (nxt < hi)
        if keep.any():
            out.append(torch.log_softmax(dec.logits(h[keep], lo, hi).float(), dim=-1))
        pos += L
    return torch.cat(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="model")
    ap.add_argument("--dtypes", default="bf16,int8")
    ap.add_argument("--prompts", default=DEFAULT_PROMPTS, help="'|'-separated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    pipe = VidGPT.from_pretrained(a.model, device="cpu", decode_options={"dtype": "fp32"})
    model, vocab = pipe.model, pipe.vocab
    clips = []
    for p in a.prompts.split("|"):
        r = pipe.generate(p, frames=a.frames, seed=a.seed, decode=False)
        clips.append((r.prompt_ids, r.token_ids[0]))
    ref_dec = FastDecoder(model, dtype="fp32")
    refs = [visual_logprobs(ref_dec, vocab, pi, ids) for pi, ids in clips]
    del ref_dec
    rows = []
    for d in [x.strip() for x in a.dtypes.split(",") if x.strip()]:
        maxima = None
        kind, head = d.split(":")[0], False
        if kind == "int8+head":  # the head's visual rows in int8 too (FastDecoder int8_head)
            kind, head = "int8", True
        if d in ("int8", "int8+head"):  # the model's calibration file when it has one; ":prompt" calibrates on the prompt
            from vidgpt.generate.int8_calibration import load_maxima

            maxima = load_maxima(a.model)
        dec = FastDecoder(model, dtype=kind, int8_maxima=maxima, int8_head=head)
        kl, tv, same = [], [], []
        for (pi, ids), ref in zip(clips, refs):
            lp = visual_logprobs(dec, vocab, pi, ids)
            p = ref.exp()
            kl.append((p * (ref - lp)).sum(-1))
            tv.append(0.5 * (p - lp.exp()).abs().sum(-1))
            same.append(ref.argmax(-1) == lp.argmax(-1))
        kl, tv, same = torch.cat(kl), torch.cat(tv), torch.cat(same).float()
        rows.append({"dtype": d, "positions": len(kl), "kl_mean": kl.mean().item(), "kl_p99": kl.quantile(0.99).item(),
                     "kl_max": kl.max().item(), "tv_mean": tv.mean().item(), "tv_p99": tv.quantile(0.99).item(),
                     "argmax_same": same.mean().item()})
        del dec
    print(f"model {a.model}; {len(clips)} clips (seed {a.seed}), teacher-forced, conditional row; against fp32")
    print("| weights | positions | KL mean (nats) | KL p99 | KL max | TV mean | TV p99 | same most likely code |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dtype']} | {r['positions']} | {r['kl_mean']:.2e} | {r['kl_p99']:.2e} | {r['kl_max']:.2e} | "
              f"{r['tv_mean']:.2%} | {r['tv_p99']:.2%} | {r['argmax_same']:.1%} |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
