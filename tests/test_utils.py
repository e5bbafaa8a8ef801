"""vidgpt.utils: small helpers shared by the package."""


def test_cpu_native_bf16_reads_the_flags_and_the_override(monkeypatch):
    from vidgpt.utils import cpu_has_native_bf16

    monkeypatch.delenv("VIDGPT_CPU_BF16", raising=False)
    avx2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
    assert not cpu_has_native_bf16(avx2)
    assert cpu_has_native_bf16(avx2.replace("avx2", "avx2 avx512f avx512_bf16"))
    assert cpu_has_native_bf16(avx2.replace("avx2", "avx2 amx_bf16"))
    assert not cpu_has_native_bf16(avx2.replace("avx2", "avx2 avx512f"))  # AVX-512 without bf16: emulated
    monkeypatch.setenv("VIDGPT_CPU_BF16", "1")
    assert cpu_has_native_bf16(avx2)
    monkeypatch.setenv("VIDGPT_CPU_BF16", "0")
    assert not cpu_has_native_bf16(avx2.replace("avx2", "avx512_bf16"))


def test_best_time_is_the_fastest_of_the_runs():
    from vidgpt.utils import best_time

    ticks = iter([0.0, 5.0, 10.0, 12.0, 20.0, 24.0])  # runs of 5, 2 and 4 seconds on a fake clock
    calls = []
    assert best_time(lambda: calls.append(1), reps=3, clock=lambda: next(ticks)) == 2.0
    assert len(calls) == 3


def test_quiet_hub_progress_silences_transformers_bars_and_restores_them(capsys):
    from transformers import modeling_gguf_pytorch_utils as gguf_mod
    from transformers.utils import logging as hf_logging

    from vidgpt.utils import quiet_hub_progress

    before = gguf_mod.tqdm
    assert hf_logging.is_progress_bar_enabled()
    with quiet_hub_progress():
        assert not hf_logging.is_progress_bar_enabled()
        for _ in gguf_mod.tqdm(range(3), desc="GGUF-BAR"):  # what the GGUF reader does
            pass
        for _ in hf_logging.tqdm(range(3), desc="HF-BAR"):  # what save_pretrained / from_pretrained do
            pass
    err = capsys.readouterr().err
    assert "GGUF-BAR" not in err and "HF-BAR" not in err
    assert gguf_mod.tqdm is before and hf_logging.is_progress_bar_enabled()
    for _ in gguf_mod.tqdm(range(3), desc="GGUF-BAR", file=__import__("sys").stderr):
        pass
    assert "GGUF-BAR" in capsys.readouterr().err  # restored: the same bar shows outside the block
