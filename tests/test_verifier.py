"""The motion verifier (vidgpt.verifier), its training (vidgpt.train.verifier_fit), the direction a prompt names
(motion_words.named_direction) and best-of-N blueprints in the pipeline (decode option best_of)."""

import pytest
import torch

from vidgpt.data.motion_words import named_direction
from vidgpt.errors import GenerationError
from vidgpt.generate.tiny import tiny_pipeline
from vidgpt.train.verifier_fit import fit_verifier, flipped, verifier_examples
from vidgpt.verifier import DIRECTIONS, MotionVerifier, code_bits, load_verifier, save_verifier

pytestmark = pytest.mark.usefixtures("one_thread")

STEP = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}


@pytest.mark.parametrize("prompt,direction", [
    ("a red circle moving right", "right"),
    ("purple star, moving up", "up"),
    ("A small cyan triangle glides steadily from the right toward the left over a plain dark blue background.", "left"),
    ("a green hexagon sinks", "down"),
    ("climbs toward the top of the frame", "up"),
    ("Moving LEFTWARD, a box", "left"),
    ("a ball bounces up and down", None),  # both ends named
    ("goes up and left", None),  # a diagonal is not a straight direction
    ("a red circle moving to the upper right", None),
    ("a blue star", None),
    ("it starts from the left", None),  # only where the move starts
])
def test_named_direction(prompt, direction):
    assert named_direction(prompt) == direction


def test_code_bits():
    b = code_bits(torch.tensor([[[[5]]]]), 4)  # 5 = 0b0101 -> bits 0..3 = 1, 0, 1, 0
    assert b.shape == (1, 1, 4, 1, 1)
    assert b.flatten().tolist() == [1.0, -1.0, 1.0, -1.0]


def moving_blocks(n, T=3, size=8, bits=6, seed=0):
    """n blueprints [T, size, size] of one 2x2 object (code 5 on code 0... random per clip) moving one cell a frame in a
    random direction, and the direction indices."""
    g = torch.Generator().manual_seed(seed)
    codes, labels = [], []
    for _ in range(n):
        d = int(torch.randint(4, (1,), generator=g))
        dy, dx = STEP[DIRECTIONS[d]]
        bg, obj = torch.randperm(2**bits, generator=g)[:2].tolist()
        y0 = int(torch.randint(2, size - 3, (1,), generator=g))
        x0 = int(torch.randint(2, size - 3, (1,), generator=g))
        c = torch.full((T, size, size), bg, dtype=torch.long)
        for t in range(T):
            y, x = y0 + dy * (t - 1), x0 + dx * (t - 1)
            c[t, y : y + 2, x : x + 2] = obj
        codes.append(c)
        labels.append(d)
    return torch.stack(codes), torch.tensor(labels)


def test_the_verifier_learns_which_way_a_block_moves_and_generalises():
    codes, labels = moving_blocks(320)
    net, report = fit_verifier(codes, labels, bits=6, epochs=20, width=16, holdout=0.25, lr=3e-3)
    assert report["clips"] == 320 and report["heldout_clips"] == 80
    assert report["heldout_accuracy"] >= 0.9, report  # chance: 0.25
    test, truth = moving_blocks(40, seed=1)
    lp = net(test)
    assert lp.shape == (40, 4) and torch.allclose(lp.exp().sum(-1), torch.ones(40), atol=1e-5)
    assert (lp.argmax(-1) == truth).float().mean() >= 0.8  # measured 0.95
    # any clip length: a 5-frame blueprint of the same move
    longer, truth5 = moving_blocks(20, T=5, seed=2)
    assert (net(longer).argmax(-1) == truth5).float().mean() >= 0.7  # measured 0.85
    # log_prob picks one column
    assert torch.allclose(net.log_prob(test, "up"), lp[:, DIRECTIONS.index("up")])
    with pytest.raises(ValueError, match="not one of"):
        net.log_prob(test, "bounce")
    with pytest.raises(ValueError, match="T >= 2"):
        net(test[:, :1])


