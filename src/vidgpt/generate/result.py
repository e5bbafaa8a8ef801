"""GenerationResult: what a generate / edit / chat call returns (its own module, so that pipeline.py,
editing.py and chat.py all import it without importing each other)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import GenerationError
from ..layout import VisualBlock


@dataclass
class GenerationResult:
    """What a generate / edit / chat call made.

    videos: uint8 [N, T, H, W, 3] (None when decode=False); tensors: float [N, 3, T, H, W] in [-1, 1].
    blocks: the parsed visual block of each sample (its codes: block.fine [t,h,w], block.blueprint).
    token_ids: the ids each sample's assistant turn wrote (incl. end of turn); prompt_ids: what it read.
    """

    prompt: str
    blocks: list[VisualBlock]
    token_ids: list[list[int]]
    prompt_ids: list[int]
    videos: np.ndarray | None = None
    tensors: torch.Tensor | None = None
    preview: bool = False
    texts: list[str] = field(default_factory=list)
    fps: float = 8.0
    extra: dict = field(default_factory=dict)

    @property
    def codes(self) -> list[torch.Tensor]:
        """Per sample: the fine codes [t,h,w] (the blueprint codes for a preview)."""
        return [b.fine if b.fine is not None else b.blueprint for b in self.blocks]

    def save(self, path: str | os.PathLike, fps: float | None = None, grid: bool = False) -> list[Path]:
        """Write each sample to `path` (sample i > 0 gets a `-i` suffix); `grid` adds a PNG contact sheet."""
        from ..data.video_io import save_contact_sheet, write_video

        if self.videos is None:
            raise GenerationError("nothing to save: the result was not decoded (decode=False)")
        path = Path(path)
        written = []
        for i, frames in enumerate(self.videos):
            p = path if len(self.videos) == 1 else path.with_name(f"{path.stem}-{i}{path.suffix}")
            if frames.shape[0] == 1 and p.suffix.lower() in (".mp4", ".gif", ".webm"):
                p = p.with_suffix(".png")
            written.append(Path(write_video(p, frames, fps=fps or self.fps)))
            if grid:
                sheet = p.with_name(p.stem + "-grid.png")
                save_contact_sheet(sheet, frames)
                written.append(sheet)
        return written
