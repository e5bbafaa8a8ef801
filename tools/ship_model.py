"""Turn a training run (or one of its checkpoints) into the repository's shipped model form.

    python tools/ship_model.py runs/lm9/fast --out model --world-set max_objects=1
    python tools/ship_model.py runs/lm9/fast/checkpoints/step-0000475 --out model   # a cut run

The shipped form is a vidgpt model directory in delta form on the embedded backbone (docs/CONTRACTS.md):
new_rows.safetensors + adapter/ in bfloat16 (the training keeps fp32; on the default model the cast moved
logits by at most 0.1 on a scale of 26), the
text tokenizer files and vidgpt.json. The video tokenizer is NOT copied when the repository's own `tokenizer/`
makes the same codes (same encoder fingerprint): vidgpt.json then names it by a relative path, so the model
stays small and follows a decoder-only upgrade of tokenizer/. vidgpt.json also records the clip size the
model was trained at (`default_clip`, what `vidgpt generate` draws unless told), the world it covers
(`scope`: the --world-set overrides the training data was built with) and where it came from (`trained`).

The run's config.yaml builds the model (same code path as training); the weights come from the run's newest
checkpoint, a named checkpoint, or its final model/ (vidgpt.train.lm_init.init_from). The tool then loads
the shipped directory back with `load_vidgpt_lm` and prints the largest logit difference against
the fp32 weights on a fixed prompt, and the size of each file. The directory is replaced whole (its README.md card
and motion_verifier.safetensors kept), so an int8 calibration (int8_maxima.safetensors) has to be made again for the new weights.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERIFIER_FILE = "motion_verifier.safetensors"  # vidgpt.verifier.FILE (kept when the directory is replaced)


def _run_dir(source: Path) -> Path:
    """The run directory (holding config.yaml) of a run dir, a checkpoint or a run's model/."""
    for d in (source, *source.parents):
        if (d / "config.yaml").is_file():
            return d
    raise SystemExit(f"{source}: no config.yaml in it or above it (not a `vidgpt lm train` run)")


def _to_bf16(path: Path) -> None:
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    save_file(tensors, str(path), metadata=meta)


