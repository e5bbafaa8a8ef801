"""The constrained decode loop, and the plain backend (a transformers model with its DynamicCache).

A *backend* runs the model: `prefill(ids [R, L], mask [R, L])` then `step(tokens [R])`, each
returning an opaque state from which `logits(state, lo, hi)` gives the logits of vocabulary rows
[lo, hi) at the last position, `[R, hi - lo]`. Rows R are the samples, followed by their
unconditional twins when classifier-free guidance is on. The fast backend (fast_decode.py)
computes only the rows asked for (a sliced lm_head); the plain one slices the full logits.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import GenerationError
from .constraints import StructureConstraint, range_mask
from .sampling import PositionalNoise, SamplingConfig, apply_cfg, sample_with_noise


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of different lengths -> (ids [R, L], attention mask [R, L]) padded on the left."""
    L = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), L), dtype=torch.long)
    for i, p in enumerate(prompts):
        if len(p):
            ids[i, L - len(p) :] = torch.as_tensor(list(p), dtype=torch.long)
            mask[i, L - len(p) :] = 1
    return ids.to(device), mask.to(device)


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip the left padding: [R, L] -> 0, 1, ... from each row's first real token."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


class HFBackend:
    """Plain path: the transformers model's own forward with a DynamicCache (the reference)."""

    name = "plain"

    def __init__(self, model):
        import inspect

        self.model = model
        self.device = next(model.parameters()).device
        # transformers >= 5.2x names the cache argument `cache`; older ones `past_key_values`
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"

    def _inputs(self, ids: torch.Tensor, extra: torch.Tensor | None) -> dict:
        """input_ids, or input embeddings with `extra` [R, L, H] added (vidgpt.parent_hint)."""
        ids = ids.to(self.device)
        if extra is None:
            return {"input_ids": ids}
        emb = self.model.get_input_embeddings()(ids)
        return {"inputs_embeds": emb + extra.to(device=emb.device, dtype=emb.dtype)}

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, max_len: int | None = None,
                extra: torch.Tensor | None = None):
        from transformers import DynamicCache

        self.cache = DynamicCache()
        self.mask = mask.to(self.device)
        self.pos = position_ids(self.mask)[:, -1]
        out = self.model(
            **self._inputs(ids, extra),
            attention_mask=self.mask,
            position_ids=position_ids(self.mask),
            use_cache=True,
            **{self.cache_arg: self.cache},
            logits_to_keep=1,
        )
        return out.logits[:, -1]

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor, extra: torch.Tensor | None = None):
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        self.pos = self.pos + 1
        out = self.model(
            **self._inputs(tokens.view(-1, 1), extra),
            attention_mask=self.mask,
            position_ids=self.pos.view(-1, 1),
            use_cache=True,
            **{self.cache_arg: self.cache},
            logits_to_keep=1,
        )
        return out.logits[:, -1]

    def keep_rows(self, n: int) -> None:
        """Go on with the first n rows only (FastDecoder.keep_rows)."""
        self.cache.batch_select_indices(torch.arange(n, device=self.device))
        self.mask, self.pos = self.mask[:n], self.pos[:n]

    def logits(self, state: torch.Tensor, lo: int, hi: int, positions=None) -> torch.Tensor:
        """state [R, V] or [R, L, V] -> rows [lo, hi); `positions` (which window positions a [R, L, ...] state
        holds) matters only to a wrapper that adds per-position terms (parent_hint.HintedBackend)."""
        return state[..., lo:hi]


@dataclass
class DecodeOutput:
    tokens: torch.Tensor  # [N, steps] every id chosen (rows that finished early hold pad ids after)
    finished: list[bool]
    kinds: list[str]  # "block" or "text" per row
    steps: int


def _choose(backend, state, lo, hi, N, use_cfg, sampling, noise, index, vocab_size, device, scale=None):
    """The tokens [N] for one position from its backend state (any leading dims squeezed by the caller).
    scale: the guidance scale of each row [N, 1] (default: sampling.cfg for all)."""
    scale = sampling.cfg if scale is None else scale
    if isinstance(lo, int):
        if hi - lo == 1:
            return torch.full((N,), lo, dtype=torch.long, device=device)
        logits = backend.logits(state, lo, hi)
        logits = apply_cfg(logits, scale, N) if use_cfg else logits[:N]
        u = noise(index, N) if noise is not None else None
        return sample_with_noise(logits, sampling, u) + lo
    V = vocab_size or max(hi)
    logits = backend.logits(state, 0, V)
    logits = apply_cfg(logits, scale, N) if use_cfg else logits[:N].float()
    allowed = range_mask(lo, hi, V, logits.device)
    logits = logits.masked_fill(~allowed, float("-inf"))
    u = noise(index, N) if noise is not None else None
    return sample_with_noise(logits, sampling, u)


