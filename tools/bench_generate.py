"""Decode speed: vidgpt fast path vs plain path (HF forward + DynamicCache) vs `model.generate`.

    python tools/bench_generate.py --tiny            # quick CPU run on a tiny random model
    python tools/bench_generate.py                   # SmolLM2-135M shaped random model (GPU: checks the targets)
    python tools/bench_generate.py --model model/    # a real vidgpt model directory

    # the real shape on the CPU: SmolLM2-135M extended with the visual vocabulary (untrained is fine
    # for speed: `vidgpt lm extend --backbone smollm2-135m --tokenizer tokenizer --out runs/lm_untrained`)
    OMP_NUM_THREADS=1 taskset -c 1 python tools/bench_generate.py --real --model runs/lm_untrained [--full]

`--real` prints, for every decode variant and batch (CFG off: B rows; CFG on: 2B rows), the
milliseconds of one decode step at a short and at a clip-long context, next to the bound a
streaming read of the bytes that step must read gives on this machine (weights + visual head rows
+ KV cache), the clip time those steps make (17x128x128: 1,607 ids), and the same for plain
transformers `model.generate`. `--full` also times whole `pipe.generate` clips end to end.

    # speculative decoding on a trained model: per clip passes / kept drafts / wall / CPU for each K (and
    # mode) against the one-token loop (K=0) in the same run; greedy and default sampling
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 taskset -c 1 python tools/bench_generate.py --spec-table --model model \
        --ks 0,2,4,8 --modes exact,sjd --temperatures 1,0 --seeds 0 --reps 2
    # why exact-mode sampled ids drift from the one-token loop's on it (float rounding; docs/DECODING.md)
    ... --spec-diff --model model --prompts "a green triangle bouncing" --seeds 0 --ks 2
    # what parent hints cost: the same model with them and without (per-pass CPU ms, round robin)
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 taskset -c 1 python tools/bench_generate.py --hint-ab --model model \
        --seeds 0,1 --reps 2

Prints visual tokens/s for batch 1 (no CFG) and batch B with CFG (2B rows). On CUDA it checks the
targets: >= 2,000 tok/s at batch 1, >= 50x `model.generate`, >= 20,000 tok/s at batch 32 with CFG.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from vidgpt.utils import best_time


def build(args):
    from vidgpt.embedded import load_embedded_tokenizer
    from vidgpt.generate.pipeline import VidGPT
    from vidgpt.generate.tiny import tiny_lm, tiny_video_tokenizer
    from vidgpt.vocab import UnifiedVocab, VocabSpec

    if args.model:
        return VidGPT.from_pretrained(args.model), VidGPT.from_pretrained(args.model, fast=False)
    tok = load_embedded_tokenizer()
    if args.tiny:
        vocab = UnifiedVocab(VocabSpec(8, 1, 8, 8), offset=len(tok))
        lm = dict(hidden=64, layers=2, heads=4, kv_heads=2)
    else:  # SmolLM2-135M shape: hidden 576, 30 layers, 9 heads, 3 kv heads, K=14
        vocab = UnifiedVocab(VocabSpec(14, 1, 64, 64), offset=len(tok))
        lm = dict(hidden=576, layers=30, heads=9, kv_heads=3)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = tiny_lm(vocab.total_size, max_positions=8192, **lm).to(device, dtype)
    vt = tiny_video_tokenizer(vocab.spec.codebook_bits).to(device)
    return VidGPT(model, tok, vocab, vt, fast=True), VidGPT(model, tok, vocab, vt, fast=False)


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


# --- the real-shape CPU mode ------------------------------------------------------------------------


CLOCK = time.perf_counter  # --cpu-time switches to the process's own CPU seconds


def _best(fn, reps: int = 3) -> float:
    return best_time(fn, reps, CLOCK)  # CLOCK: wall or, with --cpu-time, the process's CPU seconds


def stream_rate(nbytes: int) -> float:
    """Bytes/s of a streaming read of `nbytes` on this machine (best of a few sums over a flat fp32 buffer)."""
    buf = torch.ones(nbytes // 4)
    buf.sum()
    return nbytes / _best(lambda: buf.sum(), 5)


def step_bytes(backend_model, vocab, rows: int, context: int) -> tuple[int, int]:
    """(weight bytes, KV-cache bytes) one decode step reads: layer weights + one visual group of the head + the cache."""
    cfg = backend_model.config
    layers = backend_model.model.layers
    w = sum(p.numel() * p.element_size() for layer in layers for p in layer.parameters())
    lo, hi = vocab.group_range(0)
    w += (hi - lo) * cfg.hidden_size * 4
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv = 2 * len(layers) * rows * (cfg.num_key_value_heads or cfg.num_attention_heads) * context * hd * 4
    return w, kv


@torch.inference_mode()
def step_ms(backend, vocab, rows: int, context: int, steps: int = 12, speculative: int = 0) -> float:
    """ms per decode step (sampled visual token fed back) after a `context`-long prompt of `rows` rows."""
    from vidgpt.generate.decoding import left_pad

    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 40000, (context,), generator=g).tolist() for _ in range(rows)]
    ids, mask = left_pad(prompts, 0)
    lo, hi = vocab.group_range(0)
    h = backend.prefill(ids, mask, max_len=context + 4 * steps * (speculative + 1) + 4)
    tok = backend.logits(h, lo, hi).argmax(-1) + lo

    def run():
        nonlocal h, tok
        for _ in range(steps):
            if speculative:
                feed = tok.view(-1, 1).expand(-1, speculative + 1)
                p0 = backend.position
                hs = backend.step_many(feed)
                tok = backend.logits(hs[:, -1], lo, hi).argmax(-1) + lo
                backend.truncate(p0 + 1)
            else:
                h = backend.step(tok)
                tok = backend.logits(h, lo, hi).argmax(-1) + lo

    run()  # warm-up (packing of the head, allocator)
    return _best(run, 2) / steps * 1e3


@torch.inference_mode()
def generate_step_ms(model, rows: int, context: int, steps: int = 12) -> float:
    """ms per new token of plain transformers `model.generate` (sampling, rows sequences, after a prompt)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 40000, (rows, context), generator=g)
    kw = dict(do_sample=True, top_k=0, pad_token_id=0)
    model.generate(ids, max_new_tokens=2, min_new_tokens=2, **kw)
    t1 = _best(lambda: model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw), 2)
    tn = _best(lambda: model.generate(ids, max_new_tokens=steps + 1, min_new_tokens=steps + 1, **kw), 2)
    return (tn - t1) / steps * 1e3


