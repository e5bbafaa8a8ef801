"""Continued pretraining of the extended LLM: `vidgpt lm train --config configs/lm/NAME.yaml`.

Runs directly or under `accelerate launch` (one GPU, DDP, FSDP; see configs/accelerate/). Packed rows of
mixed text/video documents (vidgpt.train.lm_data) go through the model with position ids restarting per
document (no cross-document attention, vidgpt.attention); the loss is a weighted next-token cross entropy
on the token kinds the config names (VISUAL tokens weighted by `visual_loss_weight`), normalised by the
number of trained tokens of each micro-batch, computed by vidgpt.train.lm_loss (on a single-process CPU run
without the 65.7k-wide logits: `loss.head`, see there), plus the pair losses the config turns on (one process):
the contrastive motion loss (`loss.motion_contrast_weight`, vidgpt.train.motion_pairs) and DPO on preference pairs
(`loss.preference_weight`, vidgpt.train.preference_pairs), each from its own resumable pair stream, margins logged.
AdamW, linear warmup then cosine to `min_lr_ratio`, grad clipping, gradient accumulation, bf16 autocast on CUDA,
optional gradient checkpointing, full finetuning or LoRA (new token rows trainable). A non-finite loss skips the
optimizer update; `max_nonfinite` of them stop the run with a TrainingError.

OUT/ holds: checkpoints/step-NNNNNNN/ (accelerate state: model, optimizer, RNG; + scheduler and
trainer_state.json with the data position), written to a temp name and renamed, last `keep_checkpoints`
kept; log.jsonl; loss_curve.png (when matplotlib is present); tensorboard/ (when installed); and
model/, the final vidgpt LM directory (full or delta form).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import load_config, save_config
from ..errors import ConfigError, TrainingError
from .input_noise import NOISE_MODES, corrupt_video_inputs, noise_generator, stay_video_inputs
from .lm_data import LMDataConfig, clip_size_of_sources, packed_rows
from .lm_loss import LossHead, LossSettings, is_text_row, weighted_lm_loss  # noqa: F401  (weighted_lm_loss: the plain loss)
from .packing import PackStats, collate
from .schedule import WallClock, warmup_cosine
from ..utils import cpu_bf16_if_native, progress_wanted


@dataclass
class LMModelConfig:
    path: str = ""  # a vidgpt LM directory (from `vidgpt lm extend`); or leave empty and set `backbone`
    backbone: str = ""  # extend on the fly: smollm2-135m | a HF dir | hub id | tiny-llama
    tokenizer: str = ""  # video tokenizer dir (for on-the-fly extension; K read from its config.json)
    codebook_bits: int = 0  # override K (0 = from the tokenizer dir)
    subtokens: int = 0  # override S (0 = automatic)
    tiny: dict = field(default_factory=dict)  # tiny-llama shape: hidden_size, layers, heads, kv_heads, text_vocab
    attn_implementation: str = "auto"  # auto | flash_attention_4 | flash_attention_2 | sdpa | eager
    gradient_checkpointing: bool = False
    bit_rows: bool = False  # visual rows = free part + bits(code) @ A, A trained (vidgpt.train.bit_rows)
    parent_hint: bool = False  # each fine position's input + P @ row(its next cell's blueprint parent) (vidgpt.parent_hint)
    parent_hint_lr: float = 1.0e-3  # P's own peak lr (it starts at zero; the schedule scales it as the others)
    prev_frame_hint: bool = False  # with parent_hint: each blueprint position of frame t >= 1 also told its cell's and
    #                                four neighbours' codes in frame t - 1 (Q_d from zero)
    prev_hint_lr: float = 0.0  # Q's own peak lr (0: parent_hint_lr). Adam moves every element of the 5 x H x H Q by
    #                            ~lr a step whatever its gradient's size: at 1e-3 it grew as noise (piece 30's first try)
    caption_hint: bool = False  # with parent_hint: each position that predicts a blueprint code also told the mean row
    #                             of the last text ids before its visual block (R from zero; vidgpt.parent_hint)
    caption_hint_lr: float = 0.0  # R's own peak lr (0: parent_hint_lr)
    caption_hint_form: str = "matrix"  # R: matrix [H, H] | diagonal (a gain vector [H] on the mean row itself: H
    #                                    parameters where Adam's ~lr a step on H x H of them grew as noise, piece 33)
    caption_center: bool = False  # with caption_hint: R reads the window mean minus its mean over held-out documents,
    #                               scaled to a row's norm (set once, when R starts from zero; vidgpt.parent_hint)
    caption_hint_init: float = 0.0  # with caption_hint: R starts at this times the identity (a gain vector of this
    #                                 value): the window mean added at a set share of a row from step 0 (0: from zero)
    copy_readout: bool = False  # with caption_hint: each blueprint code of frame t >= 1 mixes into its distribution a
    #                             copy of the cells of frame t - 1 within 2 cells, which ones read from the caption
    #                             window (G, b from zero, the mix at 0.018; vidgpt.copy_readout)
    copy_readout_form: str = "mixture"  # mixture ((1 - lam) p + lam copy, lam from 0.018) | tilt (logits + beta x the
    #                                     copy's centred scores at the cells' ids, beta from zero; vidgpt.copy_readout)
    copy_readout_lr: float = 0.0  # G's, b's and the mix's (or gain's) own peak lr (0: parent_hint_lr)
    copy_readout_fit_rows: int = 0  # with copy_readout: before step 1, fit G and b as a classifier of which cells the
    #                                 next code is copied from, on this many training rows (0: none; copy_fit.py)
    copy_readout_fit_steps: int = 300  # full-batch Adam steps of that fit (lr 3e-2)
    hint_frozen: bool = False  # with parent_hint: the hint's tensors (P, Q, R, the copy read-out's G, b and gain) are
    #                            kept as the source (train.init_from / path) has them, not trained: piece 42's colour
    #                            loss was their drift while the LoRA learnt (model/README.md); a copy_readout_fit_rows
    #                            fit still runs before step 1 and its G and b are then kept
    row_init: str = "mean"  # on-the-fly extension: mean | bits | colour | colour+bits (vidgpt.row_init)
    row_init_scale: float = 1.0  # size of that structure (bits: std over the text rows'; colour: share of the word)


@dataclass
class LoraSettings:
    enabled: bool = False  # false = full finetuning
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    train_new_rows: bool = True  # the new token rows train with the adapter (peft trainable tokens)
    layers_from: int = 0  # adapters only on decoder layers >= this (vidgpt.train.lora_layers; 0 = all)


@dataclass
class LMTrainLoop:
    steps: int = 1000
    micro_batch_size: int = 4  # packed rows per process per micro-step
    grad_accum: int = 1
    seq_len: int = 2048
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    grad_clip: float = 1.0
    seed: int = 0
    bf16: bool = True  # bf16 autocast on CUDA
    cpu_bf16: bool = False  # bf16 autocast on the CPU too: ~1.9-2.2x faster steps on CPUs with AVX512-BF16/AMX
    # (measured on the dev box, docs/TRAINING_CPU.md; loss within 1e-4 relative); far slower on CPUs without them
    log_every: int = 10
    eval_every: int = 200  # 0 = only at the end
    eval_batches: int = 4
    ckpt_every: int = 200  # 0 = only at the end
    keep_checkpoints: int = 2
    max_nonfinite: int = 10  # non-finite losses (skipped steps) before giving up
    save_form: str = "full"  # full | delta (delta needs LoRA or an untouched base)
    # start from trained weights (a vidgpt model dir, delta form with LoRA; a run checkpoint or run dir) with a fresh
    # optimizer, schedule and step 0; the layout must match this config (vidgpt.train.lm_init). Ignored by --resume.
    init_from: str = ""
    # "source": init_from's visual code rows too; "fresh": this run's own row init for the visual codes (a run on
    # another tokenizer with the same K), the rest (text and structure rows, adapter) from init_from
    init_rows: str = "source"
    # how a step's micro-batches add up: "micro" (each micro-batch's mean loss weighs 1/grad_accum) or "tokens" (each
    # trained token of the step, over all processes, weighs the same: one document a row then trains the objective
    # that packed rows of equal length train; under "micro" a 50-token chat answer would weigh as much as a clip)
    loss_norm: str = "micro"
    # 0: every process takes grad_accum micro-batches a step. > 0: every process takes micro-batches until their
    # documents hold at least this many tokens (grad_accum is then unused), so data-parallel processes do about the
    # same work a step instead of the one with the longer documents keeping the other waiting at the gradient
    # all-reduce (one document a row of mixed lengths, docs/TRAINING_CPU.md); needs loss_norm: tokens
    step_tokens: int = 0
    # 0: micro-batches of micro_batch_size rows as they come. > 0 (needs step_tokens and micro_batch_size 1): the
    # step's one-document rows are regrouped into micro-batches of like rows (`group_rows`: text-only rows and rows
    # with visual tokens apart, longest first), each holding rows while their count times its longest document stays
    # within this many tokens. Same loss under loss_norm tokens; fewer, larger matmuls for short rows
    micro_tokens: int = 0
    # under step_tokens: what one token of a text-only row (plain English, chat answers) counts towards the budget,
    # a visual row's counting 1. Those rows pay the base's extra forward of the text KL and a softmax over every row:
    # ~2x a visual token on this CPU (docs/TRAINING_CPU.md, "Three cuts of a row's cost"), so 1.0 leaves the process
    # that drew more of them behind at the step's gradient average
    text_token_cost: float = 1.0
    # a wall-clock budget (0 = none): the run stops (checkpoint + model) once it is spent, even before `steps`, and
    # the cosine follows time when time runs out first (schedule.WallClock); counted across --resume pieces
    max_minutes: float = 0.0


@dataclass
class LMTrainConfig:
    model: LMModelConfig = field(default_factory=LMModelConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    data: LMDataConfig = field(default_factory=LMDataConfig)
    train: LMTrainLoop = field(default_factory=LMTrainLoop)
    loss: LossSettings = field(default_factory=LossSettings)  # LM head + loss (vidgpt.train.lm_loss)


# --- pieces ----------------------------------------------------------------------------------------------------


def build_lm(cfg: LMTrainConfig, device, amp_dtype):
    """Load (or extend on the fly) the vidgpt LM, pick attention, apply LoRA."""
    from ..attention import resolve_attention
    from ..backbone import apply_lora, base_model, extend, load_vidgpt_lm, set_attention

    m = cfg.model
    attn = resolve_attention(m.attn_implementation, device, amp_dtype)
    if m.path:
        lm = load_vidgpt_lm(m.path)
        if cfg.lora.enabled and "base" not in lm.meta:  # LoRA on a full-form dir: it is the delta's base
            lm.meta["base"] = str(Path(m.path).resolve())
            lm.base_intact = True
    elif m.backbone:
        lm = extend(m.backbone, m.tokenizer or None, codebook_bits=m.codebook_bits or None,
                    subtokens=m.subtokens or None, seed=cfg.train.seed, tiny=m.tiny or None, chat=cfg.data.chat,
                    row_init=m.row_init, row_init_scale=m.row_init_scale)
    else:
        raise ConfigError("model: set `path` (a vidgpt LM dir) or `backbone` (+ `tokenizer` or `codebook_bits`)")
    attn = set_attention(lm.model, attn) or attn  # a family without that kernel (Gemma2: sdpa) keeps eager
    lm.meta.setdefault("layout", {})["chat"] = cfg.data.chat
    clip = clip_size_of_sources(cfg.data)
    if clip is not None:  # the clip size generate draws by default
        lm.meta["default_clip"] = clip
    if m.gradient_checkpointing:
        lm.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora.enabled:
        lr = cfg.lora
        targets = list(lr.target_modules)
        if lr.layers_from > 0:
            from .lora_layers import upper_layer_targets

            targets = upper_layer_targets(lm.model, targets, lr.layers_from)
        apply_lora(lm, r=lr.r, alpha=lr.alpha, dropout=lr.dropout, target_modules=targets,
                   train_new_rows=lr.train_new_rows)
        if m.gradient_checkpointing:
            lm.model.enable_input_require_grads()
    else:
        lm.base_intact = False
    if m.bit_rows:
        from .bit_rows import attach_bit_rows

        attach_bit_rows(lm.model, lm.vocab)
    if m.caption_hint_form != "matrix" and not m.caption_hint:
        raise ConfigError("model.caption_hint_form shapes the caption hint: set model.caption_hint: true too")
    if m.caption_hint_init and not m.caption_hint:
        raise ConfigError("model.caption_hint_init starts the caption hint: set model.caption_hint: true too")
    if not math.isfinite(m.caption_hint_init):
        raise ConfigError(f"model.caption_hint_init={m.caption_hint_init}: a finite number")
    if m.copy_readout and not m.caption_hint:
        raise ConfigError("model.copy_readout reads the caption hint's window: set model.caption_hint: true too")
    if not (math.isfinite(m.copy_readout_lr) and m.copy_readout_lr >= 0):
        raise ConfigError(f"model.copy_readout_lr={m.copy_readout_lr}: a learning rate >= 0 (0: model.parent_hint_lr)")
    if m.copy_readout_fit_rows < 0 or m.copy_readout_fit_steps < 1:
        raise ConfigError(f"model.copy_readout_fit_rows={m.copy_readout_fit_rows} / copy_readout_fit_steps="
                          f"{m.copy_readout_fit_steps}: rows >= 0 (0: no fit) and steps >= 1")
    if m.copy_readout_form != "mixture" and not m.copy_readout:
        raise ConfigError("model.copy_readout_form shapes the copy read-out: set model.copy_readout: true too")
    if m.copy_readout_fit_rows and not m.copy_readout:
        raise ConfigError("model.copy_readout_fit_rows fits the copy read-out: set model.copy_readout: true too")
    if m.hint_frozen and not m.parent_hint:
        raise ConfigError("model.hint_frozen keeps the parent hint's tensors: set model.parent_hint: true too")
    if m.parent_hint:  # after LoRA (peft freezes what it finds); a model directory's own hint (m.path) is kept
        from ..parent_hint import attach_parent_hint, parent_hint_of

        hint = parent_hint_of(base_model(lm.model)) or attach_parent_hint(base_model(lm.model))
        if m.prev_frame_hint:
            hint.add_prev()  # zeros unless the model directory's own hint had it
        if m.caption_hint:
            try:
                hint.add_caption(m.caption_hint_form)  # the same
            except ValueError as e:
                raise ConfigError(f"model.caption_hint_form: {e}") from None
        if m.copy_readout:
            try:
                hint.add_copy(m.copy_readout_form)  # zeros unless the model directory's own hint had it
            except ValueError as e:
                raise ConfigError(f"model.copy_readout_form: {e}") from None
        hint.requires_grad_(not m.hint_frozen)
    lm.model.train()
    return lm, attn


CENTER_ROWS = 256  # held-out rows the caption centre is taken over (those with a visual block count)


def center_caption_hint(cfg: LMTrainConfig, lm, seq_len: int, seed: int) -> None:
    """`model.caption_center`: set the caption hint's centre from the held-out split (the same rows on every rank),
    once, while R is still zero (the function unchanged); a source's own centre is kept, and a source whose R was
    trained on the plain mean is refused."""
    from ..backbone import base_model
    from ..parent_hint import CAPTION_KEY, caption_center, input_embedding_weight, parent_hint_of

    hint = parent_hint_of(base_model(lm.model))
    if hint is None or not hint.has_caption:
        raise ConfigError("model.caption_center centres the caption hint's window: set model.caption_hint: true too")
    if hint.has_caption_center:
        return  # from the source (init_from / the model directory)
    if bool(getattr(hint, CAPTION_KEY).any()):
        raise ConfigError("model.caption_center: the source's caption projection R was trained on the plain window "
                          "mean; centring it now would change what it learnt (start R from a source without one)")
    try:
        c, k = caption_center(held_out_windows(cfg, lm, seq_len, seed), input_embedding_weight(lm.model))
    except ValueError as e:
        raise ConfigError(f"model.caption_center: {e} (the held-out split of data.sources)") from None
    hint.set_caption_center(c, k)


def held_out_windows(cfg: LMTrainConfig, lm, seq_len: int, seed: int) -> list[tuple[int, ...]]:
    """The caption windows of the visual blocks in the first CENTER_ROWS held-out rows (the same on every rank)."""
    from ..parent_hint import caption_windows

    pad_id = getattr(lm.text_tokenizer, "pad_token_id", None) or 0
    gen = packed_rows(cfg.data, lm.vocab, lm.text_tokenizer, seq_len, seed, "eval", pad_id, 0, 1)
    return caption_windows([r["input_ids"].tolist() for _, r in zip(range(CENTER_ROWS), gen)], lm.vocab)


def start_copy_readout(cfg: LMTrainConfig, lm, seq_len: int, seed: int) -> None:
    """`model.copy_readout`: its caption basis B (whitened principal directions of the held-out documents' caption
    window means, read as the caption hint reads them: after the centre) set once; a source's own B is kept."""
    import torch.nn.functional as F

    from ..backbone import base_model
    from ..copy_readout import caption_basis
    from ..parent_hint import CAPTION_WINDOW, caption_mean, input_embedding_weight, parent_hint_of

    hint = parent_hint_of(base_model(lm.model))
    if hint.has_copy_basis:
        return
    windows = held_out_windows(cfg, lm, seq_len, seed)
    W = input_embedding_weight(lm.model)
    ids = torch.tensor([list(w)[-CAPTION_WINDOW:] + [-1] * (CAPTION_WINDOW - len(w)) for w in windows], dtype=torch.long)
    with torch.no_grad():
        means = caption_mean(ids.to(W.device), lambda x: F.embedding(x, W), hint.centering(), torch.float32)
    try:
        hint.set_copy_basis(caption_basis(means))
    except ValueError as e:
        raise ConfigError(f"model.copy_readout: {e} (the held-out split of data.sources)") from None


