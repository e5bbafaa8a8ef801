"""A learned motion verifier for blueprints: which way does the drawn object go? Used to pick the best of N blueprints.

The copy read-out (vidgpt.copy_readout) makes most sampled blueprints copy their cells the asked way, yet on the
shipped model only ~40% of single previews show an object that the judge tracks moving the asked way; among 4
blueprints drawn for one prompt one does in ~90% (model/README.md, "Best of N blueprints"). The model's own
likelihood cannot tell them apart (prompt against reversed prompt, teacher-forced with the read-out: the pick is
worse than one sample). This small network can: trained on the training clips' true blueprints only (never on the
judge or on generated clips), it reads the codes of every two consecutive blueprint frames and says which of the
straight directions the content moves, averaged over the frame pairs:

    codes [N, T, h, w] -> each code's K bits as +-1 -> pairs (t - 1, t) as [N * (T - 1), 2K, h, w]
    -> 3 convolutions (GELU) -> mean and max over the cells -> linear -> log-softmax over DIRECTIONS
    -> the mean over the pairs, normalised again (a product of the pairs' opinions)

It is independent of the clip's length (any T >= 2) and, trained with flips that swap the direction labels
(left <-> right, up <-> down), of where and what the object is. `best_of` sampling (VidGPT decode option) draws N
blueprints per prompt, keeps the one whose log p(asked direction) is highest, and draws the fine section from it; the
asked direction is read off the prompt's words (vidgpt.data.motion_words.named_direction), and a prompt that names
none keeps its first blueprint.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

FILE = "motion_verifier.safetensors"
DIRECTIONS = ("left", "right", "up", "down")
# flips of the cell grid and what they do to a direction: horizontal swaps left / right, vertical up / down
H_FLIP = {"left": "right", "right": "left", "up": "up", "down": "down", "none": "none"}
V_FLIP = {"left": "left", "right": "right", "up": "down", "down": "up", "none": "none"}
# the class of blueprints that move no straight way at all (verifier_fit's junk: still, ghosted, vanished, shuffled)
NONE = "none"


def code_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """codes [..., T, h, w] (ids in [0, 2**bits)) -> [..., T, bits, h, w] of +-1 (bit i of each code)."""
    c = codes.long()
    b = (c.unsqueeze(-3) >> torch.arange(bits, device=c.device).view(bits, 1, 1)) & 1
    return b.float() * 2 - 1


class MotionVerifier(nn.Module):
    """log p(direction | blueprint codes) over `directions` (module docstring)."""

    def __init__(self, bits: int, width: int = 48, directions: tuple[str, ...] = DIRECTIONS):
        super().__init__()
        if bits < 1 or width < 1 or len(directions) < 2:
            raise ValueError(f"MotionVerifier: bits={bits}, width={width}, directions={directions}")
        self.bits, self.width, self.directions = int(bits), int(width), tuple(directions)
        self.convs = nn.Sequential(
            nn.Conv2d(2 * bits, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1), nn.GELU(),
        )
        self.head = nn.Linear(2 * width, len(directions))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [N, T, h, w], T >= 2 -> log-probabilities [N, len(directions)]."""
        if codes.dim() != 4 or codes.shape[1] < 2:
            raise ValueError(f"MotionVerifier: codes [N, T >= 2, h, w], got {tuple(codes.shape)}")
        N, T, h, w = codes.shape
        b = code_bits(codes, self.bits)  # [N, T, K, h, w]
        pairs = torch.cat([b[:, :-1], b[:, 1:]], dim=2).reshape(N * (T - 1), 2 * self.bits, h, w)
        f = self.convs(pairs.to(self.head.weight.dtype))
        lp = self.head(torch.cat([f.mean((2, 3)), f.amax((2, 3))], -1)).log_softmax(-1)
        return lp.view(N, T - 1, -1).mean(1).log_softmax(-1)  # the pairs' mean, normalised over the directions

    @torch.no_grad()
    def log_prob(self, codes: torch.Tensor, direction: str) -> torch.Tensor:
        """[N]: log p(direction | each blueprint)."""
        if direction not in self.directions:
            raise ValueError(f"MotionVerifier: {direction!r} is not one of {self.directions}")
        return self(codes)[:, self.directions.index(direction)]

    def config(self) -> dict:
        return {"bits": self.bits, "width": self.width, "directions": list(self.directions)}


def save_verifier(verifier: MotionVerifier, directory: str | Path, extra: dict | None = None) -> Path:
    """directory/FILE: the weights (fp32; ~54k parameters at 14 bits) with the config (and `extra`, e.g. how it was trained) in
    the safetensors metadata."""
    from safetensors.torch import save_file

    path = Path(directory) / FILE
    meta = {"config": json.dumps(verifier.config()), "trained": json.dumps(extra or {})}
    save_file({k: v.detach().float().contiguous() for k, v in verifier.state_dict().items()}, str(path), metadata=meta)
    return path


def load_verifier(directory: str | Path, device=None) -> MotionVerifier | None:
    """The verifier saved in a model directory, or None when it has none."""
    from safetensors import safe_open

    path = Path(directory) / FILE
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
        state = {k: fh.get_tensor(k) for k in fh.keys()}
    cfg = json.loads(meta.get("config", "{}"))
    v = MotionVerifier(int(cfg["bits"]), int(cfg["width"]), tuple(cfg["directions"]))
    v.load_state_dict(state)
    return v.to(device or "cpu").eval()


def trained_info(directory: str | Path) -> dict:
    """The `extra` saved with a model directory's verifier ({} when none)."""
    from safetensors import safe_open

    path = Path(directory) / FILE
    if not path.is_file():
        return {}
    with safe_open(str(path), framework="pt") as fh:
        return json.loads((fh.metadata() or {}).get("trained", "{}"))
