#!/usr/bin/env python3
"""How well does a motion verifier pick among the blueprints the model really draws?

`build` samples K blueprints for each of n held-out prompts that name a straight direction (as `vidgpt generate`
draws them: the model's guidance, default negative and copy gain, one batch a prompt), judges every decoded preview
against its scene (vidgpt.data.judge) and saves the codes with the verdicts. `score` then prints, for one or more
verifiers (model directories with a motion_verifier.safetensors), how often the candidate each one keeps passes:
motion, colour and the whole object, beside the mean candidate (one blueprint, what best_of 1 gets) and the oracle
(any of the K passes). Scoring takes seconds, so verifier variants are compared on the same candidates.

Use a seed other than the one of the final measurement (tools/judge_sections.py, seed 0): the candidates are for
choosing among verifiers, and the held-out prompts of seed 0 stay the judge's. `build --split train` draws the
candidates for prompts of training compositions instead, with what the judge saw each do: examples for
`tools/train_verifier.py --candidates` (a verifier that learns from the model's own blueprints).

    OMP_NUM_THREADS=1 python tools/verifier_candidates.py build model --n 60 --candidates 8 --seed 7 \\
        --set max_objects=1 --set 'backgrounds=[solid]' --set 'motions=[left,right,up,down]' --set duration=2.125 \\
        --out runs/verifier_candidates.pt
    python tools/verifier_candidates.py score runs/verifier_candidates.pt model runs/verifier_v2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

FLAGS = ("motion", "colour", "object")


def build(args) -> int:
    import torch

    from vidgpt.data.judge import judge_clip
    from vidgpt.data.motion_words import named_direction
    from vidgpt.evaluate import EvalConfig, _sampling, heldout_items
    from vidgpt.generate.pipeline import VidGPT
    from vidgpt.generate.sampling import make_generator
    from vidgpt.layout import Sample, Turn

    pipe = VidGPT.from_pretrained(args.model, decode_options={"best_of": 1})
    cfg = EvalConfig(n=args.n, frames=args.frames, size=args.size, world_set=args.world_set, seed=args.seed)
    items = [it for it in heldout_items(cfg, cfg.world(), split=args.split) if named_direction(it[2]) is not None]
    shape = pipe.latent_shape(cfg.frames, cfg.size, cfg.size)
    sampling = _sampling(cfg)
    gen = make_generator(args.seed, pipe.device)
    tok = pipe.video_tokenizer
    ids_of = lambda text: pipe.layout.prompt_ids(Sample([Turn("user", [text])]))  # noqa: E731
    k = args.candidates
    codes, verdicts, observed, prompts, directions = [], [], [], [], []
    t0 = time.time()
    for i, (scene, _, prompt) in enumerate(items):
        blocks, _ = pipe.sample_blocks([ids_of(prompt)] * k, [ids_of(pipe.default_negative(prompt))] * k, shape,
                                       ("blueprint",), sampling, gen)
        bp = torch.stack([b.blueprint for b in blocks]).cpu()
        with torch.inference_mode():
            frames = pipe.to_frames(tok.decode(bp.to(tok.device)).float().cpu())
        v = [judge_clip(f, scene, fps=cfg.fps).objects[0] for f in frames]
        codes.append(bp)
        verdicts.append([[bool(o.motion.passed), bool(o.color.passed), bool(o.passed)] for o in v])
        observed.append([o.motion.observed for o in v])  # the judge's motion name (None: not tracked)
        prompts.append(prompt)
        directions.append(named_direction(prompt))
        print(f"{i + 1}/{len(items)} {time.time() - t0:.0f} s {prompt!r}: motion right in "
              f"{sum(x[0] for x in verdicts[-1])}/{k}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"codes": torch.stack(codes), "verdicts": torch.tensor(verdicts), "observed": observed,
                "prompts": prompts, "directions": directions, "split": args.split, "args": vars(args)}, out)
    print(out)
    return 0


def pick_table(data: dict, pickers: dict) -> dict:
    """{name: {flag: share of prompts whose kept candidate passes}} for the mean candidate, each picker
    (codes [K, T, h, w], direction -> scores [K]) and the oracle."""
    import torch

    v = data["verdicts"].float()  # [n, K, 3]
    table = {"one blueprint (mean)": v.mean(1).mean(0).tolist()}
    for name, score in pickers.items():
        kept = []
        for codes, d, verdict in zip(data["codes"], data["directions"], v):
            kept.append(verdict[int(torch.argmax(score(codes, d)))])
        table[name] = torch.stack(kept).mean(0).tolist()
    table["oracle (any of K)"] = v.amax(1).mean(0).tolist()
    return {name: dict(zip(FLAGS, row)) for name, row in table.items()}


def score(args) -> int:
    import torch

    from vidgpt.errors import ConfigError
    from vidgpt.verifier import load_verifier

    data = torch.load(args.candidates_file)
    pickers = {}
    for d in args.verifiers:
        v = load_verifier(d)
        if v is None:
            raise ConfigError(f"{d}: no motion_verifier.safetensors")
        pickers[str(d)] = v.log_prob
    n, k = data["verdicts"].shape[:2]
    print(f"{n} prompts x {k} candidates ({args.candidates_file}); share of prompts whose kept blueprint passes")
    print(f"| pick | {' | '.join(FLAGS)} |\n|---|---|---|---|")
    for name, row in pick_table(data, pickers).items():
        print(f"| {name} | " + " | ".join(f"{row[f]:.2f}" for f in FLAGS) + " |")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="sample and judge the candidates")
    b.add_argument("model")
    b.add_argument("--n", type=int, default=60, help="prompts (those naming a straight direction are kept)")
    b.add_argument("--candidates", type=int, default=8, help="blueprints sampled per prompt (one batch)")
    b.add_argument("--frames", type=int, default=9)
    b.add_argument("--size", type=int, default=128)
    b.add_argument("--set", dest="world_set", action="append", default=[], metavar="KEY=VALUE")
    b.add_argument("--seed", type=int, default=7)
    b.add_argument("--split", choices=["heldout", "train"], default="heldout",
                   help="held-out compositions (to compare verifiers) or training ones (examples for "
                        "tools/train_verifier.py --candidates)")
    b.add_argument("--out", required=True)
    s = sub.add_parser("score", help="how often each verifier's pick passes")
    s.add_argument("candidates_file")
    s.add_argument("verifiers", nargs="+", help="model directories holding a motion_verifier.safetensors")
    args = ap.parse_args(argv)
    if args.cmd == "build" and (args.n < 1 or args.candidates < 1):
        from vidgpt.errors import ConfigError

        raise ConfigError(f"--n {args.n} / --candidates {args.candidates}: both >= 1")
    return build(args) if args.cmd == "build" else score(args)


if __name__ == "__main__":
    from vidgpt.errors import run_tool

    run_tool(main, Path(__file__).name)