def fit_copy_start(cfg: LMTrainConfig, lm, seq_len: int, seed: int) -> dict:
    """`model.copy_readout_fit_rows`: G and b fitted on the first that many training rows (the same rows on every
    rank, so every rank fits the same values); returns copy_fit.fit_copy_readout's figures."""
    import torch.nn.functional as F

    from ..backbone import base_model
    from ..parent_hint import input_embedding_weight, parent_hint_of
    from .copy_fit import fit_copy_readout

    m = cfg.model
    hint = parent_hint_of(base_model(lm.model))
    pad_id = getattr(lm.text_tokenizer, "pad_token_id", None) or 0
    gen = packed_rows(cfg.data, lm.vocab, lm.text_tokenizer, seq_len, seed, "train", pad_id, 0, 1)
    rows = [r["input_ids"].tolist() for _, r in zip(range(m.copy_readout_fit_rows), gen)]
    W = input_embedding_weight(lm.model)
    try:
        return fit_copy_readout(hint, rows, lm.vocab, lambda x: F.embedding(x.to(W.device), W),
                                steps=m.copy_readout_fit_steps)
    except ValueError as e:
        raise ConfigError(f"model.copy_readout_fit_rows: {e} (the first {len(rows)} training rows)") from None


def start_caption_hint(cfg: LMTrainConfig, lm) -> None:
    """`model.caption_hint_init`: R set to that value times the identity (a diagonal R: every gain at that value), so
    the caption window's (centred) mean row reaches the blueprint positions at a set share of a row from the first
    step instead of growing from zero (pieces 32-34: the loss held a gain from zero at ~3% of the row). Only on an R
    still at zero: a source's trained R is refused."""
    from ..backbone import base_model
    from ..parent_hint import CAPTION_KEY, parent_hint_of

    hint = parent_hint_of(base_model(lm.model))
    if hint is None or not hint.has_caption:
        raise ConfigError("model.caption_hint_init starts the caption hint: set model.parent_hint and "
                          "model.caption_hint: true too")
    R = getattr(hint, CAPTION_KEY)
    if bool(R.any()):
        raise ConfigError("model.caption_hint_init: the source's caption projection R is trained already; starting "
                          "it again would throw that away (start from a source without one, or leave the option at 0)")
    with torch.no_grad():
        if R.dim() == 2:
            R.copy_(torch.eye(R.shape[0], dtype=R.dtype, device=R.device) * cfg.model.caption_hint_init)
        else:
            R.fill_(cfg.model.caption_hint_init)


