"""vidgpt.train.lm_loss: the fast heads equal their plain references (loss and gradients) on a tiny model."""

from __future__ import annotations

import pytest
import torch

from vidgpt.backbone import apply_lora, extend
from vidgpt.errors import ConfigError
from vidgpt.train.lm_data import LMDataConfig, SourceConfig, packed_rows
from vidgpt.train.lm_loss import LossHead, LossSettings, reference_loss, resolve_head, trim_batch, weighted_lm_loss
from vidgpt.train.lora_layers import upper_layer_targets
from vidgpt.train.packing import collate

TINY = {"hidden_size": 32, "layers": 2, "heads": 2, "kv_heads": 1, "text_vocab": 64}


def make_lm(lora: bool, subtokens: int = 1, layers_from: int = 0):
    lm = extend("tiny-llama", None, codebook_bits=6, subtokens=subtokens, tiny=dict(TINY), chat=False)
    if lora:
        targets = ["all-linear"] if not layers_from else upper_layer_targets(lm.model, ["all-linear"], layers_from)
        apply_lora(lm, r=4, alpha=8, target_modules=targets)
        with torch.no_grad():  # B starts at 0; move every trainable tensor so the test sees real gradients
            g = torch.Generator().manual_seed(1)
            for p in lm.model.parameters():
                if p.requires_grad:
                    p.add_(0.05 * torch.randn(p.shape, generator=g))
    lm.model.train()
    return lm


def make_batch(lm, seq_len=96, rows=2):
    data = LMDataConfig(sources=[SourceConfig(kind="synthetic", shapes=[[1, 4, 4], [2, 4, 4]])], chat=False)
    gen = packed_rows(data, lm.vocab, lm.text_tokenizer, seq_len, 0, "train", pad_id=2)
    batch = collate([next(gen) for _ in range(rows)])
    assert (batch["weights"][:, -1] == 0).any(), "the test needs rows that end in padding"
    return batch


def grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def run(fn, model):
    model.zero_grad(set_to_none=True)
    loss, n = fn()
    loss.backward()
    return float(loss), n, grads(model)


def assert_grads_close(a, b, tol=1e-4):
    assert a.keys() == b.keys() and a
    for k in a:
        assert torch.allclose(a[k], b[k], atol=tol, rtol=1e-3), (k, float((a[k] - b[k]).abs().max()))


@pytest.mark.parametrize("lora", [True, False])
def test_full_head_equals_plain_loss_and_gradients(lora):
    lm = make_lm(lora)
    batch = make_batch(lm)
    model = lm.model

    def plain():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        return weighted_lm_loss(logits, batch["input_ids"], batch["weights"])

    head = LossHead(lm.vocab, LossSettings(head="full", chunk_tokens=37))  # chunks that do not divide the rows
    l0, n0, g0 = run(plain, model)
    l1, n1, g1 = run(lambda: head(model, batch), model)
    assert n0 == n1 > 0
    assert abs(l0 - l1) < 1e-4
    assert_grads_close(g0, g1)


@pytest.mark.parametrize("subtokens", [1, 2])
def test_constrained_head_equals_masked_reference(subtokens):
    lm = make_lm(True, subtokens=subtokens)
    batch = make_batch(lm)
    model = lm.model

    def ref():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        return reference_loss(logits, batch["input_ids"], batch["weights"], lm.vocab, "constrained")

    head = LossHead(lm.vocab, LossSettings(head="constrained"))
    l0, n0, g0 = run(ref, model)
    l1, n1, g1 = run(lambda: head(model, batch), model)
    assert n0 == n1 > 0
    assert abs(l0 - l1) < 1e-4
    assert_grads_close(g0, g1)
    # fewer rows compete, so the constrained loss is below the plain one on the same batch
    logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    assert l1 < float(weighted_lm_loss(logits, batch["input_ids"], batch["weights"])[0])


