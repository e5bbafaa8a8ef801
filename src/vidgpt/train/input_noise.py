"""Noisy video-code inputs with clean targets (`data.input_noise`): the model cannot copy every code from its context.

Teacher forcing lets a video LM predict most codes from the codes before them: once the first codes of an object
are in the context, the rest of the object copies their colour, so the prompt's colour word only has to decide the
first one or two codes of a clip, a sliver of the loss. At sampling time nothing pins those first codes down, and
the object comes out in a random colour (issue 11's probes: the background colour word used, the object's not).
Replacing a share of the *input* video codes by random codes of the same sub-token group, while every *target*
stays the true code, makes the context unreliable: to predict the next code the model has to use the prompt as
well as the codes before it, on every code. It is also the usual remedy for exposure bias (the model learns to
continue from contexts with errors in them, as its own samples will have).

Only codes the document trains on (weight > 0: the target clip, never an edit's source clip or a prompt) are
replaced. The batch keeps `input_ids` (the targets) and gets `model_input_ids` (what the model reads);
`vidgpt.train.lm_loss.LossHead` feeds the latter to the model when present. The replacement is drawn from a
generator the trainer seeds by (train.seed, step, micro-batch, rank), so a resumed run sees the same noise.
"""

from __future__ import annotations

import torch

from ..vocab import UnifiedVocab


NOISE_MODES = ("fixed", "uniform")


def corrupt_video_inputs(batch: dict, vocab: UnifiedVocab, rate: float, generator: torch.Generator,
                         mode: str = "fixed") -> dict:
    """A copy of `batch` with `model_input_ids`: `input_ids` with about `rate` of the trained video codes
    replaced by uniformly random codes of the same sub-token group. rate 0 returns the batch unchanged.

    mode "uniform": each row draws its own rate from U(0, rate), so some documents keep a nearly clean context
    (the model learns to continue it) and some lose most of it (only the prompt says what the codes show)."""
    if rate <= 0:
        return batch
    if mode not in NOISE_MODES:
        raise ValueError(f"input noise mode {mode!r}: expected one of {NOISE_MODES}")
    ids = batch["input_ids"]
    noisy = ids.clone()
    trained = batch["weights"] > 0
    rates = torch.full((ids.shape[0], 1), float(rate))
    if mode == "uniform":
        rates = torch.rand((ids.shape[0], 1), generator=generator) * rate
    draw = (torch.rand(ids.shape, generator=generator, device="cpu") < rates).to(ids.device)
    for g in range(vocab.spec.subtokens):
        lo, hi = vocab.group_range(g)
        where = draw & trained & (ids >= lo) & (ids < hi)
        n = int(where.sum())
        if n:
            noisy[where] = torch.randint(lo, hi, (n,), generator=generator, device="cpu").to(ids.device)
    return {**batch, "model_input_ids": noisy}


def noise_generator(seed: int, step: int, micro: int, rank: int = 0) -> torch.Generator:
    """The generator of one micro-batch's noise: a function of where it is in the run only (resumes exactly)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7_919 + micro * 101 + rank * 13) % (2**63 - 1))