def frozen_linears_to_bf16(model) -> int:
    """Store the frozen weights (and biases) of the model's linear layers in bf16, in place; returns how many layers.

    For LoRA runs under CPU bf16 autocast: autocast casts a weight that needs no gradient to bf16 again at every call
    (its cast cache holds only leaves that need one), ~135 M weights a forward, the teacher's forward and the backward
    each: ~20% of a 100-token row's time (docs/TRAINING_CPU.md, "Three cuts of a row's cost"). The values are autocast's
    own cast, so the loss and gradients do not change. The output head (a layer over the vocabulary, tied to the input
    embedding or not) is left alone: the fast heads read its rows in fp32 and keep their own bf16 copy. Only for runs
    saved in delta form: a full save would merge the adapter into bf16 weights."""
    emb = model.get_input_embeddings().weight
    n = 0
    for m in model.modules():
        if not isinstance(m, torch.nn.Linear) or m.weight.requires_grad or m.weight.shape[0] == emb.shape[0] \
                or m.weight.data_ptr() == emb.data_ptr():
            continue
        if m.bias is not None and m.bias.requires_grad:
            continue
        m.weight.data = m.weight.data.to(torch.bfloat16)
        if m.bias is not None:
            m.bias.data = m.bias.data.to(torch.bfloat16)
        n += 1
    return n