def real_mode(args) -> None:
    from vidgpt.generate.decoding import HFBackend
    from vidgpt.generate.fast_decode import FastLlama
    from vidgpt.generate.int8_calibration import load_maxima
    from vidgpt.generate.pipeline import VidGPT

    global CLOCK
    torch.set_num_threads(args.threads)
    if args.cpu_time:
        CLOCK = time.process_time
    t0 = time.perf_counter()
    pipe = VidGPT.from_pretrained(args.model, device="cpu")
    load_s = time.perf_counter() - t0
    model, vocab = pipe.model, pipe.vocab
    shape = pipe.latent_shape(args.frames, args.size, args.size)
    n_ids = pipe.geometry(args.frames, args.size, args.size).block_length(vocab.spec.subtokens)
    ctx_short, ctx_long = 40, 40 + n_ids
    maxima = load_maxima(args.model)  # the model's int8 calibration (None: calibrated on the first prompt)
    variants = {
        "fast: oneDNN-packed fp32 (default)": lambda: FastLlama(model),
        "fast: oneDNN-packed bf16 (approx.)": lambda: FastLlama(model, dtype="bf16"),
        "fast: x @ W, W [in,out] fp32": lambda: FastLlama(model, weights="t"),
        "fast: int8 layers, fbgemm dynamic (approx.)": lambda: FastLlama(
            model, dtype="int8", int8_maxima=maxima),
        "fast: int8 layers + int8 head (approx.)": lambda: FastLlama(
            model, dtype="int8", int8_maxima=maxima, int8_head=True),
        "fast: F.linear [out,in], static mask": lambda: FastLlama(model, weights="linear", attention="static"),
        "vidgpt plain (HF forward + DynamicCache)": lambda: HFBackend(model),
    }
    if args.variants:
        keep = [v.strip() for v in args.variants.split(",")]
        variants = {k: v for k, v in variants.items() if any(s in k for s in keep)}
    w_bytes, _ = step_bytes(model, vocab, 1, 0)
    rate = stream_rate(w_bytes)
    print(f"clock: {'process CPU time' if args.cpu_time else 'wall'}; threads {torch.get_num_threads()}; model {args.model} loaded in {load_s:.1f} s; clip {args.frames}x{args.size}x{args.size} "
          f"-> latent {shape}, {n_ids} ids; step reads {w_bytes / 1e6:.0f} MB of weights; streaming read {rate / 1e9:.1f} GB/s")
    print(f"{'variant':42s} {'B':>2s} {'cfg':>3s} {'rows':>4s} {'ms@' + str(ctx_short):>8s} {'ms@' + str(ctx_long):>9s} "
          f"{'bound@' + str(ctx_long):>10s} {'x bound':>7s} {'clip s':>7s}")
    batches = [int(b) for b in args.batches.split(",")]
    cfgs = [c == "on" for c in args.cfg.split(",")]

    def line(name, B, cfg, rows, short, long):
        wb, kvb = step_bytes(model, vocab, rows, ctx_long)
        bound = (wb + kvb) / rate * 1e3
        clip = n_ids * (short + long) / 2 / 1e3  # attention grows linearly: the mean of both ends
        print(f"{name:42s} {B:2d} {'on' if cfg else 'off':>3s} {rows:4d} {short:8.1f} {long:9.1f} {bound:10.1f} "
              f"{long / bound:7.2f} {clip:7.1f}", flush=True)

    for name, make in variants.items():
        backend = make()
        for B in batches:
            for cfg in cfgs:
                rows = 2 * B if cfg else B
                line(name, B, cfg, rows, step_ms(backend, vocab, rows, ctx_short, args.steps),
                     step_ms(backend, vocab, rows, ctx_long, args.steps))
        del backend
    for k in [int(x) for x in args.speculative.split(",") if x.strip() and int(x) > 0]:
        backend = FastLlama(model, dtype=args.dtype, int8_maxima=maxima)
        for B in batches:
            rows = 2 * B
            line(f"fast {args.dtype}, one pass over {k + 1} positions", B, True, rows,
                 step_ms(backend, vocab, rows, ctx_short, args.steps, speculative=k),
                 step_ms(backend, vocab, rows, ctx_long, args.steps, speculative=k))
    if not args.no_generate:
        for B in batches:
            for cfg in cfgs:
                rows = 2 * B if cfg else B
                line("transformers model.generate (sampling)", B, cfg, rows, generate_step_ms(model, rows, ctx_short, args.steps),
                     generate_step_ms(model, rows, ctx_long, args.steps))
    if args.full:
        for spec in [0] + [int(x) for x in args.speculative.split(",") if x.strip() and int(x) > 0]:
            p = VidGPT(model, pipe.text_tokenizer, vocab, pipe.video_tokenizer, meta=pipe.meta,
                       decode_options={"speculative": spec, "dtype": args.dtype,
                                       "int8_maxima": maxima})
            for B in batches:
                t, c = time.perf_counter(), time.process_time()
                p.generate("a red circle moving right", frames=args.frames, height=args.size, width=args.size, num=B,
                           seed=0, cfg=3.0, decode=False)
                s_tok, c_tok = time.perf_counter() - t, time.process_time() - c
                print(f"full clip, pipe.generate (tokens only), speculative={spec}, batch {B}, CFG 3: {s_tok:.1f} s wall, {c_tok:.1f} s CPU "
                      f"({p.last_stats})", flush=True)