def test_head_only_embedding_gradient_and_upper_layer_lora():
    lm = make_lm(True, layers_from=1)
    names = [n for n, p in lm.model.named_parameters() if p.requires_grad]
    assert any(".layers.1." in n for n in names) and not any(".layers.0." in n for n in names)
    batch = make_batch(lm)
    model = lm.model
    exact = LossHead(lm.vocab, LossSettings(head="constrained"))
    approx = LossHead(lm.vocab, LossSettings(head="constrained", embed_grad="head_only"))

    def ref_detached():  # the reference of head_only: the input embeddings enter as constants
        base = model.get_base_model()
        emb = base.get_input_embeddings()(batch["input_ids"]).detach()
        logits = model(inputs_embeds=emb, position_ids=batch["position_ids"], use_cache=False).logits
        return reference_loss(logits, batch["input_ids"], batch["weights"], lm.vocab, "constrained")

    l0, _, g0 = run(lambda: exact(model, batch), model)
    l1, _, g1 = run(lambda: approx(model, batch), model)
    l2, _, g2 = run(ref_detached, model)
    assert abs(l0 - l1) < 1e-5 and abs(l1 - l2) < 1e-4  # same forward
    assert_grads_close(g1, g2)
    delta = [k for k in g0 if "trainable_tokens_delta" in k]
    assert delta and not torch.allclose(g0[delta[0]], g1[delta[0]])  # the input path's share is gone


def test_trim_batch_keeps_every_trained_token():
    lm = make_lm(False)
    batch = make_batch(lm)
    t = trim_batch(batch)
    assert t["input_ids"].shape[1] < batch["input_ids"].shape[1]
    assert float(t["weights"].sum()) == float(batch["weights"].sum())
    assert (t["weights"][:, -1] > 0).any()



def test_trim_batch_makes_one_document_rows_single_sequences():
    lm = make_lm(False)
    data = LMDataConfig(sources=[SourceConfig(kind="synthetic", shapes=[[2, 4, 4]])], chat=False)
    gen = packed_rows(data, lm.vocab, lm.text_tokenizer, 64, 0, "train", pad_id=2)  # one ~45-token doc per row
    batch = collate([next(gen) for _ in range(3)])
    assert ((batch["position_ids"] == 0).sum(1) == 2).all()  # a document, then padding restarting at 0
    t = trim_batch(batch)
    L = t["input_ids"].shape[1]
    assert torch.equal(t["position_ids"], torch.arange(L).expand(3, L))  # one sequence per row now
    model = lm.model
    out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    plain = weighted_lm_loss(out, batch["input_ids"], batch["weights"])[0]
    fast = LossHead(lm.vocab, LossSettings(head="full"))(model, batch)[0]
    assert abs(float(plain) - float(fast)) < 1e-4


def test_settings_and_auto_choice():
    assert resolve_head(LossSettings(), "cpu") == "constrained"  # one process or data parallel
    assert resolve_head(LossSettings(), "cpu", sharded=True) == "plain"  # FSDP
    assert resolve_head(LossSettings(), "cuda") == "plain"
    with pytest.raises(ConfigError, match="loss.head"):
        LossSettings(head="fast").check()
    with pytest.raises(ConfigError, match="FSDP shards"):
        LossHead(make_lm(False).vocab, LossSettings(head="full"), "cpu", sharded=True)
    with pytest.raises(ConfigError, match="layers_from=5"):
        upper_layer_targets(make_lm(False).model, ["all-linear"], 5)


def test_trainer_fast_path_with_upper_layer_lora_resumes_exactly(tmp_path, killed_lm_run):
    """The trainer on the constrained head + head-only rows + LoRA on layer 1 of 2: kill at step 4, resume."""
    import json
    from pathlib import Path

    from vidgpt.config import load_config
    from vidgpt.train.lm_trainer import LMTrainConfig, train_lm

    tiny = Path(__file__).resolve().parents[1] / "configs" / "lm" / "tiny.yaml"
    sets = ["train.steps=8", "train.seq_len=64", "train.ckpt_every=4", "train.eval_batches=0", "loss.head=auto",
            "loss.embed_grad=head_only", "lora.enabled=true", "lora.layers_from=1", "lora.r=4", "train.save_form=delta"]

    def losses(out):
        recs = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
        start = [r for r in recs if r.get("event") == "start"][0]
        return start, {r["step"]: r["loss"] for r in recs if "loss" in r}

    train_lm(load_config(LMTrainConfig, tiny, sets), tmp_path / "straight", progress=False)
    start, straight = losses(tmp_path / "straight")
    assert start["loss_head"] == "constrained" and start["embed_grad"] == "head_only"
    assert straight[8] < straight[1]
    killed_lm_run(load_config(LMTrainConfig, tiny, sets), tmp_path / "resumed", kill_step=4)
    train_lm(load_config(LMTrainConfig, tiny, sets), tmp_path / "resumed", resume=True, progress=False)
    _, resumed = losses(tmp_path / "resumed")
    assert sorted(resumed) == list(range(1, 9))
    for step in range(1, 9):
        assert abs(resumed[step] - straight[step]) < 1e-6, (step, resumed[step], straight[step])


