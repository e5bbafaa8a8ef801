"""The fast static-cache decoder matches the plain transformers path."""

import warnings

import pytest
import torch

from vidgpt.generate.decoding import HFBackend, left_pad
from vidgpt.generate.fast_decode import FastLlama, make_backend
from vidgpt.generate.tiny import tiny_lm, tiny_pipeline


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("rope", [None, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                          "high_freq_factor": 4.0, "original_max_position_embeddings": 64}])
def test_logits_match_plain_path_with_left_padding(rope):
    model = tiny_lm(300, hidden=64, max_positions=256, rope_scaling=rope, tied=rope is None)
    ids, mask = left_pad([[5, 6, 7, 8, 9], [11, 12], [13, 14, 15, 16, 17, 18, 19]], 0)
    plain, fast = HFBackend(model), FastLlama(model)
    a, h = plain.prefill(ids, mask), fast.prefill(ids, mask, max_len=40)
    assert torch.allclose(a, fast.logits(h, 0, 300), atol=1e-4)
    for _ in range(12):
        tok = a.argmax(-1)
        a, h = plain.step(tok), fast.step(tok)
        assert torch.allclose(a, fast.logits(h, 0, 300), atol=1e-4)
        assert torch.allclose(a[:, 100:164], fast.logits(h, 100, 164), atol=1e-4)  # sliced head


def test_greedy_and_seeded_tokens_equal_plain_path(text_tok):
    fast = tiny_pipeline(text_tok, bits=6, fast=True)
    plain = tiny_pipeline(text_tok, bits=6, fast=False)
    assert fast.backend.name == "fast" and plain.backend.name == "plain"
    for kw in ({"temperature": 0.0, "cfg": 3.0}, {"temperature": 1.0, "seed": 5, "cfg": 2.0, "num": 2}):
        a = fast.generate("a red ball", frames=5, height=32, width=32, **kw)
        b = plain.generate("a red ball", frames=5, height=32, width=32, **kw)
        assert a.token_ids == b.token_ids


def test_buffers_are_reused_between_calls():
    model = tiny_lm(200, hidden=32)
    fast = FastLlama(model)
    ids, mask = left_pad([[1, 2, 3]], 0)
    fast.prefill(ids, mask, max_len=10)
    cache = fast.cache
    first = [fast.logits(fast.step(torch.tensor([4])), 0, 200)]
    fast.prefill(ids, mask, max_len=10)
    assert fast.cache is cache
    assert torch.allclose(fast.logits(fast.step(torch.tensor([4])), 0, 200), first[0])


def test_unsupported_model_falls_back_with_a_warning():
    from transformers import OPTConfig, OPTForCausalLM  # (gpt2 runs fast now: tests/test_fast_decode_families.py)

    model = OPTForCausalLM(OPTConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, ffn_dim=64,
                                     num_attention_heads=2, word_embed_proj_dim=32)).eval()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        backend = make_backend(model)
    assert isinstance(backend, HFBackend)
    assert any("fast decoding unavailable" in str(x.message) for x in w)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_graph_matches_eager_on_gpu():
    model = tiny_lm(300, hidden=64).cuda()
    ids, mask = left_pad([[5, 6, 7], [8, 9]], 0)
    eager, graph = FastLlama(model, use_cuda_graph=False), FastLlama(model, use_cuda_graph=True)
    a, b = eager.prefill(ids, mask, 20), graph.prefill(ids, mask, 20)
    for _ in range(5):
        tok = eager.logits(a, 0, 300).argmax(-1)
        a, b = eager.step(tok), graph.step(tok)
        assert torch.allclose(a, b, atol=1e-4)


# --- packed weights, attention modes, families, speculative decoding ------------------------------


def _run_both(plain, fast, ids, mask, steps=8, V=300, atol=1e-4):
    a, h = plain.prefill(ids, mask), fast.prefill(ids, mask, max_len=40)
    assert torch.allclose(a, fast.logits(h, 0, V), atol=atol)
    for _ in range(steps):
        tok = a.argmax(-1)
        a, h = plain.step(tok), fast.step(tok)
        assert torch.allclose(a, fast.logits(h, 0, V), atol=atol)


@pytest.mark.parametrize("weights,attention", [("mkldnn", "filled"), ("t", "filled"), ("linear", "filled"), ("t", "static"),
                                               ("linear", "static")])  # the last: the CUDA path's forward, eager