def still_guided(backend, N: int, use_cfg: bool, cfg_until: int | None, index: int) -> bool:
    """Whether position `index` of the turn is drawn with guidance; at cfg_until the unconditional rows are dropped
    from the backend's cache (`keep_rows`), once, and it is not any more (constrained_decode's cfg_until)."""
    if use_cfg and cfg_until is not None and index >= cfg_until:
        backend.keep_rows(N)
        return False
    return use_cfg


def can_speculate(backend) -> bool:
    """True when the backend's own class feeds several positions per pass (a wrapper that only
    forwards attributes, like the server's progress watch, keeps the one-token loop it observes)."""
    cls = type(backend)
    if not (callable(getattr(cls, "step_many", None)) and callable(getattr(cls, "truncate", None))):
        return False
    return bool(getattr(backend, "supports_step_many", True))


def _forced_run(forced: torch.Tensor | None, step: int, max_steps: int | None) -> int:
    """How many ids from position `step` on are given in every row of `forced` ([N, steps], -1 = drawn)."""
    if forced is None or step >= forced.shape[1]:
        return 0
    end = forced.shape[1] if max_steps is None else min(forced.shape[1], max_steps)
    free = (forced[:, step:end] < 0).any(0).nonzero()
    return int(free[0]) if len(free) else end - step