# --- loss.text_kl_weight: distillation to the base on text-only documents ------------------------------------------


def text_and_video_batch(lm):
    """One row: a text-only document (ids < offset), then a document holding new-vocabulary ids, then padding."""
    off = lm.vocab.vision_start_id
    g = torch.Generator().manual_seed(3)
    text = torch.randint(3, off, (20,), generator=g)
    video = torch.cat([torch.randint(3, off, (5,), generator=g), torch.tensor([off]),
                       torch.randint(lm.vocab.visual_offset, lm.vocab.end, (10,), generator=g)])
    ids = torch.cat([text, video, torch.full((5,), 2)]).view(1, -1)
    pos = torch.cat([torch.arange(20), torch.arange(16), torch.zeros(5, dtype=torch.long)]).view(1, -1)
    w = torch.cat([torch.zeros(1), torch.ones(19), torch.zeros(1), torch.ones(15), torch.zeros(5)]).view(1, -1)
    return {"input_ids": ids, "position_ids": pos, "weights": w}


def test_text_only_positions_skip_documents_with_new_ids():
    from vidgpt.train.lm_loss import text_only_positions

    lm = make_lm(lora=False)
    b = text_and_video_batch(lm)
    m = text_only_positions(b["input_ids"], b["position_ids"], b["weights"], lm.vocab.vision_start_id)[0]
    assert m[:19].all() and not m[19:].any()  # position i predicts i+1: the text document's 19 trained targets


def test_text_kl_is_zero_at_the_base_and_trains_the_adapter_towards_it():
    lm = make_lm(lora=True)
    b = text_and_video_batch(lm)
    plain = LossHead(lm.vocab, LossSettings(head="constrained"))
    head = LossHead(lm.vocab, LossSettings(head="constrained", text_kl_weight=2.0))
    with torch.no_grad():  # the adapter off: the model is its base, the KL is 0
        with lm.model.disable_adapter():
            h = head.hidden_states(lm.model, trim_batch(b))
    loss0, _ = plain(lm.model, b)
    loss, n = head(lm.model, b)
    kl = head.last_text_kl
    assert kl is not None and kl > 0  # the moved adapter changed the text distribution
    assert abs(float(loss) - (float(loss0) + 2.0 * kl)) < 1e-4
    with torch.no_grad():  # the same hidden states: what is left is the mass the model gives <|vision_start|>
        from vidgpt.train.lm_loss import HeadRows, text_only_positions

        tb = trim_batch(b)
        sel = text_only_positions(tb["input_ids"], tb["position_ids"], tb["weights"], lm.vocab.vision_start_id)
        p_vs = (h[sel] @ HeadRows(lm.model).rows(0, lm.vocab.vision_start_id + 1).t()).softmax(-1)[:, -1]
        expect = float(-torch.log1p(-p_vs).mean())
        assert float(head.text_kl(lm.model, tb, h)) == pytest.approx(expect, rel=1e-4, abs=1e-6)
        assert expect < kl
    lm.model.zero_grad(set_to_none=True)
    head.text_kl(lm.model, trim_batch(b), head.hidden_states(lm.model, trim_batch(b))).backward()
    g = grads(lm.model)
    assert any("lora" in k and v.abs().sum() > 0 for k, v in g.items())
    opt = torch.optim.SGD([p for p in lm.model.parameters() if p.requires_grad], lr=0.5)
    before = float(head.text_kl(lm.model, trim_batch(b), head.hidden_states(lm.model, trim_batch(b))))
    for _ in range(3):
        opt.zero_grad()
        head.text_kl(lm.model, trim_batch(b), head.hidden_states(lm.model, trim_batch(b))).backward()
        opt.step()
    after = float(head.text_kl(lm.model, trim_batch(b), head.hidden_states(lm.model, trim_batch(b))))
    assert after < before
    with torch.no_grad():  # evaluation adds nothing
        ev, _ = head(lm.model, b)
        assert float(ev) == pytest.approx(float(plain(lm.model, b)[0]), abs=1e-6)


