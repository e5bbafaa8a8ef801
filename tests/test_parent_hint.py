"""vidgpt.parent_hint: each fine position is told its next cell's blueprint parent, the same in training and decoding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vidgpt.config import load_config
from vidgpt.errors import ConfigError
from vidgpt.layout import Layout, VisualBlock
from vidgpt.parent_hint import (ATTR, CAPTION_KEY, CAPTION_WINDOW, CENTER_KEY, FILE, KEY, NEIGHBOURS, PREV_KEY,
                                SCALE_KEY, HintedBackend, HintTracker, attach_parent_hint, caption_center,
                                caption_windows, embed_with_hints, hint_ids, hint_part, load_parent_hint_state,
                                parent_hint_of, projections_t)
from vidgpt.vocab import UnifiedVocab, VocabSpec

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_YAML = Path(__file__).resolve().parents[1] / "configs" / "lm" / "tiny.yaml"


class _EOS:
    eos_token_id = 2


def _block_ids(vocab, shape=(2, 4, 6), seed=0):
    from vidgpt.geometry import blueprint_shape

    g = torch.Generator().manual_seed(seed)
    n = 2 ** vocab.spec.codebook_bits
    fine = torch.randint(0, n, shape, generator=g)
    bp = torch.randint(0, n, blueprint_shape(shape), generator=g)
    lay = Layout(vocab, _EOS(), chat=False)
    return lay.encode_block(VisualBlock(shape, fine=fine, blueprint=bp)), bp


@pytest.mark.parametrize("subtokens", [1, 2])
def test_each_fine_position_is_told_the_parent_of_the_cell_it_predicts(subtokens):
    vocab = UnifiedVocab(VocabSpec(6, subtokens, 8, 8), offset=100)
    S = subtokens
    shape = (2, 4, 6)
    block, bp = _block_ids(vocab, shape)
    text = [5, 6, 7]
    ids = text + block + text + block  # two blocks: the state resets between them
    hints = [h for (h,) in HintTracker(vocab).feed_many(ids)]  # one slot: the parent
    assert len(hints) == len(ids)
    bp_ids = vocab.codes_to_ids(bp).view(*bp.shape, S)
    for start in (len(text), 2 * len(text) + len(block)):
        fine_marker = start + 4 + 1 + bp.numel() * S  # <vision_start> t h w <blueprint> codes, then <fine>
        assert ids[fine_marker] == vocab.fine_id
        n_fine = shape[0] * shape[1] * shape[2] * S
        for k in range(n_fine):  # the position before fine id k predicts it: its hint is k's parent
            cell, g = divmod(k, S)
            t, r = divmod(cell, shape[1] * shape[2])
            y, x = divmod(r, shape[2])
            assert hints[fine_marker + k] == int(bp_ids[t, y // 2, x // 2, g]), (start, k)
        # nothing before the fine section, nothing on the last fine id or the end marker
        assert all(h == -1 for h in hints[start : fine_marker])
        assert hints[fine_marker + n_fine] == -1 and hints[fine_marker + n_fine + 1] == -1
    assert sum(h >= 0 for h in hints) == 2 * shape[0] * shape[1] * shape[2] * S
    # the batch form is the same, row by row
    batch = torch.tensor([ids, ids[::-1]])
    got = hint_ids(batch, vocab)
    assert got.shape == (2, len(ids), 1)
    assert got[0, :, 0].tolist() == hints and (got[1] == -1).all()  # reversed: no well-formed block, no hint
    # with previous-frame hints the parent slot is the same and the blueprint positions get their own slots
    both = hint_ids(batch, vocab, prev=True)
    assert both.shape == (2, len(ids), 1 + len(NEIGHBOURS)) and torch.equal(both[..., :1], got)
    assert (both[0, :, 1:] >= 0).any() and (both[1] == -1).all()


def test_no_hints_without_a_blueprint_or_in_a_broken_block():
    vocab = UnifiedVocab(VocabSpec(6, 1, 8, 8), offset=100)
    lay = Layout(vocab, _EOS(), chat=False)
    fine_only = lay.encode_block(VisualBlock((1, 4, 4), fine=torch.zeros(1, 4, 4, dtype=torch.long)))
    assert all(h == (-1,) for h in HintTracker(vocab).feed_many(fine_only))
    assert all(h == (-1,) * 6 for h in HintTracker(vocab, prev=True).feed_many(fine_only))
    block, _ = _block_ids(vocab, (1, 4, 4))
    cut = block[:8] + [5] + block[8:]  # text inside the blueprint: the block is abandoned
    assert all(h == (-1,) for h in HintTracker(vocab).feed_many(cut))


@pytest.mark.parametrize("subtokens", [1, 2])
def test_each_blueprint_position_of_a_later_frame_is_told_its_cells_neighbours_one_frame_back(subtokens):
    from vidgpt.geometry import blueprint_shape

    vocab = UnifiedVocab(VocabSpec(6, subtokens, 8, 8), offset=100)
    S = subtokens
    shape = (3, 8, 6)  # latent; blueprint 3 x 4 x 3
    block, bp = _block_ids(vocab, shape, seed=2)
    hints = HintTracker(vocab, prev=True).feed_many(block)
    bt, bh, bw = blueprint_shape(shape)
    bp_ids = vocab.codes_to_ids(bp).view(bt, bh, bw, S)
    marker = 4  # <vision_start> t h w, then <blueprint> at index 4: that position predicts blueprint id 0
    assert block[marker] == vocab.blueprint_id
    for k in range(bt * bh * bw * S):
        cell, g = divmod(k, S)
        t, r = divmod(cell, bh * bw)
        y, x = divmod(r, bw)
        h = hints[marker + k]  # the position before blueprint id k predicts it
        assert h[0] == -1  # no parent in the blueprint
        if t == 0:
            assert h == (-1,) * 6
            continue
        for (dy, dx), got in zip(NEIGHBOURS, h[1:]):
            yy, xx = y + dy, x + dx
            want = int(bp_ids[t - 1, yy, xx, g]) if 0 <= yy < bh and 0 <= xx < bw else -1
            assert got == want, (k, dy, dx)
    # nothing on the last blueprint id (it predicts the fine marker); the fine section: the parent only
    end = marker + bt * bh * bw * S
    assert hints[end] == (-1,) * 6
    fine = [h for h in hints[end + 1:] if h[0] >= 0]
    assert fine and all(h[1:] == (-1,) * 5 for h in fine)
    # the parent slot is what the one-slot tracker gives
    assert [h[0] for h in hints] == [h for (h,) in HintTracker(vocab).feed_many(block)]


@pytest.mark.parametrize("prev,caption", [(False, False), (True, False), (True, True)])
def test_truncation_goes_back_to_the_state_at_that_position(prev, caption):
    vocab = UnifiedVocab(VocabSpec(6, 1, 8, 8), offset=100)
    block, _ = _block_ids(vocab, (5, 4, 4))
    ids = [11, 12, 13] + block + [14, 15] + block
    whole = HintTracker(vocab, prev, caption).feed_many(ids)
    tr = HintTracker(vocab, prev, caption)
    for cut in (len(block) + 6, len(block) + 4, 40, 30, 11, 4, 0):
        tr.truncate(0)
        first = tr.feed_many(ids[:cut + 7])
        tr.truncate(cut)
        assert len(tr) == cut
        assert first[:cut] + tr.feed_many(ids[cut:]) == whole


def _tiny_pipe_with_hint(text_tok, scale=0.5, fast=True, prev=False, caption=False, **options):
    """A tiny pipeline, and the same with a random parent hint state (and previous-frame projections with prev, the
    caption projection with caption)."""
    from vidgpt.generate.tiny import tiny_pipeline

    pipe = tiny_pipeline(text_tok, bits=6, fast=fast, decode_options=dict(options))
    H = pipe.model.config.hidden_size
    g = torch.Generator().manual_seed(1)
    state = {KEY: scale * torch.randn(H, H, generator=g) / H**0.5}
    if prev:
        state[PREV_KEY] = scale * torch.randn(len(NEIGHBOURS), H, H, generator=g) / H**0.5
    if caption:
        state[CAPTION_KEY] = 20 * scale * torch.randn(H, H, generator=g) / H**0.5  # text rows: small in the tiny model
    if caption == "diagonal":  # a gain vector on the centred mean row itself
        state[CAPTION_KEY] = 20 * scale * torch.randn(H, generator=g)
    if caption in ("centred", "diagonal"):
        state[CENTER_KEY] = 0.1 * torch.randn(H, generator=g)
        state[SCALE_KEY] = torch.tensor(3.0)
    hinted = tiny_pipeline(text_tok, bits=6, fast=fast, decode_options={"parent_hint": state, **options})
    return pipe, hinted, state


@pytest.mark.parametrize("fast,attention,prev,caption", [
    (True, "filled", False, False), (True, "static", False, False), (False, None, False, False),
    (True, "filled", True, False), (True, "static", True, False), (False, None, True, False),
    (True, "filled", False, True), (True, "static", True, True), (False, None, True, True),
    (True, "static", False, "centred"), (False, None, True, "centred"),
    (True, "static", False, "diagonal"), (False, None, True, "diagonal")])
def test_decoding_backends_see_what_a_full_forward_with_hints_sees(text_tok, fast, attention, prev, caption):
    """Prefill, one-token steps, several-token steps and truncation through HintedBackend give the logits of one
    teacher-forced forward whose inputs carry the hints (the fast decoder's filled cache, its fixed-shape step that a
    CUDA graph replays, and the plain transformers path), with and without previous-frame and caption hints."""
    options = {"attention": attention} if attention else {}
    pipe, hinted, state = _tiny_pipe_with_hint(text_tok, fast=fast, prev=prev, caption=caption, **options)
    assert isinstance(hinted.backend, HintedBackend) and not isinstance(pipe.backend, HintedBackend)
    vocab = hinted.vocab
    block, _ = _block_ids(vocab, (2, 4, 4), seed=3)  # blueprint 2 x 2 x 2: its second frame gets previous-frame hints
    ids = torch.tensor([[11, 12, 13] + block])
    with torch.no_grad():
        ref = hinted.model(inputs_embeds=embed_with_hints(hinted.model, ids, vocab, state)).logits[0]
        plain = hinted.model(input_ids=ids).logits[0]
    be = hinted.backend
    lo, hi = vocab.visual_offset, vocab.end
    n0 = 10  # prompt: the header and part of the blueprint's first frame
    got = [be.logits(be.prefill(ids[:, :n0], torch.ones(1, n0, dtype=torch.long), max_len=ids.shape[1] + 4), lo, hi)[0]]
    at = n0
    if getattr(be, "supports_step_many", False):
        h = be.step_many(ids[:, at : at + 20])  # through the blueprint's second frame, into the fine section
        got += [be.logits(h[:, j], lo, hi)[0] for j in range(20)]
        at += 20
        be.truncate(at - 4)  # a rejected speculative tail: fed again below
        got, at = got[:-4], at - 4
    while at < ids.shape[1] - 1:
        got.append(be.logits(be.step(ids[:, at]), lo, hi)[0])
        at += 1
    got = torch.stack(got)
    want = ref[n0 - 1 : ids.shape[1] - 1, lo:hi]
    assert torch.allclose(got, want, atol=2e-3), float((got - want).abs().max())
    # and the hints did something: the plain forward differs on the fine section (with previous-frame hints, on the
    # blueprint's second frame, not on its first; with caption hints, from the blueprint's first frame on)
    diff = (plain[:, lo:hi] - ref[:, lo:hi]).abs().amax(-1)
    start = 3 + 4  # the position of <blueprint>: it predicts blueprint id 0 (S = 1: 4 ids a frame)
    assert vocab.spec.subtokens == 1 and ids[0, start] == vocab.blueprint_id
    assert diff[:start].max() < 1e-5  # the text and the header: no hint
    assert (diff[start: start + 4].max() > 1e-2) == bool(caption)  # the positions that predict frame 0
    assert (diff[start + 4: start + 8].max() > 1e-2) == bool(prev or caption)  # those that predict frame 1
    assert diff[start + 9:].max() > 1e-2  # the fine section


@pytest.mark.parametrize("prev,caption", [(False, False), (True, False), (False, True)])
def test_zero_projection_changes_no_clip_and_a_trained_one_does(text_tok, prev, caption):
    pipe, hinted, state = _tiny_pipe_with_hint(text_tok, prev=prev, caption=caption)
    from vidgpt.generate.tiny import tiny_pipeline

    zero = tiny_pipeline(text_tok, bits=6, decode_options={"parent_hint": {k: torch.zeros_like(v) for k, v in state.items()}})
    kw = dict(frames=9, height=32, width=32, seed=4, cfg=1.0)
    a = pipe.generate("a red circle moving right", **kw)
    b = zero.generate("a red circle moving right", **kw)
    c = hinted.generate("a red circle moving right", **kw)
    assert a.token_ids == b.token_ids
    (ba,), (bc,) = a.blocks, c.blocks
    # the blueprint's first frame has no hints but the caption's; its later frames have previous-frame hints too
    assert torch.equal(ba.blueprint[0], bc.blueprint[0]) != caption
    assert torch.equal(ba.blueprint, bc.blueprint) != (prev or caption)
    assert not torch.equal(ba.fine, bc.fine)


# --- training ---------------------------------------------------------------------------------------------------


def _tiny(extra):
    from vidgpt.train.lm_trainer import LMTrainConfig

    return load_config(LMTrainConfig, TINY_YAML, ["train.eval_batches=0", "loss.head=constrained",
                                                  "model.parent_hint=true", "data.blueprint=true"] + extra)


def test_the_loss_head_adds_the_hint_and_P_learns():
    from vidgpt.backbone import base_model
    from vidgpt.train.lm_loss import LossHead, LossSettings, reference_loss

    from test_lm_loss import make_batch, make_lm

    lm = make_lm(False)
    batch = make_batch(lm, seq_len=128)
    assert (hint_ids(batch["input_ids"], lm.vocab) >= 0).any(), "the test needs fine sections after blueprints"
    head = LossHead(lm.vocab, LossSettings(head="constrained"))
    with torch.no_grad():
        before = float(head(lm.model, batch)[0])
    hint = attach_parent_hint(base_model(lm.model))
    loss, _ = head(lm.model, batch)
    assert float(loss.detach()) == pytest.approx(before, abs=1e-6)  # P = 0: the same function
    loss.backward()
    P = getattr(hint, KEY)
    assert P.grad is not None and P.grad.abs().sum() > 0
    with torch.no_grad():
        P.normal_(0, 2.0)  # the tiny model's visual rows are small (std ~0.003)
        hinted = float(head(lm.model, batch)[0])
        assert abs(hinted - before) > 5e-5  # a random tiny model: ~uniform over the codes, it moves a little
        ids = batch["input_ids"]  # the head's loss is the plain forward's on inputs that carry the hints
        logits = lm.model(inputs_embeds=embed_with_hints(lm.model, ids, lm.vocab, {KEY: P}),
                          position_ids=batch["position_ids"]).logits
        ref = float(reference_loss(logits, ids, batch["weights"], lm.vocab, "constrained")[0])
    assert hinted == pytest.approx(ref, abs=1e-4)
    assert parent_hint_of(base_model(lm.model)) is hint


def test_a_run_trains_P_saves_it_beside_the_model_and_the_next_piece_starts_from_it(tmp_path):
    from vidgpt.backbone import base_model, load_vidgpt_lm
    from vidgpt.train.lm_trainer import train_lm

    train_lm(_tiny(["train.steps=4", "train.ckpt_every=4", "model.parent_hint_lr=1e-2"]), tmp_path / "a",
             progress=False)
    model_dir = tmp_path / "a" / "model"
    assert json.loads((model_dir / "vidgpt.json").read_text())["parent_hint"] is True
    state = load_parent_hint_state(model_dir)
    assert state[KEY].abs().max() > 1e-3  # P moved off zero
    from safetensors.torch import load_file

    assert not any(ATTR in k for k in load_file(str(model_dir / "model.safetensors")))  # not in the backbone's file
    from vidgpt.backbone import describe_dir, format_description

    assert describe_dir(model_dir)["parent_hint"] and "parent hints" in format_description(describe_dir(model_dir))
    lm = load_vidgpt_lm(model_dir)
    assert torch.allclose(getattr(parent_hint_of(base_model(lm.model)), KEY).float(), state[KEY].float())
    # the next piece takes P from the run's checkpoint and from its model directory
    for src in (tmp_path / "a", model_dir):
        out = tmp_path / ("b" + src.name)
        train_lm(_tiny(["train.steps=1", "train.lr=0", "model.parent_hint_lr=0", f"train.init_from={src}"]), out,
                 progress=False)
        assert torch.allclose(load_parent_hint_state(out / "model")[KEY].float(), state[KEY].float(), atol=1e-2)
    # a config without the option refuses a source with a trained P
    with pytest.raises(ConfigError, match="parent_hint"):
        from vidgpt.train.lm_trainer import LMTrainConfig

        cfg = load_config(LMTrainConfig, TINY_YAML, ["train.eval_batches=0", "loss.head=constrained", "train.steps=1",
                                                     f"train.init_from={tmp_path / 'a'}"])
        train_lm(cfg, tmp_path / "c", progress=False)


def test_the_pipeline_loads_the_hint_of_a_saved_model(tmp_path):
    from vidgpt.generate.pipeline import VidGPT
    from vidgpt.train.lm_trainer import train_lm

    train_lm(_tiny(["train.steps=2", "train.ckpt_every=0", "model.parent_hint_lr=1e-2"]), tmp_path / "a",
             progress=False)
    assert (tmp_path / "a" / "model" / FILE).is_file()
    lm_meta = json.loads((tmp_path / "a" / "model" / "vidgpt.json").read_text())
    assert lm_meta["parent_hint"] is True
    state = load_parent_hint_state(tmp_path / "a" / "model")
    from vidgpt.backbone import load_vidgpt_lm

    lm = load_vidgpt_lm(tmp_path / "a" / "model")
    pipe = VidGPT(lm.model, lm.text_tokenizer, lm.vocab, None, chat=False, meta=lm.meta,
                  decode_options={"parent_hint": state})
    assert isinstance(pipe.backend, HintedBackend)


def test_plain_head_is_refused(tmp_path):
    from vidgpt.train.lm_trainer import train_lm

    with pytest.raises(ConfigError, match="parent_hint"):
        train_lm(_tiny(["loss.head=plain", "train.steps=1"]), tmp_path / "x", progress=False)


# --- previous-frame hints: training ------------------------------------------------------------------------------


def test_the_loss_head_adds_previous_frame_hints_and_Q_learns():
    from vidgpt.backbone import base_model
    from vidgpt.train.lm_loss import LossHead, LossSettings, reference_loss

    from test_lm_loss import make_batch, make_lm

    lm = make_lm(False)
    batch = make_batch(lm, seq_len=128)
    assert (hint_ids(batch["input_ids"], lm.vocab, prev=True)[..., 1:] >= 0).any(), "the test needs blueprint frames >= 1"
    head = LossHead(lm.vocab, LossSettings(head="constrained"))
    with torch.no_grad():
        before = float(head(lm.model, batch)[0])
    hint = attach_parent_hint(base_model(lm.model), prev=True)
    assert hint.has_prev
    loss, _ = head(lm.model, batch)
    assert float(loss.detach()) == pytest.approx(before, abs=1e-6)  # P = Q = 0: the same function
    loss.backward()
    Q = getattr(hint, PREV_KEY)
    assert Q.shape == (len(NEIGHBOURS), *getattr(hint, KEY).shape)
    assert Q.grad is not None and all(Q.grad[d].abs().sum() > 0 for d in range(len(NEIGHBOURS)))
    with torch.no_grad():
        # the tiny model's visual rows are small (std ~0.003): a large Q, seeded (the test's order must not matter)
        Q.copy_(20.0 * torch.randn(Q.shape, generator=torch.Generator().manual_seed(5)))
        hinted = float(head(lm.model, batch)[0])
        assert abs(hinted - before) > 5e-5
        ids = batch["input_ids"]
        state = {KEY: getattr(hint, KEY), PREV_KEY: Q}
        logits = lm.model(inputs_embeds=embed_with_hints(lm.model, ids, lm.vocab, state),
                          position_ids=batch["position_ids"]).logits
        ref = float(reference_loss(logits, ids, batch["weights"], lm.vocab, "constrained")[0])
    assert hinted == pytest.approx(ref, abs=1e-4)


def test_a_run_trains_Q_from_a_source_without_it_and_a_config_without_the_option_refuses_it(tmp_path):
    from vidgpt.backbone import describe_dir, format_description
    from vidgpt.train.lm_trainer import LMTrainConfig, train_lm

    train_lm(_tiny(["train.steps=2", "train.ckpt_every=2", "model.parent_hint_lr=1e-2"]), tmp_path / "a",
             progress=False)
    assert PREV_KEY not in load_parent_hint_state(tmp_path / "a" / "model")
    # piece "b" adds previous-frame hints to a model that had only the parent's: Q starts at zero and moves
    train_lm(_tiny(["train.steps=4", "train.ckpt_every=4", "model.parent_hint_lr=1e-2", "model.prev_frame_hint=true",
                    f"train.init_from={tmp_path / 'a' / 'model'}"]), tmp_path / "b", progress=False)
    state = load_parent_hint_state(tmp_path / "b" / "model")
    assert state[PREV_KEY].shape[0] == len(NEIGHBOURS) and state[PREV_KEY].abs().max() > 1e-3
    info = describe_dir(tmp_path / "b" / "model")
    assert info["prev_frame_hint"] and "previous-frame hints" in format_description(info)
    assert not describe_dir(tmp_path / "a" / "model")["prev_frame_hint"]
    # the next piece keeps Q (from the run's checkpoint and from its model directory)
    for src in (tmp_path / "b", tmp_path / "b" / "model"):
        out = tmp_path / ("c" + src.name)
        train_lm(_tiny(["train.steps=1", "train.lr=0", "model.parent_hint_lr=0", "model.prev_frame_hint=true",
                        f"train.init_from={src}"]), out, progress=False)
        assert torch.allclose(load_parent_hint_state(out / "model")[PREV_KEY].float(), state[PREV_KEY].float(), atol=1e-2)
    # without the option a trained Q is refused (checkpoint and model directory); without the parent hint, too
    for src in (tmp_path / "b", tmp_path / "b" / "model"):
        with pytest.raises(ConfigError, match="prev_frame_hint"):
            train_lm(_tiny(["train.steps=1", f"train.init_from={src}"]), tmp_path / "d", progress=False)
    with pytest.raises(ConfigError, match="parent_hint"):
        cfg = load_config(LMTrainConfig, TINY_YAML, ["train.eval_batches=0", "loss.head=constrained", "train.steps=1",
                                                     "model.prev_frame_hint=true"])
        train_lm(cfg, tmp_path / "e", progress=False)


def test_Q_trains_in_an_optimizer_group_of_its_own():
    from vidgpt.backbone import base_model
    from vidgpt.train.lm_trainer import LMTrainLoop, make_optimizer

    from test_lm_loss import make_lm

    lm = make_lm(False)
    hint = attach_parent_hint(base_model(lm.model), prev=True)
    opt = make_optimizer(lm.model, LMTrainLoop(lr=1e-4), 1e-3, 2e-4)
    by_param = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert by_param[id(getattr(hint, KEY))] == 1e-3 and by_param[id(getattr(hint, PREV_KEY))] == 2e-4
    assert sum(len(g["params"]) for g in opt.param_groups) == len({id(p) for g in opt.param_groups for p in g["params"]})
    same = make_optimizer(lm.model, LMTrainLoop(lr=1e-4), 1e-3)  # no Q lr: the parent hint's
    assert {id(p): g["lr"] for g in same.param_groups for p in g["params"]}[id(getattr(hint, PREV_KEY))] == 1e-3
    hint.add_caption()  # R: a group of its own too
    opt = make_optimizer(lm.model, LMTrainLoop(lr=1e-4), 1e-3, 2e-4, 5e-4)
    by_param = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert [by_param[id(getattr(hint, k))] for k in (KEY, PREV_KEY, CAPTION_KEY)] == [1e-3, 2e-4, 5e-4]
    assert sum(len(g["params"]) for g in opt.param_groups) == len(by_param)


# --- caption hints ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("subtokens", [1, 2])
def test_each_position_that_predicts_a_blueprint_code_is_told_the_text_before_its_block(subtokens):
    from vidgpt.geometry import blueprint_shape

    vocab = UnifiedVocab(VocabSpec(6, subtokens, 8, 8), offset=100)
    shape = (3, 8, 6)
    block, _ = _block_ids(vocab, shape, seed=2)
    first_text = list(range(10, 10 + CAPTION_WINDOW + 5))  # longer than the window: its last ids are read
    ids = first_text + block + [60, 61, 62] + block
    hints = HintTracker(vocab, prev=True, caption=True).feed_many(ids)
    base = HintTracker(vocab, prev=True).feed_many(ids)
    n = 1 + len(NEIGHBOURS)
    assert all(len(h) == n + CAPTION_WINDOW for h in hints)
    assert [h[:n] for h in hints] == base  # the parent and neighbour slots are untouched
    nbp = int(torch.tensor(blueprint_shape(shape)).prod()) * subtokens
    want = {}
    for start, words in ((len(first_text), tuple(first_text[-CAPTION_WINDOW:])),
                         (len(first_text) + len(block) + 3, (60, 61, 62) + (-1,) * (CAPTION_WINDOW - 3))):
        marker = start + 4
        assert ids[marker] == vocab.blueprint_id
        want.update({p: words for p in range(marker, marker + nbp)})  # the marker, then every blueprint id but the last
    for p, h in enumerate(hints):
        assert h[n:] == want.get(p, (-1,) * CAPTION_WINDOW), p


def test_a_centred_caption_window_keeps_only_what_changes_between_captions():
    vocab = UnifiedVocab(VocabSpec(6, 1, 8, 8), offset=100)
    block, _ = _block_ids(vocab, (1, 4, 4))
    template = [20, 21, 22]
    rows = [template + [30 + w] + block + [5] for w in range(3)] + [[5, 6, 7]]  # three captions, one text-only row
    windows = caption_windows(rows, vocab)
    assert windows == [tuple(template + [30 + w]) for w in range(3)]  # one window a block; none without a block
    g = torch.Generator().manual_seed(0)
    W = torch.randn(vocab.end, 8, generator=g)
    c, k = caption_center(windows, W)
    means = torch.stack([W[list(w)].mean(0) for w in windows])
    assert torch.allclose(c, means.mean(0), atol=1e-6)
    row_norm = W[[i for w in windows for i in w]].norm(dim=-1).mean()
    assert float(((means - c) * k).norm(dim=-1).mean()) == pytest.approx(float(row_norm), rel=1e-5)
    # the centred mean of a window is its words' difference from the others', the template gone
    hints = hint_ids(torch.tensor([rows[0]]), vocab, caption=True)  # [1, L, 1 + CAPTION_WINDOW]
    proj_t = torch.stack([torch.zeros(8, 8), torch.eye(8)])  # P = 0, R = I
    lookup = lambda x: F.embedding(x, W)  # noqa: E731
    got = hint_part(hints, lookup, proj_t, caption=True, center=(c, k))[0]
    has = (hints[0, :, 1:] >= 0).any(-1)
    want_word = (W[30] - W[30:33].mean(0)) / 4 * k  # the template's rows cancel; the word is 1/4 of the window
    assert has.any() and torch.allclose(got[has], want_word.expand(int(has.sum()), 8), atol=1e-5)
    assert got[~has].abs().max() == 0  # no window, no hint (the centre is not added elsewhere)
    plain = hint_part(hints, lookup, proj_t, caption=True)
    assert torch.allclose(hint_part(hints, lookup, proj_t, caption=True, center=(torch.zeros(8), torch.tensor(1.0))), plain)
    with pytest.raises(ValueError):
        caption_center(windows[:1], W)
    # a diagonal R (a gain vector g) is R = diag(g): the centred mean scaled dimension by dimension
    gain = torch.randn(8, generator=g)
    diag_t = projections_t(torch.zeros(8, 8), caption=gain)
    assert torch.equal(diag_t[1], torch.diag(gain))
    got = hint_part(hints, lookup, diag_t, caption=True, center=(c, k))[0]
    assert torch.allclose(got[has], (want_word * gain).expand(int(has.sum()), 8), atol=1e-5)


@pytest.mark.parametrize("form", ["matrix", "diagonal"])
def test_the_loss_head_adds_caption_hints_and_R_learns(form):
    from vidgpt.backbone import base_model
    from vidgpt.train.lm_loss import LossHead, LossSettings, reference_loss

    from test_lm_loss import make_batch, make_lm

    lm = make_lm(False)
    batch = make_batch(lm, seq_len=128)
    assert (hint_ids(batch["input_ids"], lm.vocab, caption=True)[..., 1:] >= 0).any(), "the test needs blueprints"
    head = LossHead(lm.vocab, LossSettings(head="constrained"))
    with torch.no_grad():
        before = float(head(lm.model, batch)[0])
    hint = attach_parent_hint(base_model(lm.model), caption=True, caption_form=form)
    assert hint.has_caption and not hint.has_prev and hint.caption_form == form
    assert getattr(hint, CAPTION_KEY).dim() == (2 if form == "matrix" else 1)
    loss, _ = head(lm.model, batch)
    assert float(loss.detach()) == pytest.approx(before, abs=1e-6)  # P = R = 0: the same function
    loss.backward()
    R = getattr(hint, CAPTION_KEY)
    assert R.grad is not None and R.grad.abs().sum() > 0
    with torch.no_grad():
        # the head's hidden states are a plain forward's on inputs that carry the hints (the loss itself barely moves
        # in a random tiny model: compare the states), and R changes them from the first blueprint position on
        zero = head.hidden_states(lm.model, batch)
        R.copy_(2.0 * torch.randn(R.shape, generator=torch.Generator().manual_seed(6)))
        hinted = head.hidden_states(lm.model, batch)
        ids = batch["input_ids"]
        state = {KEY: getattr(hint, KEY), CAPTION_KEY: R}
        ref = base_model(lm.model).model(inputs_embeds=embed_with_hints(lm.model, ids, lm.vocab, state),
                                         position_ids=batch["position_ids"]).last_hidden_state
    # the head keeps the packed documents of a row apart, the plain forward does not: compare each row's first one
    moved = (hinted - zero).abs().amax(-1) > 1e-3  # [B, L]
    seen = 0
    for r, row in enumerate(ids.tolist()):
        pos = batch["position_ids"][r].tolist()
        end = next((i for i in range(1, len(pos)) if pos[i] == 0), len(pos))
        assert torch.allclose(hinted[r, :end], ref[r, :end], atol=1e-4)
        if lm.vocab.blueprint_id in row[:end]:  # R moves the states from the blueprint marker on, nothing before it
            marker = row.index(lm.vocab.blueprint_id)
            assert not moved[r, :marker].any() and moved[r, marker:end].any()
            seen += 1
    assert seen, "the test needs a blueprint in a row's first document"


def test_a_run_adds_R_to_a_source_without_it_and_a_config_without_the_option_refuses_it(tmp_path):
    from vidgpt.backbone import describe_dir, format_description
    from vidgpt.train.lm_trainer import LMTrainConfig, train_lm

    train_lm(_tiny(["train.steps=2", "train.ckpt_every=0", "model.parent_hint_lr=1e-2"]), tmp_path / "a",
             progress=False)
    # piece "b" adds caption hints to a model that had only the parent's: R starts at zero and moves
    train_lm(_tiny(["train.steps=3", "train.ckpt_every=3", "model.caption_hint=true", "model.caption_hint_lr=1e-2",
                    f"train.init_from={tmp_path / 'a' / 'model'}"]), tmp_path / "b", progress=False)
    state = load_parent_hint_state(tmp_path / "b" / "model")
    assert state[CAPTION_KEY].shape == state[KEY].shape and state[CAPTION_KEY].abs().max() > 1e-3
    assert PREV_KEY not in state
    info = describe_dir(tmp_path / "b" / "model")
    assert info["caption_hint"] and "caption hints (matrix R)" in format_description(info)
    log = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert any(r.get("caption_hint_norm", 0) > 0 for r in log)
    # the next piece keeps R (from the model directory); without the option a trained R is refused
    train_lm(_tiny(["train.steps=1", "train.lr=0", "model.parent_hint_lr=0", "model.caption_hint=true",
                    f"train.init_from={tmp_path / 'b' / 'model'}"]), tmp_path / "c", progress=False)
    assert torch.allclose(load_parent_hint_state(tmp_path / "c" / "model")[CAPTION_KEY].float(),
                          state[CAPTION_KEY].float(), atol=1e-2)
    for src in (tmp_path / "b", tmp_path / "b" / "model"):
        with pytest.raises(ConfigError, match="caption_hint"):
            train_lm(_tiny(["train.steps=1", f"train.init_from={src}"]), tmp_path / "d", progress=False)
    with pytest.raises(ConfigError, match="parent_hint"):
        cfg = load_config(LMTrainConfig, TINY_YAML, ["train.eval_batches=0", "loss.head=constrained", "train.steps=1",
                                                     "model.caption_hint=true"])
        train_lm(cfg, tmp_path / "e", progress=False)
    # a centred window: set once from the held-out split while R is zero, saved, kept by the next piece
    train_lm(_tiny(["train.steps=2", "train.ckpt_every=0", "model.caption_hint=true", "model.caption_center=true",
                    "model.caption_hint_lr=1e-2", f"train.init_from={tmp_path / 'a' / 'model'}"]), tmp_path / "f",
             progress=False)
    cen = load_parent_hint_state(tmp_path / "f" / "model")
    assert cen[CENTER_KEY].float().abs().max() > 0 and float(cen[SCALE_KEY]) > 1.0  # the words are a part of the window
    assert cen[CAPTION_KEY].float().abs().max() > 1e-3
    train_lm(_tiny(["train.steps=1", "train.lr=0", "model.parent_hint_lr=0", "model.caption_hint=true",
                    "model.caption_center=true", f"train.init_from={tmp_path / 'f' / 'model'}"]), tmp_path / "g",
             progress=False)
    kept = load_parent_hint_state(tmp_path / "g" / "model")
    assert torch.equal(kept[CENTER_KEY], cen[CENTER_KEY]) and torch.equal(kept[SCALE_KEY], cen[SCALE_KEY])
    # a next piece without caption_center keeps the source's centre too: R was trained on that input
    train_lm(_tiny(["train.steps=1", "train.lr=0", "model.parent_hint_lr=0", "model.caption_hint=true",
                    f"train.init_from={tmp_path / 'f' / 'model'}"]), tmp_path / "g2", progress=False)
    kept = load_parent_hint_state(tmp_path / "g2" / "model")
    assert torch.equal(kept[CENTER_KEY], cen[CENTER_KEY]) and torch.equal(kept[SCALE_KEY], cen[SCALE_KEY])
    # a diagonal R: a gain vector [H] from zero, saved as one, kept by the next piece; a matrix config refuses it and
    # a diagonal config refuses a matrix R
    train_lm(_tiny(["train.steps=2", "train.ckpt_every=0", "model.caption_hint=true", "model.caption_center=true",
                    "model.caption_hint_form=diagonal", "model.caption_hint_lr=1e-2",
                    f"train.init_from={tmp_path / 'a' / 'model'}"]), tmp_path / "j", progress=False)
    diag = load_parent_hint_state(tmp_path / "j" / "model")
    assert diag[CAPTION_KEY].shape == diag[KEY].shape[:1] and diag[CAPTION_KEY].float().abs().max() > 1e-3
    assert diag[CENTER_KEY].float().abs().max() > 0
    assert "caption hints (diagonal R)" in format_description(describe_dir(tmp_path / "j" / "model"))
    train_lm(_tiny(["train.steps=1", "train.lr=0", "model.parent_hint_lr=0", "model.caption_hint=true",
                    "model.caption_hint_form=diagonal", f"train.init_from={tmp_path / 'j' / 'model'}"]), tmp_path / "k",
             progress=False)
    assert torch.equal(load_parent_hint_state(tmp_path / "k" / "model")[CAPTION_KEY], diag[CAPTION_KEY])
    for form, src in (("matrix", tmp_path / "j" / "model"), ("diagonal", tmp_path / "b" / "model")):
        with pytest.raises(ConfigError, match="caption"):
            train_lm(_tiny(["train.steps=1", "model.caption_hint=true", f"model.caption_hint_form={form}",
                            f"train.init_from={src}"]), tmp_path / "l", progress=False)
    # caption_hint_init: R starts at that times the identity (a diagonal R: every gain at that value), so the hint is
    # there from step 0; a source's trained R is refused, as is the option without caption hints
    for form, shape in (("diagonal", diag[CAPTION_KEY].shape), ("matrix", state[CAPTION_KEY].shape)):
        train_lm(_tiny(["train.steps=1", "train.ckpt_every=0", "train.lr=0", "model.parent_hint_lr=0",
                        "model.caption_hint=true", "model.caption_center=true", f"model.caption_hint_form={form}",
                        "model.caption_hint_init=0.5", f"train.init_from={tmp_path / 'a' / 'model'}"]),
                 tmp_path / f"n_{form}", progress=False)
        R = load_parent_hint_state(tmp_path / f"n_{form}" / "model")[CAPTION_KEY].float()
        want = torch.full(shape, 0.5) if form == "diagonal" else 0.5 * torch.eye(shape[0])
        assert R.shape == shape and torch.equal(R, want)
    with pytest.raises(ConfigError, match="trained already"):
        train_lm(_tiny(["train.steps=1", "model.caption_hint=true", "model.caption_hint_form=diagonal",
                        "model.caption_hint_init=0.5", f"train.init_from={tmp_path / 'j' / 'model'}"]),
                 tmp_path / "o", progress=False)
    for bad in (["model.caption_hint_init=0.5"], ["model.caption_hint=true", "model.caption_hint_init=nan"]):
        with pytest.raises(ConfigError, match="caption_hint_init"):
            train_lm(_tiny(["train.steps=1", *bad]), tmp_path / "o2", progress=False)
    for bad in (["model.caption_hint_form=diagonal"], ["model.caption_hint_form=diagonal", "model.parent_hint=false"],
                ["model.caption_hint=true", "model.caption_hint_form=vector"]):
        with pytest.raises(ConfigError, match="caption_hint_form"):
            train_lm(_tiny(["train.steps=1", *bad]), tmp_path / "m", progress=False)
    # refusals: no caption hint to centre; an R trained on the plain mean
    with pytest.raises(ConfigError, match="caption_hint"):
        train_lm(_tiny(["train.steps=1", "model.caption_center=true"]), tmp_path / "h", progress=False)
    with pytest.raises(ConfigError, match="plain window mean"):
        train_lm(_tiny(["train.steps=1", "model.caption_hint=true", "model.caption_center=true",
                        f"train.init_from={tmp_path / 'b' / 'model'}"]), tmp_path / "i", progress=False)
