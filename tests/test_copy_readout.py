"""vidgpt.copy_readout: the caption scores which cell of the previous blueprint frame each blueprint code copies, on
the logits, the same in the trainer's loss head and in every decode backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vidgpt.config import load_config
from vidgpt.copy_readout import (COPY_BASIS_KEY, COPY_BIAS_KEY, COPY_DIMS, COPY_GAIN_KEY, COPY_KEY, COPY_KEYS,
                                 COPY_MIX_INIT, COPY_MIX_KEY, COPY_OFFSETS, COPY_UNTIL_KEY, caption_basis, mix_copy, tilt_copy)
from vidgpt.errors import ConfigError
from vidgpt.geometry import blueprint_shape
from vidgpt.parent_hint import (CAPTION_KEY, CAPTION_WINDOW, CENTER_KEY, KEY, SCALE_KEY, HintedBackend, HintTracker,
                                attach_parent_hint, copy_logits, embed_with_hints, hint_ids, load_parent_hint_state,
                                parent_hint_of)
from vidgpt.vocab import UnifiedVocab, VocabSpec

from test_parent_hint import TINY_YAML, _block_ids

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_mixture_is_the_model_and_the_copy_weighted_by_lam_and_repeats_add_up():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, generator=g)
    ids = torch.tensor([[11, 11, 13, -1], [10, 20, 14, 9], [-1, 3, 30, -1]])  # the rows are ids 10..14 (lo = 10)
    scores = torch.tensor([[0.0, 1.0, 2.0, 5.0], [1.0, 2.0, 0.5, 3.0], [1.0, 1.0, 1.0, 1.0]])
    mix = torch.tensor(0.3)
    got = mix_copy(logits, ids, scores, mix, lo=10)
    lam = torch.sigmoid(mix)
    p = logits.softmax(-1)
    w0 = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), -1)  # row 0: the -1 slot left out; id 11 twice
    want0 = (1 - lam) * p[0] + lam * torch.tensor([0, w0[0] + w0[1], 0, w0[2], 0])
    w1 = torch.softmax(torch.tensor([1.0, 0.5]), -1)  # row 1: 20 and 9 are outside [10, 15)
    want1 = (1 - lam) * p[1] + lam * torch.tensor([w1[0], 0, 0, 0, w1[1]])
    assert torch.allclose(got[0].exp(), want0, atol=1e-6) and torch.allclose(got[1].exp(), want1, atol=1e-6)
    assert torch.equal(got[2], logits[2])  # no id in range: the logits as they were
    assert torch.equal(mix_copy(logits, ids.clamp(max=-1), scores, mix, 10), logits)
    # every offset on the same id: lam on it whatever the scores
    same = mix_copy(logits[:1], torch.full((1, 4), 12), torch.tensor([[9.0, -3.0, 0.0, 2.0]]), mix, 10)
    assert float(same[0, 2].exp()) == pytest.approx(float((1 - lam) * p[0, 2] + lam), abs=1e-6)
    # gradients reach the scores and the mix, finite where the copy puts nothing
    sc, mx = scores.clone().requires_grad_(True), mix.clone().requires_grad_(True)
    F.cross_entropy(mix_copy(logits, ids, sc, mx, 10), torch.tensor([0, 2, 4])).backward()
    assert torch.isfinite(sc.grad).all() and sc.grad.abs().sum() > 0 and torch.isfinite(mx.grad) and mx.grad != 0


def test_the_tilt_adds_the_gain_times_the_centred_scores_and_leaves_a_plain_region_alone():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, generator=g)
    ids = torch.tensor([[11, 11, 13, -1], [12, 12, 12, 20], [-1, 3, 30, -1]])  # rows are ids 10..14 (lo = 10)
    scores = torch.tensor([[0.0, 1.0, 5.0, 9.0], [1.0, 2.0, 6.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    got = tilt_copy(logits, ids, scores, torch.tensor(0.5), lo=10)
    mean0 = (0.0 + 1.0 + 5.0) / 3  # the -1 cell left out of the mean
    want0 = logits[0].clone()
    want0[1] += 0.5 * ((0.0 - mean0) + (1.0 - mean0))  # id 11 twice
    want0[3] += 0.5 * (5.0 - mean0)
    assert torch.allclose(got[0], want0, atol=1e-6)
    assert torch.allclose(got[1], logits[1], atol=1e-6)  # every valid cell on id 12: nothing (20 is out of range...)
    assert torch.equal(got[2], logits[2])  # no id in range
    assert torch.equal(tilt_copy(logits, ids, scores, torch.tensor(0.0), 10), logits)  # beta = 0: the same logits


def test_the_caption_basis_whitens_the_windows_principal_directions():
    g = torch.Generator().manual_seed(1)
    means = torch.randn(200, 3, generator=g) @ torch.randn(3, 40, generator=g) * 2 + torch.randn(40, generator=g)
    B = caption_basis(means, dims=3)
    f = (means - means.mean(0)) @ B.t()
    assert torch.allclose(f.std(0), torch.ones(3), atol=1e-4)  # unit variance a coordinate
    assert torch.allclose(torch.corrcoef(f.t()), torch.eye(3), atol=1e-4)  # uncorrelated
    with pytest.raises(ValueError, match="fewer than 4"):
        caption_basis(means, dims=4)  # three directions only


@pytest.mark.parametrize("subtokens", [1, 2])
def test_each_position_that_predicts_a_later_blueprint_frame_is_told_the_cells_around_it_one_frame_back(subtokens):
    vocab = UnifiedVocab(VocabSpec(6, subtokens, 8, 12), offset=100)
    shape = (3, 8, 12)  # latent 3 x 8 x 12: blueprint 3 x 4 x 6
    block, bp = _block_ids(vocab, shape, seed=4)
    text = [10, 11, 12]
    ids = text + block
    hints = HintTracker(vocab, caption=True, copy=True).feed_many(ids)
    C = len(COPY_OFFSETS)
    assert all(len(h) == 1 + CAPTION_WINDOW + C for h in hints)
    bt, bh, bw = blueprint_shape(shape)
    S = subtokens
    marker = ids.index(vocab.blueprint_id)
    start = marker + 1  # the blueprint's first id
    seen = 0
    for pos, h in enumerate(hints):
        k = pos + 1 - start  # the blueprint id position pos predicts
        copies = h[-C:]
        if not (0 <= k < bt * bh * bw * S) or k < bh * bw * S:  # outside the blueprint, or its frame 0
            assert copies == (-1,) * C, pos
            continue
        cell, g = divmod(k, S)
        t, r = divmod(cell, bh * bw)
        y, x = divmod(r, bw)
        for (dy, dx), got in zip(COPY_OFFSETS, copies):
            yy, xx = y + dy, x + dx
            inside = 0 <= yy < bh and 0 <= xx < bw
            assert got == (ids[start + ((((t - 1) * bh + yy) * bw + xx) * S + g)] if inside else -1)
            if inside and S == 1:  # and it is that cell's blueprint code
                assert got == int(bp[t - 1, yy, xx]) + vocab.visual_offset
        assert h[1:1 + len(text)] == tuple(text)  # the caption window rides along
        seen += 1
    assert seen == (bt - 1) * bh * bw * S
    with pytest.raises(ValueError, match="caption"):
        HintTracker(vocab, copy=True)


@pytest.mark.parametrize("subtokens", [1, 2])
def test_until_change_the_copy_slots_stop_after_a_frames_first_changed_id(subtokens):
    """With copy_until_change the positions of blueprint frame t >= 1 keep their copy slots while every id drawn so
    far in the frame equals frame t - 1's (the position that predicts the first changed id included) and lose them
    after it, in each frame anew; without it every such position has them. Truncation keeps it right."""
    from vidgpt.geometry import blueprint_shape
    from vidgpt.layout import Layout
    from vidgpt.layout import VisualBlock

    from test_parent_hint import _EOS

    vocab = UnifiedVocab(VocabSpec(6, subtokens, 8, 12), offset=100)
    S, C = subtokens, len(COPY_OFFSETS)
    shape = (3, 8, 12)  # blueprint 3 x 4 x 6: 24 cells a frame
    bt, bh, bw = blueprint_shape(shape)
    g = torch.Generator().manual_seed(2)
    bp = torch.randint(0, 64, (bt, bh, bw), generator=g)
    bp[1] = bp[0]
    bp[1, 1, 3] = (bp[0, 1, 3] + 1) % 64  # frame 1: cell 9 is its first change
    bp[2] = bp[1]  # frame 2: no change at all
    fine = torch.randint(0, 64, shape, generator=g)
    block = Layout(vocab, _EOS(), chat=False).encode_block(VisualBlock(shape, fine=fine, blueprint=bp))
    ids = [10, 11, 12] + block
    start = ids.index(vocab.blueprint_id) + 1
    n = bh * bw * S
    for until in (False, True):
        hints = HintTracker(vocab, caption=True, copy=True, copy_until_change=until).feed_many(ids)
        has = [any(c >= 0 for c in hints[start - 1 + k][-C:]) for k in range(bt * n)]
        first = next(k for k in range(n, 2 * n) if ids[start + k] != ids[start + k - n])
        assert first in (n + 9 * S, n + 9 * S + S - 1)  # one of cell 9's sub-tokens
        want = [n <= k < 3 * n for k in range(bt * n)]
        if until:
            want = [w and not (first < k < 2 * n) for k, w in zip(range(bt * n), want)]
        assert has == want, until
    tr = HintTracker(vocab, caption=True, copy=True, copy_until_change=True)
    whole = tr.feed_many(ids)
    tr.truncate(start + n + 3)
    assert whole[: start + n + 3] + tr.feed_many(ids[start + n + 3 :]) == whole


def test_truncation_keeps_the_copy_slots_right():
    vocab = UnifiedVocab(VocabSpec(6, 1, 8, 8), offset=100)
    block, _ = _block_ids(vocab, (5, 4, 4))
    ids = [11, 12, 13] + block + [14, 15] + block
    whole = HintTracker(vocab, True, True, True).feed_many(ids)
    tr = HintTracker(vocab, True, True, True)
    for cut in (len(block) + 6, 40, 11, 0):
        tr.truncate(0)
        first = tr.feed_many(ids[:cut + 7])
        tr.truncate(cut)
        assert first[:cut] + tr.feed_many(ids[cut:]) == whole


def _copy_state(H: int, scale: float = 1.0, seed: int = 1, mix: float = 0.0, form: str = "mixture") -> dict:
    """A random read-out: the mixture at lam = sigmoid(mix), or the tilt at gain 1 + mix."""
    g = torch.Generator().manual_seed(seed)
    weight = {COPY_MIX_KEY: torch.tensor(mix)} if form == "mixture" else {COPY_GAIN_KEY: torch.tensor(1.0 + mix)}
    return {KEY: torch.zeros(H, H), CAPTION_KEY: torch.zeros(H),
            CENTER_KEY: 0.1 * torch.randn(H, generator=g), SCALE_KEY: torch.tensor(3.0),
            COPY_KEY: scale * torch.randn(len(COPY_OFFSETS), COPY_DIMS, generator=g),
            COPY_BIAS_KEY: scale * torch.randn(len(COPY_OFFSETS), generator=g), **weight,
            COPY_BASIS_KEY: 30 * torch.randn(COPY_DIMS, H, generator=g)}  # text rows: small in the tiny model


@pytest.mark.parametrize("fast,attention,form", [(True, "filled", "mixture"), (True, "static", "mixture"),
                                                 (False, None, "mixture"), (True, "static", "tilt"), (False, None, "tilt")])
def test_decoding_backends_add_what_the_teacher_forced_read_out_adds(text_tok, fast, attention, form):
    """Prefill, one-token steps and windows (several positions a pass, logits read at some of them, the tail
    truncated as a speculative decoder does) through HintedBackend give, for every position, the logits of one
    teacher-forced forward plus the copy read-out (`copy_logits`); it touches the positions that predict blueprint
    frames >= 1 only."""
    from vidgpt.generate.tiny import tiny_pipeline

    options = {"attention": attention} if attention else {}
    probe = tiny_pipeline(text_tok, bits=6, fast=fast, decode_options=dict(options))
    state = _copy_state(probe.model.config.hidden_size, form=form)
    hinted = tiny_pipeline(text_tok, bits=6, fast=fast, decode_options={"parent_hint": state, **options})
    be = hinted.backend
    assert isinstance(be, HintedBackend) and be.copy and be.supports_step_many == (fast and attention == "filled")
    vocab = hinted.vocab
    block, _ = _block_ids(vocab, (2, 4, 4), seed=3)  # blueprint 2 x 2 x 2: its second frame copies
    ids = torch.tensor([[11, 12, 13] + block])
    lo, hi = vocab.visual_offset, vocab.end
    with torch.no_grad():
        plain = hinted.model(inputs_embeds=embed_with_hints(hinted.model, ids, vocab, state)).logits[0, :, lo:hi]
        ref = copy_logits(plain[None], hinted.model, ids, vocab, state, lo)[0]
    n0 = 6
    got = [be.logits(be.prefill(ids[:, :n0], torch.ones(1, n0, dtype=torch.long), max_len=ids.shape[1] + 2), lo, hi)[0]]
    at = n0
    if be.supports_step_many:  # a window across both blueprint frames; logits read at every other position, then all
        h = be.step_many(ids[:, at : at + 8])
        odd = list(range(1, 8, 2))
        assert torch.allclose(be.logits(h[:, odd], lo, hi, odd)[0], ref[at + 1 : at + 8 : 2], atol=2e-3)
        got += list(be.logits(h, lo, hi, list(range(8)))[0])
        be.truncate(at + 5)  # a rejected tail: fed again below
        got, at = got[:-3], at + 5
    while at < ids.shape[1] - 1:
        got.append(be.logits(be.step(ids[:, at]), lo, hi)[0])
        at += 1
    got = torch.stack(got)
    assert torch.allclose(got, ref[n0 - 1 : ids.shape[1] - 1], atol=2e-3), float((got - ref[n0 - 1 : -1]).abs().max())
    moved = (ref - plain).abs().amax(-1) > 1e-3
    start = 3 + 4  # the position of <blueprint>: it predicts blueprint id 0 (S = 1: 4 ids a frame)
    assert ids[0, start] == vocab.blueprint_id
    assert not moved[: start + 4].any()  # the text, the header and the positions that predict frame 0
    assert moved[start + 4 : start + 8].all()  # those that predict frame 1
    assert not moved[start + 8 :].any()  # the fine marker and the fine section
    with pytest.raises(RuntimeError, match="window"):  # a window's states without their positions
        be.logits(be.step(ids[:, -1]).unsqueeze(1), lo, hi)


@pytest.mark.parametrize("form", ["mixture", "tilt"])
def test_speculative_decoding_of_a_copy_model_gives_the_one_token_paths_ids(text_tok, form):
    """Windows of drafts read the copy read-out at each window position: the exact speculative decoder draws the
    ids the one-token loop draws, with fewer passes."""
    from vidgpt.generate.tiny import tiny_pipeline

    H = tiny_pipeline(text_tok, bits=6).model.config.hidden_size
    state = _copy_state(H, scale=3.0, mix=2.0, form=form)
    kw = dict(frames=9, height=32, width=32, decode=False)
    for sampling in ({"temperature": 0.0, "cfg": 3.0}, {"temperature": 1.0, "seed": 5, "cfg": 2.0}):
        one = tiny_pipeline(text_tok, bits=6, decode_options={"parent_hint": state, "speculative": 0})
        spec = tiny_pipeline(text_tok, bits=6, decode_options={"parent_hint": state, "speculative": 4})
        ref = one.generate("a red circle moving right", **kw, **sampling)
        out = spec.generate("a red circle moving right", **kw, **sampling)
        assert out.token_ids == ref.token_ids
        assert spec.last_stats["passes"] < one.last_stats["passes"]


def test_a_read_out_mixed_in_at_nothing_changes_no_clip_and_a_trained_one_changes_the_later_blueprint_frames(text_tok):
    from vidgpt.generate.tiny import tiny_pipeline

    H = tiny_pipeline(text_tok, bits=6).model.config.hidden_size
    state = _copy_state(H, scale=3.0, mix=2.0)
    zero = {**state, COPY_MIX_KEY: torch.tensor(-60.0)}  # lam ~ 1e-26
    no_copy = {k: v for k, v in zero.items() if k not in COPY_KEYS}
    tilt = _copy_state(H, scale=3.0, form="tilt")
    flat = {**tilt, COPY_GAIN_KEY: torch.tensor(0.0)}  # beta = 0
    kw = dict(frames=9, height=32, width=32, seed=4, cfg=1.0)
    a, b, c, d = (tiny_pipeline(text_tok, bits=6, decode_options={"parent_hint": s}).generate("a red circle moving right", **kw)
                  for s in (no_copy, zero, state, flat))
    assert a.token_ids == b.token_ids == d.token_ids
    (ba,), (bc,) = a.blocks, c.blocks
    assert torch.equal(ba.blueprint[0], bc.blueprint[0])  # frame 0 copies nothing
    assert not torch.equal(ba.blueprint, bc.blueprint)


# --- training ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["mixture", "tilt"])
def test_the_loss_head_adds_the_read_out_and_G_and_b_learn(form):
    from vidgpt.backbone import base_model
    from vidgpt.train.lm_loss import LossHead, LossSettings, allowed_mask, weighted_lm_loss

    from test_lm_loss import make_batch, make_lm

    lm = make_lm(False)
    batch = make_batch(lm, seq_len=128)
    copies = hint_ids(batch["input_ids"], lm.vocab, caption=True, copy=True)[..., -len(COPY_OFFSETS):]
    assert (copies >= 0).any(), "the test needs blueprint frames >= 1"
    head = LossHead(lm.vocab, LossSettings(head="constrained"))
    with torch.no_grad():
        before = float(head(lm.model, batch)[0])
    hint = attach_parent_hint(base_model(lm.model), caption=True, copy=True, copy_form=form)
    weight_key = COPY_MIX_KEY if form == "mixture" else COPY_GAIN_KEY
    start = COPY_MIX_INIT if form == "mixture" else 0.0
    assert hint.copy_form == form and float(getattr(hint, weight_key).detach()) == pytest.approx(start)
    G, b, a = getattr(hint, COPY_KEY), getattr(hint, COPY_BIAS_KEY), getattr(hint, weight_key)
    H = getattr(hint, KEY).shape[0]
    assert G.shape == (len(COPY_OFFSETS), COPY_DIMS) and b.shape == (len(COPY_OFFSETS),)
    assert getattr(hint, COPY_BASIS_KEY).shape == (COPY_DIMS, H) and not hint.has_copy_basis
    with torch.no_grad():
        a.fill_(-60.0 if form == "mixture" else 0.0)  # lam ~ 0 / beta = 0: the same function
        assert float(head(lm.model, batch)[0]) == pytest.approx(before, abs=1e-6)
        a.fill_(0.0 if form == "mixture" else 1.0)
        hint.set_copy_basis(30.0 * torch.randn(COPY_DIMS, H, generator=torch.Generator().manual_seed(4)))
    loss, _ = head(lm.model, batch)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in (G, b))
    with torch.no_grad():
        G.copy_(torch.randn(G.shape, generator=torch.Generator().manual_seed(5)))
        b.copy_(torch.randn(b.shape, generator=torch.Generator().manual_seed(6)))
    a.grad = None
    head(lm.model, batch)[0].backward()  # the weight's gradient (the tilt's is zero while the scores are)
    assert a.grad is not None and a.grad.abs() > 0
    with torch.no_grad():
        copied = float(head(lm.model, batch)[0])
        assert abs(copied - before) > 1e-3
        # the head's loss is the plain forward's with the read-out added to its logits (each row's first document:
        # the head keeps packed documents apart, the plain forward does not)
        ids, pos = batch["input_ids"], batch["position_ids"]
        state = {KEY: getattr(hint, KEY), CAPTION_KEY: getattr(hint, CAPTION_KEY), **hint.copy_params()}
        first = torch.zeros_like(batch["weights"])
        for r in range(ids.shape[0]):
            p = pos[r].tolist()
            first[r, : next((i for i in range(1, len(p)) if p[i] == 0), len(p))] = 1
        sub = {**batch, "weights": batch["weights"] * first}
        logits = lm.model(inputs_embeds=embed_with_hints(lm.model, ids, lm.vocab, state), position_ids=pos).logits
        # the constrained head's softmax runs over each target's row group: mask the others, then add the copy
        B, L, V = logits.shape
        allowed = allowed_mask(ids[:, 1:].reshape(-1), lm.vocab, V, "constrained").view(B, L - 1, V)
        masked = torch.cat([logits[:, :-1].masked_fill(~allowed, float("-inf")), logits[:, -1:]], 1)
        ref = float(weighted_lm_loss(copy_logits(masked, lm.model, ids, lm.vocab, state), ids, sub["weights"])[0])
        assert float(head(lm.model, sub)[0]) == pytest.approx(ref, abs=1e-4)


def _tiny(extra):
    from vidgpt.train.lm_trainer import LMTrainConfig

    return load_config(LMTrainConfig, TINY_YAML, ["train.eval_batches=0", "loss.head=constrained",
                                                  "model.parent_hint=true", "data.blueprint=true"] + extra)


def test_a_run_adds_the_read_out_to_a_source_without_it_and_a_config_without_the_option_refuses_it(tmp_path):
    from vidgpt.backbone import describe_dir, format_description
    from vidgpt.train.lm_trainer import train_lm

    cap = ["model.caption_hint=true", "model.caption_center=true"]
    train_lm(_tiny(["train.steps=2", "train.ckpt_every=0", "model.caption_hint_lr=1e-2"] + cap), tmp_path / "a",
             progress=False)
    # piece "b" adds the read-out: G and b start at zero and move; the source's caption centre is kept
    train_lm(_tiny(["train.steps=3", "train.ckpt_every=3", "model.copy_readout=true", "model.copy_readout_lr=1e-2",
                    f"train.init_from={tmp_path / 'a' / 'model'}"] + cap), tmp_path / "b", progress=False)
    src, state = load_parent_hint_state(tmp_path / "a" / "model"), load_parent_hint_state(tmp_path / "b" / "model")
    assert COPY_KEY not in src
    assert state[COPY_KEY].shape == (len(COPY_OFFSETS), COPY_DIMS) and state[COPY_KEY].abs().max() > 1e-3
    assert state[COPY_BIAS_KEY].abs().max() > 1e-3 and torch.equal(state[CENTER_KEY], src[CENTER_KEY])
    assert float(state[COPY_MIX_KEY]) != pytest.approx(COPY_MIX_INIT, abs=1e-3)  # the mix moved from its start
    assert state[COPY_BASIS_KEY].shape == (COPY_DIMS, src[KEY].shape[0]) and state[COPY_BASIS_KEY].abs().max() > 0
    log = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert any(r.get("copy_gate_norm", 0) > 0 for r in log) and any(0 < r.get("copy_mix", 0) < 1 for r in log)
    info = describe_dir(tmp_path / "b" / "model")
    assert info["copy_readout"] and "copy read-out" in format_description(info)
    assert not describe_dir(tmp_path / "a" / "model")["copy_readout"]
    # the next piece keeps G and b (from the run's checkpoint and its model directory)
    for where in (tmp_path / "b", tmp_path / "b" / "model"):
        out = tmp_path / ("c" + where.name)
        train_lm(_tiny(["train.steps=1", "train.lr=0", "model.parent_hint_lr=0", "model.copy_readout=true",
                        f"train.init_from={where}"] + cap), out, progress=False)
        kept = load_parent_hint_state(out / "model")
        assert torch.allclose(kept[COPY_KEY].float(), state[COPY_KEY].float(), atol=1e-2)
        assert torch.equal(kept[COPY_BASIS_KEY], state[COPY_BASIS_KEY])  # the source's basis, not a new one
    # without the option a trained read-out is refused; the option without the caption hint too
    for where in (tmp_path / "b", tmp_path / "b" / "model"):
        with pytest.raises(ConfigError, match="copy_readout"):
            train_lm(_tiny(["train.steps=1", f"train.init_from={where}"] + cap), tmp_path / "d", progress=False)
    with pytest.raises(ConfigError, match="caption_hint"):
        train_lm(_tiny(["train.steps=1", "model.copy_readout=true"]), tmp_path / "e", progress=False)
    with pytest.raises(ConfigError, match="copy_readout_lr"):
        train_lm(_tiny(["train.steps=1", "model.copy_readout=true", "model.copy_readout_lr=-1"] + cap), tmp_path / "f",
                 progress=False)
    with pytest.raises(ConfigError, match="copy_readout: true"):
        train_lm(_tiny(["train.steps=1", "model.copy_readout_fit_rows=8"] + cap), tmp_path / "g", progress=False)
    # a fit before step 1 (model.copy_readout_fit_rows): logged at the start, the copy NLL lower after it; the tilt
    # form saves its gain, and a config of the other form refuses it
    train_lm(_tiny(["train.steps=2", "train.ckpt_every=0", "model.copy_readout=true", "model.copy_readout_fit_rows=40",
                    "model.copy_readout_form=tilt", "model.copy_readout_lr=1e-2",
                    f"train.init_from={tmp_path / 'a' / 'model'}"] + cap), tmp_path / "h", progress=False)
    lines = [json.loads(x) for x in (tmp_path / "h" / "log.jsonl").read_text().splitlines()]
    fit = lines[0]["copy_fit"]
    assert fit["positions"] > 0 and fit["nll_end"] < fit["nll_start"]
    assert any(r.get("copy_gain", 0) != 0 for r in lines)
    tilt = load_parent_hint_state(tmp_path / "h" / "model")
    assert COPY_GAIN_KEY in tilt and COPY_MIX_KEY not in tilt and float(tilt[COPY_GAIN_KEY]) != 0
    with pytest.raises(ConfigError, match="copy_readout_form"):
        train_lm(_tiny(["train.steps=1", "model.copy_readout=true", "model.copy_readout_form=tilt",
                        f"train.init_from={tmp_path / 'b' / 'model'}"] + cap), tmp_path / "i", progress=False)
    with pytest.raises(ConfigError, match="copy_readout_form"):
        train_lm(_tiny(["train.steps=1", "model.copy_readout=true", "model.copy_readout_form=sum"] + cap),
                 tmp_path / "j", progress=False)


def test_a_frozen_hint_keeps_every_hint_tensor_of_its_source_while_the_model_learns(tmp_path):
    from safetensors.torch import load_file

    from vidgpt.train.lm_trainer import train_lm

    cap = ["model.caption_hint=true", "model.caption_center=true", "model.copy_readout=true",
           "model.copy_readout_form=tilt"]
    fast = ["model.parent_hint_lr=1e-2", "model.caption_hint_lr=1e-2", "model.copy_readout_lr=1e-2", "train.lr=1e-2"]
    train_lm(_tiny(["train.steps=2", "train.ckpt_every=0", "model.copy_readout_fit_rows=40"] + fast + cap),
             tmp_path / "a", progress=False)
    src = load_parent_hint_state(tmp_path / "a" / "model")
    assert src[COPY_KEY].abs().max() > 1e-3 and float(src[COPY_GAIN_KEY]) != 0  # a trained hint to keep
    for frozen in (True, False):
        out = tmp_path / f"b{frozen}"
        train_lm(_tiny(["train.steps=2", "train.ckpt_every=0", f"model.hint_frozen={str(frozen).lower()}",
                        f"train.init_from={tmp_path / 'a' / 'model'}"] + fast + cap), out, progress=False)
        got = load_parent_hint_state(out / "model")
        same = [k for k in src if torch.equal(got[k], src[k])]
        if frozen:
            assert sorted(same) == sorted(src) and sorted(got) == sorted(src)
        else:  # the control: the same run with the option off moves them
            assert {KEY, CAPTION_KEY, COPY_KEY, COPY_BIAS_KEY, COPY_GAIN_KEY}.isdisjoint(same)
        w_a, w_b = (load_file(str(d / "model.safetensors")) for d in (tmp_path / "a" / "model", out / "model"))
        assert any(not torch.equal(w_a[k], w_b[k]) for k in w_a)  # the model learnt either way
        start = json.loads((out / "log.jsonl").read_text().splitlines()[0])
        assert (start["trainable_params"] < json.loads((tmp_path / "a" / "log.jsonl").read_text().splitlines()[0])[
            "trainable_params"]) == frozen
    with pytest.raises(ConfigError, match="hint_frozen"):
        train_lm(_tiny(["train.steps=1", "model.parent_hint=false", "model.hint_frozen=true"]), tmp_path / "c",
                 progress=False)


def test_the_read_out_trains_in_an_optimizer_group_of_its_own():
    from vidgpt.backbone import base_model
    from vidgpt.train.lm_trainer import LMTrainLoop, make_optimizer

    from test_lm_loss import make_lm

    lm = make_lm(False)
    hint = attach_parent_hint(base_model(lm.model), caption=True, copy=True)
    opt = make_optimizer(lm.model, LMTrainLoop(lr=1e-4), 1e-3, None, 5e-4, 1e-2)
    by_param = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    keys = (KEY, CAPTION_KEY, COPY_KEY, COPY_BIAS_KEY, COPY_MIX_KEY)
    assert [by_param[id(getattr(hint, k))] for k in keys] == [1e-3, 5e-4, 1e-2, 1e-2, 1e-2]
    assert id(getattr(hint, COPY_BASIS_KEY)) not in by_param  # a buffer, set once
    assert sum(len(g["params"]) for g in opt.param_groups) == len(by_param)
    assert parent_hint_of(base_model(lm.model)) is hint


def test_the_fit_learns_which_cells_a_move_copies_from_for_each_caption():
    """copy_fit on synthetic rows: the caption says right or left, the next code is the one of the cell a move comes
    from; the fitted scores put that side first for each caption, and plain regions are left out of the fit."""
    from vidgpt.backbone import base_model
    from vidgpt.train.copy_fit import copy_examples, fit_copy_readout

    from test_lm_loss import make_lm

    lm = make_lm(False)
    vocab = lm.vocab
    hint = attach_parent_hint(base_model(lm.model), caption=True, copy=True)
    W = lm.model.get_input_embeddings().weight.detach()
    lookup = lambda x: W[x]  # noqa: E731
    H = W.shape[1]
    right, left = 21, 22  # two text ids standing for the motion words
    d = W[right] - W[left]
    hint.set_caption_center((W[right] + W[left]) / 2, torch.tensor(1.0))  # the window mean less c: +-d / 2
    basis = torch.zeros(COPY_DIMS, H)
    basis[0] = 2 * d / float(d.norm() ** 2)
    hint.set_copy_basis(basis)  # feature 0: +1 for "right", -1 for "left"
    g = torch.Generator().manual_seed(0)
    rows, shape = [], (2, 8, 8)  # blueprint 2 x 4 x 4
    from vidgpt.layout import Layout, VisualBlock

    class _EOS:
        eos_token_id = 2

    lay = Layout(vocab, _EOS(), chat=False)
    n = 2 ** vocab.spec.codebook_bits
    for i in range(24):
        way = (right, left)[i % 2]
        bp0 = torch.randint(0, n, (4, 4), generator=g)
        bp1 = torch.roll(bp0, 1 if way == right else -1, dims=1)  # moved one cell: right takes from x - 1
        bp = torch.stack([bp0, bp1])
        fine = torch.randint(0, n, shape, generator=g)
        rows.append([way] * 3 + lay.encode_block(VisualBlock(shape, fine=fine, blueprint=bp)))
    feats, hit, valid = copy_examples(hint, rows, vocab, lookup)
    assert feats.shape[0] > 0 and set(feats[:, 0].round().tolist()) == {1.0, -1.0}
    got = fit_copy_readout(hint, rows, vocab, lookup, steps=200)
    assert got["nll_end"] < 0.5 * got["nll_start"]
    G, b = getattr(hint, COPY_KEY).detach(), getattr(hint, COPY_BIAS_KEY).detach()
    for sign, src, opp in ((1.0, (0, -1), (0, 1)), (-1.0, (0, 1), (0, -1))):
        f = torch.zeros(COPY_DIMS)
        f[0] = sign
        s = G @ f + b
        assert float(s[COPY_OFFSETS.index(src)] - s[COPY_OFFSETS.index(opp)]) > 1.0
    with pytest.raises(ValueError, match="no blueprint position"):
        copy_examples(hint, [[11, 12, 13]], vocab, lookup)


def test_the_sampling_gain_overrides_the_trained_one_and_is_refused_without_a_tilt(text_tok):
    """decode option / vidgpt.json `copy_gain`: the tilt drawn at that gain (the same clip as a state saved with it)."""
    from vidgpt.errors import GenerationError
    from vidgpt.generate.tiny import tiny_pipeline

    H = tiny_pipeline(text_tok, bits=6).model.config.hidden_size
    tilt = _copy_state(H, scale=3.0, form="tilt")  # gain 1
    kw = dict(frames=9, height=32, width=32, seed=4, cfg=1.0)
    gen = lambda **o: tiny_pipeline(text_tok, bits=6, decode_options=o).generate("a red circle moving right", **kw)  # noqa: E731
    at_zero = gen(parent_hint={**tilt, COPY_GAIN_KEY: torch.tensor(0.0)})
    assert gen(parent_hint=tilt, copy_gain=0.0).token_ids == at_zero.token_ids
    assert gen(parent_hint=tilt).token_ids != at_zero.token_ids
    with pytest.raises(GenerationError, match="no tilt read-out"):
        gen(parent_hint=_copy_state(H, form="mixture"), copy_gain=1.0)
    with pytest.raises(GenerationError, match="finite"):
        gen(parent_hint=tilt, copy_gain=float("nan"))


def test_the_until_change_option_gates_the_read_out_and_is_refused_without_one(text_tok):
    """decode option / vidgpt.json `copy_until_change`: the same clip as a state saved with the gate; it changes the
    clip against the read-out everywhere (the gate removes it from some positions), not frame 0 of the blueprint;
    speculative windows draw the one-token ids with it; refused without a read-out or when not a bool."""
    from vidgpt.errors import GenerationError
    from vidgpt.generate.tiny import tiny_pipeline

    H = tiny_pipeline(text_tok, bits=6).model.config.hidden_size
    tilt = _copy_state(H, scale=3.0, form="tilt", mix=2.0)  # gain 3
    kw = dict(frames=9, height=32, width=32, seed=4, cfg=1.0)
    gen = lambda **o: tiny_pipeline(text_tok, bits=6, decode_options=o).generate("a red circle moving right", **kw)  # noqa: E731
    gated = gen(parent_hint={**tilt, COPY_UNTIL_KEY: torch.tensor(1.0)}, speculative=0)
    assert gen(parent_hint=tilt, copy_until_change=True, speculative=0).token_ids == gated.token_ids
    assert gen(parent_hint=tilt, copy_until_change=True, speculative=4).token_ids == gated.token_ids
    everywhere = gen(parent_hint=tilt, speculative=0)
    assert gen(parent_hint={**tilt, COPY_UNTIL_KEY: torch.tensor(1.0)}, copy_until_change=False,
               speculative=0).token_ids == everywhere.token_ids
    assert gated.token_ids != everywhere.token_ids
    assert torch.equal(gated.blocks[0].blueprint[0], everywhere.blocks[0].blueprint[0])
    with pytest.raises(GenerationError, match="has none"):
        gen(parent_hint={k: v for k, v in tilt.items() if k not in COPY_KEYS}, copy_until_change=True)
    with pytest.raises(GenerationError, match="true or false"):
        gen(parent_hint=tilt, copy_until_change="yes")
