"""Preference pairs from the model's own blueprints (vidgpt.train.preference_pairs): building, the reference, DPO."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from vidgpt.backbone import extend, load_vidgpt_lm, save_vidgpt_lm
from vidgpt.config import load_config
from vidgpt.data.synthetic import WorldConfig
from vidgpt.layout import VISUAL, Layout
from vidgpt.train.lm_data import LMDataConfig
from vidgpt.train.lm_loss import LossHead, LossSettings
from vidgpt.train.motion_pairs import contrast_loss, pair_batch, pair_margins, ref_margins
from vidgpt.train.preference_pairs import STRAIGHT, PreferenceBuild, PreferencePairs, build_preferences

TINY_YAML = Path(__file__).resolve().parents[1] / "configs" / "lm" / "tiny.yaml"


@pytest.fixture(scope="module")
def built(tmp_path_factory, video_tok_dir):
    """A tiny random vidgpt LM (K=6, chat layout, blueprint) and the pairs it makes of its own blueprints."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("prefs")
    lm = extend("tiny-llama", video_tok_dir, tiny={"hidden_size": 32, "layers": 2})
    model = save_vidgpt_lm(lm, root / "model", form="full")
    world = WorldConfig(max_objects=1, backgrounds=["solid"])
    b = PreferenceBuild(num=6, samples=2, frames=5, size=32, seed=1, batch=4)
    counts = build_preferences(model, root / "pairs", b, world)
    return model, root / "pairs", counts, b


def test_build_writes_wrong_way_samples_against_the_truth(built):
    model, out, counts, b = built
    recs = pq.read_table(out / "part-00000-00000.parquet").to_pylist()
    assert counts["samples"] == b.samples * counts["prompts"] and counts["prompts"] <= b.num
    assert counts["pairs"] == counts["wrong"] == len(recs) == counts["samples"] - counts["right"] > 0
    assert json.loads((out / "report.json").read_text())["counts"] == counts
    for r in recs:
        assert r["asked"] in STRAIGHT and r["observed"] != r["asked"]
        n = int(np.prod(r["blueprint_shape"]))
        assert len(r["win_blueprint"]) == len(r["lose_blueprint"]) == n and r["shape"][0] == r["blueprint_shape"][0]
        assert r["caption"] and np.isfinite(r["ref_margin"])


def test_the_reference_is_the_sampling_model(built):
    """At the sampling model's own weights every pair's margin equals its stored reference: DPO starts at log 2."""
    model, out, counts, _ = built
    lm = load_vidgpt_lm(model)
    pairs = PreferencePairs(LMDataConfig(chat=True), [str(out)], lm.vocab, lm.text_tokenizer, 0, "eval",
                            holdout_every=1).take(counts["pairs"])
    layout = Layout(lm.vocab, lm.text_tokenizer, chat=True)
    t, h, w = pq.read_table(out / "part-00000-00000.parquet").to_pylist()[0]["blueprint_shape"]
    for p in pairs:  # both documents: the caption, then the blueprint; trained on its latent frames >= 1 only
        for doc in (p.better, p.worse):
            assert layout.parse(doc.input_ids).turns[0].text() == p.caption
            vis = [i for i, k in enumerate(doc.kinds) if k == VISUAL]
            assert len(vis) == t * h * w and [i for i, x in enumerate(doc.weights) if x > 0] == vis[h * w:]
    head = LossHead(lm.vocab, LossSettings(head="constrained"))
    with torch.no_grad():
        m = pair_margins(head, lm.model, pair_batch(pairs))
    ref = ref_margins(pairs)
    assert torch.allclose(m, ref, atol=1e-3), (m, ref)
    assert float(contrast_loss(m, 0.1, ref)) == pytest.approx(float(np.log(2)), abs=1e-4)


