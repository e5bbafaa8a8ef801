"""tools/prompt_sensitivity.py: true vs swapped caption losses on held-out shard records, whole clip and object codes."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import prompt_sensitivity  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_swap_changes_exactly_the_named_word():
    assert prompt_sensitivity.swapped("red circle, moving right", "color") == "purple circle, moving right"
    assert prompt_sensitivity.swapped("red circle, moving right", "motion") == "red circle, moving down"
    assert prompt_sensitivity.swapped("a circle", "color") is None
    assert prompt_sensitivity.swapped("red circle, moving right", "shape") == "red diamond, moving right"
    assert prompt_sensitivity.swapped("a red cross moving up", "shape") == "a red triangle moving up"
    assert (prompt_sensitivity.swapped_background("A red circle moves right on a dark grey background")
            == "A red circle moves right on a dark teal background")
    assert prompt_sensitivity.swapped_background("red circle, moving right") is None


def test_losses_on_held_out_records_with_object_codes(tmp_path, capsys, tiny_shards_and_lm):
    from vidgpt.backbone import save_vidgpt_lm

    _, lm = tiny_shards_and_lm(frames=5)
    save_vidgpt_lm(lm, tmp_path / "m")
    assert prompt_sensitivity.main([str(tmp_path / "m"), "--shards", str(tmp_path / "s"), "--n", "4",
                                    "--holdout-every", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 2  # records 0 and 3 of the folder: the ones the trainer holds out
    for row in res["rows"]:
        assert np.isfinite([row["true"], row["swapped_loss"], row["object_true"], row["object_swapped"]]).all()
        assert row["swapped"] != row["caption"]
    assert res["object_gap"] == pytest.approx(np.mean([r["object_swapped"] - r["object_true"] for r in res["rows"]]))
    assert res["first_code"] == "first object code" and np.isfinite(res["first_gap"])
    assert all(r["first_true"] >= 0 for r in res["rows"])
    assert prompt_sensitivity.main([str(tmp_path / "m"), "--shards", str(tmp_path / "s"), "--n", "4",
                                    "--holdout-every", "3", "--first-objects", "3", "--json"]) == 0
    three = json.loads(capsys.readouterr().out)
    assert three["first_code"] == "first 3 object codes" and np.isfinite(three["first_gap"])
    assert [r["first_true"] for r in three["rows"]] != [r["first_true"] for r in res["rows"]]  # other codes scored
    # the background swap: the second caption style names one; its gap is on the clip's first code
    assert prompt_sensitivity.main([str(tmp_path / "m"), "--shards", str(tmp_path / "s"), "--n", "4",
                                    "--holdout-every", "3", "--swap", "background", "--json"]) == 0
    bg = json.loads(capsys.readouterr().out)
    assert bg["n"] >= 1 and bg["first_code"] == "first code"
    assert all(" background" in r["caption"] and r["swapped"] != r["caption"] for r in bg["rows"])


def test_a_tools_vidgpt_error_is_one_line_and_exit_1(tmp_path):
    """tools/ scripts end a VidgptError like `vidgpt` does: one line on stderr, exit code 1, no traceback."""
    import subprocess

    res = subprocess.run([sys.executable, str(ROOT / "tools" / "prompt_sensitivity.py"), str(tmp_path / "none"),
                          "--shards", str(tmp_path)], capture_output=True, text=True)
    err = res.stderr.strip().splitlines()
    assert res.returncode == 1 and len(err) == 1
    assert err[0].startswith("prompt_sensitivity.py: error: ") and "Traceback" not in res.stderr


def test_changed_only_weights_the_cells_where_the_object_arrives_or_leaves():
    from vidgpt.backbone import extend
    from vidgpt.layout import VISUAL
    from vidgpt.train.lm_data import LMDataConfig, RecordFormatter

    lm = extend("tiny-llama", None, codebook_bits=6, tiny={"hidden_size": 32, "layers": 1, "heads": 2, "kv_heads": 1})
    rng = np.random.default_rng(0)
    fine = np.zeros((2, 4, 4), dtype=np.uint8)
    fine[0, 1, 1] = fine[1, 1, 2] = 1  # the object moves one cell right
    rec = {"codes": rng.integers(0, 64, 32).tolist(), "shape": [2, 4, 4], "blueprint_codes": rng.integers(0, 64, 8).tolist(),
           "blueprint_shape": [2, 2, 2], "caption": "red circle, moving right", "captions": ["red circle, moving right"],
           "kind": "video", "edit": None, "object_mask": fine.reshape(-1).tolist(),
           "blueprint_object_mask": [1, 0, 0, 0, 1, 0, 0, 0]}  # the blueprint sees no change
    doc = RecordFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig(chat=False))(rec, np.random.default_rng(0))
    got = prompt_sensitivity.changed_only(doc, rec)
    w = [x for x, k in zip(got.weights, got.kinds) if k == VISUAL]
    want = np.zeros(8 + 32)
    want[8 + 16 + 5] = want[8 + 16 + 6] = 1  # frame 1: cell (1,1) left, cell (1,2) arrived
    assert w == want.tolist() and sum(got.weights) == 2
    still = dict(rec, object_mask=np.concatenate([fine[0], fine[0]]).reshape(-1).tolist())
    assert prompt_sensitivity.changed_only(doc, still) is None
    # one section only: the blueprint's changed cells (here it moves too) or the fine section's
    both = dict(rec, blueprint_object_mask=[1, 0, 0, 0, 0, 1, 0, 0])  # blueprint: (0,0) -> (0,1)
    bp = np.zeros(8 + 32)
    bp[4] = bp[5] = 1
    for section, expect in (("all", bp + want), ("blueprint", bp), ("fine", want)):
        got = prompt_sensitivity.changed_only(doc, both, section)
        assert [x for x, k in zip(got.weights, got.kinds) if k == VISUAL] == expect.tolist(), section
    assert prompt_sensitivity.changed_only(doc, rec, "blueprint") is None  # its blueprint did not change
    # object codes of one section (--swap shape --section fine): the fine section's object cells keep their weight
    doc_w = [x for x, k in zip(doc.weights, doc.kinds) if k == VISUAL]
    for section, lo, hi in (("all", 0, 40), ("blueprint", 0, 8), ("fine", 8, 40)):
        got = [x for x, k in zip(prompt_sensitivity.object_only(doc, both, section).weights, doc.kinds) if k == VISUAL]
        mask = np.asarray(both["blueprint_object_mask"] + both["object_mask"], dtype=bool)
        inside = np.zeros(40, dtype=bool)
        inside[lo:hi] = True
        assert got == [w if m and i else 0.0 for w, m, i in zip(doc_w, mask, inside)], section