# --- speculative decoding on a trained model ------------------------------------------------------

DEFAULT_PROMPTS = "a red circle moving right|a blue square moving left on a yellow background|a green triangle bouncing"


def spec_table(args) -> None:
    """One clip per (prompt, seed, temperature, mode, K) through pipe.generate (tokens only, no mp4):
    wall and process-CPU seconds, passes, tokens, kept drafts, and whether the tokens equal the
    one-token loop's (K=0, same prompt/seed/temperature). K=0 runs first in each group."""
    from vidgpt.generate.pipeline import VidGPT

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    pipe = VidGPT.from_pretrained(args.model, device="cpu", decode_options={"dtype": args.dtype})
    load_s = time.perf_counter() - t0
    frames, height, width = pipe.resolve_clip(args.frames, args.size, args.size)
    prompts = [x.strip() for x in args.prompts.split("|") if x.strip()]
    seeds = [int(x) for x in args.seeds.split(",")]
    temps = [float(x) for x in args.temperatures.split(",")]
    ks = [int(x) for x in args.ks.split(",")]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    cfg = args.cfg_scale
    n_ids = pipe.geometry(frames, height, width).block_length(pipe.vocab.spec.subtokens)
    print(f"load average at start {os.getloadavg()}; best of {args.reps} round-robin runs per clip")
    print(f"model {args.model} ({pipe.backend.name} backend) loaded in {load_s:.1f} s; threads {torch.get_num_threads()}; "
          f"clip {frames}x{height}x{width}, {n_ids} ids; CFG {cfg}; tokens only (no video decode)", flush=True)

    def clip(prompt, seed, temp, k, mode):
        pipe.speculative = k
        pipe.backend.speculative_mode = mode
        w, c = time.perf_counter(), time.process_time()
        out = pipe.generate(prompt, frames=frames, height=height, width=width, seed=seed, cfg=cfg,
                            temperature=temp, decode=False)
        return out.token_ids, time.perf_counter() - w, time.process_time() - c, dict(pipe.last_stats)

    clip(prompts[0], 0, 1.0, max(ks), "exact")  # warm-up: packing of the weights and heads, the allocator
    head = (f"{'prompt':34s} {'seed':>4s} {'T':>3s} {'mode':>5s} {'K':>2s} {'wall s':>7s} {'CPU s':>6s} {'passes':>6s} "
            f"{'tokens':>6s} {'kept':>5s} {'tok/pass':>8s} {'ms/pass':>7s} {'CPU vs K=0':>10s} {'same ids (no@first diff)':>8s}")
    print(head)
    rows = []
    for prompt in prompts:
        for seed in seeds:
            for temp in temps:
                configs = [(0, modes[0])] + [(k, mode) for mode in modes for k in ks
                                              if k > 0 and (mode == "exact" or temp > 0)]  # greedy: sjd is exact
                best: dict = {}
                for rep in range(args.reps):  # round robin: the machine's load drifts; keep each config's best
                    for k, mode in configs:
                        ids, wall, cpu, st = clip(prompt, seed, temp, k, mode)
                        b = best.setdefault((k, mode), dict(ids=ids, wall=wall, cpu=cpu, st=st, stable=True))
                        b["wall"], b["cpu"] = min(b["wall"], wall), min(b["cpu"], cpu)
                        b["stable"] &= ids == b["ids"]
                ref = best[configs[0]]
                for k, mode in configs:
                    b = best[(k, mode)]
                    st, ids, cpu = b["st"], b["ids"], b["cpu"]
                    m = "off" if k == 0 else st.get("mode", mode)
                    same = "ref" if k == 0 else ("yes" if ids == ref["ids"] else "no@" + str(next(
                        (i for i, (x, y) in enumerate(zip(ids[0], ref["ids"][0])) if x != y), -1)))  # first differing id
                    if not b["stable"]:
                        same += " (reps differ)"
                    rows.append(dict(prompt=prompt, seed=seed, T=temp, mode=m, K=k, wall=b["wall"], cpu=cpu,
                                     ratio=ref["cpu"] / cpu, ref_cpu=ref["cpu"], same=same,
                                     **{x: st.get(x, 0) for x in ("passes", "tokens", "accepted")}))
                    r = rows[-1]
                    print(f"{prompt[:34]:34s} {seed:4d} {temp:3g} {m:>5s} {k:2d} {r['wall']:7.1f} {cpu:6.1f} {r['passes']:6d} "
                          f"{r['tokens']:6d} {r['accepted']:5d} {r['tokens'] / max(1, r['passes']):8.2f} "
                          f"{1e3 * cpu / max(1, r['passes']):7.1f} {r['ratio']:9.2f}x {same:>8s}", flush=True)
    print(f"\nload average at the end {os.getloadavg()}")
    print("means over prompts and seeds (CPU vs K=0 = sum of K=0 CPU s / sum of this row's; > 1: faster than the one-token loop)")
    print(f"{'T':>3s} {'mode':>5s} {'K':>2s} {'clips':>5s} {'wall s':>7s} {'CPU s':>6s} {'passes':>7s} {'tok/pass':>8s} "
          f"{'kept/draft pos':>14s} {'CPU vs K=0':>10s}")
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["T"], r["mode"], r["K"]), []).append(r)
    for (temp, m, k), rs in groups.items():
        n = len(rs)
        mean = lambda key: sum(x[key] for x in rs) / n  # noqa: E731
        drafted = sum(x["passes"] - 1 for x in rs) * k  # draft positions fed (upper bound: the last windows are shorter)
        kept = sum(x["accepted"] for x in rs) / drafted if k and drafted else 0.0
        print(f"{temp:3g} {m:>5s} {k:2d} {n:5d} {mean('wall'):7.1f} {mean('cpu'):6.1f} {mean('passes'):7.0f} "
              f"{sum(x['tokens'] for x in rs) / sum(x['passes'] for x in rs):8.2f} {kept:14.3f} "
              f"{sum(x['ref_cpu'] for x in rs) / sum(x['cpu'] for x in rs):9.2f}x", flush=True)