def test_flips_move_the_labels_with_the_grid():
    codes, labels = moving_blocks(4)
    x, y = flipped(codes, labels)
    assert x.shape[0] == 16
    names = [DIRECTIONS[i] for i in y.tolist()]
    for k in range(4):
        d = DIRECTIONS[labels[k]]
        swap_h = {"left": "right", "right": "left"}.get(d, d)
        swap_v = {"up": "down", "down": "up"}.get(d, d)
        assert names[k] == d and names[4 + k] == swap_h and names[8 + k] == swap_v
        assert names[12 + k] == {"up": "down", "down": "up"}.get(swap_h, swap_h)


def test_save_and_load(tmp_path):
    net = MotionVerifier(6, width=8).eval()
    save_verifier(net, tmp_path, {"clips": 3})
    back = load_verifier(tmp_path)
    codes, _ = moving_blocks(3)
    assert torch.allclose(back(codes), net(codes)) and back.directions == DIRECTIONS
    assert load_verifier(tmp_path / "nothing") is None


def test_examples_from_records():
    codes, labels = moving_blocks(3)
    caps = ["red circle, moving " + DIRECTIONS[i] for i in labels.tolist()]
    recs = [{"blueprint_codes": c.flatten().tolist(), "blueprint_shape": [3, 8, 8], "caption": cap}
            for c, cap in zip(codes, caps)]
    recs += [{"blueprint_codes": codes[0].flatten().tolist(), "blueprint_shape": [3, 8, 8], "caption": "a ring bouncing"},
             {"blueprint_codes": None, "blueprint_shape": None, "caption": "a box moving left"}]
    x, y = verifier_examples(recs)
    assert torch.equal(x, codes) and torch.equal(y, labels)
    with pytest.raises(ValueError, match="two shapes"):
        verifier_examples(recs[:1] + [{"blueprint_codes": [0] * 32, "blueprint_shape": [2, 4, 4], "caption": "moving up"}])
    with pytest.raises(ValueError, match="no record"):
        verifier_examples(recs[3:])


class ScriptedVerifier(MotionVerifier):
    """Scores each candidate by its place in the batch: the candidate `favourite` of every prompt wins."""

    def __init__(self, favourite):
        super().__init__(6, width=4)
        self.favourite = favourite
        self.calls = []

    def log_prob(self, codes, direction):
        self.calls.append((codes.shape[0], direction))
        s = torch.zeros(codes.shape[0])
        s[self.favourite] = 1.0
        return s


def test_best_of_keeps_the_verifiers_pick_and_draws_the_rest_after_it(text_tok):
    from vidgpt.generate.sampling import SamplingConfig, make_generator

    v = ScriptedVerifier(favourite=2)
    pipe = tiny_pipeline(text_tok, bits=6, decode_options={"cfg_fine": False, "verifier": v, "best_of": 3})
    prompts = ["a red circle moving right", "a blue star"]
    ids = [pipe.layout.prompt_ids(pl_sample(p)) for p in prompts]
    neg = [pipe.layout.prompt_ids(pl_sample(p)) for p in ("a red circle moving left", "")]
    shape = pipe.latent_shape(9, 32, 32)
    seen = []
    real = pipe.sample_blocks

    def spy(*a, **k):
        out = real(*a, **k)
        seen.append((a, k, out))
        return out

    pipe.sample_blocks = spy
    blocks, rows = pipe.sample_blocks(ids, neg, shape, pipe.sections(), SamplingConfig(cfg=3.0), make_generator(3),
                                      directions=[named_direction(p) for p in prompts])
    # the candidates' pass: 3 rows for the prompt with a direction, 1 for the other, each with its own negative
    cand_args, _, (cands, _) = seen[0]  # the inner call returns first
    assert [list(p) for p in cand_args[0]] == [ids[0]] * 3 + [ids[1]] and cand_args[3] == ("blueprint",)
    assert [list(u) for u in cand_args[1]] == [neg[0]] * 3 + [neg[1]]
    assert v.calls == [(3, "right")]  # the verifier judged only the prompt that names a direction
    assert torch.equal(blocks[0].blueprint, cands[2].blueprint) and torch.equal(blocks[1].blueprint, cands[3].blueprint)
    assert pipe.last_stats["best_of_picks"] == [2, 0]
    # whole blocks: the fine section drawn after the kept blueprint, and the ids parse back to the blocks
    for b, r, p in zip(blocks, rows, ids):
        assert b.fine is not None and tuple(b.fine.shape) == tuple(shape)
        assert pipe.layout.parse(list(p) + r).turns[-1].blocks()[-1].blueprint.tolist() == b.blueprint.tolist()
    # blueprint-only: the kept candidates as they were drawn
    pipe.sample_blocks = real
    only, only_rows = pipe.sample_blocks(ids, neg, shape, ("blueprint",), SamplingConfig(cfg=3.0), make_generator(3),
                                         directions=["right", None])
    assert all(b.fine is None for b in only) and len(only_rows) == 2


