"""VidGPT: text -> video (coarse-to-fine), edits and chat over one extended LM and the video tokenizer.

    pipe = VidGPT.from_pretrained("model/")
    out = pipe.generate("a red circle moves right", frames=17, height=128, width=128, seed=0)
    out.videos            # uint8 [N, T, H, W, 3]
    out.save("clip.mp4")

One call samples, for each of `num` samples, one assistant turn under the structure constraint:
`<|vision_start|>` header, the blueprint section (the clip at half size), the fine section with the
blueprint in context, `<|vision_end|>`. `blueprint_only=True` stops after the blueprint and decodes
it as a preview: the video tokenizer decodes the blueprint codes at half size and the frames are
upsampled 2x for display. Classifier-free guidance runs conditional and unconditional (negative
prompt) rows in one batch; with no negative prompt given, a model whose vidgpt.json sets `"contrast_motion": true`
guides away from the prompt with its motion reversed ("moving right" -> "moving left", `default_negative`), so the
guidance carries the direction, else from the empty prompt. Longer videos than one clip (`clip_frames`) are
continued clip by clip, each conditioned on the last `context_frames` latent frames of the clip before, and stitched.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import GenerationError, ModelError
from ..geometry import ClipGeometry, block_length, factors_of, moved_fine_mask, video_shape
from ..layout import DEFAULT_CONTINUE, Layout, Sample, Turn, VisualBlock
from ..vocab import UnifiedVocab
from .constraints import ShapeLimits, StructureConstraint, blueprint_frame_index, fine_index
from .decoding import constrained_decode
from ..parent_hint import load_parent_hint_state, wrap_backend
from .fast_decode import make_backend
from .progress import clip_progress
from .result import GenerationResult
from .sampling import PositionalNoise, SamplingConfig, make_generator
from ..utils import progress_wanted

__all__ = ["GenerationResult", "VidGPT", "default_model_dir", "resolve_model_dir"]


def still_blueprint(codes: torch.Tensor) -> torch.Tensor:
    """Blueprint codes [t, h, w] held still: every latent frame the first one's (the tokenizer codes a still clip's
    later latent frames exactly as its first; the negative of `follow_blueprint`'s guidance)."""
    return codes[:1].expand_as(codes).clone()


def moved_fine_cells(blueprint: torch.Tensor, fine_shape) -> torch.Tensor:
    """bool [t, h, w] over the fine grid: the cells under blueprint cells whose code differs from the still
    blueprint's (where the object went or left; latent frame 0 never)."""
    return torch.from_numpy(moved_fine_mask(blueprint.cpu().numpy(), fine_shape)).to(blueprint.device)


def default_model_dir() -> Path:
    """$VIDGPT_MODEL if set, else the repository's shipped `model/` directory."""
    env = os.environ.get("VIDGPT_MODEL")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "model"


def resolve_model_dir(model: str | os.PathLike | None) -> Path:
    """The model directory to load; ModelError (one line, with the fix) when there is none."""
    if model is None:
        d = default_model_dir()
        if not d.exists():
            raise ModelError(
                f"{d}: no vidgpt model here yet; make one with `vidgpt lm extend` then `vidgpt lm train` "
                "(or pass --model DIR / set VIDGPT_MODEL)"
            )
    else:
        d = Path(model)
    if not d.is_dir():
        raise ModelError(f"{d}: model directory not found")
    if not (d / "vidgpt.json").is_file():
        raise ModelError(f"{d}: not a vidgpt model (no vidgpt.json); make one with `vidgpt lm extend`")
    return d