def test_every_weight_layout_and_attention_mode_matches_plain(weights, attention):
    if weights == "mkldnn" and not torch.backends.mkldnn.is_available():
        pytest.skip("PyTorch built without oneDNN")
    model = tiny_lm(300, hidden=64, max_positions=256)
    ids, mask = left_pad([[5, 6, 7, 8, 9], [11, 12]], 0)
    fast = FastLlama(model, weights=weights, attention=attention)
    _run_both(HFBackend(model), fast, ids, mask)
    # the packed head of a wide slice (>= 256 rows) equals the plain head rows
    h = fast.step(torch.tensor([3, 4]))
    with torch.no_grad():
        assert torch.allclose(fast.logits(h, 20, 300), h @ model.lm_head.weight[20:300].T, atol=1e-4)


def test_bf16_weights_are_close_but_flagged_approximate():
    model = tiny_lm(300, hidden=64, max_positions=256)
    ids, mask = left_pad([[5, 6, 7, 8]], 0)
    exact, approx = FastLlama(model), FastLlama(model, dtype="bf16")
    a, b = exact.logits(exact.prefill(ids, mask, 20), 0, 300), approx.logits(approx.prefill(ids, mask, 20), 0, 300)
    err = (a - b).abs().max().item()
    assert 0 < err < 0.1 * a.abs().max().item()
    from vidgpt.generate.fast_decode import mkldnn_bf16_supported

    if not mkldnn_bf16_supported():  # AVX2-only CPUs: oneDNN cannot pack bf16, the plain layout serves it
        assert approx.weight_kind == "t"
        with pytest.raises(ValueError, match="AVX512"):
            FastLlama(model, dtype="bf16", weights="mkldnn")


int8 = pytest.mark.skipif(not __import__("vidgpt.generate.fast_decode", fromlist=["x"]).int8_supported(),
                          reason="this PyTorch has no fbgemm/x86 quantized kernels")


def _outlier_lm():
    """A tiny LM whose residual stream has a few huge channels, as real LLMs do (what int8 smoothing is for)."""
    model = tiny_lm(300, hidden=64, max_positions=256)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.input_layernorm.weight[:3] = 40.0
            layer.post_attention_layernorm.weight[:3] = 40.0
    return model


@int8
def test_int8_weights_are_close_and_smoothing_helps():
    from vidgpt.generate.fast_decode import FastDecoder

    model = _outlier_lm()
    ids, mask = left_pad([[5, 6, 7, 8, 9, 10, 11, 12]], 0)
    exact = FastDecoder(model, dtype="fp32")
    ref = exact.logits(exact.prefill(ids, mask, 20), 0, 300)
    maxima = exact.activation_maxima(ids)
    assert set(maxima) == set(range(len(model.model.layers))) | {-1}  # -1: the final norm's output (the head's input)
    assert maxima[0]["qkv"].shape == (64,) and maxima[0]["down"].shape == (model.config.intermediate_size,)
    assert maxima[-1]["head"].shape == (64,)
    assert maxima[0]["qkv"][:3].min() > 5 * maxima[0]["qkv"][3:].median()  # the outlier channels are seen

    def err(dec):
        out = dec.logits(dec.prefill(ids, mask, 20), 0, 300)
        return ((out - ref).norm() / ref.norm()).item()

    raw = FastDecoder(model, dtype="int8", int8_maxima={})  # no smoothing: the per-tensor activation scale suffers
    smoothed = FastDecoder(model, dtype="int8", int8_maxima=maxima)
    e_raw, e_smooth = err(raw), err(smoothed)
    assert smoothed.layers[0].qkv.kind == "int8" and smoothed.layers[0].qkv.smooth is not None
    assert e_smooth < 0.05 and e_smooth < 0.7 * e_raw, (e_raw, e_smooth)
    # the head in int8 too: close, and packed as int8 (smoothed on the final norm's maxima)
    head8 = FastDecoder(model, dtype="int8", int8_maxima=maxima, int8_head=True)
    assert err(head8) < 0.06
    assert [h.kind for h in head8._heads.values()] == ["int8"] and next(iter(head8._heads.values())).smooth is not None
    with pytest.raises(ValueError, match="int8_head"):
        FastDecoder(model, dtype="fp32", int8_head=True)
    # without maxima the decoder calibrates on the first prompt it is given
    auto = FastDecoder(model, dtype="int8")
    assert err(auto) < 0.05 and auto.int8_maxima is not None
    # decoding continues after prefill (steps, several positions a pass, truncation)
    h = smoothed.step(torch.tensor([3]))
    assert torch.isfinite(smoothed.logits(h, 0, 300)).all()
    assert smoothed.step_many(torch.tensor([[4, 5, 6]])).shape[1] == 3


