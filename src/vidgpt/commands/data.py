"""`vidgpt data ...`: make and check training data.

Each subcommand is one `_add_<name>(group)` function that builds its parser and points it at
its handler; `SUBCOMMANDS` lists them in `--help` order. To add one, write the function and
append it there.
"""

from __future__ import annotations

from ..cli import add_group
from ..utils import progress_wanted

JUDGED_FAIL = 3  # exit status of `vidgpt data check` when the clip does not match its scene


def register(sub) -> None:
    g = add_group(sub, "data", "make and check training data (synthetic clips, edit pairs, judging)")
    for add in SUBCOMMANDS:
        add(g)
    from .data_pipeline import register_pipeline_commands  # ingest, recaption, stats

    register_pipeline_commands(g)
    try:  # build-lm (vidgpt.data.lm_dataset)
        from .data_lm import register_lm_data_commands
    except ModuleNotFoundError:
        return
    register_lm_data_commands(g)


# ---------------------------------------------------------------------------------------------
# vidgpt data synth


def _add_synth(g) -> None:
    p = g.add_parser(
        "synth",
        help="render synthetic clips with scenes, captions and edit pairs",
        description="Render N synthetic clips (mp4; png when --frames 1) and K edit pairs into OUT, with a JSONL manifest "
        "OUT/manifest.jsonl: one record per clip {path, caption, captions, scene, split, kind: video|image} and per edit "
        "pair {path (target), source_path, instruction, edit_kind, scene, source_scene, caption, captions, split, kind: edit}. "
        "Paths are relative to OUT. Clip i depends only on (seed, i), so runs are reproducible.",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--num", type=int, default=100, help="number of clips (default 100)")
    p.add_argument("--edits", type=int, default=0, help="number of edit pairs in addition (default 0)")
    p.add_argument("--frames", type=int, default=17, help="frames per clip (default 17; 1 = images)")
    p.add_argument("--height", type=int, default=128, help="frame height (default 128)")
    p.add_argument("--width", type=int, default=128, help="frame width (default 128)")
    p.add_argument("--fps", type=float, default=8.0, help="frames per second (default 8)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--split", choices=["train", "heldout"], default="train", help="train never holds the held-out combinations; heldout holds only them")
    p.add_argument("--config", help="world config YAML (default: built-in, same as configs/data/world.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a world config value, e.g. --set max_objects=2")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_synth)


def _synth(args) -> int:
    import json
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    from ..config import save_config
    from ..errors import DataError
    from ..utils import atomic_path
    from ..data.synthetic import captions, load_world_config, make_edit_pair, render_scene, sample_scene
    from ..data.video_io import save_contact_sheet, write_video

    if args.num < 0 or args.edits < 0 or args.num + args.edits == 0:
        raise DataError(f"synth: nothing to do (--num {args.num}, --edits {args.edits})")
    if args.frames < 1 or args.height < 8 or args.width < 8 or args.fps <= 0:
        raise DataError(f"synth: bad clip size {args.frames}x{args.height}x{args.width} at {args.fps} fps")
    config = load_world_config(args.config, args.overrides, frames=args.frames, fps=args.fps)  # moves within the clip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    image = args.frames == 1
    ext = ".png" if image else ".mp4"
    size = dict(frames=args.frames, height=args.height, width=args.width, fps=args.fps)

    def render(scene):
        return render_scene(scene, args.frames, args.height, args.width, args.fps)

    records, first = [], None
    bar = tqdm(total=args.num + args.edits, desc="synth", unit="clip", disable=not progress_wanted(not args.no_progress))
    for i in range(args.num):
        rng = np.random.default_rng([args.seed, 0, i])
        scene = sample_scene(rng, config, args.split)
        frames = render(scene)
        first = frames if first is None else first
        rel = f"clips/{args.split}_{i:06d}{ext}"
        write_video(out / rel, frames, args.fps)
        texts = captions(scene, rng, image=image)
        records.append({"path": rel, "caption": texts[-1], "captions": texts, "scene": scene.to_dict(),
                        "split": args.split, "kind": "image" if image else "video", **size})
        bar.update(1)
    for j in range(args.edits):
        rng = np.random.default_rng([args.seed, 1, j])
        source, target, instruction, kind = make_edit_pair(rng, sample_scene(rng, config, args.split), config=config, split=args.split)
        src_rel, tgt_rel = f"edits/{args.split}_{j:06d}_source{ext}", f"edits/{args.split}_{j:06d}_target{ext}"
        write_video(out / src_rel, render(source), args.fps)
        write_video(out / tgt_rel, render(target), args.fps)
        texts = captions(target, rng, image=image)
        records.append({"path": tgt_rel, "source_path": src_rel, "instruction": instruction, "edit_kind": kind,
                        "caption": texts[-1], "captions": texts, "scene": target.to_dict(), "source_scene": source.to_dict(),
                        "split": args.split, "kind": "edit", **size})
        bar.update(1)
    bar.close()

    manifest = out / "manifest.jsonl"
    with atomic_path(manifest) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    save_config(config, out / "world.yaml")
    print(f"wrote {args.num} clips and {args.edits} edit pairs ({args.split}) to {out}; manifest {manifest}")
    if first is not None:
        sheet = save_contact_sheet(out / "preview.png", first, cols=min(len(first), 9))
        print(f"first clip's frames: {sheet}")
    return 0


# ---------------------------------------------------------------------------------------------
# vidgpt data check


def _add_check(g) -> None:
    p = g.add_parser(
        "check",
        help="judge whether a clip shows its scene (colour, shape, motion)",
        description="Rule-based check of a clip against its scene description: per object, is the colour there, "
        "is the shape right, is the motion right; no unexpected objects. Exit 0 = pass, 3 = judged fail, 1 = error.",
    )
    p.add_argument("clip", metavar="CLIP", help="video/image file (or .npy array uint8 [T,H,W,3])")
    p.add_argument("--scene", required=True, help="scene JSON: a file or the JSON text (a manifest record with a 'scene' key works too)")
    p.add_argument("--fps", type=float, help="clip frame rate for motion speeds (default: the manifest record's, else 8)")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    p.set_defaults(func=_check)


def _load_scene_arg(value: str) -> tuple[dict, float | None]:
    """(scene dict, fps from a manifest record or None) from a file path or JSON text."""
    import json
    from pathlib import Path

    from ..errors import DataError

    text, where = value, "--scene"
    if not value.lstrip().startswith("{"):
        p = Path(value)
        if not p.is_file():
            raise DataError(f"--scene {value}: no such file, and not JSON text")
        try:
            text, where = p.read_text(), str(p)
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{p}: cannot read ({e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(data).__name__}")
    if isinstance(data.get("scene"), dict):
        return data["scene"], data.get("fps")
    return data, None


def _read_clip(path: str):
    from pathlib import Path

    import numpy as np

    from ..errors import VideoReadError

    p = Path(path)
    if p.suffix.lower() == ".npy":
        try:
            frames = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise VideoReadError(f"{p}: cannot read ({' '.join(str(e).split())})") from None
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise VideoReadError(f"{p}: expected uint8 [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
        return frames
    from ..data.video_io import read_video

    return read_video(p)


def _check(args) -> int:
    import json

    from ..data.judge import judge_clip
    from ..data.synthetic import Scene

    scene_dict, record_fps = _load_scene_arg(args.scene)
    scene = Scene.from_dict(scene_dict)
    frames = _read_clip(args.clip)
    result = judge_clip(frames, scene, fps=args.fps or record_fps or 8.0)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(result.summary())
    return 0 if result.passed else JUDGED_FAIL


SUBCOMMANDS = [_add_synth, _add_check]
