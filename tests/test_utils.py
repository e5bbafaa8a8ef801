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