@torch.inference_mode()
def constrained_decode(
    backend,
    prompts: Sequence[Sequence[int]],
    constraint: StructureConstraint,
    sampling: SamplingConfig,
    generator: torch.Generator | None = None,
    uncond_prompts: Sequence[Sequence[int]] | None = None,
    pad_id: int = 0,
    vocab_size: int | None = None,
    progress=None,
    max_steps: int | None = None,
    speculative: int = 0,
    stats: dict | None = None,
    speculative_mode: str | None = None,
    speculative_give_up: float = 0.0,
    cfg_until: int | None = None,
    late_from: int | None = None,
    noise: PositionalNoise | None = None,
    cfg_scales: torch.Tensor | None = None,
    forced: torch.Tensor | None = None,
) -> DecodeOutput:
    """Sample one constrained turn for each of the N prompts (with CFG when `uncond_prompts`).

    Rows are [cond_0 .. cond_{N-1}, uncond_0 .. uncond_{N-1}]; the token drawn for sample i is
    fed to both of its rows. `uncond_prompts` may hold G * N prompts (G groups of N, group-major): sample i is then
    guided away from the mean of its G negative rows (sampling.apply_cfg). `progress` is an optional tqdm-like
    object updated as tokens come.
    Token i is drawn with the noise of position i (sampling.PositionalNoise), so the result does
    not depend on how many tokens a forward pass decides. speculative=k > 0 decodes the lockstep
    (fixed-shape) part with speculative Jacobi decoding over windows of k drafted tokens
    (jacobi.py): the same tokens, fewer passes when drafts are accepted; speculative_mode="sjd"
    takes the approximate min(1, p/q) acceptance test instead (more accepted, another clip for a
    seed; None = the backend's `speculative_mode`, else "exact"). speculative_give_up > 0: exact-mode
    windows that bring fewer tokens per pass than this (measured over jacobi.PROBE_PASSES passes) fall back to
    one token a pass. `stats` (a dict) gets passes / tokens / accepted counts.
    cfg_until: guide only the first `cfg_until` tokens of the turn (e.g. the header and the blueprint); then the
    unconditional rows are dropped from the cache (`backend.keep_rows`) and the rest is drawn from the conditional
    rows alone: fewer rows a pass (an approximation of guiding every token; pipeline `cfg_fine=False`).
    late_from: with `sampling.late_cfg` set, the tokens from this index of the turn on are guided at that scale
    instead of `sampling.cfg` (the pipeline: from the blueprint's second latent frame); such a turn is drawn one
    token a pass (no speculative windows).
    noise: the positional noise to draw with (default: a new one from `generator`); e.g. a shifted one for a decode
    that goes on from tokens already drawn.
    cfg_scales: [N, steps] the guidance scale of each sample at each position of the turn, in place of sampling.cfg
    (e.g. guidance only on some cells); such a turn is drawn one token a pass.
    forced: [N, steps] ids, -1 where the id is drawn: the others are taken as given (their ids must be legal for the
    constraint). Where every row's next ids are given, they are fed in one pass when the backend takes several
    positions a pass (`step_many`), without computing their logits: e.g. the pipeline's `blueprint_mask`.
    """
    N = len(prompts)
    use_cfg = uncond_prompts is not None and sampling.use_cfg
    rows = list(prompts) + (list(uncond_prompts) if use_cfg else [])
    if use_cfg and (not uncond_prompts or len(uncond_prompts) % N):
        raise GenerationError(f"guidance: {len(uncond_prompts)} negative prompts for {N} samples; expected a multiple")
    copies = len(rows) // N
    ids, mask = left_pad(rows, pad_id, backend.device)
    extra = int(speculative) + 1 if speculative else 0
    state = backend.prefill(ids, mask, max_len=ids.shape[1] + (max_steps or 0) + 1 + extra)
    if sampling.temperature <= 0:
        noise = None
    elif noise is None:
        noise = PositionalNoise(generator, backend.device)
    late = None
    if late_from is not None and sampling.late_cfg is not None:
        late = dataclasses.replace(sampling, cfg=sampling.late_cfg)
    if forced is not None and cfg_until is not None:
        raise GenerationError("constrained_decode: forced ids and cfg_until together are not supported")
    if speculative and constraint.lockstep and can_speculate(backend) and late is None and cfg_scales is None \
            and forced is None:
        from .jacobi import jacobi_decode

        return jacobi_decode(backend, state, constraint, sampling, noise, N, use_cfg, int(speculative),
                             progress=progress, max_steps=max_steps, stats=stats, mode=speculative_mode,
                             give_up_below=speculative_give_up, cfg_until=cfg_until)
    out: list[torch.Tensor] = []
    step = 0
    passes = 1  # the prefill decides the first position
    many = forced is not None and can_speculate(backend)
    while not constraint.done:
        run = _forced_run(forced, step, max_steps)
        if run:
            # the next `run` ids are given in every row: no logits, and one pass for all of them where possible
            given = forced[:, step : step + run].to(backend.device)
            for j in range(run):
                constraint.advance(given[:, j])
                out.append(given[:, j])
                if progress is not None:
                    progress.update(1)
                if constraint.done:
                    given = given[:, : j + 1]
                    break
            step += given.shape[1]
            if constraint.done or (max_steps is not None and step >= max_steps):
                break
            feed = given.repeat(copies, 1) if use_cfg else given
            if many and feed.shape[1] > 1:
                state = backend.step_many(feed)[:, -1]
                passes += 1
            else:
                for j in range(feed.shape[1]):
                    state = backend.step(feed[:, j])
                    passes += 1
            continue
        lo, hi = constraint.ranges()
        now = late if late is not None and step >= late_from else sampling
        scale = cfg_scales[:, step : step + 1].to(backend.device) if cfg_scales is not None else None
        tok = _choose(backend, state, lo, hi, N, use_cfg, now, noise, step, vocab_size, backend.device, scale)
        if forced is not None and step < forced.shape[1]:
            given = forced[:, step].to(tok.device)
            tok = torch.where(given >= 0, given, tok)
        constraint.advance(tok)
        out.append(tok)
        step += 1
        if progress is not None:
            progress.update(1)
        if constraint.done or (max_steps is not None and step >= max_steps):
            break
        use_cfg = still_guided(backend, N, use_cfg, cfg_until, step)
        state = backend.step(tok.repeat(copies) if use_cfg else tok)
        passes += 1
    if stats is not None:
        stats.update(passes=passes, tokens=step, accepted=0)
    tokens = torch.stack(out, dim=1).cpu() if out else torch.zeros((N, 0), dtype=torch.long)
    return DecodeOutput(tokens, constraint.finished(), constraint.kinds(), step)