def stores_frozen_bf16(cfg: LMTrainConfig, cpu_amp: bool) -> bool:
    """Whether a run keeps its frozen linear weights in bf16 (`frozen_linears_to_bf16`): LoRA under CPU bf16 autocast,
    saved in delta form."""
    return cpu_amp and cfg.lora.enabled and cfg.train.save_form == "delta"


def cost_tool_lm(config: str | Path, sets: list[str] | tuple = (), fp32_frozen: bool = False):
    """What the CPU cost tools (tools/doc_cost.py, bench_doc_rows.py, step_balance.py) measure on: the config with
    `init_from` cleared (an untrained extension costs the same and reads the same rows), built as `train_lm` builds
    it on the CPU (frozen weights in bf16 where it stores them so, unless fp32_frozen). Returns (cfg, lm, pad id,
    whether bf16 autocast runs)."""
    cfg = load_config(LMTrainConfig, config, ["train.init_from="] + list(sets))
    lm, _ = build_lm(cfg, torch.device("cpu"), None)
    bf16 = cpu_bf16_if_native(cfg.train.cpu_bf16, lambda m: None)
    if stores_frozen_bf16(cfg, bf16) and not fp32_frozen:
        frozen_linears_to_bf16(lm.model)
    return cfg, lm, getattr(lm.text_tokenizer, "pad_token_id", None) or 0, bf16


def make_optimizer(model, t: LMTrainLoop, hint_lr: float | None = None, prev_lr: float | None = None,
                   caption_lr: float | None = None, copy_lr: float | None = None) -> torch.optim.Optimizer:
    """AdamW: weight decay on matrices, none on vectors; the parent hint's P (when attached) in a group of its own at
    `hint_lr` without decay, its previous-frame Q, its caption R and the copy read-out's G and b (when it has them)
    in one group each at `prev_lr`, `caption_lr` and `copy_lr` (each defaults to `hint_lr`)."""
    from ..backbone import base_model
    from ..copy_readout import COPY_BIAS_KEY, COPY_GAIN_KEY, COPY_KEY, COPY_MIX_KEY
    from ..parent_hint import CAPTION_KEY, PREV_KEY, parent_hint_of

    hint = parent_hint_of(base_model(model))
    own = {id(p) for p in hint.parameters()} if hint is not None else set()
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad and id(p) not in own:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if hint is not None:
        own_lr = [(getattr(hint, k), lr) for k, lr in ((PREV_KEY, prev_lr), (CAPTION_KEY, caption_lr), (COPY_KEY, copy_lr),
                                                     (COPY_BIAS_KEY, copy_lr), (COPY_MIX_KEY, copy_lr),
                                                     (COPY_GAIN_KEY, copy_lr)) if hasattr(hint, k)]
        groups.append({"params": [p for p in hint.parameters() if all(p is not q for q, _ in own_lr)],
                       "weight_decay": 0.0, "lr": hint_lr or t.lr})
        for p, lr in own_lr:
            groups.append({"params": [p], "weight_decay": 0.0, "lr": lr or hint_lr or t.lr})
    return torch.optim.AdamW(groups, lr=t.lr, betas=tuple(t.betas))


# --- checkpoints --------------------------------------------------------------------------------------------------


def checkpoint_dirs(out: Path) -> list[Path]:
    root = out / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))


def save_checkpoint(accelerator, out: Path, step: int, state: dict, keep: int) -> Path:
    """accelerate state + trainer_state.json into checkpoints/step-N (temp dir, then rename)."""
    root = out / "checkpoints"
    final = root / f"step-{step:07d}"
    tmp = root / f".tmp-step-{step:07d}"
    if accelerator.is_main_process:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=False)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in checkpoint_dirs(out)[: -max(1, keep)]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, ckpt: Path) -> dict:
    state_file = ckpt / "trainer_state.json"
    if not state_file.is_file():
        raise TrainingError(f"{ckpt}: incomplete checkpoint (no trainer_state.json)")
    try:
        accelerator.load_state(str(ckpt))
    except Exception as e:
        raise TrainingError(f"{ckpt}: cannot restore the checkpoint ({str(e).splitlines()[0]})") from e
    return json.loads(state_file.read_text())


# --- logging ------------------------------------------------------------------------------------------------------------


