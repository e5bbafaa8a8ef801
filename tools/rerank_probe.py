"""Does the model know a good blueprint when it sees one? Best-of-N blueprints, reranked by the model's own scores.

For each held-out prompt this samples N blueprints (the clip at half size, CFG as `vidgpt generate`) in one batch,
judges each decoded blueprint against the scene (vidgpt.data.judge), and scores each with the model itself,
teacher-forced, over its visual codes:

  cond      log p(blueprint | prompt)
  pmi       log p(blueprint | prompt) - log p(blueprint | empty prompt)    (what CFG sampling records for free)
  contrast  log p(blueprint | prompt) - log p(blueprint | the prompt's negative)   (the negative `vidgpt generate`
            guides away from: the prompt with its motion reversed on a model with `contrast_motion`)
  motion    log p(blueprint | prompt) - logsumexp over the world's motions m of log p(blueprint | prompt with m)
            (the model as a classifier of the motion it drew; needs the prompt's scene to word the alternatives)

Scores are computed as the decode backends compute the logits (hints and copy read-out included), and the candidates
are sampled with the pipeline's default negative prompt.

and prints, per score, how often the top-scored candidate passes the judge (motion, colour, whole object) against
the mean candidate (what one sample gets) and the best candidate (an oracle). If a score lifts motion well above
the mean, best-of-N reranking is worth building into the pipeline; if not, it is not.

    OMP_NUM_THREADS=1 python tools/rerank_probe.py model --n 20 --candidates 8 \\
        --set max_objects=1 --set 'backgrounds=[solid]' --out runs/rerank_probe.json
"""

from __future__ import annotations

import argparse
import json
import time


def score_codes(pipe, prefix: list[int], gen_rows: list[list[int]]) -> list[float]:
    """Sum of log p(visual code | prefix + earlier ids) over each row's visual codes (rows of one length: the
    candidates of one prompt), teacher-forced as the decode backends compute it: the model's parent / caption hints on
    the inputs and its copy read-out (at the pipeline's sampling gain) on the logits, the head restricted to the visual
    rows (the constrained layout's choice set at a code position). No padding: a padded row would put pad ids into the
    caption window the hints read."""
    import torch

    from vidgpt.parent_hint import copy_logits, embed_with_hints

    vocab = pipe.vocab
    lo, hi = vocab.visual_offset, vocab.end
    ids = torch.tensor([list(prefix) + list(g) for g in gen_rows])
    with torch.inference_mode():
        emb = embed_with_hints(pipe.model, ids, vocab, pipe.parent_hint)
        logits = pipe.model(inputs_embeds=emb).logits[..., lo:hi].float()
        logits = copy_logits(logits, pipe.model, ids, vocab, pipe.parent_hint, lo)
        lp = torch.log_softmax(logits[:, len(prefix) - 1 : -1], -1)
        tgt = ids[:, len(prefix):]
        vis = (tgt >= lo) & (tgt < hi)
        picked = lp.gather(-1, (tgt - lo).clamp(0, hi - lo - 1).unsqueeze(-1)).squeeze(-1)
        return (picked * vis).sum(-1).tolist()


