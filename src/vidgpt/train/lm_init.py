"""Start a new LM training piece from trained weights: `train.init_from: DIR` (vidgpt.train.lm_trainer).

The new run builds its model from its own config as usual (backbone + new rows + LoRA), then takes the
weights of DIR; the optimizer, the schedule and the step start fresh (a resumed run, `--resume`, keeps them).
DIR may be:

- a vidgpt model directory in delta form (`train.save_form: delta`: new_rows.safetensors + adapter/ on the
  embedded base): the new rows go into the base's embedding rows and the adapter's tensors (LoRA matrices
  and the trained new rows) into the run's LoRA, so the new run saves a valid delta on the same base again;
- a vidgpt model directory in full form, for a run without LoRA (full finetuning);
- a run checkpoint (`OUT/checkpoints/step-N/`, from `vidgpt lm train`), or a run directory (its newest
  checkpoint, else its model/).

The source must match the config: same vocabulary, same base, and for LoRA the same r and alpha. The config's
adapter may cover more modules than the source's (e.g. `lora.layers_from: 0` after a piece on layers 20-29):
the source's LoRA tensors go where they were, the others start fresh (B = 0, so the function is the source's)
and `info["widened"]` counts them. Anything else (another r, fewer modules) is a ConfigError naming DIR and
the difference.

`train.init_rows: fresh` takes everything but the visual code rows: those (input and head rows of every visual id,
their trainable deltas, the bit rows' A) keep this run's own init (`model.row_init` from this run's tokenizer), while
the text rows, the structure tokens' rows and the adapter come from DIR. For a run on another video tokenizer with
the same K, whose codes mean other things: what DIR learnt about captions, layout and English carries over, the
old codes' meanings do not.

    info = init_from(lm, "runs/lm9/fast/model", cfg)   # lm from lm_trainer.build_lm(cfg, ...)
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..copy_readout import COPY_FORMS, COPY_KEYS
from ..parent_hint import CAPTION_KEY, CENTER_KEY, PREV_KEY, SCALE_KEY

LORA_KEYS = ("r", "lora_alpha", "use_rslora", "use_dora")
WEIGHT_FILES = ("pytorch_model.bin", "model.safetensors")


def resolve_source(path: str | Path) -> tuple[str, Path]:
    """("model" | "checkpoint", directory) of what `path` names."""
    d = Path(path)
    where = f"train.init_from={d}"
    if not d.is_dir():
        raise ConfigError(f"{where}: no such directory")
    if (d / "vidgpt.json").is_file():
        return "model", d
    if (d / "trainer_state.json").is_file():
        return "checkpoint", d
    root = d / "checkpoints"
    ckpts = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-")) if root.is_dir() else []
    if ckpts:
        return "checkpoint", ckpts[-1]
    if (d / "model" / "vidgpt.json").is_file():
        return "model", d / "model"
    raise ConfigError(f"{where}: neither a vidgpt model directory (vidgpt.json), a run checkpoint "
                      "(trainer_state.json) nor a run directory (checkpoints/step-* or model/)")


def checkpoint_state(ckpt: Path) -> dict:
    """The model state dict an accelerate checkpoint of `vidgpt lm train` holds (read only, on the CPU)."""
    import torch

    for name in WEIGHT_FILES:
        f = ckpt / name
        if f.is_file():
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                return load_file(str(f))
            try:
                return torch.load(f, map_location="cpu", weights_only=True, mmap=True)  # read lazily, no copy
            except Exception as e:
                raise ConfigError(f"{f}: cannot read the checkpoint weights ({str(e).splitlines()[0]})") from e
    if any(p.name.startswith("pytorch_model_fsdp") for p in ckpt.iterdir()):
        raise ConfigError(f"{ckpt}: a sharded FSDP checkpoint; start from the run's model/ directory instead")
    raise ConfigError(f"{ckpt}: no model weights ({' or '.join(WEIGHT_FILES)})")


def load_checkpoint_weights(model, ckpt: Path, where: str) -> int:
    """Copy a checkpoint's model state into `model` (built from the same config); ConfigError on any mismatch.

    Returns how many LoRA tensors of `model` the checkpoint did not have (a widened adapter; they keep their init).
    """
    state = dict(checkpoint_state(ckpt))
    own = model.state_dict()
    _match_bit_rows(state, own, where)
    _match_parent_hint(state, own, where)
    for k in own:  # a module the source had no LoRA on holds its weight as `X.weight`, here `X.base_layer.weight`
        plain = k.replace(".base_layer.", ".")
        if ".base_layer." in k and k not in state and plain in state and plain not in own:
            state[k] = state.pop(plain)
    fresh = _check_tensors(where, state, {k: tuple(v.shape) for k, v in own.items()})
    model.load_state_dict(state, strict=not fresh)
    return len(fresh)


def _match_zero_start(state: dict, own: dict, where: str, attr: str, option: str, what: str) -> None:
    """Tensors of the module `attr` that start at zero (their function unchanged): a run with `option` may start from
    weights without them (they start at zero), and the other way round when the source's are zero (dropped); a
    non-zero source tensor without the option is a ConfigError (`what` it holds would be lost)."""
    for k in [k for k in state if f"{attr}." in k and k not in own]:
        if bool(state[k].any()):
            raise ConfigError(f"{where}: {k} {what} (non-zero); set {option}: true")
        del state[k]
    for k in [k for k in own if f"{attr}." in k and k not in state]:
        state[k] = own[k].detach().clone().zero_()


def _match_bit_rows(state: dict, own: dict, where: str) -> None:
    """Checkpoints hold their bit rows folded (vidgpt.train.bit_rows: A = 0), so a run with `model.bit_rows`
    may start from one without, and the other way round."""
    from .bit_rows import ATTR

    _match_zero_start(state, own, where, ATTR, "model.bit_rows", "is not folded into the rows")


# the parent hint module's optional projections: what each is, the option that makes it
HINT_OPTIONS = {PREV_KEY: ("previous-frame hint", "model.prev_frame_hint"), CAPTION_KEY: ("caption hint", "model.caption_hint"),
                **{k: ("copy read-out", "model.copy_readout") for k in COPY_KEYS}}


def _match_parent_hint(state: dict, own: dict, where: str) -> None:
    """A run with `model.parent_hint` may start from weights without one (P starts at zero: the same function); the
    same for the previous-frame projections Q (`model.prev_frame_hint`), the caption projection R
    (`model.caption_hint`) and the copy read-out's G and b (`model.copy_readout`)."""
    from ..parent_hint import ATTR

    _same_copy_form({k.rsplit(".", 1)[-1] for k in state if f"{ATTR}." in k},
                    {k.rsplit(".", 1)[-1] for k in own if f"{ATTR}." in k}, where)
    for key, (what, option) in HINT_OPTIONS.items():
        for k in [k for k in state if k.endswith(f"{ATTR}.{key}") and k not in own]:
            if bool(state[k].any()):
                raise ConfigError(f"{where}: {k} is a trained {what} (non-zero); set {option}: true")
            del state[k]
    # the caption window's centre goes with R: dropped with it, else as it was; a read-out the source lacks starts as
    # this run's own (its mix is not zero)
    for key in (CENTER_KEY, SCALE_KEY, *COPY_KEYS):
        for k in [k for k in state if k.endswith(f"{ATTR}.{key}") and k not in own]:
            del state[k]
        for k in [k for k in own if k.endswith(f"{ATTR}.{key}") and k not in state]:
            state[k] = own[k].detach().clone()  # a source without a centre: the plain mean (0, 1)
    _match_zero_start(state, own, where, ATTR, "model.parent_hint", "is a trained parent hint")


