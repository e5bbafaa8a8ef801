"""Request bodies of the JSON API (pydantic; unknown fields are refused, so no request names a path)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


class Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: Optional[int] = Field(None, ge=0, le=2**63 - 1, description="same seed, same clip; none = random (and batchable)")
    cfg: float = Field(3.0, ge=0, le=30, description="classifier-free guidance scale (1 = off)")
    temperature: float = Field(1.0, ge=0, le=10, description="0 = greedy")
    top_k: Optional[int] = Field(None, ge=1)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    negative_prompt: Optional[str] = Field(
        None, max_length=2000,
        description="what the guidance steers away from; none = the model's default (generation on a model that contrasts "
                    "motion: the prompt with its motion reversed; else the empty prompt); \"\" = the empty prompt")


class GenerationRequest(Sampling):
    prompt: str = Field(..., description="what the clip shows")
    frames: Optional[int] = Field(None, description="1 + 4n (1 = an image); default: the model's clip size")
    height: Optional[int] = Field(None, description="pixels, a multiple of 16; default: the model's")
    width: Optional[int] = Field(None, description="pixels, a multiple of 16; default: the model's")
    num: int = Field(1, ge=1, description="samples of the prompt")
    blueprint_only: bool = Field(False, description="stop after the blueprint: a fast half-size preview")


class EditRequest(Sampling):
    clip_id: str = Field(..., description="a clip made here or uploaded (POST /api/uploads)")
    task: Literal["instruct", "continue", "inpaint", "outpaint", "interpolate"] = "instruct"
    instruction: str = Field("", description="what to change (needed for instruct)")
    mask: Optional[list[int]] = Field(None, min_length=4, max_length=4, description="inpaint box x0,y0,x1,y1 in clip pixels")
    height: Optional[int] = Field(None, description="resize the source to this height first")
    width: Optional[int] = Field(None, description="resize the source to this width first")
    max_frames: Optional[int] = Field(None, ge=1, description="use at most this many source frames")
    session_id: Optional[str] = Field(None, description="also add the edit to this chat session's context")


class ChatMessage(Sampling):
    text: str = Field(..., description="the user's message")
    frames: Optional[int] = None
    height: Optional[int] = None
    width: Optional[int] = None
    mode: Optional[Literal["clip", "text"]] = Field(None, description="force a clip or a text answer (default: decide)")
    max_text_tokens: int = Field(128, ge=1, le=1024)
