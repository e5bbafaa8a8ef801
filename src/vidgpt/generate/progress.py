"""One progress bar per clip: it counts the block's ids and names the section being drawn.

    with clip_progress(shape, subtokens, ("blueprint", "fine"), enabled=True) as bar:
        bar.update(1)   # once per id (or n per speculative step)

The bar reads "blueprint" until the blueprint section is written, then "fine". It is drawn only when
stderr is a terminal (a log file or a pipe gets no bar at all, not thousands of carriage returns);
VIDGPT_PROGRESS=1 forces it on, VIDGPT_PROGRESS=0 off.
"""

from __future__ import annotations

import sys
from typing import Sequence

from ..geometry import section_lengths
from ..utils import progress_wanted


class ClipProgress:
    """A tqdm bar over one block's ids whose label follows the section (header, blueprint, fine)."""

    def __init__(self, shape: Sequence[int], subtokens: int, sections: Sequence[str], enabled: bool = True,
                 desc: str = "sampling"):
        lengths = section_lengths(shape, subtokens, "blueprint" in sections, "fine" in sections)
        # marks: (first id index of the section, label); 4 ids of start + header, 1 marker per section
        self.marks: list[tuple[int, str]] = []
        at = 4
        for name, n in lengths.items():
            self.marks.append((at, name))
            at += 1 + n
        self.total = at + 1
        self.count = 0
        self.prefix = desc
        self.bar = None
        if progress_wanted(enabled):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=self._label(), unit="tok", leave=False, file=sys.stderr)

    def _label(self) -> str:
        name = "header"
        for at, label in self.marks:
            if self.count >= at:
                name = label
        return f"{self.prefix}: {name}" if self.prefix and self.prefix != "sampling" else name

    @property
    def section(self) -> str:
        return self._label().split(": ")[-1]

    def update(self, n: int = 1) -> None:
        before = self._label()
        self.count += n
        if self.bar is not None:
            label = self._label()
            if label != before:
                self.bar.set_description_str(label, refresh=False)
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> "ClipProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def clip_progress(shape, subtokens: int, sections: Sequence[str], enabled: bool = True, desc: str = "sampling") -> ClipProgress:
    return ClipProgress(shape, subtokens, sections, enabled, desc)