def _same_copy_form(source_keys: set, own_keys: set, where: str) -> None:
    """A source's copy read-out of one form (vidgpt.copy_readout: "mixture" / "tilt") into a run that makes the other
    is refused with the option that chooses it."""
    src = [f for f, k in COPY_FORMS.items() if k in source_keys]
    mine = [f for f, k in COPY_FORMS.items() if k in own_keys]
    if src and mine and src != mine:
        raise ConfigError(f"{where}: the source's copy read-out is a {src[0]}; set model.copy_readout_form: {src[0]}")


def _is_fresh_lora(key: str) -> bool:
    """A LoRA tensor that may start fresh when the source adapter covered fewer modules (B = 0: same function)."""
    return ".lora_A." in key or ".lora_B." in key


def _check_tensors(where: str, given: dict, expected: dict[str, tuple]) -> list[str]:
    """The expected tensors `given` lacks that may start fresh (LoRA of modules the source had none on, when the
    source's own LoRA tensors are all there); ConfigError on anything else."""
    missing = sorted(set(expected) - set(given))
    # a module is widened only when the source has LoRA elsewhere but no LoRA tensor on this module at all
    modules_given = {k.split(".lora_")[0] for k in given if _is_fresh_lora(k)}
    fresh = [k for k in missing if _is_fresh_lora(k) and modules_given and k.split(".lora_")[0] not in modules_given]
    missing = [k for k in missing if k not in fresh]
    extra = sorted(set(given) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensors the config has are missing (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} tensors the config lacks (e.g. {extra[0]})")
        raise ConfigError(f"{where}: the weights do not match this config's layout (LoRA on/off, r, target modules, "
                          f"layers_from?): {'; '.join(parts)}")
    for k, shape in expected.items():
        if k in given and tuple(given[k].shape) != shape:
            raise ConfigError(f"{where}: {k} has shape {tuple(given[k].shape)}, this config makes {shape} "
                              "(another LoRA r, vocabulary or backbone?)")
    return fresh


def _check_run_config(where: str, ckpt: Path, cfg) -> None:
    """A checkpoint's run config (OUT/config.yaml) against this one: the LoRA settings that change no shape."""
    import yaml

    f = ckpt.parent.parent / "config.yaml"
    if not f.is_file():
        return
    src = (yaml.safe_load(f.read_text()) or {}).get("lora") or {}
    ours = {"enabled": cfg.lora.enabled, "alpha": cfg.lora.alpha}
    for k, v in ours.items():
        if k in src and src[k] != v:
            raise ConfigError(f"{where}: the source run has lora.{k}={src[k]!r}, this config {v!r}")


def _lora_config(model) -> dict:
    c = model.peft_config["default"]
    d = {k: getattr(c, k, None) for k in LORA_KEYS}
    d["target_modules"] = sorted(c.target_modules) if not isinstance(c.target_modules, str) else c.target_modules
    return d


def _load_delta(lm, d: Path, where: str) -> dict:
    import json

    import torch
    from safetensors.torch import load_file

    from ..backbone import ADAPTER_DIR, NEW_ROWS_NAME, base_model, is_peft

    rows = load_file(str(d / NEW_ROWS_NAME))
    base = base_model(lm.model)
    info = {"new_rows": int(rows["embed_tokens"].shape[0]), "adapter": False}
    targets = [("embed_tokens", base.get_input_embeddings())]
    out = base.get_output_embeddings()
    if "lm_head" in rows and out is not None:
        targets.append(("lm_head", out))
    with torch.no_grad():
        for key, module in targets:
            w = getattr(getattr(module, "token_adapter", None), "base_layer", module).weight
            src = rows[key]
            if tuple(src.shape) != (w.shape[0] - lm.vocab.offset, w.shape[1]):
                raise ConfigError(f"{where}: {NEW_ROWS_NAME} {key} has shape {tuple(src.shape)}, this config makes "
                                  f"{(w.shape[0] - lm.vocab.offset, w.shape[1])}")
            w[lm.vocab.offset :] = src.to(w.dtype)
    _load_hint(lm, d, where, info)
    adapter = d / ADAPTER_DIR
    if not adapter.is_dir():
        return info  # an untrained extension: a fresh adapter (B = 0) on it computes the same function
    if not is_peft(lm.model):
        raise ConfigError(f"{where}: the source holds a LoRA adapter but this config has lora.enabled=false")
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    src_cfg = json.loads((adapter / "adapter_config.json").read_text())
    ours = _lora_config(lm.model)
    for k in LORA_KEYS:
        theirs = src_cfg.get(k)
        theirs = sorted(theirs) if isinstance(theirs, list) else theirs
        if theirs != ours[k]:
            what = (f"{len(theirs or [])} target modules vs {len(ours[k] or [])}" if k == "target_modules"
                    else f"{theirs!r} vs {ours[k]!r} here")
            raise ConfigError(f"{where}: the adapter's LoRA layout differs from this config ({k}: {what}); "
                              "set lora.r / lora.alpha / lora.target_modules / lora.layers_from as the source run had them")
    files = sorted(adapter.glob("adapter_model.*"))
    if not files:
        raise ConfigError(f"{where}: {adapter} has no adapter_model.safetensors")
    if files[0].suffix == ".safetensors":
        state = load_file(str(files[0]))
    else:
        state = torch.load(files[0], map_location="cpu", weights_only=True)
    current = get_peft_model_state_dict(lm.model)
    expected = {k: tuple(v.shape) for k, v in current.items()}
    for k, v in current.items():
        # the shipped form (tools/ship_model.py) keeps the trained rows in new_rows.safetensors only: the run's
        # trainable-token values start from those rows (peft's values replace the base rows they index)
        if k.endswith("trainable_tokens_delta") and k not in state:
            idx = torch.tensor((src_cfg.get("trainable_token_indices") or {}).get("embed_tokens") or
                               range(lm.vocab.offset, lm.vocab.offset + rows["embed_tokens"].shape[0]))
            key = "lm_head" if ".lm_head." in k and "lm_head" in rows else "embed_tokens"
            if v.shape[0] == len(idx):
                state[k] = rows[key][idx - lm.vocab.offset].to(v.dtype)
                info["rows_from_new_rows"] = True
    try:
        fresh = _check_tensors(where, state, expected)
    except ConfigError as e:
        raise ConfigError(f"{e}; the adapter's LoRA layout differs from this config (target_modules: "
                          f"{len(src_cfg.get('target_modules') or [])} target modules vs {len(ours['target_modules'] or [])})") from None
    res = set_peft_model_state_dict(lm.model, state)
    bad = [k for k in getattr(res, "unexpected_keys", []) if "lora_" in k or "trainable_tokens" in k]
    if bad:
        raise ConfigError(f"{where}: adapter tensors not taken by the model (e.g. {bad[0]})")
    info.update(adapter=True, adapter_tensors=len(state))
    if fresh:
        info["widened"] = len(fresh)
    return info


def _load_hint(lm, d: Path, where: str, info: dict) -> None:
    """The source's parent_hint.safetensors into the run's ParentHint (vidgpt.parent_hint)."""
    import torch

    from ..backbone import base_model
    from ..parent_hint import KEY, load_parent_hint_state, parent_hint_of

    src = load_parent_hint_state(d)
    if src is None:
        return
    hint = parent_hint_of(base_model(lm.model))
    if hint is None:
        raise ConfigError(f"{where}: the source has a trained parent hint (parent_hint.safetensors); "
                          "set model.parent_hint: true")
    _same_copy_form(set(src), {k for k in COPY_KEYS if hasattr(hint, k)}, where)
    for key, (what, option) in HINT_OPTIONS.items():
        if key in src and not hasattr(hint, key):
            raise ConfigError(f"{where}: the source has a trained {what}; set {option}: true")
    for key in [k for k in (KEY, *HINT_OPTIONS, CENTER_KEY, SCALE_KEY) if k in src]:  # none: Q / R at zero, no centre
        mine = getattr(hint, key)
        if tuple(src[key].shape) != tuple(mine.shape):
            raise ConfigError(f"{where}: its parent hint {key!r} has shape {tuple(src[key].shape)}, this config "
                              f"makes {tuple(mine.shape)}")
        with torch.no_grad():
            mine.copy_(src[key].to(mine.dtype))
    info["parent_hint"] = True


def visual_row_state(lm) -> dict:
    """{state key: (row slice start, tensor copy)} of everything that holds the visual code rows of `lm`: the
    embedding and head weights from the first visual id on, peft's trainable-token deltas from the same id (their
    row j is token vocab.offset + j), and the bit rows' A (tied to the tokenizer's LFQ bits)."""
    from .bit_rows import ATTR

    off, vis = lm.vocab.offset, lm.vocab.visual_offset
    out = {}
    for k, v in lm.model.state_dict().items():
        if f"{ATTR}." in k:
            out[k] = (0, v.detach().clone())
        elif "trainable_tokens_delta" in k:
            out[k] = (vis - off, v[vis - off:].detach().clone())
        elif (k.endswith("embed_tokens.weight") or k.endswith("lm_head.weight")
              or ("embed_tokens." in k or "lm_head." in k) and k.endswith("base_layer.weight")) \
                and v.dim() == 2 and v.shape[0] > vis:
            out[k] = (vis, v[vis:].detach().clone())
    return out


def restore_visual_rows(lm, saved: dict) -> int:
    """Put back what `visual_row_state` saved; returns how many tensors it touched."""
    import torch

    state = lm.model.state_dict()
    with torch.no_grad():
        for k, (start, rows) in saved.items():
            state[k][start:start + rows.shape[0]].copy_(rows)
    return len(saved)


def init_from(lm, path: str | Path, cfg) -> dict:
    """Put the weights of `path` into `lm` (built from `cfg` by lm_trainer.build_lm, before the optimizer)."""
    rows = getattr(cfg.train, "init_rows", "source")
    if rows not in ("source", "fresh"):
        raise ConfigError(f"train.init_rows={rows!r}: source (the visual rows of train.init_from) or fresh "
                          "(this run's own row init)")
    saved = visual_row_state(lm) if rows == "fresh" else None
    info = _init_from(lm, path, cfg)
    if saved is not None:
        info["fresh_visual_rows"] = restore_visual_rows(lm, saved)
    return info


def _init_from(lm, path: str | Path, cfg) -> dict:
    from ..backbone import is_peft, read_meta
    from ..vocab import UnifiedVocab

    kind, d = resolve_source(path)
    where = f"train.init_from={d}"
    info = {"source": str(d), "kind": kind}
    if kind == "checkpoint":
        _check_run_config(where, d, cfg)
        fresh = load_checkpoint_weights(lm.model, d, where)
        if fresh:
            info["widened"] = fresh
        info["step"] = _checkpoint_step(d)
        return info
    meta = read_meta(d)
    if UnifiedVocab.from_dict(meta["vocab"]).to_dict() != lm.vocab.to_dict():
        raise ConfigError(f"{where}: its visual vocabulary (vidgpt.json vocab) differs from this config's "
                          "(another video tokenizer, K or sub-token split?)")
    if meta.get("form") == "delta" or "base" in meta:
        ours = lm.meta.get("base")
        if meta.get("base") != ours or (meta.get("tiny") or None) != (lm.extra.get("tiny") or lm.meta.get("tiny") or None):
            raise ConfigError(f"{where}: a delta on base {meta.get('base')!r}, this run's base is {ours!r}")
        info.update(_load_delta(lm, d, where))
        return info
    if is_peft(lm.model):
        raise ConfigError(f"{where}: a full-form model; with LoRA, start from its delta form, or set model.path "
                          "to it to put a fresh adapter on it")
    from ..backbone import load_vidgpt_lm

    src = load_vidgpt_lm(d)
    state = dict(src.model.state_dict())
    own = lm.model.state_dict()
    _match_bit_rows(state, own, where)  # a saved model holds its bit rows folded (A = 0)
    _match_parent_hint(state, own, where)
    _check_tensors(where, state, {k: tuple(v.shape) for k, v in own.items()})
    lm.model.load_state_dict(state, strict=True)
    return info


def _checkpoint_step(ckpt: Path) -> int | None:
    import json

    try:
        return int(json.loads((ckpt / "trainer_state.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return None