def test_best_of_changes_nothing_without_a_direction(text_tok):
    """A prompt that names no direction is drawn in one pass: the same clip as best_of 1."""
    v = ScriptedVerifier(favourite=1)
    one = tiny_pipeline(text_tok, bits=6, decode_options={"cfg_fine": False})
    many = tiny_pipeline(text_tok, bits=6, decode_options={"cfg_fine": False, "verifier": v, "best_of": 4})
    a = one.generate("a blue star", frames=9, height=32, width=32, seed=5, decode=False)
    b = many.generate("a blue star", frames=9, height=32, width=32, seed=5, decode=False)
    assert a.token_ids == b.token_ids and v.calls == []
    c = many.generate("a blue star moving down", frames=9, height=32, width=32, seed=5, decode=False)
    assert v.calls == [(4, "down")] and many.last_stats["best_of_picks"] == [1] and len(c.blocks) == 1


@pytest.mark.parametrize("options,match", [
    ({"best_of": 0}, "integer >= 1"),
    ({"best_of": "2"}, "integer >= 1"),
    ({"best_of": True}, "integer >= 1"),
    ({"best_of": 2}, "motion verifier"),
    ({"best_of": 2, "blueprint_mask": 1, "verifier": "set below"}, "choose one way"),
])
def test_bad_best_of(text_tok, options, match):
    if options.get("verifier") == "set below":
        options = {**options, "verifier": MotionVerifier(6, width=4)}
    with pytest.raises(GenerationError, match=match):
        tiny_pipeline(text_tok, bits=6, decode_options=options)


def pl_sample(prompt):
    from vidgpt.layout import Sample, Turn

    return Sample([Turn("user", [prompt])])


def test_junk_examples_move_no_straight_way():
    from vidgpt.train.verifier_fit import background_codes, junk_examples

    codes, _ = moving_blocks(8, T=4)
    g = torch.Generator().manual_seed(0)
    bg = background_codes(codes)
    assert torch.equal(bg, codes[:, :, 0, 0])  # corners are background in moving_blocks
    for kind in ("still", "ghost", "vanish", "shuffle"):
        j = junk_examples(codes, g, kinds=(kind,))
        assert j.shape == codes.shape and torch.equal(j[:, 0], codes[:, 0])  # the first frame is the true one
        for i in range(8):
            obj = (j[i] != bg[i].view(-1, 1, 1)).flatten(1).sum(1)  # object cells per frame
            if kind == "still":
                assert all(torch.equal(j[i, t], codes[i, 0]) for t in range(4))
            elif kind == "ghost":
                assert (obj[1:] > obj[0]).all()  # the object stays and the moved one appears too
            elif kind == "vanish":
                assert (obj[1:] == 0).any() and obj[0] > 0
            else:
                assert sorted(j[i, 1:].flatten(1).tolist()) == sorted(codes[i, 1:].flatten(1).tolist())
                assert not torch.equal(j[i], codes[i])
    with pytest.raises(ValueError, match="kinds"):
        junk_examples(codes, g, kinds=("blur",))
    with pytest.raises(ValueError, match=">= 2 frames"):
        junk_examples(codes[:, :1], g)


