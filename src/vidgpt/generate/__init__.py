"""Generation: constrained coarse-to-fine decoding, CFG, fast decoding, chat and editing.

    from vidgpt.generate import VidGPT
    pipe = VidGPT.from_pretrained("model/")
    out = pipe.generate("a red circle moves right", seed=0)
    out.save("clip.mp4")

Modules: constraints (legal-token state machine), sampling (CFG, temperature/top-k/top-p),
decoding (the decode loop, plain HF backend), fast_decode (static KV cache + CUDA graphs; every family that
fast_families describes, the rest falls back to the plain backend with the reason),
pipeline (VidGPT), editing, chat, prompt_expansion, tiny (random stand-ins for tests).
"""

from .chat import ChatReply, ChatSession
from .pipeline import GenerationResult, VidGPT, default_model_dir

__all__ = ["ChatReply", "ChatSession", "GenerationResult", "VidGPT", "default_model_dir"]
