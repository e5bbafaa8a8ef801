"""Prompt expansion: the LM rewrites a short prompt into one detailed caption before drawing.

Plain text generation in the chat template: the user turn holds an instruction and the short
prompt; the assistant's text up to end-of-turn is the caption. It is on when the model's
vidgpt.json says `"prompt_expansion": true` (a model trained on detailed captions), off otherwise,
and `--no-expand` / `expand=False` turns it off. An empty or degenerate answer keeps the prompt.
"""

from __future__ import annotations

from ..layout import Sample, Turn

INSTRUCTION = (
    "Rewrite this short video description as one detailed caption: name every object with its "
    "colour and shape, how it moves, and the background. Answer with the caption only.\n\n"
)


def expansion_sample(prompt: str) -> Sample:
    return Sample([Turn("user", [INSTRUCTION + prompt.strip()])])


def clean_caption(text: str, prompt: str, max_chars: int = 400) -> str:
    """First paragraph of the answer, stripped; falls back to `prompt` if it is empty."""
    text = text.strip().split("\n\n")[0].strip().strip('"').strip()
    if len(text) < 3:
        return prompt
    return text[:max_chars]


def expand_prompt(pipe, prompt: str, seed: int | None = 0, max_new_tokens: int = 96) -> str:
    """Ask the LM of `pipe` (a VidGPT) for a detailed caption of `prompt` (greedy-ish, seeded)."""
    if not pipe.layout.chat:
        return prompt  # the plain layout has no instruction turns
    text = pipe.generate_text(expansion_sample(prompt), max_new_tokens=max_new_tokens, seed=seed, temperature=0.0)
    return clean_caption(text, prompt)
