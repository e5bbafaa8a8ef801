"""tools/scratch_baseline.py: the from-scratch control learns a colour that the data ties to the codes, and not one
that the data does not."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import scratch_baseline  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_swap_and_words():
    assert scratch_baseline.swap_colour("yellow ring") == "cyan ring"
    assert scratch_baseline.swap_colour("a ring") is None
    v = scratch_baseline.WordVocab(["red ring", "A blue star."], width=4)
    assert v.encode("red ring") == [v.index["red"], v.index["ring"], 0, 0]
    assert len(v.encode("a b c d e f")) == 4


def _shards(tmp_path, tied: bool):
    """2x2 blueprints of one object in its top-left cell; its code is the colour's index when `tied`, else random."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    rows = []
    for i in range(400):
        c = int(rng.integers(len(scratch_baseline.COLORS)))
        obj = c if tied else int(rng.integers(len(scratch_baseline.COLORS)))
        rows.append({"caption": f"{scratch_baseline.COLORS[c]} ring", "blueprint_codes": [100 + obj, 7, 7, 7],
                     "blueprint_object_mask": [1, 0, 0, 0], "blueprint_shape": [1, 2, 2]})
    d = tmp_path / ("tied" if tied else "untied")
    d.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), d / "part-00000.parquet")
    return str(d)


def _gap(capsys) -> float:
    last = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| 120 ")][0]
    return float(last.split("|")[5])


def test_learns_a_tied_colour_and_not_an_untied_one(tmp_path, capsys):
    args = ["--steps", "120", "--eval-every", "120", "--d", "32", "--layers", "1", "--heads", "2", "--heldout", "40",
            "--batch", "16", "--lr", "3e-3"]
    assert scratch_baseline.main([_shards(tmp_path, tied=True), *args]) == 0
    tied = _gap(capsys)
    assert scratch_baseline.main([_shards(tmp_path, tied=False), *args]) == 0
    untied = _gap(capsys)
    assert tied > 0.5, tied  # the colour word pins the object's code: swapping it costs nats
    assert abs(untied) < 0.3, untied  # nothing to learn: no gap