def test_trainer_runs_dpo_on_the_pairs(built, tmp_path):
    from vidgpt.train.lm_trainer import LMTrainConfig, train_lm

    model, out, counts, _ = built
    cfg = load_config(LMTrainConfig, TINY_YAML, [
        f"model.path={model}", "model.backbone=", "data.chat=true", "train.steps=4", "train.seq_len=128",
        "train.eval_every=2", "train.eval_batches=1", "train.ckpt_every=4", "loss.preference_weight=1.0",
        f"loss.preference_paths=[{out}]", f"loss.preference_eval_paths=[{out}]", "loss.preference_pairs=2"])
    train_lm(cfg, tmp_path / "run", progress=False)
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    assert len(steps) == 4 and all("pref_margin" in r and r["preference"] > 0 for r in steps)
    assert abs(steps[0]["pref_margin"]) < 1e-2  # the first pairs meet the weights that made them: m = m_ref
    evals = [r for r in log if "eval_pref_margin" in r]
    assert [r["step"] for r in evals] == [2, 4] and all(0 <= r["eval_pref_wins"] <= 1 for r in evals)
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-0000004" / "trainer_state.json").read_text())
    assert "preference_pairs" in state and "pairs" not in state


def test_preference_settings_are_checked():
    from vidgpt.errors import ConfigError

    with pytest.raises(ConfigError, match="preference_beta"):
        LossSettings(preference_beta=0).check()
    lm = extend("tiny-llama", None, codebook_bits=6, tiny={"hidden_size": 32, "layers": 1})
    with pytest.raises(ConfigError, match="preference_paths"):
        PreferencePairs(LMDataConfig(), [], lm.vocab, lm.text_tokenizer, 0)


def test_own_winners_pair_right_and_wrong_samples_of_one_prompt(built, tmp_path, monkeypatch):
    """--winners own: both sides are the model's samples for the same caption, the better one judged right on
    motion, both right on colour; each wrong sample is used once, at most per_prompt a prompt."""
    import vidgpt.data.judge as judge
    from vidgpt.train.preference_pairs import _own_pairs, _Sample

    calls = []

    def fake_judge(frames, scene, fps=8.0):  # every third sample moves right; every fifth has the wrong colour
        n = len(calls)
        calls.append(n)
        check = judge.AttributeCheck
        v = judge.ObjectVerdict(0, check("red", "red", n % 5 != 4), check("circle", "circle", True),
                                check("right", "right" if n % 3 == 0 else "left", n % 3 == 0), len(frames))
        return judge.JudgeResult([v], [], v.passed)

    monkeypatch.setattr(judge, "judge_clip", fake_judge)
    model, _, _, _ = built
    b = PreferenceBuild(num=6, samples=6, frames=5, size=32, seed=1, batch=4, winners="own", per_prompt=2)
    counts = build_preferences(model, tmp_path / "own", b, WorldConfig(max_objects=1, backgrounds=["solid"]))
    recs = pq.read_table(tmp_path / "own" / "part-00000-00000.parquet").to_pylist()
    assert counts["samples"] == len(calls) == 6 * counts["prompts"]
    assert counts["right"] == sum(1 for n in calls if n % 3 == 0)
    assert 0 < counts["pairs"] == len(recs) <= 2 * counts["prompts"] and counts["prompts_paired"] <= counts["prompts"]
    for r in recs:
        assert r["observed"] == "left" and r["win_blueprint"] != r["lose_blueprint"] and np.isfinite(r["ref_margin"])
    # the pairing rule itself: wrong-colour samples never enter; right ones are reused in turn
    s = [_Sample(0, [k], k in (0, 3), k != 4, "x") for k in range(6)]
    assert [(a.codes[0], w.codes[0]) for a, w in _own_pairs(s, 3)] == [(0, 1), (3, 2), (0, 5)]
    assert _own_pairs([x for x in s if not x.motion_ok], 3) == []
    with pytest.raises(Exception, match="winners"):
        build_preferences(model, tmp_path / "bad", PreferenceBuild(winners="best"), WorldConfig())
