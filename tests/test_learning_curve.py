"""tools/learning_curve.py: the extrapolation to 80% adherence and the table/plot writer (no training here)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

@pytest.fixture(scope="module")
def lc(load_tool):
    return load_tool("learning_curve")


def logistic(tokens, alpha, beta):
    return 1 / (1 + math.exp(-(alpha + beta * math.log(tokens))))


def test_extrapolation_recovers_the_tokens_of_a_logistic_curve(lc):
    alpha, beta = -12.0, 0.9
    pts = [(t, logistic(t, alpha, beta), 1000) for t in (1e5, 3e5, 1e6)]
    e = lc.extrapolate(pts, target=0.8)
    assert e["ok"]
    expect = math.exp((math.log(4) - alpha) / beta)
    assert abs(math.log(e["tokens"] / expect)) < 1e-6


def test_no_trend_gives_no_extrapolation(lc):
    assert not lc.extrapolate([(1e5, 0.0, 60), (2e5, 0.0, 60), (4e5, 0.0, 60)])["ok"]
    assert not lc.extrapolate([(1e5, 0.4, 60), (2e5, 0.3, 60)])["ok"]  # falling
    assert not lc.extrapolate([(1e5, 0.4, 60)])["ok"]


def test_compare_writes_table_json_and_plot(lc, tmp_path):
    def point(tokens, a):
        pv = {"color": a, "motion": a, "color_motion": a, "objects": 60}
        return {"budget": tokens, "steps": 10, "tokens": tokens, "train_wall_s": tokens / 100, "final_train_loss": 5.0,
                "heldout_visual_loss": 6.0 - a, "preview": pv, "full_check": None}

    pts = [point(t, logistic(t, -12.0, 0.9)) for t in (1e5, 3e5, 1e6)]
    e = lc.extrapolate([(p["tokens"], p["preview"]["color_motion"], 60) for p in pts])
    e.update(tokens_per_s=100.0, cpu_hours=e["tokens"] / 100 / 3600, clips=e["tokens"] / 1650)
    curve = {"name": "a", "config": "c.yaml", "set": [], "frames": 17, "size": 128, "threads": 1,
             "mean_doc_tokens": 1650.0, "tokens_per_step": 6600.0,
             "data": {"clips": 600, "images": 0, "train_build_s": 60.0, "workers": 2}, "points": pts, "extrapolation": e}
    for name in ("a", "b"):
        d = tmp_path / name
        d.mkdir()
        (d / "curve.json").write_text(json.dumps({**curve, "name": name}))
    assert lc.main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "curve.md").read_text()
    assert "### a" in md and "### b" in md and "CPU-hours" in md
    assert len(json.loads((tmp_path / "out" / "curve.json").read_text())) == 2
    assert (tmp_path / "out" / "curve.png").stat().st_size > 1000


def write_pieces_csv(path: Path, rows: list[tuple]) -> Path:
    head = "lineage,point,tokens,cpu_hours,n,preview_colour,preview_motion,full_colour,full_motion,source\n"
    path.write_text(head + "".join(",".join("" if v is None else str(v) for v in r) + "\n" for r in rows))
    return path


def test_pieces_fits_a_rising_lineage_and_refuses_noise(lc, tmp_path):
    rows = []
    for i, t in enumerate((1e5, 3e5, 1e6, 3e6)):
        colour = round(logistic(t, -12.0, 0.9), 4)
        motion = (0.05, 0.10, 0.04, 0.08)[i]  # flat, noisy: no trend to extrapolate
        rows.append(("rising", f"step {i}", int(t), round(t / 100 / 3600, 4), 100, colour, motion, None, None, "x"))
    rows.append(("later", "only point", int(2e7), None, 100, 0.9, 0.1, 0.9, 0.1, "y"))
    lineages = lc.read_pieces(write_pieces_csv(tmp_path / "p.csv", rows))
    assert list(lineages) == ["rising", "later"] and len(lineages["rising"]) == 4
    fits = lc.pieces_fits(lineages["rising"])
    expect = math.exp((math.log(4) + 12.0) / 0.9)
    assert fits["preview_colour"]["ok"] and abs(math.log(fits["preview_colour"]["tokens"] / expect)) < 0.01
    assert abs(fits["preview_colour"]["cpu_hours"] - expect / 100 / 3600) / (expect / 100 / 3600) < 0.01
    assert not fits["preview_motion"]["ok"] and "noise" in fits["preview_motion"]["why"]
    assert not fits["full_colour"]["ok"]  # no full-clip figures in this lineage
    assert not lc.pieces_fits(lineages["later"])["preview_colour"]["ok"]  # one point spans no tokens

    out = tmp_path / "out"
    assert lc.main(["pieces", str(tmp_path / "p.csv"), "--out", str(out), "--pool", "r", "--pool", "l"]) == 0
    md = (out / "pieces.md").read_text()
    assert "| rising | step 0 |" in md and "r, all points pooled, preview colour: 80% at" in md
    assert "no extrapolation" in md and (out / "pieces.png").stat().st_size > 1000
