"""LoRA on the upper decoder layers only: the module names peft should wrap for `lora.layers_from = N`.

With adapters only on layers >= N (and `loss.embed_grad: head_only`, so the input embedding needs no
gradient), no tensor below layer N requires a gradient and autograd stops there: the backward pass costs
(L - N) / L of a full one. An approximation whose quality cost tools/learning_curve.py measures.
"""

from __future__ import annotations

import re

import torch

from ..errors import ConfigError

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def layer_index(name: str) -> int | None:
    m = _LAYER.search(name)
    return int(m.group(1)) if m else None


def upper_layer_targets(model, target_modules: list[str] | str, layers_from: int) -> list[str]:
    """Full names of the linear modules in decoder layers >= layers_from that `target_modules` selects.

    `target_modules` is peft's: "all-linear" (every linear layer inside the decoder layers) or module-name
    suffixes (q_proj, ...). The result is a list of full names, which peft matches exactly.
    """
    if isinstance(target_modules, str):
        target_modules = [target_modules]
    everything = list(target_modules) == ["all-linear"]
    names = []
    depth = 0
    for name, mod in model.named_modules():
        i = layer_index(name)
        if i is None:
            continue
        depth = max(depth, i + 1)
        if i < layers_from or not isinstance(mod, torch.nn.Linear):
            continue
        if everything or any(name == t or name.endswith("." + t) for t in target_modules):
            names.append(name)
    if layers_from >= depth:
        raise ConfigError(f"lora.layers_from={layers_from}: the model has {depth} decoder layers")
    if not names:
        raise ConfigError(f"lora.target_modules={target_modules}: no linear module in layers >= {layers_from}")
    return names
