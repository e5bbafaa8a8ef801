"""tools/judge_sections.py --shape-table: per asked shape, the share drawn right and what the judge saw instead."""

import sys
from pathlib import Path

from vidgpt.data.judge import judge_clip
from vidgpt.data.synthetic import ObjectSpec, Scene, render_scene

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import judge_sections  # noqa: E402


def _scene(shape: str) -> Scene:
    return Scene(objects=[ObjectSpec(shape=shape, color="yellow", size="large", motion="right", x=0.3, y=0.5, speed=0.15)])


def test_shape_table_counts_right_and_wrong_shapes():
    star, square = render_scene(_scene("star"), 9, 64, 64), render_scene(_scene("square"), 9, 64, 64)
    verdicts = [judge_clip(star, _scene("star")), judge_clip(square, _scene("square")),
                judge_clip(star, _scene("square"))]  # a star drawn where a square was asked
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]]
            for r in judge_sections.shape_table(verdicts).splitlines()[2:]}
    assert rows["star"] == ["1", "1.00", "star 1"]
    assert rows["square"][:2] == ["2", "0.50"] and set(rows["square"][2].split(", ")) == {"square 1", "star 1"}
    assert rows["all"][:2] == ["3", "0.67"] and rows["all"][2].startswith("star 2")