@int8
def test_int8_smoothing_keeps_the_product():
    from vidgpt.generate.fast_decode import PackedLinear, smoothing

    torch.manual_seed(0)
    w = torch.randn(96, 48) * 0.05
    x = torch.randn(6, 48)
    x[:, :2] *= 60  # outlier channels
    ref = x @ w.T
    plain = PackedLinear(w, None, "int8")
    smooth = PackedLinear(w, None, "int8", smooth=smoothing(x.abs().amax(0), w))
    e_plain = ((plain(x) - ref).norm() / ref.norm()).item()
    e_smooth = ((smooth(x) - ref).norm() / ref.norm()).item()
    assert e_smooth < 0.03 and e_smooth < 0.5 * e_plain, (e_plain, e_smooth)
    with pytest.raises(ValueError, match="int8"):
        PackedLinear(w, None, "t", smooth=torch.ones(48))


def test_int8_maxima_file_round_trip(tmp_path):
    from vidgpt.generate.int8_calibration import load_maxima, merge_maxima, save_maxima

    assert load_maxima(tmp_path) is None
    a = {0: {"qkv": torch.tensor([1.0, 5.0]), "down": torch.tensor([2.0])}}
    b = {0: {"qkv": torch.tensor([3.0, 1.0]), "down": torch.tensor([0.5])}}
    save_maxima(tmp_path, merge_maxima(merge_maxima(None, a), b))
    back = load_maxima(tmp_path)
    assert torch.equal(back[0]["qkv"], torch.tensor([3.0, 5.0])) and torch.equal(back[0]["down"], torch.tensor([2.0]))
    # a file from before the head's entry merges with one that has it
    c = {0: {"qkv": torch.tensor([0.0, 9.0]), "down": torch.tensor([1.0])}, -1: {"head": torch.tensor([4.0])}}
    save_maxima(tmp_path, merge_maxima(back, c))
    again = load_maxima(tmp_path)
    assert torch.equal(again[-1]["head"], torch.tensor([4.0])) and torch.equal(again[0]["qkv"], torch.tensor([3.0, 9.0]))


def test_int8_is_refused_off_the_cpu_path(monkeypatch, tmp_path):
    import vidgpt.commands.generate as cmd
    import vidgpt.generate.fast_decode as fd
    import vidgpt.generate.pipeline as pl
    from vidgpt.cli import build_parser
    from vidgpt.errors import GenerationError

    monkeypatch.setattr(pl, "resolve_model_dir", lambda m: tmp_path)
    for flags in (["--plain"], ["--device", "cuda"]):
        with pytest.raises(GenerationError, match="int8"):
            cmd._load(build_parser().parse_args(["generate", "x", "--int8-weights", *flags]))
    with pytest.raises(GenerationError, match="--int8-head goes with --int8-weights"):
        cmd._load(build_parser().parse_args(["generate", "x", "--int8-head"]))
    monkeypatch.setattr(fd, "int8_supported", lambda: False)
    with pytest.raises(ValueError, match="int8"):
        fd.FastDecoder(tiny_lm(300, hidden=64, max_positions=256), dtype="int8")


def test_auto_weights_follow_the_cpu(monkeypatch):
    """dtype="auto" (the CLI's default): bf16 weights where the CPU computes bf16 natively, exact fp32 elsewhere."""
    import vidgpt.generate.fast_decode as fd

    model = tiny_lm(300, hidden=64, max_positions=256)
    monkeypatch.setenv("VIDGPT_CPU_BF16", "0")
    assert FastLlama(model, dtype="auto").mm_dtype == torch.float32
    monkeypatch.setenv("VIDGPT_CPU_BF16", "1")
    monkeypatch.setattr(fd, "mkldnn_bf16_supported", lambda: True)
    auto = FastLlama(model, dtype="auto", weights="t")
    assert auto.mm_dtype == torch.bfloat16
    monkeypatch.setattr(fd, "mkldnn_bf16_supported", lambda: False)  # oneDNN cannot pack bf16 here: stay exact
    assert FastLlama(model, dtype="auto").mm_dtype == torch.float32
    with pytest.raises(ValueError, match="auto"):
        FastLlama(model, dtype="fp16")