def _rows_into_new_rows(d: Path) -> None:
    """Move the trained rows out of the adapter into new_rows.safetensors (one copy instead of two).

    peft's trainable tokens store the trained rows themselves (index_copy over the base rows), and the trainer's
    delta save writes the base rows as new_rows.safetensors next to them. The shipped form keeps the trained
    rows in new_rows.safetensors and an adapter of LoRA matrices only: the same model, 19 MB smaller.
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    adapter = d / "adapter" / "adapter_model.safetensors"
    config = d / "adapter" / "adapter_config.json"
    if not adapter.is_file():
        return
    with safe_open(str(adapter), "pt") as f:
        meta_a = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    keys = [k for k in tensors if k.endswith("trainable_tokens_delta")]
    if not keys:
        return
    cfg = json.loads(config.read_text())
    indices = cfg.get("trainable_token_indices") or {}
    with safe_open(str(d / "new_rows.safetensors"), "pt") as f:
        meta_r = f.metadata()
        rows = {k: f.get_tensor(k) for k in f.keys()}
    offset = int(meta_r["offset"])
    idx = torch.tensor(indices.get("embed_tokens") or next(iter(indices.values())))
    for k in keys:
        target = "lm_head" if ".lm_head." in k and "lm_head" in rows else "embed_tokens"  # untied heads: own rows
        values = tensors.pop(k)
        if values.shape[0] != len(idx):
            raise SystemExit(f"{adapter}: {k} holds {values.shape[0]} rows, the adapter config names {len(idx)}")
        rows[target][idx - offset] = values.to(rows[target].dtype)
    save_file({k: v.contiguous() for k, v in rows.items()}, str(d / "new_rows.safetensors"), metadata=meta_r)
    save_file(tensors, str(adapter), metadata=meta_a)
    cfg["trainable_token_indices"] = None
    config.write_text(json.dumps(cfg, indent=2) + "\n")


def ship(source: Path, out: Path, world_set: list[str], tokenizer_dir: Path | None, note: str = "",
         status: str = "", contrast_motion: bool = False, copy_gain: float | None = None,
         best_of: int | None = None, fine_temperature: float | None = None) -> dict:
    import torch

    from vidgpt.backbone import save_vidgpt_lm
    from vidgpt.config import load_config
    from vidgpt.tokenizer import VideoTokenizer
    from vidgpt.train.lm_init import init_from, resolve_source
    from vidgpt.train.lm_trainer import LMTrainConfig, build_lm

    run = _run_dir(source)
    cfg = load_config(LMTrainConfig, run / "config.yaml")
    lm, _ = build_lm(cfg, torch.device("cpu"), None)
    kind, src = resolve_source(source)
    info = init_from(lm, src, cfg)
    lm.model.eval()

    meta = lm.meta
    meta["scope"] = {"world_set": list(world_set)}
    if contrast_motion:  # generation guides away from the prompt with its motion reversed (VidGPT.default_negative)
        meta["contrast_motion"] = True
    else:
        meta.pop("contrast_motion", None)
    if copy_gain is not None:  # the copy read-out's tilt at sampling time (VidGPT, vidgpt.copy_readout)
        meta["copy_gain"] = float(copy_gain)
    else:
        meta.pop("copy_gain", None)
    if best_of is not None and best_of > 1:  # blueprints the motion verifier picks from (vidgpt.verifier)
        if not (out / VERIFIER_FILE).is_file():
            raise SystemExit(f"--best-of {best_of}: {out} has no {VERIFIER_FILE} to keep "
                             "(make one first: tools/train_verifier.py --out DIR)")
        meta["best_of"] = int(best_of)
    else:
        meta.pop("best_of", None)
    if fine_temperature is not None:  # the fine section drawn after the blueprint at its own temperature (VidGPT)
        meta["fine_temperature"] = float(fine_temperature)
    else:
        meta.pop("fine_temperature", None)
    if status:
        meta["status"] = status  # printed by `vidgpt generate` / `chat` at load (e.g. a model still in training)
    else:
        meta.pop("status", None)
    meta["trained"] = {"run": str(run.relative_to(ROOT) if run.is_relative_to(ROOT) else run), "from": kind,
                       "step": info.get("step"), "note": note}
    # the video tokenizer: reference the repo's own when it makes the same codes, else copy it
    own = tokenizer_dir or ROOT / "tokenizer"
    used = Path(lm.video_tokenizer_dir) if lm.video_tokenizer_dir else None
    reference = False
    if used is not None and own.is_dir():
        a = VideoTokenizer.from_pretrained(used, device="cpu")
        b = a if used.resolve() == own.resolve() else VideoTokenizer.from_pretrained(own, device="cpu")
        fp = getattr(a, "encoder_fingerprint", a.weights_fingerprint)
        reference = fp() == getattr(b, "encoder_fingerprint", b.weights_fingerprint)()
    if reference:
        lm.video_tokenizer_dir = None  # not copied; vidgpt.json names it
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ship-", dir=out.parent))
    try:
        staged = tmp / "model"
        save_vidgpt_lm(lm, staged, form="delta")
        m = json.loads((staged / "vidgpt.json").read_text())
        if reference:
            m["video_tokenizer"] = os.path.relpath(own.resolve(), out)
        (staged / "vidgpt.json").write_text(json.dumps(m, indent=2) + "\n")
        _rows_into_new_rows(staged)
        for f in staged.rglob("*.safetensors"):
            _to_bf16(f)
        if out.exists():
            for kept in ("README.md", VERIFIER_FILE):  # the hand-written card; the motion verifier (it reads the
                if (out / kept).is_file():            # tokenizer's codes, not the LM: valid for any LM piece)
                    shutil.copy2(out / kept, staged / kept)
            shutil.rmtree(out)
        os.replace(staged, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"run": str(run), "kind": kind, "source": str(src), "reference_tokenizer": reference,
            "fp32_model": lm}


def check(out: Path, fp32_lm, prompt: str = "a red circle moving right") -> dict:
    """Load the shipped dir back; largest |logit| difference vs the fp32 weights on a fixed prompt."""
    import torch

    from vidgpt.backbone import load_vidgpt_lm, merge_lora

    shipped = load_vidgpt_lm(out)
    meta = json.loads((out / "vidgpt.json").read_text())
    ref = meta.get("video_tokenizer")
    if ref and ref != "video_tokenizer" and not (out / ref).is_dir():  # a reference to the repo's tokenizer/
        raise SystemExit(f"{out}: vidgpt.json names video tokenizer {meta['video_tokenizer']}, not a directory")
    merge_lora(fp32_lm)
    ids = torch.tensor([shipped.text_tokenizer(prompt)["input_ids"]])
    with torch.no_grad():
        a = shipped.model(input_ids=ids).logits.float()
        b = fp32_lm.model.eval()(input_ids=ids).logits.float()
    sizes = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    return {"max_logit_diff": float((a - b).abs().max()), "logit_scale": float(b.abs().max()),
            "default_clip": meta.get("default_clip"), "bytes": sum(sizes.values()), "files": sizes}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="a run dir (newest checkpoint, else model/), a checkpoint dir, or a run's model/")
    ap.add_argument("--out", default=str(ROOT / "model"), help="the shipped model directory (default: model/)")
    ap.add_argument("--world-set", action="append", default=[], metavar="KEY=VALUE",
                    help="the world overrides the training data was built with (recorded as vidgpt.json scope)")
    ap.add_argument("--tokenizer", default=None, help="the repo's video tokenizer dir to reference (default tokenizer/)")
    ap.add_argument("--note", default="", help="a line recorded in vidgpt.json trained.note")
    ap.add_argument("--status", default="", help="a line users see when they load the model (vidgpt.json status), "
                    "e.g. that it does not follow prompts yet")
    ap.add_argument("--contrast-motion", action="store_true",
                    help="record vidgpt.json contrast_motion: generation without a negative prompt guides away from the "
                         "prompt with its motion reversed (measure it first: tools/judge_sections.py --negative)")
    ap.add_argument("--copy-gain", type=float, default=None,
                    help="record vidgpt.json copy_gain: the copy read-out's tilt gain at sampling time instead of the "
                         "trained one (a model with model.copy_readout_form: tilt; measure it first)")
    ap.add_argument("--best-of", type=int, default=None, metavar="N",
                    help="record vidgpt.json best_of: N blueprints drawn for a prompt that names a direction, the "
                         "motion verifier's pick kept (the out dir's motion_verifier.safetensors is kept; measure it "
                         "first: tools/judge_sections.py --best-of)")
    ap.add_argument("--fine-temperature", type=float, default=None, metavar="T",
                    help="record vidgpt.json fine_temperature: the fine section drawn after the blueprint at "
                         "temperature T (measure it first: tools/judge_sections.py --fine-temperature)")
    args = ap.parse_args(argv)
    if args.fine_temperature is not None and not (math.isfinite(args.fine_temperature) and args.fine_temperature >= 0):
        ap.error(f"--fine-temperature {args.fine_temperature}: a finite number >= 0")
    if args.best_of is not None and args.best_of < 1:
        ap.error(f"--best-of {args.best_of}: an integer >= 1")
    if args.copy_gain is not None and not math.isfinite(args.copy_gain):
        ap.error(f"--copy-gain {args.copy_gain}: a finite number")
    res = ship(Path(args.source), Path(args.out), args.world_set, Path(args.tokenizer) if args.tokenizer else None,
               args.note, args.status, args.contrast_motion, args.copy_gain, args.best_of,
               args.fine_temperature)
    rep = check(Path(args.out), res.pop("fp32_model"))
    print(json.dumps({**res, **rep}, indent=1, default=str))
    print(f"note: {args.out} has no int8 calibration now; for `--int8-weights` run "
          f"`python tools/calibrate_int8.py --model {args.out}` (~3 min)", file=sys.stderr)
    if rep["bytes"] > 50 * 2**20:
        print(f"warning: {args.out} holds {rep['bytes'] / 2**20:.1f} MB, over the 50 MB the repo allows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from vidgpt.errors import run_tool

    run_tool(main, Path(__file__).name)
