"""Can the data itself teach "red" -> red object codes? A small transformer trained from scratch as the LM's control.

The default model (a pretrained LLM with new visual rows) has not learned to draw the object in the colour its
prompt names (model/README.md, pieces 4-5c). This tool separates the data from the LLM setting: it trains a
small causal transformer from scratch on the same shards' blueprint codes, conditioned on the words of each
record's short caption, and prints, every --eval-every steps on held-out records,

  loss        mean CE over all blueprint codes and over the object's codes;
  gap         CE under a swapped colour word minus CE under the true one, over the object's codes and over the
              first --first-objects object codes (teacher-forced, nats per token; tools/prompt_sensitivity.py's
              measure for the LM, so the two can be read side by side);
  colour      with --sample N: N blueprints sampled for held-out captions, decoded by the tokenizer and
              segmented by the judge's palette (vidgpt.data.judge.segment); the share whose largest named
              colour region is the colour asked for (chance: 1/9).

If this model's gap and sampled colour rise within minutes while the LM's do not, the LM setting (adapter,
learning rates, rows) is what stops it; if they do not rise here either, the codes are.

    python tools/scratch_baseline.py data/lm11/img_v1 --steps 600 --sample 36
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(__file__))

from prompt_sensitivity import COLORS, swapped  # noqa: E402  (the LM probe's colour swap, so the two read alike)
from vidgpt.errors import DataError, run_tool  # noqa: E402


def load_records(dirs: list[str]) -> list[dict]:
    import pyarrow.parquet as pq

    rows = []
    for d in dirs:
        files = sorted(glob.glob(os.path.join(d, "*.parquet")))
        if not files:
            raise DataError(f"{d}: no parquet shards")
        for f in files:
            t = pq.read_table(f, columns=["caption", "blueprint_codes", "blueprint_object_mask", "blueprint_shape"])
            rows.extend(r for r in t.to_pylist() if r["blueprint_codes"] and r["blueprint_object_mask"])
    return rows


class WordVocab:
    def __init__(self, captions: list[str], width: int):
        words = sorted({w for c in captions for w in self.split(c)} | set(COLORS))
        self.index = {w: i + 1 for i, w in enumerate(words)}  # 0 = padding
        self.width = width

    @staticmethod
    def split(caption: str) -> list[str]:
        return caption.lower().replace(",", " ").replace(".", " ").split()

    def __len__(self) -> int:
        return len(self.index) + 1

    def encode(self, caption: str) -> list[int]:
        ids = [self.index.get(w, 0) for w in self.split(caption)][: self.width]
        return ids + [0] * (self.width - len(ids))


def swap_colour(caption: str) -> str | None:
    return swapped(caption, "color")


def build_model(n_words: int, n_codes: int, bits: int, length: int, d: int, layers: int, heads: int):
    import torch
    from torch import nn

    class Scratch(nn.Module):
        """Word tokens, then a start token, then the codes; logits over the codes = h . (free row + bits @ A)."""

        def __init__(self):
            super().__init__()
            self.words = nn.Embedding(n_words, d)
            self.start = nn.Parameter(torch.zeros(d))
            self.rows = nn.Parameter(torch.randn(n_codes, d) * 0.02)
            self.bit_proj = nn.Parameter(torch.zeros(bits, d))
            self.pos = nn.Parameter(torch.randn(length, d) * 0.02)
            layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
            self.body = nn.TransformerEncoder(layer, layers)
            self.norm = nn.LayerNorm(d)
            self.register_buffer("bit_table", ((torch.arange(n_codes)[:, None] >> torch.arange(bits)) & 1).float() * 2 - 1)

        def code_rows(self):
            return self.rows + self.bit_table @ self.bit_proj

        def forward(self, words, codes):
            """words [B, W], codes [B, N] -> logits [B, N, n_codes] (position i predicts codes[:, i])."""
            rows = self.code_rows()
            b = words.shape[0]
            x = torch.cat([self.words(words), self.start.expand(b, 1, -1), rows[codes[:, :-1]]], 1)
            x = x + self.pos[: x.shape[1]]
            mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
            h = self.norm(self.body(x, mask=mask, is_causal=True))
            h = h[:, words.shape[1]:]
            return h @ rows.T

    return Scratch()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shards", nargs="+")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--object-weight", type=float, default=1.0, help="loss weight of object codes (the LM used 8)")
    ap.add_argument("--heldout", type=int, default=200)
    ap.add_argument("--first-objects", type=int, default=8)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--sample", type=int, default=0, help="sampled held-out blueprints judged for colour")
    ap.add_argument("--tokenizer", default=None, help="decodes the samples (default: the shipped tokenizer/)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch
    import torch.nn.functional as F

    torch.manual_seed(args.seed)
    rows = load_records(args.shards)
    rng = np.random.default_rng(args.seed)
    rng.shuffle(rows)
    held, train = rows[: args.heldout], rows[args.heldout:]
    vocab = WordVocab([r["caption"] for r in rows], width=8)
    n_codes = 1 << 14
    shape = tuple(rows[0]["blueprint_shape"])
    N = int(np.prod(shape))

    def tensors(rs, caption=lambda r: r["caption"]):
        w = torch.tensor([vocab.encode(caption(r)) for r in rs])
        c = torch.tensor([r["blueprint_codes"] for r in rs])
        m = torch.tensor([r["blueprint_object_mask"] for r in rs]).float()
        return w, c, m

    model = build_model(len(vocab), n_codes, 14, vocab.width + 1 + N, args.d, args.layers, args.heads)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0, betas=(0.9, 0.95))
    print(f"{len(train)} train / {len(held)} held-out records, blueprint {shape}, {len(vocab)} words, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
    hw, hc, hm = tensors(held)
    swap_ok = [swap_colour(r["caption"]) is not None for r in held]
    sw, _, _ = tensors(held, lambda r: swap_colour(r["caption"]) or r["caption"])
    first = torch.zeros_like(hm)
    for i in range(len(held)):
        idx = hm[i].nonzero()[:, 0][: args.first_objects]
        first[i, idx] = 1.0
    ok = torch.tensor(swap_ok, dtype=torch.float)[:, None]

    @torch.no_grad()
    def evaluate():
        model.eval()
        def ce(words):
            out = []
            for s in range(0, len(hc), 25):
                logits = model(words[s : s + 25], hc[s : s + 25])
                out.append(F.cross_entropy(logits.flatten(0, 1), hc[s : s + 25].flatten(), reduction="none"))
            return torch.cat(out).view_as(hm)

        ce_true, ce_swap = ce(hw), ce(sw)
        model.train()
        diff = ce_swap - ce_true

        def mean(x, m):
            return float((x * m).sum() / m.sum().clamp(min=1))

        return {"loss": float(ce_true.mean()), "object_loss": mean(ce_true, hm), "gap": mean(diff, hm * ok),
                "gap_first": mean(diff, first * ok)}

    @torch.no_grad()
    def sample_colour(n: int) -> float:
        from vidgpt.data.judge import segment
        from vidgpt.tokenizer.model import VideoTokenizer

        tok = VideoTokenizer.from_pretrained(args.tokenizer or os.path.join(os.path.dirname(__file__), "..", "tokenizer"))
        model.eval()
        gen = torch.Generator().manual_seed(1234)
        asked = [COLORS[i % len(COLORS)] for i in range(n)]
        shapes = sorted({r["caption"].split()[-1] for r in held})
        caps = [f"{c} {shapes[i % len(shapes)]}" for i, c in enumerate(asked)]
        w = torch.tensor([vocab.encode(c) for c in caps])
        codes = torch.zeros(n, N + 1, dtype=torch.long)
        for i in range(N):
            logits = model(w, codes[:, : i + 1])[:, i]
            codes[:, i] = torch.multinomial(F.softmax(logits, -1), 1, generator=gen)[:, 0]
        model.train()
        video = tok.decode(codes[:, :N].view(n, *shape))  # [n, 3, T, H, W] in [-1, 1]
        frames = ((video.permute(0, 2, 3, 4, 1) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
        hits = 0
        for k in range(n):
            names, label = segment(frames[k])
            counts = np.bincount(label[label >= 0].ravel(), minlength=len(names))
            hits += int(counts.sum() > 0 and names[int(counts.argmax())] == asked[k])
        return hits / n

    print("| step | train loss | held-out loss | object loss | colour gap, object codes | first codes | sampled colour | s/step |")
    print("|---|---|---|---|---|---|---|---|")
    t0, losses = time.time(), []
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            e = evaluate()
            col = f"{sample_colour(args.sample):.2f}" if args.sample else "-"
            sps = (time.time() - t0) / max(1, step)
            tl = f"{np.mean(losses[-args.eval_every:]):.3f}" if losses else "-"
            print(f"| {step} | {tl} | {e['loss']:.3f} | {e['object_loss']:.3f} | {e['gap']:+.4f} | {e['gap_first']:+.4f} | "
                  f"{col} | {sps:.2f} |", flush=True)
        if step == args.steps:
            break
        lr = args.lr * min(1.0, (step + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        pick = rng.integers(0, len(train), args.batch)
        w, c, m = tensors([train[i] for i in pick])
        ce = F.cross_entropy(model(w, c).flatten(0, 1), c.flatten(), reduction="none").view_as(m)
        weight = 1.0 + (args.object_weight - 1.0) * m
        loss = (ce * weight).sum() / weight.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(ce.detach().mean()))
    return 0


if __name__ == "__main__":
    run_tool(main, os.path.basename(__file__))