def test_a_verifier_with_junk_says_none_for_junk_and_keeps_the_directions(tmp_path):
    from vidgpt.train.verifier_fit import junk_examples

    codes, labels = moving_blocks(320)
    net, report = fit_verifier(codes, labels, bits=6, epochs=20, width=16, holdout=0.25, lr=3e-3, junk=0.5)
    assert net.directions == DIRECTIONS + ("none",)
    assert report["heldout_accuracy"] >= 0.85, report  # measured: see the assert's report
    assert report["heldout_junk_accuracy"] >= 0.7, report
    test, truth = moving_blocks(40, seed=1)
    junk = junk_examples(test, torch.Generator().manual_seed(1))
    # the asked direction scores lower on a junk copy of a clip than on the clip itself, for most clips
    asked = [DIRECTIONS[i] for i in truth.tolist()]
    true_lp = torch.stack([net.log_prob(test[i : i + 1], d)[0] for i, d in enumerate(asked)])
    junk_lp = torch.stack([net.log_prob(junk[i : i + 1], d)[0] for i, d in enumerate(asked)])
    assert (true_lp > junk_lp).float().mean() >= 0.8
    save_verifier(net, tmp_path)
    assert load_verifier(tmp_path).directions == DIRECTIONS + ("none",)
    with pytest.raises(ValueError, match="junk"):
        fit_verifier(codes, labels, bits=6, junk=-1)


def test_pick_table_counts_the_kept_candidate():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("vc", Path(__file__).parents[1] / "tools" / "verifier_candidates.py")
    vc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vc)
    # 2 prompts x 3 candidates; verdicts (motion, colour, object)
    verdicts = torch.tensor([[[0, 1, 0], [1, 1, 1], [0, 0, 0]],
                             [[1, 0, 0], [0, 0, 0], [0, 1, 0]]], dtype=torch.bool)
    data = {"codes": torch.zeros(2, 3, 2, 4, 4, dtype=torch.long), "verdicts": verdicts, "directions": ["left", "up"]}
    first = lambda codes, d: torch.tensor([1.0, 0.0, 0.0])  # noqa: E731
    second = lambda codes, d: torch.tensor([0.0, 1.0, 0.0])  # noqa: E731
    t = vc.pick_table(data, {"first": first, "second": second})
    assert t["first"] == {"motion": 0.5, "colour": 0.5, "object": 0.0}
    assert t["second"] == {"motion": 0.5, "colour": 0.5, "object": 0.5}
    assert t["oracle (any of K)"] == {"motion": 1.0, "colour": 1.0, "object": 0.5}
    assert t["one blueprint (mean)"]["colour"] == pytest.approx(0.5)


def test_candidate_examples_label_what_the_judge_saw():
    """The model's own candidates: the way the judge saw the object move, `none` for no straight move or no track,
    and a candidate with the wrong colour left out."""
    from vidgpt.train.verifier_fit import candidate_examples

    codes, _ = moving_blocks(6)
    data = {"codes": codes.view(2, 3, *codes.shape[1:]),
            "verdicts": torch.tensor([[[1, 1, 1], [0, 1, 0], [0, 0, 0]], [[0, 1, 0], [1, 1, 0], [0, 1, 0]]]),
            "observed": [["right", "up-left", "left"], [None, "down", "stay"]]}
    x, y = candidate_examples(data)
    names = DIRECTIONS + ("none",)
    assert [names[i] for i in y.tolist()] == ["right", "none", "none", "down", "none"]
    assert torch.equal(x[0], codes[0]) and torch.equal(x[1], codes[1]) and torch.equal(x[2], codes[3])
    with pytest.raises(ValueError, match="none"):
        candidate_examples(data, directions=DIRECTIONS)


def test_a_verifier_learns_from_extra_examples_with_a_none_class():
    """fit_verifier(extra=...): the examples join the training set (with flips) and add the class none; junk-like
    extra examples labelled none are then told apart from true moves."""
    from vidgpt.train.verifier_fit import junk_examples

    codes, labels = moving_blocks(320)
    still = junk_examples(codes[:160], torch.Generator().manual_seed(2), kinds=("still",))
    net, report = fit_verifier(codes, labels, bits=6, epochs=20, width=16, holdout=0.25, lr=3e-3,
                               extra=(still, torch.full((160,), 4)))
    assert net.directions == DIRECTIONS + ("none",) and report["extra"] == 160
    assert report["heldout_accuracy"] >= 0.85, report
    test, _ = moving_blocks(40, seed=3)
    probe = junk_examples(test, torch.Generator().manual_seed(3), kinds=("still",))
    assert (net(probe).argmax(-1) == 4).float().mean() >= 0.8
    with pytest.raises(ValueError, match="do not fit"):
        fit_verifier(codes, labels, bits=6, extra=(still[:, :2], torch.full((160,), 4)))
