"""`vidgpt eval model`: measure a trained vidgpt model (vidgpt.evaluate)."""

from __future__ import annotations

from ..cli import add_group

MODEL_HELP = (
    "Measure a vidgpt model with the rule-based judge: prompt adherence on held-out compositions (colour, shape, "
    "motion, all three; full clip and blueprint preview at half size), the same on free-form prompts (other word "
    "orders, synonyms, a background named or not) of the same scenes, instruction edits (colour, motion, add, "
    "remove: edited thing right, rest kept), continuation (judge + seam PSNR) and language kept (perplexity of a "
    "held-out English text under the base backbone and the trained model, greedy answers before/after). Scenes "
    "come from the world config (--world-config, --set KEY=VALUE as for `vidgpt data build-lm`). Prints a "
    "markdown table; writes OUT/report.md, OUT/report.json and OUT/samples.png (generated clips with prompts)."
)


def register(sub) -> None:
    g = add_group(sub, "eval", "measure a trained vidgpt model")
    p = g.add_parser("model", help="judge generations, edits, continuations and language of a model", description=MODEL_HELP)
    p.add_argument("--model", help="vidgpt model directory (default: $VIDGPT_MODEL or the shipped model/)")
    p.add_argument("--n", type=int, default=50, help="held-out prompts (default 50)")
    p.add_argument("--freeform", type=int, default=-1,
                   help="free-form prompts (other word orders, synonyms) of the first held-out scenes (default n/2; 0 = skip)")
    p.add_argument("--edits", type=int, default=-1, help="edit pairs (default n/2; 0 = skip)")
    p.add_argument("--continuations", type=int, default=-1, help="continuations (default n/5; 0 = skip)")
    p.add_argument("--edit-kinds", default="color,motion,add,remove", metavar="KINDS",
                   help="the kinds of edit pair, taken in turn, comma-separated, from color, shape, motion, add, remove, "
                        "background (default color,motion,add,remove)")
    p.add_argument("--edit-split", choices=["train", "heldout"], default="train",
                   help="edits that make training-like compositions (default) or held-out ones")
    p.add_argument("--seed", type=int, default=0, help="seed of scenes and sampling (default 0)")
    p.add_argument("--frames", type=int, help="frames per clip (default: the model's default clip, else 17)")
    p.add_argument("--size", type=int,
                   help="height = width, a multiple of 16 (default: the model's default clip when square, else 128)")
    p.add_argument("--cfg", type=float, default=3.0, help="classifier-free guidance scale (default 3.0; 1 = off)")
    p.add_argument("--negative", choices=["default", "empty"], default="default",
                   help="text-to-video guidance's negative prompt: default = what `vidgpt generate` uses on this model "
                        "(the prompt with its motion reversed on a model that contrasts motion), empty = the empty prompt")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    p.add_argument("--top-k", type=int, help="top-k sampling")
    p.add_argument("--batch-size", type=int, default=8, help="samples per decode call (default 8)")
    p.add_argument("--no-language", action="store_true", help="skip the perplexity and text answers")
    p.add_argument("--world-config", default="", metavar="YAML",
                   help="world config the scenes come from (default: built-in, as for `vidgpt data build-lm --config`)")
    p.add_argument("--set", dest="world_set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a world config value, as for `vidgpt data build-lm --set` (repeatable), e.g. "
                        "max_objects=1 to draw held-out prompts, edit pairs and continuations from one-object scenes "
                        "(default, with no --world-config either: the model's own scope, vidgpt.json scope.world_set)")
    p.add_argument("--device", default="", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--out", help="output directory (default runs/eval/<model folder name>)")
    p.add_argument("--json", action="store_true", help="print report.json instead of the markdown table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_model)


def _model(args) -> int:
    import json
    import sys
    from pathlib import Path

    from ..evaluate import EvalConfig, evaluate_model, markdown_report, model_scope
    from ..generate import VidGPT
    from ..generate.pipeline import resolve_model_dir

    model_dir = resolve_model_dir(args.model)
    if not args.world_set and not args.world_config:  # judge the model on the scenes it was trained for
        args.world_set = model_scope(model_dir)
        if args.world_set:
            print(f"vidgpt: note: scenes from the model's scope ({', '.join(args.world_set)}); "
                  "--set or --world-config to choose others", file=sys.stderr)
    cfg = EvalConfig(n=args.n, freeform=args.freeform, edits=args.edits, continuations=args.continuations,
                     frames=args.frames or 17, size=args.size or 128, cfg=args.cfg, negative=args.negative,
                     temperature=args.temperature, top_k=args.top_k, seed=args.seed,
                     batch_size=args.batch_size, edit_split=args.edit_split, language=not args.no_language,
                     edit_kinds=[k.strip() for k in args.edit_kinds.split(",")],
                     world_config=args.world_config, world_set=list(args.world_set))
    cfg.resolved()  # bad counts or edit kinds fail here, before the model loads
    world = cfg.world()  # a bad --set fails here, before the model loads
    pipe = VidGPT.from_pretrained(model_dir, device=args.device or None)
    frames, height, width = getattr(pipe, "default_clip", (17, 128, 128))  # what the model was trained on
    cfg.frames = args.frames or frames
    cfg.size = args.size or (height if height == width else 128)
    out = Path(args.out) if args.out else Path("runs/eval") / model_dir.resolve().name
    rep = evaluate_model(model_dir, cfg, out=out, progress=not args.no_progress, pipe=pipe, world=world)
    if args.json:
        print(json.dumps({k: v for k, v in rep.items()}, default=str))
    else:
        print(markdown_report(rep))
    return 0
