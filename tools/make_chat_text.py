"""Chat-form text for the LM mixture: template questions answered by the plain base backbone (docs/CHAT_TEXT.md).

Writes OUT/chat-00000.jsonl (`messages` records the LM trainer formats into the chat template, loss on the
answers) from the backbone WITHOUT video rows or adapter (self-distillation: the model keeps answering in
text as its base did). Greedy by default, deterministic for a seed; a rerun with a larger --num extends the
file. No network: the embedded SmolLM2 by default, or a local HF directory / tiny-llama.

    OMP_NUM_THREADS=1 nice -n 19 taskset -c 1 python tools/make_chat_text.py --out data/lm9/chat --num 300
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    from vidgpt.data.chat_text import ChatTextConfig, make_chat_text

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (an LM data source of kind `shards`)")
    ap.add_argument("--num", type=int, default=300, help="question/answer pairs in the file when done")
    ap.add_argument("--backbone", default="smollm2-135m", help="the base LM that answers (embedded default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--truncated", choices=["trim", "keep", "drop"], default="trim",
                    help="an answer cut by --max-new-tokens: trim to its last full sentence, keep, or drop")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the dev box: 1, on core 1)")
    ap.add_argument("--plain", action="store_true", help="plain transformers forward instead of the fast backend")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from vidgpt.backbone import load_backbone

    torch.set_num_threads(max(1, args.threads))
    cfg = ChatTextConfig(num=args.num, seed=args.seed, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                         batch_size=args.batch_size, truncated=args.truncated, backbone=args.backbone)
    model, tok = load_backbone(args.backbone)
    model.eval()
    log = None if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    summary = make_chat_text(args.out, model, tok, cfg, fast=not args.plain, log=log)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    from vidgpt.errors import run_tool

    run_tool(main, Path(__file__).name)