def main(argv=None) -> int:
    import numpy as np
    import torch

    from vidgpt.data.judge import judge_clip
    from vidgpt.data.world.captions import caption
    from vidgpt.data.world.scene import sample_scene
    from vidgpt.evaluate import EvalConfig, _rng, _sampling, heldout_items
    from vidgpt.generate.pipeline import VidGPT
    from vidgpt.generate.sampling import make_generator
    from vidgpt.layout import Sample, Turn

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--n", type=int, default=20, help="held-out prompts")
    ap.add_argument("--candidates", type=int, default=8, help="blueprints sampled per prompt (one batch)")
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--set", dest="world_set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)

    pipe = VidGPT.from_pretrained(args.model)
    cfg = EvalConfig(n=args.n, frames=args.frames, size=args.size, world_set=args.world_set, seed=args.seed)
    world = cfg.world()
    items = heldout_items(cfg, world)
    shape = pipe.latent_shape(cfg.frames, cfg.size, cfg.size)
    sampling = _sampling(cfg)
    gen = make_generator(args.seed, pipe.device)
    tok = pipe.video_tokenizer
    ids_of = lambda text: pipe.layout.prompt_ids(Sample([Turn("user", [text])]))  # noqa: E731
    empty = ids_of("")
    motions = list(world.motions)
    rows = []
    t0 = time.time()
    for i, (scene, style, prompt) in enumerate(items):
        k = args.candidates
        negative = ids_of(pipe.default_negative(prompt))
        blocks, gen_rows = pipe.sample_blocks([ids_of(prompt)] * k, [negative] * k, shape, ("blueprint",), sampling, gen)
        with torch.inference_mode():
            half = tok.decode(torch.stack([b.blueprint for b in blocks]).to(tok.device)).float().cpu()
        frames = pipe.to_frames(half)
        verdicts = [judge_clip(f, scene, fps=cfg.fps).objects[0] for f in frames]
        # the prompt's wording with each of the world's motions (same rng stream as heldout_items: same style)
        alt = []
        for m in motions:
            rng = _rng(cfg.seed, 1, i)
            sample_scene(rng, world, "heldout")
            s2 = scene.copy()
            s2.objects[0].motion = m
            alt.append(caption(s2, rng, style))
        true_m = motions.index(scene.objects[0].motion)
        prefixes = [ids_of(a) for a in alt] + [empty, negative]
        cands = [[t for t in gen_rows[c] if t not in pipe.tail_ids] for c in range(k)]
        lp = np.array([score_codes(pipe, p, cands) for p in prefixes])  # [prefixes, k]
        for c in range(k):
            by_motion, lp_u, lp_neg = lp[:-2, c], lp[-2, c], lp[-1, c]
            lse = float(np.logaddexp.reduce(by_motion))
            v = verdicts[c]
            rows.append({"item": i, "prompt": prompt, "motion": scene.objects[0].motion, "cand": c,
                         "cond": by_motion[true_m], "pmi": by_motion[true_m] - lp_u, "contrast": by_motion[true_m] - lp_neg,
                         "motion_post": by_motion[true_m] - lse, "drawn_motion": v.motion.observed,
                         "ok_motion": bool(v.motion.passed), "ok_color": bool(v.color.passed),
                         "ok_object": bool(v.passed)})
        mine = [r for r in rows if r["item"] == i]
        print(f"{i + 1}/{len(items)} {time.time() - t0:.0f} s  {prompt!r}: motion ok {sum(r['ok_motion'] for r in mine)}/{k}; "
              f"top by motion_post: {max(mine, key=lambda r: r['motion_post'])['drawn_motion']}", flush=True)
    # the table: top-1 by each score vs the mean candidate and the oracle
    n_items = len(items)
    print(f"\n{n_items} prompts x {args.candidates} blueprint candidates ({time.time() - t0:.0f} s)")
    print(f"{'pick':14s} {'motion':>7s} {'colour':>7s} {'object':>7s}")
    table = {}
    for name in ("random", "cond", "pmi", "contrast", "motion_post", "oracle"):
        got = {"ok_motion": [], "ok_color": [], "ok_object": []}
        for i in range(n_items):
            mine = [r for r in rows if r["item"] == i]
            for a in got:
                if name == "random":
                    got[a].append(np.mean([r[a] for r in mine]))
                elif name == "oracle":
                    got[a].append(float(any(r[a] for r in mine)))
                else:
                    got[a].append(float(max(mine, key=lambda r: r[name])[a]))
        table[name] = {a: float(np.mean(v)) for a, v in got.items()}
        print(f"{name:14s} " + " ".join(f"{table[name][a]:7.2f}" for a in ("ok_motion", "ok_color", "ok_object")))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "table": table, "rows": rows}, f, indent=1)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from pathlib import Path

    from vidgpt.errors import run_tool

    run_tool(main, Path(__file__).name)