def test_cli_weight_flags(monkeypatch, tmp_path):
    """`vidgpt generate` asks for dtype auto by default, fp32 with --fp32-weights, bf16 with --bf16-weights."""
    import vidgpt.commands.generate as cmd
    import vidgpt.generate.pipeline as pl
    from vidgpt.cli import build_parser

    seen = []

    class Stop(Exception):
        pass

    def fake(d, device=None, fast=True, decode_options=None, light=False):
        seen.append(decode_options["dtype"] + ("+head" if decode_options.get("int8_head") else "")
                    + ("+fine-cfg" if decode_options["cfg_fine"] else ""))
        assert light == fast  # the CLI loads the light model on the fast path
        raise Stop

    monkeypatch.setattr(pl.VidGPT, "from_pretrained", staticmethod(fake))
    monkeypatch.setattr(pl, "resolve_model_dir", lambda m: tmp_path)
    flag_sets = [([], "auto"), (["--fp32-weights"], "fp32"), (["--bf16-weights"], "bf16"),
                 (["--cfg-fine"], "auto+fine-cfg")]
    from vidgpt.generate.fast_decode import int8_supported

    if int8_supported():
        flag_sets.append((["--device", "cpu", "--int8-weights"], "int8"))
        flag_sets.append((["--device", "cpu", "--int8-weights", "--int8-head"], "int8+head"))
    for flags, want in flag_sets:
        args = build_parser().parse_args(["generate", "a red circle", *flags])
        with pytest.raises(Stop):
            cmd._load(args)
        assert seen[-1] == want
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "x", "--fp32-weights", "--bf16-weights"])


def _family_model(kind):
    import transformers as tr

    common = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6)
    torch.manual_seed(0)
    if kind == "qwen2":  # q/k/v biases
        model = tr.Qwen2ForCausalLM(tr.Qwen2Config(**common))
        with torch.no_grad():
            for layer in model.model.layers:
                for m in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    m.bias.normal_(0, 0.5)
    elif kind == "qwen3":  # per-head q/k norms, explicit head_dim
        model = tr.Qwen3ForCausalLM(tr.Qwen3Config(head_dim=32, **common))
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.q_norm.weight.normal_(1, 0.3)
                layer.self_attn.k_norm.weight.normal_(1, 0.3)
    else:
        model = tr.MistralForCausalLM(tr.MistralConfig(sliding_window=None, **common))
    return model.eval()


@pytest.mark.parametrize("kind", ["qwen2", "qwen3", "mistral"])
def test_other_families_match_plain(kind):
    model = _family_model(kind)
    fast = make_backend(model)
    assert fast.name == "fast"
    ids, mask = left_pad([[5, 6, 7, 8, 9, 10], [11, 12, 13]], 0)
    _run_both(HFBackend(model), fast, ids, mask, steps=6)


def test_short_sliding_window_runs_fast_and_matches_plain():
    import transformers as tr

    cfg = tr.MistralConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256, sliding_window=4)
    torch.manual_seed(0)
    model = tr.MistralForCausalLM(cfg).eval()
    backend = make_backend(model)
    assert backend.name == "fast"
    ids, mask = left_pad([[5, 6, 7, 8, 9, 10], [11, 12, 13]], 0)
    _run_both(HFBackend(model), backend, ids, mask, steps=8)


def test_step_many_and_truncate_equal_single_steps():
    model = tiny_lm(300, hidden=64, max_positions=256)
    ids, mask = left_pad([[5, 6, 7], [8, 9, 10, 11, 12]], 0)
    one, many = FastLlama(model), FastLlama(model)
    one.prefill(ids, mask, 40), many.prefill(ids, mask, 40)
    feed = torch.tensor([[20, 21, 22, 23], [30, 31, 32, 33]])
    singles = torch.stack([one.step(feed[:, j]) for j in range(4)], dim=1)
    assert torch.allclose(many.step_many(feed), singles, atol=1e-5)
    many.truncate(many.position - 2)  # drop the last two, feed different ones
    one.truncate(one.position - 2)
    alt = torch.tensor([[40, 41], [42, 43]])
    assert torch.allclose(many.step_many(alt), torch.stack([one.step(alt[:, j]) for j in range(2)], dim=1), atol=1e-5)


@pytest.mark.parametrize("kw", [{"temperature": 0.0, "cfg": 3.0}, {"temperature": 1.0, "seed": 5, "cfg": 2.0, "num": 2},
                                {"temperature": 0.8, "seed": 2, "cfg": 1.0, "top_k": 8, "top_p": 0.9}])
def test_speculative_decoding_gives_the_plain_paths_tokens(text_tok, kw):
    plain = tiny_pipeline(text_tok, bits=6, fast=False)
    ref = plain.generate("a red ball", frames=5, height=32, width=32, decode=False, **kw).token_ids
    for k in (1, 5):
        spec = tiny_pipeline(text_tok, bits=6, decode_options={"speculative": k})
        out = spec.generate("a red ball", frames=5, height=32, width=32, decode=False, **kw)
        assert out.token_ids == ref
        assert spec.last_stats["tokens"] == len(ref[0]) - len(spec.tail_ids)
        assert spec.last_stats["passes"] < spec.last_stats["tokens"]  # forced ids at least are drafted right