class RunLog:
    """JSONL log (+ TensorBoard when installed), main process only."""

    def __init__(self, out: Path, enabled: bool):
        self.enabled = enabled
        self.path = out / "log.jsonl"
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except Exception:
                self.tb = None

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "time"):
                    self.tb.add_scalar(k, v, record.get("step", 0))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def plot_loss_curve(log_path: Path, png: Path) -> Path | None:
    """loss (and eval_loss) against step from log.jsonl, when matplotlib is installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    recs = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    tr = [(r["step"], r["loss"]) for r in recs if "loss" in r]
    ev = [(r["step"], r["eval_loss"]) for r in recs if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    if tr:
        ax.plot(*zip(*tr), label="train")
    if ev:
        ax.plot(*zip(*ev), "o-", label="eval")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


# --- the loop ---------------------------------------------------------------------------------------------------------------


def _to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def document_tokens(weights: torch.Tensor) -> int:
    """Tokens of a batch [B, L] up to each row's last trained token (+1): its documents without the trailing padding
    (what the fast heads compute; `tokens_per_s` counts these, so one document a row reads like a packed row)."""
    ar = torch.arange(1, weights.shape[1] + 1, device=weights.device)
    return int(torch.where(weights > 0, ar, torch.zeros_like(ar)).amax(1).sum())


def trained_tokens(weights: torch.Tensor) -> int:
    """The positions a batch's loss averages over (targets with weight > 0; the fast heads' and the plain loss's n)."""
    return int((weights[:, 1:] > 0).sum())


STEP_TOKENS_MAX_MICRO = 256  # a bound on one step's micro-batches under train.step_tokens (rows of a few tokens)


def group_rows(rows: list[dict], micro_tokens: int, new_from: int) -> list[dict]:
    """One step's one-document rows as micro-batches of like rows (`train.micro_tokens`): rows with a token of the new
    vocabulary (ids >= new_from) first, then the text-only ones (the text KL's), each kind sorted longest first; a
    micro-batch takes rows while their count times its longest document stays within `micro_tokens` (a longer row
    goes alone). Under `loss_norm: tokens` the step's loss is that of one row a micro-batch: every trained token
    weighs alike, and a text-only micro-batch's KL is the mean over its trained positions, which are all text ones."""
    lens = [document_tokens(r["weights"][None]) for r in rows]
    text = [is_text_row(r["input_ids"], new_from) for r in rows]
    out = []
    for kind in (False, True):
        cur: list[int] = []
        for i in sorted((i for i in range(len(rows)) if text[i] == kind), key=lambda i: -lens[i]):
            if cur and (len(cur) + 1) * lens[cur[0]] > micro_tokens:
                out.append(collate([rows[j] for j in cur]))
                cur = []
            cur.append(i)
        if cur:
            out.append(collate([rows[j] for j in cur]))
    return out


def step_batches(rows, micro_batch_size: int, grad_accum: int, step_tokens: int = 0, micro_tokens: int = 0,
                 new_from: int = 0, text_token_cost: float = 1.0) -> list[dict]:
    """This process's micro-batches for one step: `grad_accum` of them, or (step_tokens > 0) as many as it takes for
    their documents (`document_tokens`) to hold at least `step_tokens` tokens, a token of a micro-batch without any id
    >= new_from (text only) counting `text_token_cost`; with micro_tokens > 0 those rows are regrouped by `group_rows`
    (new_from: the first id of the new vocabulary)."""
    if step_tokens <= 0:
        return [collate([next(rows) for _ in range(micro_batch_size)]) for _ in range(grad_accum)]
    out, n = [], 0.0
    while n < step_tokens and len(out) < STEP_TOKENS_MAX_MICRO:
        out.append(collate([next(rows) for _ in range(micro_batch_size)]))
        cost = text_token_cost if text_token_cost != 1.0 and is_text_row(out[-1]["input_ids"], new_from) else 1.0
        n += cost * document_tokens(out[-1]["weights"])
    if micro_tokens > 0:
        return group_rows([{k: v[0] for k, v in b.items()} for b in out], micro_tokens, new_from)
    return out


def forward_loss(model, batch: dict, amp, loss_head: LossHead) -> tuple[torch.Tensor, int]:
    with amp():
        return loss_head(model, batch)


def make_loss_head(cfg: LMTrainConfig, vocab, device, sharded: bool = False) -> LossHead:
    # the plain head looks weighted_lm_loss up here at call time (tests patch it in this module)
    return LossHead(vocab, cfg.loss, device, sharded=sharded, plain_loss=lambda *a: weighted_lm_loss(*a))


def evaluate(accelerator, model, rows: list[dict], micro: int, amp, loss_head: LossHead) -> float:
    model.eval()
    tot = torch.zeros(2, device=accelerator.device, dtype=torch.float64)
    with torch.no_grad():
        for i in range(0, len(rows), micro):
            batch = _to(collate(rows[i : i + micro]), accelerator.device)
            loss, n = forward_loss(model, batch, amp, loss_head)
            tot += torch.tensor([float(loss) * n, n], device=accelerator.device, dtype=torch.float64)
    model.train()
    tot = accelerator.reduce(tot, reduction="sum")
    return float(tot[0] / tot[1].clamp(min=1))


@dataclass
class PairObjective:
    """A pair loss the trainer adds each micro-step (vidgpt.train.motion_pairs / preference_pairs)."""

    name: str  # contrast | pref: the log's key prefix
    stream: object  # .take(n) -> [Pair]; .state() / .load()
    eval_pairs: list | None
    weight: float
    beta: float
    per_step: int  # pairs a micro-step
    loss_key: str  # its loss in the log
    state_key: str  # its stream position in trainer_state.json
    wins_key: str  # the held-out share with m > m_ref


EVAL_PAIRS_PER_BATCH = 4


def pair_objectives(cfg: LMTrainConfig, lm, world: int, state: dict) -> list[PairObjective]:
    """The pair losses the config turns on: the contrastive motion loss, DPO on preference pairs (each with its
    training stream, resumed from `state`, and its held-out pairs)."""
    c, t = cfg.loss, cfg.train
    out = []
    if c.motion_contrast_weight <= 0 and c.preference_weight <= 0:
        return out
    if world > 1:
        raise ConfigError("loss.motion_contrast_weight / preference_weight run on one process (their second forward "
                          "a micro-step is not DDP/FSDP-safe yet)")
    n_eval = EVAL_PAIRS_PER_BATCH * t.eval_batches

    def streams(kind, paths: list[str], eval_paths: list[str], saved: dict | None):
        """(training stream resumed from `saved`, held-out pairs: every record of eval_paths, or the held-out split)."""
        pairs = kind(cfg.data, paths, lm.vocab, lm.text_tokenizer, t.seed, "train")
        if saved is not None:
            pairs.load(saved)
        ev = kind(cfg.data, eval_paths or paths, lm.vocab, lm.text_tokenizer, t.seed, "eval",
                  holdout_every=1 if eval_paths else None).take(n_eval) if n_eval else None
        return pairs, ev

    if c.motion_contrast_weight > 0:
        from .motion_pairs import MotionPairs

        pairs, ev = streams(MotionPairs, c.motion_contrast_paths, c.motion_contrast_eval_paths, state.get("pairs"))
        out.append(PairObjective("contrast", pairs, ev, c.motion_contrast_weight, c.motion_contrast_beta,
                                 c.motion_contrast_pairs, "motion_contrast", "pairs", "eval_contrast_true_lower"))
    if c.preference_weight > 0:
        from .preference_pairs import PreferencePairs

        pairs, ev = streams(PreferencePairs, c.preference_paths, c.preference_eval_paths, state.get("preference_pairs"))
        out.append(PairObjective("pref", pairs, ev, c.preference_weight, c.preference_beta, c.preference_pairs,
                                 "preference", "preference_pairs", "eval_pref_wins"))
    return out