def test_text_kl_over_all_rows_also_pays_for_mass_on_new_rows():
    """text_kl_rows="all": at the base's hidden states what is left is -log(1 - m), m the mass on every new row."""
    from vidgpt.train.lm_loss import HeadRows, text_only_positions

    lm = make_lm(lora=True)
    b = text_and_video_batch(lm)
    turn = LossHead(lm.vocab, LossSettings(head="constrained", text_kl_weight=1.0))
    every = LossHead(lm.vocab, LossSettings(head="constrained", text_kl_weight=1.0, text_kl_rows="all"))
    tb = trim_batch(b)
    with torch.no_grad():
        with lm.model.disable_adapter():
            h = every.hidden_states(lm.model, tb)
        sel = text_only_positions(tb["input_ids"], tb["position_ids"], tb["weights"], lm.vocab.vision_start_id)
        rows = HeadRows(lm.model)
        p = (h[sel] @ rows.rows(0, rows.num_rows).t()).softmax(-1)
        m_new = p[:, lm.vocab.vision_start_id:].sum(-1)
        assert float(m_new.min()) > 0
        expect = float(-torch.log1p(-m_new).mean())
        assert float(every.text_kl(lm.model, tb, h)) == pytest.approx(expect, rel=1e-4, abs=1e-6)
        assert float(every.text_kl(lm.model, tb, h)) > float(turn.text_kl(lm.model, tb, h))
    # training on it lowers the mass on the new rows in plain text
    opt = torch.optim.SGD([q for q in lm.model.parameters() if q.requires_grad], lr=0.5)

    def mass():
        with torch.no_grad():
            hh = every.hidden_states(lm.model, tb)[sel]
            return float((hh @ rows.rows(0, rows.num_rows).t()).softmax(-1)[:, lm.vocab.vision_start_id:].sum(-1).mean())

    before = mass()
    for _ in range(5):
        opt.zero_grad()
        every.text_kl(lm.model, tb, every.hidden_states(lm.model, tb)).backward()
        opt.step()
    assert mass() < before
    with pytest.raises(ConfigError, match="text_kl_rows"):
        LossSettings(text_kl_rows="visual").check()


def test_text_kl_needs_lora_and_a_fast_head():
    lm = make_lm(lora=False)
    head = LossHead(lm.vocab, LossSettings(head="constrained", text_kl_weight=1.0))
    with pytest.raises(ConfigError, match="LoRA"):
        head(lm.model, text_and_video_batch(lm))
    with pytest.raises(ConfigError):
        LossHead(lm.vocab, LossSettings(head="plain", text_kl_weight=1.0))
    with pytest.raises(ConfigError):
        LossSettings(text_kl_weight=-1.0).check()


def test_text_rows_take_the_joint_path_with_the_values_of_the_two_parts():
    """text_kl_rows all, a micro-batch of text-only rows: CE and KL from one log-softmax over every row
    (`joint_text_loss`) give the loss, KL and gradients of `loss_from_hidden` + `text_kl`; a batch holding a visual
    document, or text_kl_rows turn, keeps the two parts."""
    lm = make_lm(lora=True)
    b = text_and_video_batch(lm)
    text = {k: torch.stack([v[0, :20], torch.cat([v[0, 1:20], v[0, :1]])]) for k, v in b.items()}  # two text rows
    text["position_ids"][1] = torch.cat([torch.arange(19), torch.zeros(1, dtype=torch.long)])
    text["weights"][1] = torch.cat([torch.zeros(1), torch.ones(15), torch.zeros(4)])
    text["weights"][0, 12] = 2.0  # a weighted target: both paths weigh the CE alike
    head = LossHead(lm.vocab, LossSettings(head="constrained", text_kl_weight=1.5, text_kl_rows="all"))
    tb = trim_batch(text)
    assert head.joint_text_ok(tb) and not head.joint_text_ok(trim_batch(b))
    assert not LossHead(lm.vocab, LossSettings(head="constrained", text_kl_weight=1.0)).joint_text_ok(tb)

    lm.model.zero_grad(set_to_none=True)
    loss, n = head(lm.model, text)
    kl = head.last_text_kl
    loss.backward()
    g_joint = grads(lm.model)
    lm.model.zero_grad(set_to_none=True)
    h = head.hidden_states(lm.model, tb)
    ce, n2 = head.loss_from_hidden(lm.model, h, tb["input_ids"], tb["weights"])
    kl2 = head.text_kl(lm.model, tb, h)
    (ce + 1.5 * kl2).backward()
    assert n == n2 == 34
    assert float(loss) == pytest.approx(float(ce + 1.5 * kl2), rel=1e-5)
    assert kl == pytest.approx(float(kl2), rel=1e-5)
    assert_grads_close(g_joint, grads(lm.model))
    with pytest.raises(ConfigError, match="LoRA"):
        head(make_lm(lora=False).model, text)