def hint_ab(args) -> None:
    """What parent hints (vidgpt.parent_hint) cost a decode: the same model with its hints and with them left
    off (the baseline: the same backend, no wrapper), whole clips through pipe.generate (tokens only),
    round robin per prompt and seed, each side's best wall and process-CPU seconds kept. The two sides
    sample different ids (the hints change the logits), so the per-pass CPU time is the like-for-like figure."""
    from vidgpt.errors import ConfigError
    from vidgpt.generate.pipeline import VidGPT

    torch.set_num_threads(args.threads)
    on = VidGPT.from_pretrained(args.model, device="cpu", decode_options={"dtype": args.dtype})
    if on.parent_hint is None:
        raise ConfigError(f"{args.model}: the model has no parent hints (parent_hint.safetensors); nothing to compare")
    off = VidGPT.from_pretrained(args.model, device="cpu", decode_options={"dtype": args.dtype, "parent_hint": None})
    frames, height, width = on.resolve_clip(args.frames, args.size, args.size)
    prompts = [x.strip() for x in args.prompts.split("|") if x.strip()]
    seeds = [int(x) for x in args.seeds.split(",")]
    sides = {"on": on, "off": off}
    print(f"load average at start {os.getloadavg()}; threads {torch.get_num_threads()}; clip {frames}x{height}x{width}; "
          f"CFG {args.cfg_scale}; best of {args.reps} round-robin runs per clip; tokens only (no video decode)", flush=True)

    def clip(pipe, prompt, seed):
        w, c = time.perf_counter(), time.process_time()
        pipe.generate(prompt, frames=frames, height=height, width=width, seed=seed, cfg=args.cfg_scale, decode=False)
        st = pipe.last_stats
        return time.perf_counter() - w, time.process_time() - c, (st.get("passes") or 0) + (st.get("fine_passes") or 0)

    for pipe in sides.values():  # warm-up: weight packing, the allocator
        clip(pipe, prompts[0], seeds[0])
    print(f"{'prompt':34s} {'seed':>4s} {'hints':>5s} {'wall s':>7s} {'CPU s':>6s} {'passes':>6s} {'ms/pass':>7s}")
    totals = {k: [0.0, 0] for k in sides}
    for prompt in prompts:
        for seed in seeds:
            best = {}
            for _ in range(args.reps):
                for name, pipe in sides.items():
                    wall, cpu, passes = clip(pipe, prompt, seed)
                    b = best.setdefault(name, [wall, cpu, passes])
                    b[0], b[1] = min(b[0], wall), min(b[1], cpu)
            for name, (wall, cpu, passes) in best.items():
                totals[name][0] += cpu
                totals[name][1] += passes
                print(f"{prompt[:34]:34s} {seed:4d} {name:>5s} {wall:7.1f} {cpu:6.1f} {passes:6d} "
                      f"{1e3 * cpu / max(1, passes):7.1f}", flush=True)
    per = {k: 1e3 * c / max(1, n) for k, (c, n) in totals.items()}
    print(f"load average at the end {os.getloadavg()}")
    print(f"CPU ms a pass: hints on {per['on']:.1f}, off {per['off']:.1f} (on / off {per['on'] / per['off']:.3f}); "
          f"CPU s a clip: on {totals['on'][0] / (len(prompts) * len(seeds)):.1f}, "
          f"off {totals['off'][0] / (len(prompts) * len(seeds)):.1f}")


