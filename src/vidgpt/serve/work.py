"""The work of each job kind on the pipeline, and the checks a request passes before it is queued.

Checks run in the request's thread and answer 4xx at once (empty or huge prompts, impossible
sizes, unknown ids, more tokens than the model's context); the work runs in the worker thread
through the library API: `VidGPT.generate`, `VidGPT.edit`, `VidGPT.chat`, and for a batch of
same-shape generations `VidGPT.sample_blocks` + `VidGPT.decode_blocks` (one decode batch).
"""

from __future__ import annotations

import time

from ..errors import GenerationError, VidgptError
from ..layout import Sample, Turn, block_length
from .jobs import Job
from .progress import JobCancelled, Watch, watched
from .settings import ServeSettings
from .store import ClipStore, SessionStore


class BadRequest(VidgptError):
    """A request the server refuses before queueing it (HTTP 422)."""


def check_text(text: str, what: str, limit: int, required: bool = True) -> str:
    text = (text or "").strip()
    if required and not text:
        raise BadRequest(f"{what} is empty")
    if len(text) > limit:
        raise BadRequest(f"{what} is {len(text)} characters; the limit is {limit} (max_prompt_chars)")
    return text


def sampling_of(req):
    from ..generate.sampling import SamplingConfig

    return SamplingConfig(temperature=req.temperature, top_k=req.top_k, top_p=req.top_p, cfg=req.cfg)