# --- TokenRows.logits: one product per stretch of rows, frozen stretches from a bf16 cache under CPU autocast ----


def test_row_stretch_logits_equal_the_merged_product_and_its_gradients():
    from vidgpt.train.lm_loss import HeadRows

    lm = make_lm(lora=True)
    rows = HeadRows(lm.model)
    assert rows.span is not None and 0 < rows.span[0] < rows.num_rows  # frozen text rows, then the deltas
    hs = torch.randn(7, TINY["hidden_size"], requires_grad=True)
    for lo, hi in [(0, rows.num_rows), (0, rows.span[0]), (rows.span[0] + 3, rows.num_rows), (5, rows.span[0] + 9)]:
        want = hs @ rows.rows(lo, hi).t()
        got = rows.logits(hs, lo, hi)
        assert torch.allclose(got, want, atol=1e-6), (lo, hi)
        g = torch.randn_like(want)
        a = torch.autograd.grad((want * g).sum(), [hs, rows.delta], allow_unused=True)
        b = torch.autograd.grad((got * g).sum(), [hs, rows.delta], allow_unused=True)
        assert (a[1] is None) == (b[1] is None) == (hi <= rows.span[0]), (lo, hi)
        assert all(x is None or torch.allclose(x, y, atol=1e-6) for x, y in zip(a, b)), (lo, hi)

    # under CPU bf16 autocast the frozen stretch is a cached bf16 copy: the same values autocast's cast gives
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = hs @ rows.rows(0, rows.num_rows).t()
        got = rows.logits(hs, 0, rows.num_rows)
    assert got.dtype == want.dtype == torch.bfloat16 and torch.equal(got, want)
    cache = rows.module.__dict__["_vidgpt_bf16_rows"]
    assert list(cache) == [(0, rows.span[0])]  # only the frozen stretch is cached
    with torch.no_grad():
        rows.base[0].add_(1.0)  # an in-place change of the frozen rows: the cache follows it
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(rows.logits(hs, 0, rows.num_rows), hs @ rows.rows(0, rows.num_rows).t())
    # and its input gradient is autocast's (computed from the cache's untransposed copy)
    g = torch.randn(7, rows.num_rows)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a = torch.autograd.grad((hs @ rows.rows(0, rows.num_rows).t() * g).float().sum(), hs)[0]
        b = torch.autograd.grad((rows.logits(hs, 0, rows.num_rows) * g).float().sum(), hs)[0]
    assert a.dtype == b.dtype == torch.float32  # equal up to the bf16 rounding of a differently ordered sum
    assert torch.allclose(a.float(), b.float(), rtol=1e-2, atol=1e-2), float((a - b).abs().max())
    assert float((a - b).abs().mean()) < 1e-2 * float(a.abs().mean())  # ~ a bf16 ulp at most, on average


FROZEN_PRODUCT = """
import torch
from vidgpt.train.lm_loss import _FrozenRowsProduct
rows = torch.randn(49152, 576).to(torch.bfloat16)
hs = torch.randn(32, 576, dtype=torch.bfloat16, requires_grad=True)
_FrozenRowsProduct.apply(hs, rows.t().contiguous(), rows).float().sum().backward()
assert hs.grad is not None and bool(torch.isfinite(hs.grad).all())
"""


def test_the_frozen_rows_input_gradient_survives_the_shape_that_killed_pieces_32():
    """grad [32, 49152 text rows] @ rows [49152, 576]: from the transposed bf16 copy oneDNN's AMX blocking heuristic
    (torch 2.13, this CPU) died of SIGFPE; in a child process, so that a regression fails the test, not the suite."""
    import os
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", FROZEN_PRODUCT], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])


def test_is_text_row_tells_rows_without_new_vocabulary_apart():
    from vidgpt.train.lm_loss import is_text_row

    assert is_text_row(torch.tensor([[1, 5, 99]]), new_from=100)
    assert not is_text_row(torch.tensor([[1, 100, 3]]), new_from=100)
    assert is_text_row(torch.tensor([], dtype=torch.long), new_from=100)  # an empty row holds no new id