@torch.inference_mode()
def spec_diff(args) -> None:
    """Where exact-mode speculative ids first differ from the one-token loop's, and why: the uniform's
    distance from the CDF boundary between the two ids, against how much the logits of that position
    differ between a one-position step and a (K+1)-position pass (float rounding of the kernels)."""
    from vidgpt.generate.constraints import block_plan
    from vidgpt.generate.decoding import left_pad
    from vidgpt.generate.pipeline import VidGPT
    from vidgpt.generate.sampling import PositionalNoise, apply_cfg, make_generator
    from vidgpt.layout import Sample, Turn

    torch.set_num_threads(args.threads)
    pipe = VidGPT.from_pretrained(args.model, device="cpu")
    prompt = args.prompts.split("|")[0].strip()
    seed = int(args.seeds.split(",")[0])
    k = next(int(x) for x in args.ks.split(",") if int(x) > 0)
    cfg = args.cfg_scale
    kw = dict(seed=seed, cfg=cfg, temperature=1.0, decode=False)
    pipe.speculative = 0
    ref = pipe.generate(prompt, **kw).token_ids[0]
    pipe.speculative = k
    got = pipe.generate(prompt, **kw).token_ids[0]
    diff = [i for i, (a, b) in enumerate(zip(ref, got)) if a != b]
    print(f"{prompt!r} seed {seed} CFG {cfg} T 1, exact K={k}: {len(diff)} of {len(ref)} ids differ, first at {diff[:1]}")
    if not diff:
        return
    i, be = diff[0], pipe.backend
    rows = [pipe.layout.prompt_ids(Sample([Turn("user", [prompt])])), pipe.layout.prompt_ids(Sample([Turn("user", [""])]))]
    ids, mask = left_pad(rows, pipe.pad_id)
    plan = block_plan(pipe.vocab, pipe.latent_shape(*pipe.default_clip), pipe.sections())
    state = be.prefill(ids, mask, max_len=ids.shape[1] + len(plan) + k + 4)
    for t in ref[:i]:  # the one-token loop's prefix, one position a step
        state = be.step(torch.tensor([t, t]))
    lo, hi = plan[i]

    def guided_cdf(h):
        g = apply_cfg(be.logits(h, lo, hi), cfg, 1)
        return g, g.softmax(-1).double().cumsum(-1)[0]

    g1, cdf = guided_cdf(state)
    u = float(PositionalNoise(make_generator(seed))(i, 1)[0])
    a, b = ref[i] - lo, got[i] - lo
    edge = float(cdf[min(a, b)])  # the boundary between two neighbouring ids
    print(f"position {i}: one-token id {a} (p = {float(cdf[a] - (cdf[a - 1] if a else 0)):.2e}), speculative id {b}; "
          f"u = {u:.9f}, the boundary between them at {edge:.9f}: distance {abs(u * float(cdf[-1]) - edge):.1e}")
    be.truncate(be.position - 1)  # the same position inside a (k+1)-position pass, as jacobi computes it
    g2, cdf2 = guided_cdf(be.step_many(torch.tensor([[ref[i - 1]] + [ref[i]] * k] * 2))[:, 0])
    print(f"same position from a {k + 1}-position pass: max |guided logit diff| {float((g1 - g2).abs().max()):.1e}, "
          f"max |CDF diff| {float((cdf - cdf2).abs().max()):.1e}")


