"""vidgpt: a pretrained decoder-only LLM that generates and edits video.

Data flows one way: video -> codes (VideoTokenizer) -> token ids (UnifiedVocab, layout)
-> LLM -> token ids -> codes -> video. Heavy modules import lazily so `vidgpt --help` is quick.
"""

from .errors import VidgptError

__version__ = "0.1.0"

_LAZY = {
    "VideoTokenizer": ("vidgpt.tokenizer", "VideoTokenizer"),
    "TokenizerConfig": ("vidgpt.tokenizer", "TokenizerConfig"),
    "UnifiedVocab": ("vidgpt.vocab", "UnifiedVocab"),
    "VidGPT": ("vidgpt.generate", "VidGPT"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'vidgpt' has no attribute {name!r}")


__all__ = ["VidgptError", "__version__", *_LAZY]
