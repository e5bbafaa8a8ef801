"""Limits of `vidgpt serve`: a dataclass with safe defaults, loadable from YAML (`--config`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServeSettings:
    """Every limit the server enforces; a request past one gets a 4xx JSON error naming it."""

    max_prompt_chars: int = 2000  # prompt / instruction / chat message length
    max_frames: int = 33  # frames of one requested clip (the model's own limit may be lower)
    max_side: int = 256  # pixels per side of one requested clip (the model's own limit may be lower)
    max_num: int = 4  # samples per generation request
    max_upload_bytes: int = 32 * 1024 * 1024  # one uploaded video or image
    max_upload_frames: int = 65  # frames read from an upload (the rest is ignored)
    max_upload_side: int = 1024  # larger uploads are refused before decoding
    queue_limit: int = 32  # jobs waiting; one more gets 429
    max_batch: int = 4  # same-shape generations decoded together in one batch
    job_timeout_s: float = 600.0  # a running job past this fails (checked every decode step)
    max_clips: int = 64  # clips kept (files and frames); the oldest is forgotten first
    max_jobs: int = 256  # finished jobs kept for status queries
    max_sessions: int = 64  # chat sessions kept; the least recently used is dropped first
    fps: float = 8.0  # frames per second of the written mp4 / GIF
    preview: bool = True  # decode and publish the blueprint preview while the fine tokens are drawn
