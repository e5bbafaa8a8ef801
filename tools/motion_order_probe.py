"""Does the order of a clip's codes decide whether motion is learnable? A small from-scratch probe.

The default model (issue 11) learned the prompt's colour but never its motion. One hypothesis: in the
frame-major order the layout uses (all cells of latent frame 0, then all of frame 1, ...), drawing a moving
object means copying a code from 64 +- d positions back, where the offset d depends on the motion word;
in a time-major order (each cell's latent frames one after the other) the same copy is a *local* pattern
("the cell to my left held the object one frame earlier") a few positions back. This tool trains the same
small RoPE transformer from scratch on the blueprint codes of the LM's shards under each order, with the
caption's colour, shape and motion as three conditioning tokens, for the same wall time, and measures on
held-out clips what tools/prompt_sensitivity.py measures on the LM: the loss of the codes that change
between latent frames under the true motion word and under a swapped one (left<->right, up<->down).

    OMP_NUM_THREADS=1 python tools/motion_order_probe.py --shards data/lm13/t2v data/lm14/m4a data/lm14/m4b \
        --orders frame,time --minutes 12

It prints a table (order, steps, held-out loss, changed-cell loss true / swapped, gap, share of clips where
the true word scores lower) and writes it as JSON with --out. A proxy: a small model from scratch, not the
LoRA-tuned LLM; it says which order makes motion *easier*, not how many LLM steps it needs.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import time

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn as nn
import torch.nn.functional as F

SWAP = {"moving left": "moving right", "moving right": "moving left", "moving up": "moving down",
        "moving down": "moving up"}


def load(shards: list[str]):
    recs = []
    for d in shards:
        for f in sorted(glob.glob(f"{d}/*.parquet")):
            t = pq.read_table(f, columns=["caption", "blueprint_codes", "blueprint_shape", "kind"])
            for cap, codes, shape, kind in zip(*(t.column(c).to_pylist() for c in
                                                 ("caption", "blueprint_codes", "blueprint_shape", "kind"))):
                if kind != "video" or codes is None:
                    continue
                parts = cap.split(", ")
                words = parts[0].split(" ")
                recs.append((words[0], words[-1], parts[-1], np.asarray(codes, dtype=np.int64).reshape(shape)))
    return recs


def permutation(shape, order: str) -> np.ndarray:
    """Indices into the frame-major flattening that give the sequence in `order`."""
    t, h, w = shape
    idx = np.arange(t * h * w).reshape(t, h, w)
    if order == "frame":
        return idx.reshape(-1)
    if order == "time":
        return idx.transpose(1, 2, 0).reshape(-1)
    raise SystemExit(f"unknown order {order!r}: frame or time")


class Rope(nn.Module):
    def __init__(self, dim: int, n: int):
        super().__init__()
        inv = 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim))
        f = torch.outer(torch.arange(n).float(), inv)
        self.register_buffer("cos", f.cos(), persistent=False)
        self.register_buffer("sin", f.sin(), persistent=False)

    def forward(self, x):  # [B, H, L, D]
        L = x.shape[2]
        c, s = self.cos[:L], self.sin[:L]
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, d: int, heads: int, rope: Rope):
        super().__init__()
        self.h, self.rope = heads, rope
        self.n1, self.n2 = nn.RMSNorm(d), nn.RMSNorm(d)
        self.qkv, self.o = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.up, self.down = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

    def forward(self, x):
        B, L, D = x.shape
        q, k, v = self.qkv(self.n1(x)).view(B, L, 3, self.h, D // self.h).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(self.rope(q), self.rope(k), v, is_causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(B, L, D))
        return x + self.down(F.gelu(self.up(self.n2(x))))


class Toy(nn.Module):
    def __init__(self, vocab: int, d: int, layers: int, heads: int, n: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        rope = Rope(d // heads, n)
        self.blocks = nn.ModuleList(Block(d, heads, rope) for _ in range(layers))
        self.norm = nn.RMSNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, ids):
        x = self.emb(ids)
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", nargs="+", required=True)
    ap.add_argument("--orders", default="frame,time")
    ap.add_argument("--minutes", type=float, default=12.0, help="wall time per order")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--d", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--heldout", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=150)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    recs = load(a.shards)
    shape = recs[0][3].shape
    recs = [r for r in recs if r[3].shape == shape]
    # vocabulary: conditioning words, then the codes that occur
    words = sorted({r[0] for r in recs} | {r[1] for r in recs} | {r[2] for r in recs} | set(SWAP.values()))
    codes = np.unique(np.concatenate([r[3].reshape(-1) for r in recs]))
    wid = {w: i for i, w in enumerate(words)}
    cmap = np.full(int(codes.max()) + 1, -1, dtype=np.int64)
    cmap[codes] = np.arange(len(codes)) + len(words)
    vocab = len(words) + len(codes)
    rng = np.random.default_rng(a.seed)
    order_idx = rng.permutation(len(recs))
    n_held = int(len(recs) * a.heldout)
    held, train = [recs[i] for i in order_idx[:n_held]], [recs[i] for i in order_idx[n_held:]]
    t, h, w = shape
    # changed cells (frame-major): latent frames >= 1 whose code differs from the previous frame's at that cell
    def changed(c):
        m = np.zeros_like(c, dtype=bool)
        m[1:] = c[1:] != c[:-1]
        return m.reshape(-1)

    print(f"{len(train)} train / {len(held)} held-out clips, blueprint {shape}, vocab {vocab} "
          f"({len(codes)} codes), torch threads {torch.get_num_threads()}", flush=True)
    rows = []
    for order in a.orders.split(","):
        perm = permutation(shape, order)

        def seq(r, motion=None):
            cond = [wid[r[0]], wid[r[1]], wid[motion or r[2]]]
            return np.concatenate([cond, cmap[r[3].reshape(-1)[perm]]])

        n = 3 + t * h * w
        torch.manual_seed(a.seed)
        model = Toy(vocab, a.d, a.layers, max(1, a.d // 64), n)
        opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01, betas=(0.9, 0.95))
        tr = np.stack([seq(r) for r in train])
        sw = [r for r in held if r[2] in SWAP]
        ht = torch.as_tensor(np.stack([seq(r) for r in sw]))
        hs = torch.as_tensor(np.stack([seq(r, SWAP[r[2]]) for r in sw]))
        hm = torch.as_tensor(np.stack([changed(r[3])[perm] for r in sw]))  # [N, thw] in sequence order
        ha = torch.as_tensor(np.stack([seq(r) for r in held]))

        def evaluate():
            model.eval()
            with torch.no_grad():
                def per_tok(x):
                    lg = model(x[:, :-1])
                    return F.cross_entropy(lg.transpose(1, 2), x[:, 1:], reduction="none")[:, 2:]  # the codes
                la = per_tok(ha).mean().item()
                lt, ls = per_tok(ht), per_tok(hs)
                m = hm.float()
                ct = (lt * m).sum(1) / m.sum(1).clamp(min=1)
                cs = (ls * m).sum(1) / m.sum(1).clamp(min=1)
            model.train()
            return la, ct.mean().item(), cs.mean().item(), (ct < cs).float().mean().item()

        t0, step, curve = time.time(), 0, []
        while time.time() - t0 < a.minutes * 60:
            lr = a.lr * min(1.0, (step + 1) / 50)
            for g in opt.param_groups:
                g["lr"] = lr
            b = torch.as_tensor(tr[rng.integers(0, len(tr), a.batch)])
            lg = model(b[:, :-1])
            loss = F.cross_entropy(lg[:, 2:].reshape(-1, vocab), b[:, 3:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % a.eval_every == 0:
                la, ct, cs, win = evaluate()
                curve.append({"step": step, "s": round(time.time() - t0), "train": round(loss.item(), 4),
                              "heldout": round(la, 4), "changed_true": round(ct, 4), "changed_swapped": round(cs, 4),
                              "gap": round(cs - ct, 4), "true_lower": round(win, 3)})
                print(order, curve[-1], flush=True)
        la, ct, cs, win = evaluate()
        rows.append({"order": order, "steps": step, "heldout": la, "changed_true": ct, "changed_swapped": cs,
                     "gap": cs - ct, "true_lower": win, "curve": curve})
    print("\n| order | steps | held-out loss | changed cells, true | swapped | gap | true lower |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['order']} | {r['steps']} | {r['heldout']:.3f} | {r['changed_true']:.3f} | "
              f"{r['changed_swapped']:.3f} | {r['gap']:+.3f} | {r['true_lower']:.0%} |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