@pytest.mark.parametrize("kw", [{"temperature": 0.0, "cfg": 3.0}, {"temperature": 1.0, "seed": 5, "cfg": 2.0}])
def test_speculative_gives_up_when_drafts_do_not_pay_and_keeps_the_tokens(text_tok, kw):
    """An untrained model's drafts are rarely right: with a give-up rate above what they bring, the decoder stops
    drafting after jacobi.PROBE_PASSES passes (one token a pass from there), and the tokens stay the plain path's."""
    from vidgpt.generate.jacobi import PROBE_PASSES

    plain = tiny_pipeline(text_tok, bits=6, max_positions=600, fast=False)
    ref = plain.generate("a red ball", frames=9, height=64, width=64, decode=False, **kw).token_ids
    keep = tiny_pipeline(text_tok, bits=6, max_positions=600, decode_options={"speculative": 4})
    keep.generate("a red ball", frames=9, height=64, width=64, decode=False, **kw)
    rate = keep.last_stats["tokens"] / keep.last_stats["passes"]
    assert "gave_up_at" not in keep.last_stats
    quit_ = tiny_pipeline(text_tok, bits=6, max_positions=600, decode_options={"speculative": 4, "speculative_give_up": rate + 10})
    out = quit_.generate("a red ball", frames=9, height=64, width=64, decode=False, **kw)
    st = quit_.last_stats
    assert out.token_ids == ref
    assert st["gave_up_at"] == PROBE_PASSES and st["tokens"] == keep.last_stats["tokens"]
    assert st["passes"] > keep.last_stats["passes"]  # one token a pass after the probe: more passes than drafting
    assert st["passes"] - 1 - PROBE_PASSES == st["tokens"] - st["tokens_at_give_up"]  # then one token a pass
    quit_.speculative_give_up = 0.0  # the next call's stats are its own
    quit_.generate("a red ball", frames=9, height=64, width=64, decode=False, **kw)
    assert "gave_up_at" not in quit_.last_stats and quit_.last_stats["passes"] == keep.last_stats["passes"]
    low = tiny_pipeline(text_tok, bits=6, max_positions=600, decode_options={"speculative": 4, "speculative_give_up": 1.0})
    low.generate("a red ball", frames=9, height=64, width=64, decode=False, **kw)
    assert "gave_up_at" not in low.last_stats and low.last_stats["passes"] == keep.last_stats["passes"]


def test_negative_speculative_is_a_generation_error(text_tok):
    from vidgpt.errors import GenerationError

    with pytest.raises(GenerationError, match="drafts per pass must be >= 0"):
        tiny_pipeline(text_tok, bits=6, decode_options={"speculative": -1})


def test_speculative_is_skipped_behind_a_wrapper_that_watches_steps(text_tok):
    from vidgpt.generate.decoding import can_speculate

    class Watch:
        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            return getattr(self._inner, name)

    pipe = tiny_pipeline(text_tok, bits=6, decode_options={"speculative": 4})
    assert can_speculate(pipe.backend) and not can_speculate(Watch(pipe.backend))
    static = FastLlama(pipe.model, attention="static")  # the CUDA-graph layout: one position a pass
    assert not can_speculate(static)
    pipe.backend = static
    assert pipe.generate("x", frames=1, height=16, width=16, seed=0, decode=False).token_ids  # falls back to one a step


@pytest.mark.parametrize("spec", [0, 4])
def test_cfg_on_the_blueprint_only_matches_a_plain_reference(text_tok, spec):
    """cfg_fine=False: the header and blueprint are the fully guided clip's (same seed), then only the conditional
    rows go on (fast and plain backends draw the same tokens)."""
    kw = dict(frames=5, height=32, width=32, decode=False, temperature=1.0, seed=3, cfg=3.0)
    guided = tiny_pipeline(text_tok, bits=6, fast=False, decode_options={"cfg_fine": True}).generate("a red ball", **kw).token_ids[0]
    plain = tiny_pipeline(text_tok, bits=6, fast=False, decode_options={"cfg_fine": False})
    ref = plain.generate("a red ball", **kw).token_ids[0]
    fast = tiny_pipeline(text_tok, bits=6, decode_options={"cfg_fine": False, "speculative": spec})
    assert fast.generate("a red ball", **kw).token_ids[0] == ref
    assert fast.backend.cache.shape[2] == 1  # the unconditional row was dropped
    vocab = plain.vocab
    cut = ref.index(vocab.fine_id)
    assert guided[:cut] == ref[:cut] and guided[cut] == ref[cut] == vocab.fine_id
