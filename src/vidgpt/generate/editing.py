"""Edits of an existing clip: continuation, inpainting, outpainting, frame interpolation, instructions.

Each task builds the edit layout `user: [source block, instruction] -> assistant: [target block]`
with the conventions of `vidgpt.data.edits` (what the LM was trained on):

  task         source block (fine codes of ...)          target shape            result
  continue     the clip                                  same as the source      source + continuation, stitched
  inpaint      the clip with the masked region grey      same as the source      unmasked pixels pasted back
  outpaint     the clip (the centre of the new frame)    source size / keep      the source pasted back in the centre
  interpolate  the clip as every other frame             1 + 2 * (T - 1) frames  the source frames put back at 0, 2, 4, ...
  instruct     the clip                                  same as the source      the edited clip

Paste-back happens in pixel space after decoding: the tokenizer's reconstruction of known pixels is
never better than the pixels themselves, so the result keeps the source exactly where it is known.
The input clip is cut to the largest 1+4n frames and centre-cropped to a multiple of 16 pixels
(or resized with `height`/`width`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import GenerationError
from ..layout import Sample, Turn
from .result import GenerationResult
from .sampling import SamplingConfig, make_generator

TASKS = ("continue", "inpaint", "outpaint", "interpolate", "instruct")

# Instruction used when none is given (the first wording vidgpt.data.edits trains on).
DEFAULT_INSTRUCTIONS = {
    "continue": "continue the video",
    "inpaint": "fill in the grey box",
    "outpaint": "extend the view outward",
    "interpolate": "interpolate the missing frames",
}
FILL = 128  # grey that marks the region to inpaint (as in vidgpt.data.edits)
OUTPAINT_KEEP = 0.5  # the source is this fraction of each side of the target (as in vidgpt.data.edits)


@dataclass
class EditPlan:
    """What the model is shown and asked for, and how the result is put together."""

    task: str
    source: np.ndarray  # uint8 [T, H, W, 3] encoded as the source block
    instruction: str
    target_size: tuple[int, int, int]  # (T, H, W) of the clip to draw
    original: np.ndarray  # the (cropped) input clip
    mask: np.ndarray | None = None  # inpaint: bool [H, W], True = drawn by the model


def load_clip(video) -> np.ndarray:
    """Path / uint8 [T,H,W,3] / float [3,T,H,W] in [-1,1] -> uint8 [T,H,W,3]."""
    if isinstance(video, (str, Path)):
        from ..data.video_io import read_video

        return read_video(video)
    if isinstance(video, torch.Tensor):
        x = video.detach().float().cpu()
        if x.dim() != 4 or x.shape[0] != 3:
            raise GenerationError(f"video tensor must be [3, T, H, W], got {tuple(x.shape)}")
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
    arr = np.asarray(video)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise GenerationError(f"video must be uint8 [T, H, W, 3], got {arr.dtype} {tuple(arr.shape)}")
    return arr


def fit_clip(frames: np.ndarray, height: int | None, width: int | None, mult: int, max_frames: int | None = None) -> np.ndarray:
    """Largest 1+4n frames (at most max_frames), then resize/crop to height x width or a multiple of `mult`."""
    from ..data.video_io import resize_and_crop

    n = len(frames) if max_frames is None else min(len(frames), max_frames)
    n = 1 + 4 * ((n - 1) // 4)
    frames = frames[:n]
    H, W = frames.shape[1:3]
    if height is None and width is None:
        height, width = (H // mult) * mult, (W // mult) * mult
        if height < mult or width < mult:
            raise GenerationError(f"the input clip is {H}x{W}; it needs at least {mult}x{mult} pixels")
    else:
        height = height or H * width // W // mult * mult
        width = width or W * height // H // mult * mult
        for name, v in (("height", height), ("width", width)):
            if v < mult or v % mult:
                raise GenerationError(f"{name}={v}: must be a positive multiple of {mult}")
    if (height, width) != (H, W):
        frames = resize_and_crop(frames, height, width)
    return np.ascontiguousarray(frames)


def parse_box(text: str) -> tuple[int, int, int, int]:
    """'x0,y0,x1,y1' -> (x0, y0, x1, y1) ints; GenerationError if malformed."""
    try:
        vals = tuple(int(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4:
        raise GenerationError(f"mask {text!r}: expected x0,y0,x1,y1 pixel coordinates or a mask image")
    return vals  # type: ignore[return-value]


def make_mask(mask, height: int, width: int) -> np.ndarray:
    """A box (x0,y0,x1,y1), a 'x0,y0,x1,y1' string, an image path or a bool array -> bool [H, W] (True = fill)."""
    if isinstance(mask, str) and "," in mask and not Path(mask).exists():
        mask = parse_box(mask)
    if isinstance(mask, (tuple, list)) and len(mask) == 4:
        x0, y0, x1, y1 = (int(v) for v in mask)
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise GenerationError(f"mask box {x0},{y0},{x1},{y1} is not inside the {width}x{height} frame")
        m = np.zeros((height, width), dtype=bool)
        m[y0:y1, x0:x1] = True
        return m
    if isinstance(mask, (str, Path)):
        from PIL import Image

        try:
            img = Image.open(mask).convert("L")
        except Exception as e:
            raise GenerationError(f"{mask}: cannot read the mask image ({type(e).__name__})") from e
        if img.size != (width, height):
            img = img.resize((width, height), Image.NEAREST)
        m = np.asarray(img) >= 128
    else:
        m = np.asarray(mask).astype(bool)
        if m.shape != (height, width):
            raise GenerationError(f"mask has shape {m.shape}, the clip is {height}x{width}")
    if not m.any():
        raise GenerationError("the mask is empty: nothing to inpaint")
    return m


def plan_edit(
    frames: np.ndarray,
    task: str,
    instruction: str | None = None,
    mask=None,
    height: int | None = None,
    width: int | None = None,
    max_frames: int | None = None,
    mult: int = 16,
) -> EditPlan:
    """Build the source clip, instruction and target size of an edit (no model needed)."""
    if task not in TASKS:
        raise GenerationError(f"edit task {task!r} unknown (known: {', '.join(TASKS)})")
    instruction = (instruction or "").strip()
    if not instruction:
        if task == "instruct":
            raise GenerationError("the instruction is empty; say what to change")
        instruction = DEFAULT_INSTRUCTIONS[task]
    clip = fit_clip(frames, height, width, mult, max_frames)
    T, H, W = clip.shape[:3]
    if task in ("continue", "instruct"):
        return EditPlan(task, clip, instruction, (T, H, W), clip)
    if task == "inpaint":
        if mask is None:
            raise GenerationError("inpaint needs a mask (--mask x0,y0,x1,y1 or a mask image)")
        m = make_mask(mask, H, W)
        src = clip.copy()
        src[:, m] = FILL
        return EditPlan(task, src, instruction, (T, H, W), clip, m)
    if task == "outpaint":
        TH, TW = int(round(H / OUTPAINT_KEEP)), int(round(W / OUTPAINT_KEEP))
        TH, TW = (TH // mult) * mult, (TW // mult) * mult
        return EditPlan(task, clip, instruction, (T, TH, TW), clip)
    # interpolate
    if T < 2:
        raise GenerationError("interpolate needs a clip of at least 5 frames")
    return EditPlan(task, clip, instruction, (1 + 2 * (T - 1), H, W), clip)


def paste_back(plan: EditPlan, result: np.ndarray) -> np.ndarray:
    """Put the known source pixels into a decoded result uint8 [T', H', W', 3] (see module docstring)."""
    out = result.copy()
    src = plan.original
    if plan.task == "continue":
        return np.concatenate([src, out], axis=0)
    if plan.task == "inpaint":
        keep = ~plan.mask
        out[:, keep] = src[:, keep]
    elif plan.task == "outpaint":
        T, H, W = src.shape[:3]
        y0, x0 = (out.shape[1] - H) // 2, (out.shape[2] - W) // 2
        out[:, y0 : y0 + H, x0 : x0 + W] = src
    elif plan.task == "interpolate":
        out[::2] = src[: len(out[::2])]
    return out


def edit_sample(pipe, plan: EditPlan):
    """(source block, generation-prompt Sample) for a plan."""
    source = pipe.encode_frames(plan.source)
    return source, Sample([Turn("user", [source, plan.instruction])])


def edit(
    pipe,
    video,
    instruction: str | None = None,
    task: str = "instruct",
    mask=None,
    height: int | None = None,
    width: int | None = None,
    max_frames: int | None = None,
    num: int = 1,
    seed: int | None = None,
    cfg: float = 3.0,
    negative_prompt: str = "",
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    progress: bool = False,
):
    """Run one edit task with `pipe` (a VidGPT); returns a GenerationResult (pasted-back videos)."""
    frames = load_clip(video)
    mult = pipe.size_multiple
    plan = plan_edit(frames, task, instruction, mask, height, width, max_frames, mult)
    shape = pipe.latent_shape(*plan.target_size)
    source, sample = edit_sample(pipe, plan)
    prompt_ids = pipe.layout.prompt_ids(sample)
    sampling = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p, cfg=cfg)
    uncond = None
    if sampling.use_cfg:
        uncond = [pipe.layout.prompt_ids(Sample([Turn("user", [source, negative_prompt])]))] * num
    gen = make_generator(seed, pipe.device)
    blocks, rows = pipe.sample_blocks([prompt_ids] * num, uncond, shape, pipe.sections(), sampling, gen, progress, f"{task}")
    result = GenerationResult(plan.instruction, blocks, rows, prompt_ids, fps=pipe.fps)
    result.tensors = pipe.decode_blocks(blocks, progress=progress)
    decoded = pipe.to_frames(result.tensors)
    result.videos = np.stack([paste_back(plan, v) for v in decoded])
    result.extra.update(task=task, source=source, plan=plan, raw_videos=decoded)
    return result
