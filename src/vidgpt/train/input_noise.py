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

`stay_video_inputs` (`data.stay_noise`) is the motion counterpart: a share of the codes of latent frames >= 1 are
read as the code of the same cell one latent frame earlier, i.e. as if nothing had moved there. Under teacher
forcing, a clip's later rows show which way its object went (the rows above in the same latent frame already carry
the shift), so the prompt's motion word only has to decide the first object row of each latent frame; with the
"nothing moved" context the model has to take the direction from the prompt and the previous frame on every cell.
"""

from __future__ import annotations

import torch

from ..geometry import blueprint_shape
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


def video_sections(ids: list[int], vocab: UnifiedVocab) -> list[tuple[int, tuple[int, int, int]]]:
    """(position of the first id, latent shape) of every blueprint / fine section of a row whose block header is in
    the row (a section whose header was cut off into an earlier row is skipped); ids past the row's end are the
    caller's to clip."""
    out, i, n = [], 0, len(ids)
    s = vocab.spec.subtokens
    while i < n:
        if ids[i] != vocab.vision_start_id or i + 3 >= n:
            i += 1
            continue
        dims = [vocab.header_value(ids[i + 1 + a], axis) for a, axis in enumerate("thw")]
        if None in dims:
            i += 1
            continue
        shape, j = tuple(dims), i + 4
        while j < n and ids[j] in (vocab.blueprint_id, vocab.fine_id):
            sec = blueprint_shape(shape) if ids[j] == vocab.blueprint_id else shape
            out.append((j + 1, sec))
            j += 1 + sec[0] * sec[1] * sec[2] * s
        i = j
    return out


def stay_video_inputs(batch: dict, vocab: UnifiedVocab, rate: float, generator: torch.Generator) -> dict:
    """A copy of `batch` whose `model_input_ids` read about `rate` of the trained codes of latent frames >= 1 as the
    code of the same cell in the previous latent frame (all sub-tokens of a cell together; the previous frame's
    true code). Applied on top of `model_input_ids` when the batch has them. rate 0 returns the batch unchanged."""
    if rate <= 0:
        return batch
    ids = batch["input_ids"]
    noisy = batch.get("model_input_ids", ids).clone()
    trained = batch["weights"] > 0
    s = vocab.spec.subtokens
    draw = torch.rand(ids.shape, generator=generator, device="cpu") < rate  # one draw per position; a cell uses its first
    for r in range(ids.shape[0]):
        row = ids[r].tolist()
        n = len(row)
        for start, (t, h, w) in video_sections(row, vocab):
            frame = h * w * s
            for f in range(1, t):
                first = start + f * frame
                for c in range(0, frame, s):
                    q = first + c
                    if q + s > n:
                        break
                    if draw[r, q] and bool(trained[r, q:q + s].all()):
                        noisy[r, q:q + s] = ids[r, q - frame:q - frame + s]
    return {**batch, "model_input_ids": noisy}