def evaluate_pairs(model, obj: PairObjective, amp, loss_head: LossHead, pad_id: int, device) -> dict:
    """The held-out pairs' mean margin m - m_ref (nats a clip) and the share with m > m_ref."""
    model.eval()
    with torch.no_grad():
        ms = [margins_over_ref(model, obj.eval_pairs[i : i + EVAL_PAIRS_PER_BATCH], amp, loss_head, pad_id, device)[0]
              for i in range(0, len(obj.eval_pairs), EVAL_PAIRS_PER_BATCH)]
    model.train()
    m = torch.cat(ms)
    return {f"eval_{obj.name}_margin": float(m.mean()), obj.wins_key: float((m > 0).float().mean())}


def margins_over_ref(model, pairs: list, amp, loss_head: LossHead, pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(m - m_ref, m) of `pairs`: their margins under the model (fp32) less the reference's."""
    from .motion_pairs import pair_batch, pair_margins, ref_margins

    with amp():
        m = pair_margins(loss_head, model, _to(pair_batch(pairs, pad_id), device)).float()
    return m - ref_margins(pairs, m.device), m


def pair_loss(model, obj: PairObjective, amp, loss_head: LossHead, pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, margins - ref margins) of `obj.per_step` fresh training pairs."""
    from .motion_pairs import contrast_loss

    over, _ = margins_over_ref(model, obj.stream.take(obj.per_step), amp, loss_head, pad_id, device)
    return contrast_loss(over, obj.beta), over.detach()


def train_lm(cfg: LMTrainConfig, out: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Run training; returns the last logged metrics. OUT/model is the final vidgpt LM directory."""
    from tqdm import tqdm

    from ..backbone import save_vidgpt_lm
    from .bit_rows import detach_bit_rows, fold_bit_rows
    from ..backbone import base_model
    from ..copy_readout import COPY_BIAS_KEY, COPY_GAIN_KEY, COPY_KEY, COPY_MIX_KEY
    from ..parent_hint import CAPTION_KEY as HINT_CAPTION_KEY, KEY as HINT_KEY, PREV_KEY as HINT_PREV_KEY, parent_hint_of
    from .distributed import (average_gradients, drop_log_after, engine_name, gather_data_state, is_fsdp, make_accelerator,
                              plain_model_for_save, prepare)

    t = cfg.train
    if t.save_form not in ("full", "delta"):
        raise ConfigError(f"train.save_form={t.save_form!r}: expected full or delta")
    if t.loss_norm not in ("micro", "tokens"):
        raise ConfigError(f"train.loss_norm={t.loss_norm!r}: expected micro or tokens")
    if t.init_rows not in ("source", "fresh"):  # checked here too: a typo should not wait for train.init_from
        raise ConfigError(f"train.init_rows={t.init_rows!r}: source (the visual rows of train.init_from) or fresh "
                          "(this run's own row init)")
    if t.step_tokens < 0 or (t.step_tokens > 0 and t.loss_norm != "tokens"):
        raise ConfigError(f"train.step_tokens={t.step_tokens}: a token budget >= 0, and > 0 only with train.loss_norm: "
                          "tokens (micro-batches of a step then differ in number between processes)")
    if t.micro_tokens < 0 or (t.micro_tokens > 0 and (t.step_tokens <= 0 or t.micro_batch_size != 1)):
        raise ConfigError(f"train.micro_tokens={t.micro_tokens}: a token budget >= 0, and > 0 only with "
                          "train.step_tokens > 0 and train.micro_batch_size: 1 (it regroups a step's one-document rows)")
    if t.text_token_cost <= 0:
        raise ConfigError(f"train.text_token_cost={t.text_token_cost}: what a text token counts towards train.step_tokens, "
                          "> 0 (1 = as a visual one)")
    if not 0.0 <= cfg.data.input_noise < 1.0:
        raise ConfigError(f"data.input_noise={cfg.data.input_noise}: the share of noisy inputs must be in [0, 1)")
    if not 0.0 <= cfg.data.stay_noise <= 1.0:
        raise ConfigError(f"data.stay_noise={cfg.data.stay_noise}: a share, in [0, 1]")
    if cfg.data.input_noise_mode not in NOISE_MODES:
        raise ConfigError(f"data.input_noise_mode={cfg.data.input_noise_mode!r}: expected one of {', '.join(NOISE_MODES)}")
    if t.save_form == "delta" and not cfg.lora.enabled:
        raise ConfigError("train.save_form=delta needs lora.enabled (full finetuning changes the base weights)")
    out = Path(out)
    use_bf16 = t.bf16 and torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true")
    cpu_amp = cpu_bf16_if_native(t.cpu_bf16 and not use_bf16 and not torch.cuda.is_available(),
                                 lambda m: print(f"vidgpt: note: {m}", file=sys.stderr))
    accelerator = make_accelerator(mixed_precision="bf16" if use_bf16 else "no")  # 1 process, DDP or FSDP
    # on the CPU, bf16 is autocast only (weights, gradients and optimizer state stay fp32); plain torch.autocast,
    # since accelerate's mixed-precision state is fixed once per process
    amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if cpu_amp else accelerator.autocast
    rank, world = accelerator.process_index, accelerator.num_processes
    torch.manual_seed(t.seed)
    lm, attn = build_lm(cfg, accelerator.device, torch.bfloat16 if use_bf16 else None)
    init_info = None
    if t.init_from and not resume:
        from .lm_init import init_from

        init_info = init_from(lm, t.init_from, cfg)
    if cfg.model.caption_center and not resume:
        center_caption_hint(cfg, lm, t.seq_len, t.seed)
    if cfg.model.caption_hint_init and not resume:
        start_caption_hint(cfg, lm)
    copy_fit = None
    if cfg.model.copy_readout and not resume:
        start_copy_readout(cfg, lm, t.seq_len, t.seed)
        if cfg.model.copy_readout_fit_rows:
            copy_fit = fit_copy_start(cfg, lm, t.seq_len, t.seed)
    if stores_frozen_bf16(cfg, cpu_amp):
        frozen_linears_to_bf16(lm.model)
    if t.max_minutes < 0:
        raise ConfigError(f"train.max_minutes={t.max_minutes}: a budget in minutes, or 0 for none")
    clock = WallClock(t.max_minutes * 60)  # its spent seconds come from the checkpoint on --resume (below)
    optimizer = make_optimizer(lm.model, t, cfg.model.parent_hint_lr, cfg.model.prev_hint_lr, cfg.model.caption_hint_lr,
                               cfg.model.copy_readout_lr)
    hint = parent_hint_of(base_model(lm.model))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, t.warmup_steps, t.steps, t.min_lr_ratio, clock.done())
    )
    loss_head = make_loss_head(cfg, lm.vocab, accelerator.device, sharded=is_fsdp(accelerator))
    for option in ("prev_frame_hint", "caption_hint", "copy_readout"):
        if getattr(cfg.model, option) and not cfg.model.parent_hint:
            raise ConfigError(f"model.{option} extends the parent hint's module: set model.parent_hint: true too")
    if cfg.model.parent_hint and loss_head.head == "plain":
        raise ConfigError("model.parent_hint needs loss.head full or constrained (the plain head goes through the "
                          "model's own forward, which adds no hints)")
    if cfg.model.bit_rows and loss_head.head == "plain":
        raise ConfigError("model.bit_rows needs loss.head full or constrained (the plain head goes through the "
                          "model's own forward, which does not add the bitwise part); under FSDP "
                          "or on a GPU, auto picks plain")
    # accelerator.prepare + engine fixes (distributed.py); the fast heads' data parallel averages gradients itself
    own_sync = loss_head.head != "plain" and world > 1
    model, optimizer = prepare(accelerator, lm.model, optimizer, own_gradient_sync=own_sync)
    accelerator.register_for_checkpointing(scheduler)  # not prepared: it steps once per optimizer step

    state = {"step": 0, "rows": 0, "nonfinite": 0, "stats": {}}
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    ckpts = checkpoint_dirs(out)
    if resume:
        if not ckpts:
            raise TrainingError(f"{out}: nothing to resume (no checkpoints/step-*)")
        state = load_checkpoint(accelerator, ckpts[-1])
        clock = WallClock(t.max_minutes * 60, state.get("elapsed_s", 0.0))
    elif ckpts and accelerator.is_main_process:
        raise TrainingError(f"{out}: holds checkpoints already; pass --resume or choose another --out")
    if accelerator.is_main_process:
        save_config(cfg, out / "config.yaml")
        if not resume and (out / "log.jsonl").exists():
            (out / "log.jsonl").unlink()
        if resume:  # steps a killed run logged after its last checkpoint are logged again below
            drop_log_after(out / "log.jsonl", state["step"])
    log = RunLog(out, accelerator.is_main_process)
    if accelerator.is_main_process and state["step"] == 0:
        log.write({"event": "start", "time": round(time.time(), 3), "attn": attn, "world_size": world, "engine": engine_name(accelerator, own_sync), "vocab": lm.vocab.to_dict(),
                   "loss_head": loss_head.head, "embed_grad": cfg.loss.embed_grad,
                   "trainable_params": sum(p.numel() for p in lm.model.parameters() if p.requires_grad),
                   **({"init_from": init_info} if init_info else {}), **({"copy_fit": copy_fit} if copy_fit else {})})

    if accelerator.is_main_process and resume:  # wall time per piece (tools/eval_checkpoints.py): start/resume..last step
        log.write({"event": "resume", "step": state["step"], "time": round(time.time(), 3)})
    pad_id = getattr(lm.text_tokenizer, "pad_token_id", None) or 0
    stats = PackStats()
    rows = packed_rows(cfg.data, lm.vocab, lm.text_tokenizer, t.seq_len, t.seed, "train", pad_id, rank, world,
                       skip=state["rows"], stats=stats, state=state.get("data"))  # resumes without replaying
    eval_rows = None
    if t.eval_batches > 0:
        gen = packed_rows(cfg.data, lm.vocab, lm.text_tokenizer, t.seq_len, t.seed, "eval", pad_id, rank, world)
        eval_rows = [next(gen) for _ in range(t.eval_batches * t.micro_batch_size)]
    objectives = pair_objectives(cfg, lm, world, state)
    if init_info and eval_rows and state["step"] == 0:  # the loss the new piece starts from (= the source's)
        rec0 = {"step": 0, "event": "init_from", "eval_loss": evaluate(accelerator, model, eval_rows, t.micro_batch_size,
                                                                      amp, loss_head)}
        for obj in objectives:
            if obj.eval_pairs:
                rec0.update(evaluate_pairs(model, obj, amp, loss_head, pad_id, accelerator.device))
        log.write(rec0)

    last: dict = {}
    bar = tqdm(total=t.steps, initial=state["step"], disable=not (progress_wanted(progress) and accelerator.is_main_process),
               desc="lm train", dynamic_ncols=True)
    t0, tokens_since, sync_since = time.time(), 0, 0.0
    model.train()
    timed_out = resume and clock.out()  # a resumed run whose budget is spent takes no step (every rank reads the same state)
    while state["step"] < t.steps and not timed_out:
        step = state["step"]
        losses, bad, text_kls = [], 0, []
        margins: dict = {obj.name: ([], []) for obj in objectives}  # margins, losses of this step's pairs
        micro = step_batches(rows, t.micro_batch_size, t.grad_accum, t.step_tokens, t.micro_tokens,
                             lm.vocab.vision_start_id, t.text_token_cost)
        n_micro = len(micro)  # differs between ranks under step_tokens
        scales = [1.0 / n_micro] * n_micro  # loss_norm "micro": every micro-batch's mean weighs the same
        n_rows = sum(int(b["input_ids"].shape[0]) for b in micro)  # this rank's rows
        step_rows = n_rows * world
        doc_n = sum(document_tokens(b["weights"]) for b in micro)  # this rank's document tokens
        step_doc_tokens = doc_n * world  # exact when every rank takes alike; under loss_norm tokens, summed below
        if t.loss_norm == "tokens":  # every trained token of the step (all ranks) weighs the same, as in packed rows
            counts = [trained_tokens(b["weights"]) for b in micro]
            sums = accelerator.reduce(torch.tensor([float(sum(counts)), float(n_rows),
                                                    float(doc_n)], device=accelerator.device),
                                      reduction="sum")
            scales = [c * world / max(float(sums[0].item()), 1.0) for c in counts]
            step_rows, step_doc_tokens = int(sums[1].item()), int(sums[2].item())
        tokens_since += step_doc_tokens
        for k in range(n_micro):
            batch = _to(micro[k], accelerator.device)
            if cfg.data.input_noise > 0:
                batch = corrupt_video_inputs(batch, lm.vocab, cfg.data.input_noise, noise_generator(t.seed, step, k, rank),
                                             cfg.data.input_noise_mode)
            if cfg.data.stay_noise > 0:
                batch = stay_video_inputs(batch, lm.vocab, cfg.data.stay_noise, noise_generator(t.seed + 1, step, k, rank))
            ctx = accelerator.no_sync(model) if k < n_micro - 1 else _null()  # one synced backward a rank
            with ctx:
                loss, _ = forward_loss(model, batch, amp, loss_head)
                if loss_head.last_text_kl is not None:
                    text_kls.append(loss_head.last_text_kl)
                    loss_head.last_text_kl = None
                total = loss
                for obj in objectives:  # pair losses (motion contrast, preferences)
                    ploss, m = pair_loss(model, obj, amp, loss_head, pad_id, accelerator.device)
                    total = total + obj.weight * ploss
                    margins[obj.name][0].append(m)
                    margins[obj.name][1].append(float(ploss.detach()))
                bad += int(not torch.isfinite(total).item())
                accelerator.backward(loss * scales[k] + (total - loss) / n_micro)
            losses.append(loss.detach().float() * scales[k])
        state["rows"] += step_rows
        loop_end = time.perf_counter()  # from here to the averaged gradients: waiting for the other ranks + all-reduces
        bad_all = int(accelerator.reduce(torch.tensor([bad], device=accelerator.device), reduction="sum").item())
        # the step's objective: the mean of the micro-batch means (loss_norm micro), or every trained token of the step
        # alike (tokens; scales hold the world size, hence the mean over ranks), whatever the micro-batches were
        mean_loss = float(accelerator.reduce(torch.stack(losses).sum(), reduction="mean"))
        if bad_all:
            optimizer.zero_grad(set_to_none=True)
            state["nonfinite"] += 1
            log.write({"step": step + 1, "event": "nonfinite_loss", "skipped": True, "count": state["nonfinite"]})
            if state["nonfinite"] >= t.max_nonfinite:
                bar.close()
                log.close()
                raise TrainingError(
                    f"{state['nonfinite']} non-finite losses (max_nonfinite={t.max_nonfinite}), last at step {step + 1}: "
                    "lower train.lr, check the data, or turn bf16 off"
                )
        else:
            if own_sync:
                average_gradients(model, world)
                sync_since += time.perf_counter() - loop_end
            gnorm = accelerator.clip_grad_norm_(model.parameters(), t.grad_clip) if t.grad_clip > 0 else None
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        state["step"] = step + 1
        state["elapsed_s"] = round(clock.elapsed(), 3)
        if t.max_minutes > 0:  # every rank stops at the same step
            flag = torch.tensor([int(clock.out())], device=accelerator.device)
            timed_out = bool(accelerator.reduce(flag, reduction="sum").item())
        final = state["step"] == t.steps or timed_out
        bar.update(1)
        rec = {"step": state["step"], "loss": mean_loss, "lr": scheduler.get_last_lr()[0], "time": round(time.time(), 3)}
        if hint is not None:  # how far P (and Q) have grown from zero (vidgpt.parent_hint)
            rec["parent_hint_norm"] = float(getattr(hint, HINT_KEY).detach().norm())
            if hint.has_prev:
                rec["prev_hint_norm"] = float(getattr(hint, HINT_PREV_KEY).detach().norm())
            if hint.has_caption:
                rec["caption_hint_norm"] = float(getattr(hint, HINT_CAPTION_KEY).detach().norm())
            if hint.has_copy:  # the copy read-out's G, b (what each offset gets whatever the caption) and lam
                rec["copy_gate_norm"] = float(getattr(hint, COPY_KEY).detach().norm())
                rec["copy_bias_norm"] = float(getattr(hint, COPY_BIAS_KEY).detach().norm())
                if hasattr(hint, COPY_MIX_KEY):
                    rec["copy_mix"] = float(torch.sigmoid(getattr(hint, COPY_MIX_KEY).detach()))
                else:
                    rec["copy_gain"] = float(getattr(hint, COPY_GAIN_KEY).detach())
        if not bad_all and gnorm is not None:
            rec["grad_norm"] = float(gnorm)
        if text_kls:  # this rank's micro-batches that held text-only documents (loss.text_kl_weight)
            rec["text_kl"] = sum(text_kls) / len(text_kls)
        for obj in objectives:  # this step's pairs: the mean margin (nats a clip, less the reference's) and loss
            ms, ls = margins[obj.name]
            rec[f"{obj.name}_margin"] = float(torch.cat(ms).mean())
            rec[obj.loss_key] = sum(ls) / len(ls)
        if t.step_tokens > 0:  # rows of this step over all processes (they differ step to step under a budget)
            rec["rows"] = step_rows
        if timed_out:
            rec["event"] = "time_budget"
        if state["step"] % max(1, t.log_every) == 0 or final:
            dt = max(time.time() - t0, 1e-9)
            rec["tokens_per_s"] = tokens_since / dt
            if own_sync:  # the share of the wall time a rank spent waiting at the step's end (mean over the ranks)
                rec["sync_share"] = float(accelerator.reduce(torch.tensor([sync_since / dt], device=accelerator.device),
                                                            reduction="mean"))
            t0, tokens_since, sync_since = time.time(), 0, 0.0
        if eval_rows and ((t.eval_every and state["step"] % t.eval_every == 0) or final):
            rec["eval_loss"] = evaluate(accelerator, model, eval_rows, t.micro_batch_size, amp, loss_head)
            for obj in objectives:
                if obj.eval_pairs:
                    rec.update(evaluate_pairs(model, obj, amp, loss_head, pad_id, accelerator.device))
        log.write(rec)
        last = rec
        bar.set_postfix(loss=f"{mean_loss:.3f}")
        if (t.ckpt_every and state["step"] % t.ckpt_every == 0) or final:
            state["stats"] = stats.as_dict()
            state["data"] = gather_data_state(accelerator, rows)  # every rank: each stream's position
            for obj in objectives:
                state[obj.state_key] = obj.stream.state()
            fold_bit_rows(accelerator.unwrap_model(model))  # checkpoints hold plain rows (A = 0); the run continues unchanged
            save_checkpoint(accelerator, out, state["step"], state, t.keep_checkpoints)
    bar.close()

    accelerator.wait_for_everyone()
    plain = plain_model_for_save(accelerator, model)  # every rank: FSDP gathers the full state here
    if accelerator.is_main_process:
        lm.model = plain
        detach_bit_rows(lm.model)  # what ships has plain rows
        lm.model.eval()
        save_vidgpt_lm(lm, out / "model", form=t.save_form)
        png = plot_loss_curve(log.path, out / "loss_curve.png") if log.path.exists() else None
        log.write({"event": "done", "model": str(out / "model"), "loss_curve": str(png) if png else None,
                   "pack_stats": stats.as_dict()})
    log.close()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return last


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