class VidGPT:
    """An extended causal LM + its video tokenizer, with constrained coarse-to-fine sampling."""

    def __init__(
        self,
        model,
        text_tokenizer,
        vocab: UnifiedVocab,
        video_tokenizer,
        chat: bool = True,
        meta: dict | None = None,
        fast: bool = True,
        decode_options: dict | None = None,
    ):
        self.model = model.eval()
        self.text_tokenizer = text_tokenizer
        self.vocab = vocab
        self.video_tokenizer = video_tokenizer.eval() if video_tokenizer is not None else None
        self.meta = dict(meta or {})
        self.layout = Layout(vocab, text_tokenizer, chat=chat)
        layout_meta = self.meta.get("layout", {}) or {}
        self.blueprint = bool(layout_meta.get("blueprint", True))
        self.prompt_expansion = bool(self.meta.get("prompt_expansion", False))
        # guide away from the prompt with its motion reversed when no negative prompt is given (default_negative)
        self.contrast_motion = bool(self.meta.get("contrast_motion", False))
        self.fps = float(self.meta.get("fps", 8))
        clip = self.meta.get("default_clip") or {}
        # the clip size the model was trained on (vidgpt.json "default_clip"); 17x128x128 when not recorded
        self.default_clip = (int(clip.get("frames", 17)), int(clip.get("height", 128)), int(clip.get("width", 128)))
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
        self.device = next(model.parameters()).device
        self.time_factor, self.space_factor = factors_of(self.video_tokenizer, self.meta)
        self.decode_options = dict(decode_options or {})
        opts = dict(self.decode_options)
        # drafted tokens per pass for speculative Jacobi decoding (0 = one token a pass); see jacobi.py
        self.speculative = int(opts.pop("speculative", 0) or 0)
        # "exact" (the one-token loop's tokens) or "sjd" (approximate acceptance, more drafts kept); jacobi.py
        self.speculative_mode = opts.pop("speculative_mode", None) or None
        # tokens per pass below which exact-mode windows give up after a few passes (0 = never); jacobi.py
        self.speculative_give_up = float(opts.pop("speculative_give_up", 0.0) or 0.0)
        # classifier-free guidance on the fine section too (False: on the header and blueprint only, then the
        # unconditional rows are dropped: half the rows a pass for ~80% of the ids; an approximation). Default: the
        # model's vidgpt.json "cfg_fine", else False - what the CLI has drawn with since 2026-12-04 (docs/DECODING.md)
        # and every figure of the shipped model was measured with; the eval and the web page draw the same way
        self.cfg_fine = bool(opts.pop("cfg_fine", self.meta.get("cfg_fine", False)))
        # guidance scale of the fine section towards the blueprint's motion: the fine codes are drawn a second pass,
        # guided away from the same prompt and header over the blueprint held still at its first latent frame
        # (1 = off; sample_blocks). Default: the model's vidgpt.json "follow_blueprint", else off.
        follow = opts.pop("follow_blueprint", self.meta.get("follow_blueprint"))
        self.follow_blueprint = 1.0 if follow is None else float(follow)
        # where that guidance applies: "moved" = the fine cells under blueprint cells that differ from the still
        # blueprint (where the object went or left), "all" = every fine code
        self.follow_cells = str(opts.pop("follow_cells", self.meta.get("follow_cells", "all")))
        if self.follow_cells not in ("moved", "all"):
            raise GenerationError(f"follow_cells {self.follow_cells!r}: expected moved or all")
        if self.follow_blueprint < 0:
            raise GenerationError(f"follow_blueprint {self.follow_blueprint}: a guidance scale must be >= 0")
        # the fine section drawn only near what its blueprint shows (blueprint_region_mask, this many blueprint cells
        # of margin); the other fine cells are set to the codes of the blueprint's own preview upsampled to full size
        # (None = off). Default: the model's vidgpt.json "blueprint_mask", else off.
        mask = opts.pop("blueprint_mask", self.meta.get("blueprint_mask"))
        self.blueprint_mask = None if mask is None else int(mask)
        if self.blueprint_mask is not None and self.blueprint_mask < 0:
            raise GenerationError(f"blueprint_mask {self.blueprint_mask}: a margin in blueprint cells must be >= 0")
        if self.blueprint_mask is not None and self.follow_blueprint != 1.0:
            raise GenerationError("blueprint_mask and follow_blueprint: choose one way to draw the fine section")
        if self.speculative < 0:
            raise GenerationError(f"speculative {self.speculative}: drafts per pass must be >= 0 (0 = one token a pass)")
        # the motion verifier (vidgpt.verifier; from the model directory's motion_verifier.safetensors, None = none)
        # and how many blueprints it picks from for each prompt that names a straight direction (decode option /
        # vidgpt.json "best_of"; 1 = one blueprint, as drawn)
        self.verifier = opts.pop("verifier", None)
        best_of = opts.pop("best_of", self.meta.get("best_of", 1))
        if isinstance(best_of, bool) or not isinstance(best_of, int) or best_of < 1:
            raise GenerationError(f"best_of {best_of!r}: blueprints drawn per prompt, an integer >= 1")
        if best_of > 1 and self.verifier is None:
            raise GenerationError(f"best_of {best_of}: picking a blueprint needs the model's motion verifier "
                                  "(motion_verifier.safetensors, tools/train_verifier.py)")
        if best_of > 1 and (self.follow_blueprint != 1.0 or self.blueprint_mask is not None):
            raise GenerationError("best_of with follow_blueprint or blueprint_mask: choose one way to draw the fine section")
        self.best_of = best_of
        # the fine section's own sampling temperature (decode option / vidgpt.json "fine_temperature"; None: the
        # call's temperature): the header and blueprint are drawn first, then the fine codes at this temperature
        fine_t = opts.pop("fine_temperature", self.meta.get("fine_temperature"))
        if fine_t is not None and (isinstance(fine_t, bool) or not isinstance(fine_t, (int, float))
                                   or not math.isfinite(fine_t) or fine_t < 0):
            raise GenerationError(f"fine_temperature {fine_t!r}: a sampling temperature, a finite number >= 0")
        self.fine_temperature = None if fine_t is None else float(fine_t)
        # the model's parent hints (vidgpt.parent_hint: {"proj": P} from parent_hint.safetensors; None = none)
        self.parent_hint = opts.pop("parent_hint", None)
        # the copy read-out's tilt gain at sampling time (vidgpt.copy_readout; vidgpt.json "copy_gain"; None: as trained)
        gain = opts.pop("copy_gain", self.meta.get("copy_gain"))
        if gain is not None:
            from ..copy_readout import COPY_GAIN_KEY

            if self.parent_hint is None or COPY_GAIN_KEY not in self.parent_hint:
                raise GenerationError("copy_gain sets the copy read-out's tilt: the model has no tilt read-out "
                                      "(model.copy_readout_form: tilt)")
            if not (isinstance(gain, (int, float)) and math.isfinite(gain)):
                raise GenerationError(f"copy_gain {gain!r}: a finite number")
            self.parent_hint = {**self.parent_hint, COPY_GAIN_KEY: torch.tensor(float(gain))}
        # the read-out only until a blueprint frame's first changed cell (vidgpt.json "copy_until_change"; None: as the
        # model's state says)
        until = opts.pop("copy_until_change", self.meta.get("copy_until_change"))
        if until is not None:
            from ..copy_readout import COPY_KEY, COPY_UNTIL_KEY

            if self.parent_hint is None or COPY_KEY not in self.parent_hint:
                raise GenerationError("copy_until_change gates the copy read-out: the model has none "
                                      "(model.copy_readout)")
            if not isinstance(until, bool):
                raise GenerationError(f"copy_until_change {until!r}: true or false")
            self.parent_hint = {**self.parent_hint, COPY_UNTIL_KEY: torch.tensor(float(until))}
        self.backend = wrap_backend(make_backend(model, fast, **opts), model, vocab, self.parent_hint)
        self.last_stats: dict = {}
        eos = getattr(text_tokenizer, "eos_token_id", None)
        if chat:
            self.tail_ids = list(self.layout._ids(self.layout.wrappers.end_of_turn)) or [eos]
        else:
            self.tail_ids = [eos]
        self.stop_id = self.tail_ids[0]
        pad = getattr(text_tokenizer, "pad_token_id", None)
        self.pad_id = int(pad if pad is not None else (eos if eos is not None else 0))

    @classmethod
    def from_pretrained(cls, directory=None, device=None, dtype=None, fast: bool = True,
                        decode_options: dict | None = None, light: bool = False) -> "VidGPT":
        """Load a vidgpt LM directory (see docs/CONTRACTS.md) and the video tokenizer inside it.

        decode_options: `speculative` (drafts per pass, jacobi.py), `speculative_mode` ("exact" or
        "sjd"), `speculative_give_up` (tokens per pass below which exact windows stop drafting), `cfg_fine`
        (True: the fine section guided too; default the model's vidgpt.json "cfg_fine", else False: guidance on the
        header and blueprint only, the fine section from the conditional rows) and the fast
        backend's options
        (fast_decode.FastDecoder: weights, dtype, attention; with dtype "int8" the model directory's
        int8_maxima.safetensors, when there, calibrates the int8 smoothing).

        light: on the CPU with the fast backend, load the weights without transformers' model classes
        (light_model.LightLlama: what the CLI uses; `pipe.model` then has no forward, so the plain path and
        perplexity need light=False, the default). Falls back to the full load where it cannot.
        """
        from ..tokenizer import VideoTokenizer
        from .ready_cache import load_light, load_ready
        from ..utils import pick_device

        d = resolve_model_dir(directory)
        device = pick_device(device)
        if dtype is None and device.type == "cuda":
            dtype = torch.bfloat16
        got = None
        if light and fast and device.type == "cpu":
            got = load_light(d, dtype=dtype)
        # delta forms through the ready cache
        lm, how = got if got is not None else load_ready(d, dtype=dtype, device=device)
        if lm.video_tokenizer_dir is None:  # the loaders set None when the named directory is not there
            from ..backbone import VIDEO_TOKENIZER_DIR

            named = (lm.meta or {}).get("video_tokenizer", VIDEO_TOKENIZER_DIR)
            raise ModelError(f"{d / named}: the model's video tokenizer directory is missing (vidgpt.json names "
                             f"{named!r}, relative to the model directory)")
        tok_dir = Path(lm.video_tokenizer_dir)
        video_tok = VideoTokenizer.from_pretrained(tok_dir, device=device)
        chat = bool((lm.meta.get("layout") or {}).get("chat", True))
        decode_options = dict(decode_options or {})
        decode_options.setdefault("parent_hint", load_parent_hint_state(d))  # None when the model has none
        if "verifier" not in decode_options:
            from ..verifier import load_verifier

            decode_options["verifier"] = load_verifier(d)  # None when the model has none
        if decode_options.get("dtype") == "int8" and fast and "int8_maxima" not in decode_options:
            from .int8_calibration import load_maxima

            decode_options["int8_maxima"] = load_maxima(d)  # None: the decoder calibrates on the first prompt
        pipe = cls(lm.model, lm.text_tokenizer, lm.vocab, video_tok, chat=chat, meta=lm.meta, fast=fast,
                   decode_options=decode_options)
        pipe.loaded_from = how
        return pipe

    # --- shapes and limits -----------------------------------------------------------------
    def sections(self, blueprint_only: bool = False) -> tuple[str, ...]:
        if blueprint_only:
            return ("blueprint",)
        return ("blueprint", "fine") if self.blueprint else ("fine",)

    def geometry(self, frames: int, height: int, width: int, blueprint: bool | None = None) -> ClipGeometry:
        """The clip geometry of a request under this model's tokenizer factors (not yet validated)."""
        blueprint = self.blueprint if blueprint is None else blueprint
        return ClipGeometry(frames, height, width, self.time_factor, self.space_factor, bool(blueprint))

    @property
    def size_multiple(self) -> int:
        """What clip sides must be multiples of (2x the space factor when a blueprint is drawn)."""
        return self.geometry(1, 1, 1).multiple

    def resolve_clip(self, frames: int | None, height: int | None, width: int | None) -> tuple[int, int, int]:
        """(frames, height, width) with each None replaced by the model's default clip."""
        return tuple(d if v is None else v for v, d in zip((frames, height, width), self.default_clip))

    def latent_shape(self, frames: int, height: int, width: int, blueprint: bool | None = None) -> tuple[int, int, int]:
        """Validate a requested video size and return its latent (t, h, w); GenerationError if impossible."""
        s = self.vocab.spec
        return self.geometry(frames, height, width, blueprint).check(s.max_latent_t, s.max_latent_hw).latent

    def check_fits(self, prompt_len: int, shape, sections: Sequence[str]) -> int:
        """Positions left after the prompt; GenerationError if the block does not fit the context."""
        n = block_length(shape, self.vocab.spec.subtokens, "blueprint" in sections, "fine" in sections)
        total = prompt_len + n + len(self.tail_ids)
        if total > self.max_positions:
            T, H, W = video_shape(*shape, time_factor=self.time_factor, space_factor=self.space_factor)
            raise GenerationError(
                f"a {T}-frame {H}x{W} clip takes {n} tokens; with the {prompt_len}-token prompt that is {total}, "
                f"more than the model's {self.max_positions} positions (use fewer frames or a smaller size)"
            )
        return self.max_positions - prompt_len

    # --- sampling ---------------------------------------------------------------------------
    def sample_blocks(
        self,
        prompts: Sequence[Sequence[int]],
        uncond: Sequence[Sequence[int]] | None,
        shape,
        sections: Sequence[str],
        sampling: SamplingConfig,
        generator: torch.Generator | None,
        progress: bool = False,
        desc: str = "sampling",
        noise=None,
        directions: Sequence[str | None] | None = None,
    ) -> tuple[list[VisualBlock], list[list[int]]]:
        """One constrained block per prompt. Returns the parsed blocks and each row's ids (+ tail).

        directions: the straight direction each prompt asks for (vidgpt.data.motion_words.named_direction; None where
        it names none). With `best_of` N > 1 and a blueprint to draw, N blueprints are drawn for each prompt with a
        direction and the motion verifier keeps the one likeliest to move that way; the rest of the block is drawn
        after it (`_sample_best_blueprint`). With `fine_temperature` set, the header and blueprint are drawn first and
        the fine section after them at that temperature (the same path, one blueprint a prompt).

        With `follow_blueprint` != 1 and both sections, two passes: the header and blueprint as usual (guided by
        `uncond`), then the fine section guided by `follow_blueprint` away from rows that see the same prompt over
        the blueprint held still (still_blueprint): what the fine codes owe to the blueprint's motion is amplified.
        """
        if (self.best_of > 1 and "blueprint" in sections and directions is not None
                and any(d is not None for d in directions)):
            return self._sample_best_blueprint(prompts, uncond, shape, sections, sampling, generator, progress, desc,
                                               directions)
        if (self.fine_temperature is not None and tuple(sections) == ("blueprint", "fine")
                and self.follow_blueprint == 1.0 and self.blueprint_mask is None):
            # two passes: the blueprint, then the fine codes at their own temperature (one blueprint a prompt)
            return self._sample_best_blueprint(prompts, uncond, shape, sections, sampling, generator, progress, desc,
                                               [None] * len(prompts))
        if self.follow_blueprint != 1.0 and tuple(sections) == ("blueprint", "fine"):
            return self._sample_following_blueprint(prompts, uncond, shape, sampling, generator, progress, desc, noise)
        if self.blueprint_mask is not None and tuple(sections) == ("blueprint", "fine"):
            return self._sample_within_blueprint(prompts, uncond, shape, sampling, generator, progress, desc, noise)
        longest = max(len(p) for p in list(prompts) + list(uncond or []))
        left = self.check_fits(longest, shape, sections)
        n = len(prompts)
        con = StructureConstraint(self.vocab, n, shape=shape, sections=sections, max_new_tokens=left, pad_id=self.pad_id)
        total = block_length(shape, self.vocab.spec.subtokens, "blueprint" in sections, "fine" in sections)
        # a late guidance scale starts at the blueprint's second latent frame (where the motion begins)
        late_from = blueprint_frame_index(self.vocab, shape, 1) if "blueprint" in sections and shape[0] > 1 else None
        cfg_until = None
        if not self.cfg_fine and "blueprint" in sections and "fine" in sections:
            # guided up to the blueprint's end; from <|fine|> on, the conditional rows alone
            cfg_until = fine_index(self.vocab, shape)
        self.last_stats.clear()  # this call's counts only (a K=0 call after a K=4 one keeps no "mode" / "gave_up_at")
        with clip_progress(shape, self.vocab.spec.subtokens, sections, enabled=progress, desc=desc) as bar:
            out = constrained_decode(
                self.backend, prompts, con, sampling, generator, uncond_prompts=uncond,
                pad_id=self.pad_id, vocab_size=self.vocab.end, progress=bar, max_steps=total,
                speculative=self.speculative, stats=self.last_stats, speculative_mode=self.speculative_mode,
                speculative_give_up=self.speculative_give_up, cfg_until=cfg_until, late_from=late_from, noise=noise,
            )
        return self._parse_rows(prompts, [out.tokens[i].tolist() for i in range(n)])

    def _parse_rows(self, prompts, drawn: list[list[int]]) -> tuple[list[VisualBlock], list[list[int]]]:
        """Each prompt's drawn ids (+ the tail) -> (its block, its ids); the constraint guarantees they parse."""
        blocks, rows = [], []
        for prompt, ids in zip(prompts, drawn):
            ids = ids + self.tail_ids
            blocks.append(self.layout.parse(list(prompt) + ids).turns[-1].blocks()[-1])
            rows.append(ids)
        return blocks, rows

    def _head_ids(self, block: VisualBlock) -> list[int]:
        """The block's ids up to <|fine|> (its header and blueprint), without <|vision_end|>."""
        return self.layout.encode_block(block)[:-1] + [self.vocab.fine_id]

    def _blueprint_pass(self, prompts, uncond, shape, sampling, generator, progress, desc, noise=None):
        """The first pass of the two-pass paths: (the positional noise both passes draw with, the blocks with their
        blueprints, each block's ids up to <|fine|>)."""
        if noise is None and sampling.temperature > 0:
            noise = PositionalNoise(generator, self.device)
        first, _ = self.sample_blocks(prompts, uncond, shape, ("blueprint",), sampling, generator, progress, desc,
                                      noise=noise)
        return noise, first, [self._head_ids(b) for b in first]

    def _fine_constraint(self, prompts, shape, heads) -> tuple[StructureConstraint, int]:
        """The structure constraint of the second pass, moved past the header and blueprint already drawn, and the
        ids left to draw (the fine codes and <|vision_end|>)."""
        left = self.check_fits(max(len(p) for p in prompts), shape, ("blueprint", "fine"))
        con = StructureConstraint(self.vocab, len(prompts), shape=shape, sections=("blueprint", "fine"),
                                  max_new_tokens=left, pad_id=self.pad_id)
        for _ in heads[0]:  # the plan goes on from the fine codes
            con.advance(None)
        return con, block_length(shape, self.vocab.spec.subtokens, True, True) - len(heads[0])

    def _fine_sampling(self, sampling: SamplingConfig, **changes) -> SamplingConfig:
        """How the second pass draws the fine section: `sampling` without its late guidance scale (that is for the
        blueprint's frames), at the decode option `fine_temperature` (else the call's own), with `changes`."""
        import dataclasses

        t = sampling.temperature if self.fine_temperature is None else self.fine_temperature
        return dataclasses.replace(sampling, late_cfg=None, temperature=t, **changes)

    def _fine_negatives(self, uncond, heads) -> list[list[int]] | None:
        """The second pass's negative rows: each unconditional prompt (G groups of n) over its prompt's header and
        blueprint, when the fine section is guided (`cfg_fine`); else None."""
        if uncond is None or not self.cfg_fine:
            return None
        n = len(heads)
        return [list(u) + heads[k % n] for k, u in enumerate(uncond)]

    def _fine_pass(self, prompts, shape, heads, con, total, neg, sampling, generator, progress, desc, stats,
                   speculative: bool = True, **extra):
        """The second pass of the two-pass paths: each prompt's fine section drawn after its header and blueprint
        (`heads`, from `_fine_constraint`'s `con` and `total`), guided away from the `neg` rows (None: unguided);
        speculative windows as the pipeline's unless `speculative` is False; `extra`: constrained_decode's noise /
        cfg_scales / forced. Returns the parsed (blocks, rows)."""
        cond = [list(p) + h for p, h in zip(prompts, heads)]
        if speculative:
            extra.update(speculative=self.speculative, speculative_mode=self.speculative_mode,
                         speculative_give_up=self.speculative_give_up)
        with clip_progress(shape, self.vocab.spec.subtokens, ("fine",), enabled=progress, desc=desc) as bar:
            out = constrained_decode(self.backend, cond, con, sampling, generator, uncond_prompts=neg,
                                     pad_id=self.pad_id, vocab_size=self.vocab.end, progress=bar, max_steps=total,
                                     stats=stats, **extra)
        return self._parse_rows(prompts, [heads[i] + out.tokens[i].tolist() for i in range(len(prompts))])

    def _sample_following_blueprint(self, prompts, uncond, shape, sampling, generator, progress, desc, noise=None):
        """sample_blocks' two-pass path: blueprints first, then the fine sections against still blueprints. Both
        passes draw with one positional noise (the second shifted to where the fine codes start), so the tokens
        are those of a one-pass decode wherever the guidance does not change the distribution."""
        import dataclasses

        noise, first, heads = self._blueprint_pass(prompts, uncond, shape, sampling, generator, progress, desc, noise)
        still = [self._head_ids(dataclasses.replace(b, blueprint=still_blueprint(b.blueprint))) for b in first]
        neg = [list(p) + h for p, h in zip(prompts, still)]
        n = len(prompts)
        con, total = self._fine_constraint(prompts, shape, heads)
        fine_sampling = self._fine_sampling(sampling, cfg=self.follow_blueprint)
        scales = None
        if self.follow_cells == "moved":
            scales = torch.ones(n, total)
            S = self.vocab.spec.subtokens
            for i, b in enumerate(first):
                cells = moved_fine_cells(b.blueprint, shape).reshape(-1).repeat_interleave(S)
                scales[i, : cells.numel()][cells] = self.follow_blueprint
        return self._fine_pass(prompts, shape, heads, con, total, neg, fine_sampling, generator, progress, desc,
                               self.last_stats, noise=noise.shifted(len(heads[0])) if noise is not None else None,
                               cfg_scales=scales)

    def _sample_best_blueprint(self, prompts, uncond, shape, sections, sampling, generator, progress, desc,
                               directions):
        """sample_blocks' path under `best_of` N: N blueprints for each prompt that names a direction (one for the
        others) in one batch, the one the motion verifier gives the highest log p(direction) kept (the first on a
        tie), then, with the fine section, the rest of each block drawn after its kept blueprint (guided as the
        one-pass decode: up to the blueprint's end unless `cfg_fine`)."""
        n = len(prompts)
        if len(directions) != n:
            raise GenerationError(f"best_of: {len(directions)} directions for {n} prompts")
        counts = [self.best_of if d is not None else 1 for d in directions]
        owner = [i for i, c in enumerate(counts) for _ in range(c)]  # the prompt of each candidate row
        many = [prompts[i] for i in owner]
        many_uncond = None
        if uncond is not None:  # group-major: G groups of n rows -> G groups of len(owner) rows
            groups = len(uncond) // n
            many_uncond = [uncond[g * n + i] for g in range(groups) for i in owner]
        cands, cand_rows = self.sample_blocks(many, many_uncond, shape, ("blueprint",), sampling, generator, progress,
                                              f"{desc} (best of {self.best_of})")
        picks, start = [], 0
        for i, c in enumerate(counts):
            k = 0
            if c > 1:
                codes = torch.stack([b.blueprint for b in cands[start : start + c]]).to(self.verifier.head.weight.device)
                k = int(torch.argmax(self.verifier.log_prob(codes, directions[i])))
            picks.append(start + k)
            start += c
        self.last_stats["best_of"] = self.best_of
        self.last_stats["best_of_picks"] = [j - sum(counts[:i]) for i, j in enumerate(picks)]
        if "fine" not in sections:
            return [cands[j] for j in picks], [cand_rows[j] for j in picks]
        heads = [self._head_ids(cands[j]) for j in picks]
        con, total = self._fine_constraint(prompts, shape, heads)
        return self._fine_pass(prompts, shape, heads, con, total, self._fine_negatives(uncond, heads),
                               self._fine_sampling(sampling), generator, progress, desc, self.last_stats)

    def recode_blueprints(self, blocks: Sequence[VisualBlock]) -> torch.Tensor:
        """Fine codes [N, t, h, w] of the blocks' blueprint previews (decoded, upsampled 2x) encoded at full size:
        what the blueprint alone says the fine section is."""
        tok = self.video_tokenizer
        if tok is None:
            raise GenerationError("this pipeline has no video tokenizer to re-encode blueprints with")
        with torch.inference_mode():
            return tok.encode(self.decode_blocks(blocks, preview=True).to(tok.device)).cpu()

    def _sample_within_blueprint(self, prompts, uncond, shape, sampling, generator, progress, desc, noise=None):
        """sample_blocks' path under `blueprint_mask`: the blueprints first, then the fine sections drawn only in the
        cells near what each blueprint shows (geometry.blueprint_region_mask); every other fine cell is given the code
        of the blueprint's re-encoded preview there (recode_blueprints) and fed without sampling, several a pass. Both
        passes draw with one positional noise, as in `_sample_following_blueprint`."""
        import dataclasses

        from ..geometry import blueprint_region_mask

        noise, first, heads = self._blueprint_pass(prompts, uncond, shape, sampling, generator, progress, desc, noise)
        recoded = self.recode_blueprints(first)
        if tuple(recoded.shape[1:]) != tuple(shape):
            raise GenerationError(f"blueprint_mask: re-encoded blueprints have shape {tuple(recoded.shape[1:])}, "
                                  f"the fine section {tuple(shape)}")
        n = len(prompts)
        S = self.vocab.spec.subtokens
        given = []
        for b, head, codes in zip(first, heads, recoded):
            ids = torch.tensor(self.layout.encode_block(dataclasses.replace(b, fine=codes))[len(head):-1])
            region = torch.from_numpy(blueprint_region_mask(b.blueprint.cpu().numpy(), shape, self.blueprint_mask))
            given.append(torch.where(region.reshape(-1).repeat_interleave(S), -1, ids))
        given = torch.stack(given)
        con, total = self._fine_constraint(prompts, shape, heads)
        forced = torch.full((n, total), -1, dtype=torch.long)
        forced[:, : given.shape[1]] = given
        stats: dict = {}
        out = self._fine_pass(prompts, shape, heads, con, total, self._fine_negatives(uncond, heads),
                              self._fine_sampling(sampling), generator, progress, desc, stats, speculative=False,
                              noise=noise.shifted(len(heads[0])) if noise is not None else None, forced=forced)
        self.last_stats["fine_passes"] = stats.get("passes")
        self.last_stats["fine_drawn"] = int((given < 0).sum())
        self.last_stats["fine_given"] = int((given >= 0).sum())
        return out

    def generate_text(self, sample: Sample, max_new_tokens: int = 128, seed: int | None = 0, temperature: float = 0.0) -> str:
        """Plain text answer (up to end of turn) to a generation prompt `sample` (chat layout)."""
        prompt = self.layout.prompt_ids(sample)
        left = self.max_positions - len(prompt) - 1
        if left < 1:
            raise GenerationError(f"prompt of {len(prompt)} tokens fills the model's {self.max_positions} positions")
        con = StructureConstraint(
            self.vocab, 1, text_only=True, stop_id=self.stop_id, max_text_tokens=min(max_new_tokens, left), pad_id=self.pad_id
        )
        out = constrained_decode(
            self.backend, [prompt], con, SamplingConfig(temperature=temperature), make_generator(seed, self.device),
            pad_id=self.pad_id, vocab_size=self.vocab.offset, max_steps=max_new_tokens + 1,
        )
        return self.text_of(out.tokens[0].tolist())

    def text_of(self, ids: Sequence[int]) -> str:
        """Decode generated text ids up to (not including) the end-of-turn id."""
        ids = list(ids)
        if self.stop_id in ids:
            ids = ids[: ids.index(self.stop_id)]
        return self.layout._text([i for i in ids if i < self.vocab.offset]).strip()

    # --- decoding codes to frames ------------------------------------------------------------
    @torch.inference_mode()
    def decode_blocks(self, blocks: Sequence[VisualBlock], preview: bool = False, progress: bool = False) -> torch.Tensor:
        """Blocks -> float video [N, 3, T, H, W] in [-1, 1]; a preview decodes the blueprint and upsamples 2x."""
        import torch.nn.functional as F
        from tqdm.auto import tqdm

        if self.video_tokenizer is None:
            raise GenerationError("this pipeline has no video tokenizer to decode with")
        vids = []
        for b in tqdm(blocks, desc="decoding", unit="clip", disable=not progress_wanted(progress), leave=False):
            if preview or b.fine is None:
                v = self.video_tokenizer.decode(b.blueprint.unsqueeze(0).to(self.video_tokenizer.device))
                v = F.interpolate(v, scale_factor=(1, 2, 2), mode="trilinear", align_corners=False).clamp(-1, 1)
            else:
                v = self.video_tokenizer.decode(b.fine.unsqueeze(0).to(self.video_tokenizer.device))
            vids.append(v.float().cpu())
        return torch.cat(vids)

    @staticmethod
    def to_frames(videos: torch.Tensor) -> np.ndarray:
        """float [N,3,T,H,W] in [-1,1] -> uint8 [N,T,H,W,3]."""
        x = ((videos.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return x.permute(0, 2, 3, 4, 1).contiguous().numpy()

    def encode_frames(self, frames: np.ndarray, blueprint: bool = False) -> VisualBlock:
        """uint8 [T,H,W,3] -> a VisualBlock of the clip's fine codes (and blueprint codes when asked)."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float() / 127.5 - 1
        tok = self.video_tokenizer
        fine = tok.encode(x.to(tok.device)).cpu()
        bp = None
        if blueprint:
            from ..tokenizer import blueprint_input

            bp = tok.encode(blueprint_input(x, self.space_factor).to(tok.device)).cpu()
        return VisualBlock(tuple(fine.shape), fine=fine, blueprint=bp)

    def default_negative(self, prompt: str, contrast_motion: bool | None = None) -> str:
        """The negative prompt used when none is given: with motion contrast (contrast_motion, default: the model's
        vidgpt.json setting) the prompt with its direction / growth words reversed ("" when it names none: bounce,
        rotate, stay; spin directions are not reversed, the judge does not check them); without it the empty prompt."""
        if not (self.contrast_motion if contrast_motion is None else contrast_motion):
            return ""
        from ..data.motion_words import reversed_motion

        return reversed_motion(prompt, spin=False)

    # --- public API --------------------------------------------------------------------------
    def generate(
        self,
        prompt: str,
        frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num: int = 1,
        seed: int | None = None,
        cfg: float = 3.0,
        negative_prompt: str | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        blueprint_only: bool = False,
        expand: bool | None = None,
        clip_frames: int | None = None,
        context_frames: int = 2,
        decode: bool = True,
        progress: bool = False,
    ) -> GenerationResult:
        """Text -> `num` clips of `frames` x `height` x `width` (images: frames=1).

        frames, height, width: None = the model's default clip (`default_clip`, what it was trained on).

        negative_prompt: what the guidance steers away from; None = `default_negative(prompt)` (the prompt with its
        motion reversed on a model with `contrast_motion`, else ""); "" = the empty prompt.

        clip_frames: when set and smaller than `frames`, draw `clip_frames`-frame clips one after
        another, each a continuation of the last `context_frames` latent frames of the one before,
        and stitch the decoded frames (then cut to `frames`).
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise GenerationError("the prompt is empty; describe the clip to generate")
        if num < 1:
            raise GenerationError(f"num={num}: must be >= 1")
        frames, height, width = self.resolve_clip(frames, height, width)
        sampling = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p, cfg=cfg)
        sections = self.sections(blueprint_only)
        long = clip_frames is not None and frames > clip_frames
        first_frames = clip_frames if long else frames
        if long:
            self.latent_shape(frames, height, width, "blueprint" in sections)  # validates the total too
            if blueprint_only:
                raise GenerationError("blueprint_only previews one clip; drop clip_frames or blueprint_only")
        shape = self.latent_shape(first_frames, height, width, "blueprint" in sections)
        text = prompt.strip()
        if negative_prompt is None:
            negative_prompt = self.default_negative(text)
        if expand if expand is not None else self.prompt_expansion:
            from .prompt_expansion import expand_prompt

            text = expand_prompt(self, text, seed=seed)
        prompt_ids = self.layout.prompt_ids(Sample([Turn("user", [text])]))
        uncond_ids = self.layout.prompt_ids(Sample([Turn("user", [negative_prompt])]))
        gen = make_generator(seed, self.device)
        from ..data.motion_words import named_direction

        blocks, rows = self.sample_blocks(
            [prompt_ids] * num, [uncond_ids] * num if sampling.use_cfg else None, shape, sections, sampling, gen, progress,
            directions=[named_direction(text)] * num,
        )
        result = GenerationResult(text, blocks, rows, prompt_ids, preview=blueprint_only, fps=self.fps)
        if long:
            return self._continue_long(result, frames, shape, context_frames, sampling, gen, negative_prompt, decode, progress)
        if decode:
            result.tensors = self.decode_blocks(blocks, preview=blueprint_only, progress=progress)
            result.videos = self.to_frames(result.tensors)
        return result

    def continue_blocks(
        self,
        sources: Sequence[VisualBlock],
        shape,
        sampling: SamplingConfig,
        generator,
        negative_prompt: str = "",
        instruction: str = DEFAULT_CONTINUE,
        progress: bool = False,
    ) -> tuple[list[VisualBlock], list[list[int]], list[list[int]]]:
        """One continuation block of latent `shape` for each source block (continuation layout)."""
        prompts = [self.layout.prompt_ids(Sample([Turn("user", [s, instruction])])) for s in sources]
        uncond = None
        if sampling.use_cfg:
            uncond = [self.layout.prompt_ids(Sample([Turn("user", [s, negative_prompt])])) for s in sources]
        blocks, rows = self.sample_blocks(prompts, uncond, shape, self.sections(), sampling, generator, progress, "continuing")
        return blocks, rows, prompts

    def _continue_long(self, result, frames, shape, context_frames, sampling, gen, negative_prompt, decode, progress):
        """Extend each sample clip by clip until it has `frames` frames; stitch decoded frames."""
        t = shape[0]
        k = max(1, min(context_frames, t))
        clip_T = video_shape(t, 1, 1, self.time_factor, self.space_factor)[0]
        per_sample = [[b] for b in result.blocks]
        have = clip_T
        while have < frames:
            sources = [VisualBlock((k,) + tuple(shape[1:]), fine=chain[-1].fine[-k:]) for chain in per_sample]
            new, _, _ = self.continue_blocks(sources, shape, sampling, gen, negative_prompt, progress=progress)
            for chain, b in zip(per_sample, new):
                chain.append(b)
            have += clip_T
        result.extra["clips"] = per_sample
        if decode:
            vids = []
            for chain in per_sample:
                parts = self.decode_blocks(chain, progress=progress)  # [clips, 3, T, H, W]
                vids.append(torch.cat(list(parts), dim=1)[:, :frames])
            result.tensors = torch.stack(vids)
            result.videos = self.to_frames(result.tensors)
        return result

    def edit(self, video, instruction: str | None = None, task: str = "instruct", **kwargs) -> GenerationResult:
        """Edit a clip (path, uint8 [T,H,W,3] or float [3,T,H,W]); see vidgpt.generate.editing."""
        from .editing import edit

        return edit(self, video, instruction, task=task, **kwargs)

    def chat(self, messages, session=None, **kwargs):
        """Answer the last user message with a clip or text; see vidgpt.generate.chat."""
        from .chat import chat

        return chat(self, messages, session=session, **kwargs)

    def new_session(self):
        from .chat import ChatSession

        return ChatSession()

    def shape_limits(self, fixed=(None, None, None)) -> ShapeLimits:
        s = self.vocab.spec
        return ShapeLimits(s.max_latent_t, s.max_latent_hw, min_hw=2 if self.blueprint else 1, fixed=tuple(fixed))