class Work:
    """Checks and runs jobs for one pipeline; `__call__(batch)` is the JobManager's runner."""

    def __init__(self, pipe, clips: ClipStore, sessions: SessionStore, settings: ServeSettings):
        self.pipe = pipe
        self.clips = clips
        self.sessions = sessions
        self.settings = settings

    # --- model facts ------------------------------------------------------------------------
    def factors(self) -> tuple[int, int, int]:
        """(time factor, space factor, side multiple) of the model's tokenizer (4, 8, 16 by default)."""
        p = self.pipe
        tf, sf = int(getattr(p, "time_factor", 4)), int(getattr(p, "space_factor", 8))
        return tf, sf, int(getattr(p, "size_multiple", 2 * sf if p.blueprint else sf))

    def limits(self) -> dict:
        s, spec = self.settings, self.pipe.vocab.spec
        tf, sf, mult = self.factors()
        max_frames = min(s.max_frames, 1 + (spec.max_latent_t - 1) * tf)
        max_side = min(s.max_side, spec.max_latent_hw * sf) // mult * mult
        return {
            "max_frames": max_frames, "frame_step": tf, "max_side": max_side, "side_multiple": mult,
            "max_positions": self.pipe.max_positions, "max_num": s.max_num, "max_prompt_chars": s.max_prompt_chars,
            "max_upload_bytes": s.max_upload_bytes, "queue_limit": s.queue_limit, "max_batch": s.max_batch,
            "chat": bool(self.pipe.layout.chat), "blueprint": bool(self.pipe.blueprint),
            "default_clip": list(self.pipe.default_clip),
        }

    def check_size(self, frames: int, height: int, width: int, blueprint: bool | None = None):
        s = self.settings
        if frames > s.max_frames:
            raise BadRequest(f"frames={frames}: this server makes at most {s.max_frames} frames (max_frames)")
        if max(height, width) > s.max_side:
            raise BadRequest(f"{height}x{width}: this server makes at most {s.max_side} pixels per side (max_side)")
        return self.pipe.latent_shape(frames, height, width, blueprint)  # GenerationError -> 422

    def _prompt_len(self, content: list) -> int:
        return len(self.pipe.layout.prompt_ids(Sample([Turn("user", content)])))

    # --- checks (request thread) ------------------------------------------------------------
    def check_generate(self, req) -> tuple[dict, tuple | None]:
        prompt = check_text(req.prompt, "the prompt", self.settings.max_prompt_chars)
        check_text(req.negative_prompt, "the negative prompt", self.settings.max_prompt_chars, required=False)
        if req.num > self.settings.max_num:
            raise BadRequest(f"num={req.num}: at most {self.settings.max_num} samples per request (max_num)")
        sections = self.pipe.sections(req.blueprint_only)
        frames, height, width = self.pipe.resolve_clip(req.frames, req.height, req.width)
        shape = self.check_size(frames, height, width, "blueprint" in sections)
        sampling_of(req)
        self.pipe.check_fits(self._prompt_len([prompt]), shape, sections)
        params = req.model_dump()
        params.update(prompt=prompt, frames=frames, height=height, width=width)
        key = None
        if req.seed is None and req.num == 1 and not self.pipe.prompt_expansion:
            key = ("generate", frames, height, width, req.blueprint_only, req.cfg, req.temperature, req.top_k, req.top_p)
        return params, key

    def check_edit(self, req) -> dict:
        from ..generate.editing import plan_edit

        clip = self.clips.get(req.clip_id)  # NotFound -> 404
        if req.session_id is not None:
            self.sessions.get(req.session_id)
        instruction = check_text(req.instruction, "the instruction", self.settings.max_prompt_chars, required=False)
        for name, v in (("height", req.height), ("width", req.width)):
            if v is not None and not 1 <= v <= self.settings.max_side:
                raise BadRequest(f"{name}={v}: must be 1..{self.settings.max_side} (max_side)")
        sampling_of(req)
        tf, sf, mult = self.factors()
        plan = plan_edit(clip.frames, req.task, instruction, req.mask, req.height, req.width, req.max_frames, mult)
        shape = self.check_size(*plan.target_size)
        T, H, W = plan.source.shape[:3]
        src_len = block_length((1 + (T - 1) // tf, H // sf, W // sf), self.pipe.vocab.spec.subtokens, False, True)
        self.pipe.check_fits(self._prompt_len([plan.instruction]) + src_len, shape, self.pipe.sections())
        return req.model_dump() | {"instruction": instruction}

    def check_chat(self, session_id: str, req) -> dict:
        self.sessions.get(session_id)
        if not self.pipe.layout.chat:
            raise BadRequest("this model uses the plain layout; chat needs a model trained with the chat layout")
        text = check_text(req.text, "the message", self.settings.max_prompt_chars)
        sampling_of(req)
        if req.mode != "text" and (req.frames or req.height or req.width):
            shape = self.check_size(req.frames or 17, req.height or 128, req.width or 128)
            S, sections = self.pipe.vocab.spec.subtokens, self.pipe.sections()
            need = self._prompt_len([text]) + block_length(shape, S, "blueprint" in sections, "fine" in sections)
            if need > self.pipe.max_positions:
                raise BadRequest(
                    f"the message and a {req.frames or 17}x{req.height or 128}x{req.width or 128} clip take {need} tokens, "
                    f"more than the model's {self.pipe.max_positions} positions; ask for a smaller clip"
                )
        return req.model_dump() | {"text": text}

    # --- running (worker thread) ------------------------------------------------------------
    def __call__(self, batch: list[Job]) -> None:
        owners = list(batch)
        if len(batch) == 1 and batch[0].kind == "generate":
            owners = batch * int(batch[0].params["num"])

        def on_progress(tokens, total, phase):
            for j in batch:
                j.set_progress(tokens, total, phase)

        def on_check():
            if all(j.cancel_requested.is_set() for j in batch):
                raise JobCancelled("cancelled")

        watch = Watch(self.pipe, owners, time.monotonic() + self.settings.job_timeout_s, on_progress,
                      lambda r, block: self._preview(owners[r], block), on_check)
        with watched(self.pipe, watch):
            if batch[0].kind == "generate":
                self._generate(batch)
            elif batch[0].kind == "edit":
                self._edit(batch[0])
            elif batch[0].kind == "chat":
                self._chat(batch[0])
            else:
                raise GenerationError(f"unknown job kind {batch[0].kind!r}")

    def _preview(self, job: Job, block) -> None:
        if job.preview is not None or not self.settings.preview or job.cancel_requested.is_set():
            return
        frames = self.pipe.to_frames(self.pipe.decode_blocks([block], preview=True))[0]
        clip = self.clips.add(frames, "preview", job.params.get("prompt") or job.params.get("text") or "")
        job.preview = clip.info()
        job.emit("preview", {"clip": job.preview})

    def _finish(self, job: Job, result: dict) -> None:
        if job.cancel_requested.is_set():
            job.finish("cancelled", error="cancelled (its batch finished; the result was discarded)")
        else:
            job.set_progress(job.progress.get("total") or 0, job.progress.get("total"), "done")
            job.finish("done", result)

    def _generate(self, batch: list[Job]) -> None:
        pipe = self.pipe
        if len(batch) == 1:
            p = batch[0].params
            out = pipe.generate(
                p["prompt"], frames=p["frames"], height=p["height"], width=p["width"], num=p["num"], seed=p["seed"],
                cfg=p["cfg"], negative_prompt=p["negative_prompt"], temperature=p["temperature"], top_k=p["top_k"],
                top_p=p["top_p"], blueprint_only=p["blueprint_only"],
            )
            clips = [self.clips.add(v, "generated", out.prompt, b).info() for v, b in zip(out.videos, out.blocks)]
            self._finish(batch[0], {"kind": "clips", "prompt": out.prompt, "clips": clips, "preview_only": out.preview})
            return
        # same key: same shape, sections and sampling, no seed -> one decode batch
        from ..generate.sampling import make_generator

        p0 = batch[0].params
        sections = pipe.sections(p0["blueprint_only"])
        shape = pipe.latent_shape(p0["frames"], p0["height"], p0["width"], "blueprint" in sections)
        sampling = sampling_of(_Req(p0))
        prompts = [pipe.layout.prompt_ids(Sample([Turn("user", [j.params["prompt"]])])) for j in batch]
        uncond = None
        if sampling.use_cfg:
            negatives = [pipe.default_negative(j.params["prompt"]) if j.params["negative_prompt"] is None
                         else j.params["negative_prompt"] for j in batch]
            uncond = [pipe.layout.prompt_ids(Sample([Turn("user", [n])])) for n in negatives]
        from ..data.motion_words import named_direction

        blocks, _ = pipe.sample_blocks(prompts, uncond, shape, sections, sampling, make_generator(None, pipe.device),
                                       directions=[named_direction(j.params["prompt"]) for j in batch])  # best_of
        videos = pipe.to_frames(pipe.decode_blocks(blocks, preview=p0["blueprint_only"]))
        for j, v, b in zip(batch, videos, blocks):
            clip = self.clips.add(v, "generated", j.params["prompt"], b).info()
            self._finish(j, {"kind": "clips", "prompt": j.params["prompt"], "clips": [clip], "preview_only": p0["blueprint_only"]})

    def _edit(self, job: Job) -> None:
        p = job.params
        src = self.clips.get(p["clip_id"])
        out = self.pipe.edit(
            src.frames, p["instruction"], task=p["task"], mask=tuple(p["mask"]) if p["mask"] else None,
            height=p["height"], width=p["width"], max_frames=p["max_frames"], seed=p["seed"], cfg=p["cfg"],
            negative_prompt=p["negative_prompt"] or "", temperature=p["temperature"], top_k=p["top_k"], top_p=p["top_p"],
        )
        plan = out.extra["plan"]
        clip = self.clips.add(out.videos[0], "edit", f"{p['task']}: {plan.instruction}", out.blocks[0])
        if p.get("session_id"):
            sess = self.sessions.get(p["session_id"])
            sess.chat.add("user", [out.extra["source"], plan.instruction])
            sess.clip_ids.append(src.id)
            sess.chat.add("assistant", [out.blocks[0]], frames=out.videos[0])
            sess.clip_ids.append(clip.id)
            _drop_frames(sess)
        self._finish(job, {"kind": "clips", "task": p["task"], "instruction": plan.instruction, "source": src.id, "clips": [clip.info()]})

    def _chat(self, job: Job) -> None:
        p = job.params
        sess = self.sessions.get(job.session_id)
        reply = self.pipe.chat(
            p["text"], session=sess.chat, frames=p["frames"], height=p["height"], width=p["width"], mode=p["mode"],
            seed=p["seed"], cfg=p["cfg"], temperature=p["temperature"], top_k=p["top_k"], top_p=p["top_p"],
            max_text_tokens=p["max_text_tokens"],
        )
        referred = None
        k = next((i for i, c in enumerate(sess.chat.clips) if c is reply.referred), None)
        if k is not None and k < len(sess.clip_ids):
            referred = sess.clip_ids[k]
        if reply.is_clip:
            clip = self.clips.add(reply.frames, "chat", p["text"], reply.block)
            sess.clip_ids.append(clip.id)
            _drop_frames(sess)
            self._finish(job, {"kind": "clip", "clips": [clip.info()], "referred": referred, "dropped": sess.chat.dropped})
        else:
            self._finish(job, {"kind": "text", "text": reply.text, "referred": referred, "dropped": sess.chat.dropped})


def _drop_frames(sess) -> None:
    """The clip store keeps each clip's frames; the chat context needs only the blocks."""
    for c in sess.chat.clips:
        c.frames = None


class _Req:
    """Attribute view of stored params (for sampling_of)."""

    def __init__(self, params: dict):
        self.__dict__.update(params)
