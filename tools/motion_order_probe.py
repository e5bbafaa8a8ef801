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

With --local R every order trains on the codes a tokenizer whose codes see only R cells around them would give
(`localize`: far from the object, a later latent frame keeps the frame before's code), against the shards' own
codes, whose moves change a halo ~4 cells wide: would local codes make the motion word easier to learn?

Order "grid" is the frame-major order with learned (latent frame, row, column) embeddings added to every code's
input, so a head can find "the cell one column to my left in the frame before" by content instead of by a RoPE
offset of 65 positions against 64 (what a 3D position scheme would give the LM).

Order "plan" is the frame-major order with a plan written before each latent frame: two tokens, the column and
row of the object's centre in that frame (the centroid of the shards' blueprint_object_mask in that frame; a third
token when the mask is empty). The model then writes where the object goes
before drawing it, as a caption would say it, so the motion word has to decide two tokens a frame instead of the
few codes where the object arrives or leaves.

It prints a table (order, steps, held-out loss, changed-cell loss true / swapped, gap, share of clips where
the true word scores lower; for "plan" the gap on the plan tokens of frames >= 1) and, with --sample N, the share
of N held-out straight-move clips whose sampled continuation (the first latent frame given, the rest drawn at
temperature 1) moves the object the way the word says, read from the cells that changed (`moved`; the held-out
clips' own codes give its ceiling). Writes it as JSON with --out. A proxy: a small model from scratch, not the LoRA-tuned
LLM; it says which layout makes motion *easier*, not how many LLM steps it needs.
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


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """bool [h, w]: the cells within `radius` cells (Chebyshev) of a True cell."""
    from scipy.ndimage import binary_dilation

    if radius <= 0:  # scipy reads iterations < 1 as "until nothing changes"
        return mask.copy()
    return binary_dilation(mask, structure=np.ones((3, 3), bool), iterations=radius)


def localize(codes: np.ndarray, mask: np.ndarray, radius: int) -> np.ndarray:
    """codes [t, h, w] as a tokenizer whose codes see only `radius` cells around them would give them: from latent
    frame 1 on, every cell farther than `radius` cells from the object (mask [t, h, w], in this frame or the one
    before) keeps the frame before's code, so a move changes only the cells near the object (v2's own codes change
    in a halo ~4 cells wide: tools/tokenizer_probes.py stability)."""
    out = codes.copy()
    for i in range(1, len(codes)):
        far = ~dilate(mask[i] | mask[i - 1], radius)
        out[i][far] = out[i - 1][far]
    return out


def load(shards: list[str], local: int = -1, section: str = "blueprint"):
    """(colour, shape, motion, codes [t, h, w], object mask or None) of every text-to-video record; `section`
    "blueprint" reads the half-size blueprint codes, "fine" the clip's own codes (a 16x tokenizer's whole clip
    has a blueprint's shape: 3x8x8 at 9x128x128)."""
    prefix = {"blueprint": "blueprint_", "fine": ""}[section]
    recs = []
    for d in shards:
        for f in sorted(glob.glob(f"{d}/*.parquet")):
            cols = ["caption", f"{prefix}codes", f"{prefix}shape", "kind", f"{prefix}object_mask"]
            t = pq.read_table(f, columns=[c for c in cols if c in pq.read_schema(f).names])
            masks = t.column(cols[4]).to_pylist() if cols[4] in t.column_names \
                else [None] * t.num_rows
            for cap, codes, shape, kind, mask in zip(*(t.column(c).to_pylist() for c in cols[:4]), masks):
                if kind != "video" or codes is None:
                    continue
                parts = cap.split(", ")
                words = parts[0].split(" ")
                codes = np.asarray(codes, dtype=np.int64).reshape(shape)
                mask = None if mask is None else np.asarray(mask, dtype=bool).reshape(shape)
                if local >= 0:
                    if mask is None:
                        raise SystemExit(f"{f}: --local needs the shards' {cols[4]}")
                    codes = localize(codes, mask, local)
                recs.append((words[0], words[-1], parts[-1], codes, mask))
    return recs


def permutation(shape, order: str) -> np.ndarray:
    """Indices into the frame-major flattening that give the sequence in `order`."""
    t, h, w = shape
    idx = np.arange(t * h * w).reshape(t, h, w)
    if order in ("frame", "plan", "grid"):
        return idx.reshape(-1)
    if order == "time":
        return idx.transpose(1, 2, 0).reshape(-1)
    raise SystemExit(f"unknown order {order!r}: frame, time, plan or grid")


def centre(mask: np.ndarray) -> tuple[float, float] | None:
    """(column, row) centroid of a cell mask [h, w]; None when empty."""
    ys, xs = np.nonzero(mask)
    return None if len(xs) == 0 else (float(xs.mean()), float(ys.mean()))


def centres(mask: np.ndarray) -> list[tuple[float, float] | None]:
    """Per latent frame of an object mask [t, h, w] (the shards' blueprint_object_mask): the object's centroid."""
    return [centre(m) for m in mask]


def moved(codes: np.ndarray, mask0: np.ndarray) -> str | None:
    """The move that codes [t, h, w] show, read without a mask past the first frame: from the centroid of the cells
    that held the object in frame 0 and changed by the last frame, to that of the cells that did not and changed.
    On the shards' own codes it reads the caption's straight move in ~75% of clips (the probe prints this ceiling)."""
    ch = codes[-1] != codes[0]
    return direction(centre(ch & mask0), centre(ch & ~mask0))


def direction(first, last) -> str | None:
    """The motion word the centroid's move from `first` to `last` reads as (None: no move or no object)."""
    if first is None or last is None:
        return None
    dx, dy = last[0] - first[0], last[1] - first[1]
    if max(abs(dx), abs(dy)) < 0.5:
        return None
    if abs(dx) >= abs(dy):
        return "moving right" if dx > 0 else "moving left"
    return "moving down" if dy > 0 else "moving up"


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
    def __init__(self, vocab: int, d: int, layers: int, heads: int, n: int, grid: tuple[int, int, int] | None = None):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        # order "grid": learned (latent frame, row, column) embeddings added to the code positions (frame-major,
        # after the 3 conditioning tokens), so "the cell one column left, one frame earlier" is content a head can
        # match, not only a RoPE offset of 65 against 64
        self.grid = grid
        if grid is not None:
            t, h, w = grid
            self.pos_t, self.pos_h, self.pos_w = nn.Embedding(t, d), nn.Embedding(h, d), nn.Embedding(w, d)
            i = torch.arange(t * h * w)
            self.register_buffer("cell", torch.stack((i // (h * w), (i // w) % h, i % w)), persistent=False)
        rope = Rope(d // heads, n)
        self.blocks = nn.ModuleList(Block(d, heads, rope) for _ in range(layers))
        self.norm = nn.RMSNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, ids):
        x = self.emb(ids)
        if self.grid is not None:
            L = ids.shape[1] - 3
            f, r, c = self.cell[:, :L]
            x = torch.cat([x[:, :3], x[:, 3:] + self.pos_t(f) + self.pos_h(r) + self.pos_w(c)], dim=1)
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
    ap.add_argument("--sample", type=int, default=0, help="held-out straight-move clips sampled at the end (0: none)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--local", type=int, default=-1,
                    help="train on the codes a tokenizer with local codes would give: later latent frames keep the "
                         "frame before's code more than this many cells from the object (-1: the shards' own codes)")
    ap.add_argument("--section", choices=["blueprint", "fine"], default="blueprint",
                    help="which codes of each clip the toy learns: the blueprint (default) or the clip's own codes "
                         "(e.g. a 16x tokenizer's 3x8x8 clip)")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    recs = load(a.shards, a.local, a.section)
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

    print(f"{len(train)} train / {len(held)} held-out clips, {a.section} codes {shape}, vocab {vocab} "
          f"({len(codes)} codes), torch threads {torch.get_num_threads()}", flush=True)
    # plan tokens ("plan" order): the centre's column 0..w-1, its row 0..h-1, and "no object"
    col0, row0, none_id = vocab, vocab + w, vocab + w + h
    sw = [r for r in held if r[2] in SWAP]  # held-out straight moves: what the gaps and the samples use
    if any(r[4] is None for r in recs):
        raise SystemExit(f"these shards have no {'blueprint_' if a.section == 'blueprint' else ''}object_mask "
                         "(rebuild them with vidgpt data build-lm)")
    reads = [moved(r[3], r[4][0]) for r in sw]
    ceiling = np.mean([m == r[2] for m, r in zip(reads, sw)]) if sw else float("nan")
    ceiling_wrong = np.mean([m is not None and m != r[2] for m, r in zip(reads, sw)]) if sw else float("nan")
    rows = []
    for order in a.orders.split(","):
        perm = permutation(shape, order)
        plan = order == "plan"
        per_frame = h * w + (2 if plan else 0)  # content tokens a latent frame (plan: 2 plan tokens, then codes)
        V = vocab + w + h + 1 if plan else vocab

        def content(c, mask):
            if not plan:
                return cmap[c.reshape(-1)[perm]]
            parts = []
            for frame, cen in zip(c, centres(mask)):
                pl = [none_id, none_id] if cen is None else [col0 + int(round(cen[0])), row0 + int(round(cen[1]))]
                parts.append(np.concatenate([pl, cmap[frame.reshape(-1)]]))
            return np.concatenate(parts)

        def seq(r, motion=None):
            return np.concatenate([[wid[r[0]], wid[r[1]], wid[motion or r[2]]], content(r[3], r[4])])

        def masks(c):
            """(changed code cells, plan tokens of frames >= 1) over the content positions, in sequence order."""
            ch = changed(c)[perm]
            if not plan:
                return ch, np.zeros_like(ch)
            ch = np.concatenate([np.concatenate([[False, False], f]) for f in ch.reshape(t, h * w)])
            pm = np.zeros(t * per_frame, dtype=bool)
            for i in range(1, t):
                pm[i * per_frame : i * per_frame + 2] = True
            return ch, pm

        n = 3 + t * per_frame
        torch.manual_seed(a.seed)
        model = Toy(V, a.d, a.layers, max(1, a.d // 64), n, grid=shape if order == "grid" else None)
        opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01, betas=(0.9, 0.95))
        tr = np.stack([seq(r) for r in train])
        ht = torch.as_tensor(np.stack([seq(r) for r in sw]))
        hs = torch.as_tensor(np.stack([seq(r, SWAP[r[2]]) for r in sw]))
        hm = torch.as_tensor(np.stack([masks(r[3])[0] for r in sw]))  # [N, content] in sequence order
        hp = torch.as_tensor(np.stack([masks(r[3])[1] for r in sw]))
        ha = torch.as_tensor(np.stack([seq(r) for r in held]))

        def evaluate():
            model.eval()
            with torch.no_grad():
                def per_tok(x):
                    lg = model(x[:, :-1])
                    return F.cross_entropy(lg.transpose(1, 2), x[:, 1:], reduction="none")[:, 2:]  # the content
                la = per_tok(ha).mean().item()
                lt, ls = per_tok(ht), per_tok(hs)
                m = hm.float()
                ct = (lt * m).sum(1) / m.sum(1).clamp(min=1)
                cs = (ls * m).sum(1) / m.sum(1).clamp(min=1)
                pgap = float("nan")
                if plan:
                    pm = hp.float()
                    pgap = (((ls - lt) * pm).sum(1) / pm.sum(1)).mean().item()
            model.train()
            return la, ct.mean().item(), cs.mean().item(), (ct < cs).float().mean().item(), pgap

        @torch.no_grad()
        def sample(k: int) -> tuple[float, float]:
            """Shares of the first k held-out straight moves whose sampled frames 1.. move the object as the word says,
            and the other way (a move read, in another direction; the rest read no move)."""
            model.eval()
            gen = torch.Generator().manual_seed(a.seed)
            x = ht[:k, : 3 + per_frame].clone()  # conditioning + the first latent frame, true
            code_ok = torch.zeros(V, dtype=torch.bool)
            code_ok[len(words) : vocab] = True
            col_ok, row_ok = torch.zeros(V, dtype=torch.bool), torch.zeros(V, dtype=torch.bool)
            if plan:
                col_ok[col0 : col0 + w] = True
                row_ok[row0 : row0 + h] = True
                col_ok[none_id] = row_ok[none_id] = True
            while x.shape[1] < n:
                j = (x.shape[1] - 3) % per_frame  # the position's place in its frame
                ok = (col_ok if j == 0 else row_ok if j == 1 else code_ok) if plan else code_ok
                lg = model(x)[:, -1].masked_fill(~ok, float("-inf"))
                nxt = torch.multinomial(torch.softmax(lg, -1), 1, generator=gen)
                x = torch.cat([x, nxt], dim=1)
            model.train()
            right = wrong = 0
            for r, row in zip(sw[:k], x[:, 3:].numpy()):
                frames = row.reshape(t, per_frame)[:, 2 if plan else 0 :]  # frame-major cells
                read = moved(frames.reshape(t, h, w), r[4][0])
                right += read == r[2]
                wrong += read is not None and read != r[2]
            return right / max(1, k), wrong / max(1, k)

        t0, step, curve = time.time(), 0, []
        while time.time() - t0 < a.minutes * 60:
            lr = a.lr * min(1.0, (step + 1) / 50)
            for g in opt.param_groups:
                g["lr"] = lr
            b = torch.as_tensor(tr[rng.integers(0, len(tr), a.batch)])
            lg = model(b[:, :-1])
            loss = F.cross_entropy(lg[:, 2:].reshape(-1, V), b[:, 3:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % a.eval_every == 0:
                la, ct, cs, win, pgap = evaluate()
                curve.append({"step": step, "s": round(time.time() - t0), "train": round(loss.item(), 4),
                              "heldout": round(la, 4), "changed_true": round(ct, 4), "changed_swapped": round(cs, 4),
                              "gap": round(cs - ct, 4), "true_lower": round(win, 3), "plan_gap": round(pgap, 4)})
                if a.sample and order != "time":
                    right, wrong = sample(min(a.sample, len(sw)))
                    curve[-1]["sampled_right"], curve[-1]["sampled_wrong"] = round(right, 3), round(wrong, 3)
                print(order, curve[-1], flush=True)
        la, ct, cs, win, pgap = evaluate()
        # sampling continues from the first latent frame: frame-major orders only
        sampled, sampled_wrong = sample(min(a.sample, len(sw))) if a.sample and order != "time" else (float("nan"),) * 2
        rows.append({"order": order, "steps": step, "heldout": la, "changed_true": ct, "changed_swapped": cs,
                     "gap": cs - ct, "true_lower": win, "plan_gap": pgap, "sampled_right": sampled,
                     "sampled_wrong": sampled_wrong, "curve": curve})
    print(f"\nheld-out straight moves: {len(sw)}; their own codes read as the right move in {ceiling:.0%} (the "
          f"ceiling of the sampled measure), as another move in {ceiling_wrong:.0%}")
    print("| order | steps | held-out loss | changed cells, true | swapped | gap | true lower | plan gap | sampled: right move "
          "| wrong way |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['order']} | {r['steps']} | {r['heldout']:.3f} | {r['changed_true']:.3f} | "
              f"{r['changed_swapped']:.3f} | {r['gap']:+.3f} | {r['true_lower']:.0%} | {r['plan_gap']:+.3f} | "
              f"{r['sampled_right']:.0%} | {r['sampled_wrong']:.0%} |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
