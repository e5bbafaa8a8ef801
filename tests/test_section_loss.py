"""tools/section_loss.py: held-out visual loss by section (blueprint frame 0, later blueprint frames, fine)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import prompt_sensitivity  # noqa: E402
import section_loss  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sections_split_the_documents_codes_and_q_zero_is_scored_apart(tmp_path, capsys, tiny_shards_and_lm):
    from vidgpt.backbone import base_model, save_vidgpt_lm
    from vidgpt.layout import VISUAL
    from vidgpt.parent_hint import PREV_KEY, attach_parent_hint
    from vidgpt.train.lm_data import LMDataConfig, RecordFormatter

    shards, lm = tiny_shards_and_lm(frames=9)
    recs = prompt_sensitivity.held_out_records(str(shards), 3, 4, need_blueprint=True)
    assert len(recs) == 2 and all(r["blueprint_codes"] is not None for r in recs)
    doc = RecordFormatter(lm.vocab, lm.text_tokenizer, LMDataConfig(chat=False))(recs[0], np.random.default_rng(0))
    pos = section_loss.section_positions(doc, recs[0])
    vis = [i for i, k in enumerate(doc.kinds) if k == VISUAL]
    assert sum(pos.values(), []) == vis  # every video id once, in order
    t = int(recs[0]["shape"][0])
    assert t > 1 and len(pos["blueprint frame 0"]) * t == len(recs[0]["blueprint_codes"])
    assert len(pos["fine"]) == len(recs[0]["codes"])
    # a model with previous-frame hints: Q = 0 changes only the later blueprint frames' loss, and Q is put back
    hint = attach_parent_hint(base_model(lm.model), prev=True)
    with torch.no_grad():
        getattr(hint, PREV_KEY).normal_(0, 2.0)
    q = getattr(hint, PREV_KEY).detach().clone()
    save_vidgpt_lm(lm, tmp_path / "m")
    assert section_loss.main([str(tmp_path / "m"), "--shards", str(tmp_path / "s"), "--holdout-every", "3", "--n", "4",
                              "--zero-prev", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    with_q, zero = res["rows"]
    assert zero["model"].endswith("(Q = 0)") and res["n"] == 2
    assert with_q["blueprint frame 0"] == pytest.approx(zero["blueprint frame 0"], abs=1e-6)
    assert abs(with_q["blueprint frames >= 1"] - zero["blueprint frames >= 1"]) > 1e-4
    section_loss.section_losses(lm, recs, zero_prev=True)  # scores with Q zeroed, then puts it back
    assert torch.equal(getattr(hint, PREV_KEY), q)