def kernel_mode(args) -> None:
    """ms to multiply the 120 layer matrices of SmolLM2-135M (random, 425 MB fp32) by R rows, per kernel."""
    import torch.nn.functional as F

    global CLOCK
    torch.set_num_threads(args.threads)
    CLOCK = time.process_time if args.cpu_time else time.perf_counter
    D, I, L = 576, 1536, 30
    shapes = [(D, 960), (D, D), (D, 2 * I), (I, D)]  # (in, out): q|k|v, o, gate|up, down
    nbytes = sum(i * o for i, o in shapes) * L * 4
    torch.manual_seed(0)
    oi = [torch.randn(o, i) * 0.02 for _ in range(L) for i, o in shapes]
    io = [w.t().contiguous() for w in oi]
    kernels = {"F.linear, W [out,in]": lambda xs: [F.linear(xs[w.shape[1]], w) for w in oi],
               "x @ W, W [in,out]": lambda xs: [xs[w.shape[0]] @ w for w in io]}
    if torch.backends.mkldnn.is_available():
        for name, dt in (("oneDNN-packed fp32", torch.float32), ("oneDNN-packed bf16", torch.bfloat16)):
            packed = [torch.ops.mkldnn._reorder_linear_weight(w.to(dt), 2) for w in oi]
            kernels[name] = (lambda packed, dt: lambda xs: [
                torch.ops.mkldnn._linear_pointwise(xs[w.shape[1]].to(dt), p, None, "none", [], "")
                for p, w in zip(packed, oi)])(packed, dt)
    q8 = []
    for w in oi:
        sc = w.abs().amax(1) / 127
        q8.append(((w / sc[:, None]).round().to(torch.int8), sc))
    kernels["int8 _weight_int8pack_mm"] = lambda xs: [torch._weight_int8pack_mm(xs[w.shape[1]], w, sc) for w, sc in q8]
    rows = [int(r) for r in args.batches.split(",")]
    print(f"clock: {'process CPU time' if args.cpu_time else 'wall'}; threads {torch.get_num_threads()}; "
          f"{nbytes / 1e6:.0f} MB of fp32 weights; streaming read {stream_rate(nbytes) / 1e9:.1f} GB/s")
    print(f"{'kernel':28s} " + " ".join(f"{'R=' + str(r):>8s}" for r in rows) + "   (ms per pass over all matrices)")
    for name, fn in kernels.items():
        cells = []
        for r in rows:
            xs = {i: torch.randn(r, i) for i, _ in shapes}
            cells.append(_best(lambda: fn(xs), 3) * 1e3)
        print(f"{name:28s} " + " ".join(f"{c:8.1f}" for c in cells), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny random model, small clip (quick CPU run)")
    ap.add_argument("--model", help="a vidgpt model directory instead of a random model")
    ap.add_argument("--batch", type=int, default=None, help="batch for the CFG row (default 32 on GPU, 4 on CPU)")
    ap.add_argument("--real", action="store_true", help="real-shape CPU mode: per-step ms against the bandwidth bound (needs --model)")
    ap.add_argument("--threads", type=int, default=1, help="--real: torch threads (default 1)")
    ap.add_argument("--batches", default="1,2,4", help="--real: batches to time (default 1,2,4)")
    ap.add_argument("--cfg", default="off,on", help="--real: off,on")
    ap.add_argument("--frames", type=int, default=None, help="clip frames (default 17; --spec-table: the model's clip)")
    ap.add_argument("--size", type=int, default=None, help="clip side (default 128; --spec-table: the model's clip)")
    ap.add_argument("--steps", type=int, default=12, help="--real: decode steps per timing")
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "int8"),
                    help="--real and --spec-table: decoder weights (int8 smoothed on the model's maxima)")
    ap.add_argument("--variants", default="", help="--real: comma-separated substrings of the variant names to run")
    ap.add_argument("--speculative", default="4", help="--real: draft window sizes to time as one pass (default 4)")
    ap.add_argument("--no-generate", action="store_true", help="--real: skip transformers model.generate")
    ap.add_argument("--full", action="store_true", help="--real: also time whole clips through pipe.generate")
    ap.add_argument("--cpu-time", action="store_true",
                    help="--real: time steps in the process's CPU seconds (a shared core: wall time counts the other jobs)")
    ap.add_argument("--spec-table", action="store_true",
                    help="speculative decoding on a trained model (--model): per clip passes, kept drafts, wall and CPU s "
                         "for each of --ks / --modes / --temperatures against the one-token loop in the same run")
    ap.add_argument("--spec-diff", action="store_true",
                    help="why exact-mode speculative ids differ from the one-token loop's (first prompt/seed, first K > 0)")
    ap.add_argument("--prompts", default=DEFAULT_PROMPTS, help="--spec-table: prompts separated by |")
    ap.add_argument("--seeds", default="0", help="--spec-table: seeds (comma-separated)")
    ap.add_argument("--temperatures", default="1,0", help="--spec-table: sampling temperatures (0 = greedy)")
    ap.add_argument("--ks", default="0,2,4,8", help="--spec-table: drafts per pass (0 = the one-token loop)")
    ap.add_argument("--modes", default="exact", help="--spec-table: exact,sjd (jacobi.py)")
    ap.add_argument("--reps", type=int, default=1, help="--spec-table: round-robin repeats per group (best CPU/wall kept)")
    ap.add_argument("--cfg-scale", type=float, default=3.0, help="--spec-table: guidance scale (default 3, the CLI's)")
    ap.add_argument("--hint-ab", action="store_true",
                    help="parent hints on vs off on one model (--model with parent_hint.safetensors): CPU ms a pass")
    ap.add_argument("--kernels", action="store_true",
                    help="matrix-kernel table: the 120 SmolLM2 layer matrices times R rows (--batches = the R values)")
    args = ap.parse_args()
    if args.kernels:
        kernel_mode(args)
        return
    if args.spec_diff:
        if not args.model:
            ap.error("--spec-diff needs --model DIR")
        spec_diff(args)
        return
    if args.hint_ab:
        if not args.model:
            ap.error("--hint-ab needs --model DIR (a model with parent hints, e.g. model)")
        hint_ab(args)
        return
    if args.spec_table:
        if not args.model:
            ap.error("--spec-table needs --model DIR (a trained model, e.g. model)")
        spec_table(args)
        return
    if args.frames is None:
        args.frames = 17
    if args.size is None:
        args.size = 128
    if args.real:
        if not args.model:
            ap.error("--real needs --model DIR (e.g. runs/lm_untrained from `vidgpt lm extend`)")
        real_mode(args)
        return
    fast, plain = build(args)
    gpu = torch.cuda.is_available()
    size = dict(frames=5, height=32, width=32) if args.tiny else dict(frames=17, height=128, width=128)
    batch = args.batch or (32 if gpu else 4)
    kw = dict(decode=False, temperature=1.0, seed=0)
    fast.generate("warm up", **size, cfg=1.0, **kw)  # CUDA graph capture, allocator warm-up
    fast.generate("warm up", **size, num=batch, cfg=3.0, **kw)
    rows = []
    out, t = timed(lambda: fast.generate("a red circle moves right", **size, cfg=1.0, **kw))
    ntok = len(out.token_ids[0])
    rows.append(("vidgpt fast, batch 1", ntok, t))
    out, t = timed(lambda: plain.generate("a red circle moves right", **size, cfg=1.0, **kw))
    rows.append(("vidgpt plain (HF forward + DynamicCache), batch 1", ntok, t))
    ids = torch.tensor([out.prompt_ids], device=fast.device)
    _, t = timed(lambda: plain.model.generate(ids, max_new_tokens=ntok, min_new_tokens=ntok, do_sample=True, top_k=0))
    rows.append(("transformers model.generate, batch 1 (unconstrained)", ntok, t))
    out, t = timed(lambda: fast.generate("a red circle moves right", **size, num=batch, cfg=3.0, **kw))
    rows.append((f"vidgpt fast, batch {batch} + CFG ({2 * batch} rows)", ntok * batch, t))
    print(f"device: {torch.cuda.get_device_name() if gpu else 'cpu'}; clip {size}, {ntok} tokens per sample")
    print(f"{'path':58s} {'tokens':>8s} {'seconds':>9s} {'tok/s':>10s}")
    speeds = {}
    for name, n, t in rows:
        speeds[name] = n / t
        print(f"{name:58s} {n:8d} {t:9.3f} {n / t:10.0f}")
    s1, sp, sg, sb = list(speeds.values())
    print(f"fast / plain: {s1 / sp:.1f}x, fast / model.generate: {s1 / sg:.1f}x")
    if gpu and not args.tiny:
        checks = [("batch-1 >= 2,000 tok/s", s1 >= 2000), (">= 50x model.generate", s1 / sg >= 50),
                  ("batch-32 CFG >= 20,000 tok/s", sb >= 20000 or batch != 32)]
        for name, ok in checks:
            print(f"target {name}: {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    from vidgpt.errors import run_tool

    run_tool(main, "bench_generate.py")
