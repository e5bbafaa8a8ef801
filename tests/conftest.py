"""Shared pytest fixtures (keep generic: small media files, frame generators, one torch thread, tiny pipelines)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest


def smooth_frames(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """uint8 [t, h, w, 3] smooth moving colour gradients (compress well, so lossy codecs stay close)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    out = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        r = 128 + 100 * np.sin(2 * np.pi * (x + 2 * i) / w + phase[0])
        g = 128 + 100 * np.cos(2 * np.pi * (y - i) / h + phase[1])
        b = 128 + 60 * np.sin(2 * np.pi * (x + y) / (w + h) + phase[2] + 0.3 * i)
        out[i] = np.stack([r, g, b], axis=-1).clip(0, 255).astype(np.uint8)
    return out


@pytest.fixture(scope="session")
def load_tool():
    """A loader of tools/NAME.py as a module (the tools are scripts, not a package): `load_tool("learning_curve")`."""
    import importlib.util

    tools = Path(__file__).resolve().parents[1] / "tools"

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, tools / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load


@pytest.fixture
def one_thread():
    """Run the test on one torch thread and restore the count after (2 shared cores: tiny models only contend).

    Use per module with `pytestmark = pytest.mark.usefixtures("one_thread")`; module-scoped fixtures
    are built before it, as with an autouse fixture.
    """
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def text_tok():
    """The embedded SmolLM2 text tokenizer, loaded once per session (about 4 s); tests must not change it."""
    from vidgpt.embedded import load_embedded_tokenizer

    return load_embedded_tokenizer()


@pytest.fixture(scope="module")
def pipe(text_tok):
    """A tiny random VidGPT (6-bit codes, 1024 positions) over `text_tok`, built once per module."""
    from vidgpt.generate.tiny import tiny_pipeline

    return tiny_pipeline(text_tok, bits=6, max_positions=1024)


@pytest.fixture
def make_frames():
    """make_frames(t, h, w, seed=0) -> uint8 [t, h, w, 3] smooth moving gradients."""
    return smooth_frames


@pytest.fixture(scope="session")
def media_files(tmp_path_factory) -> SimpleNamespace:
    """A folder of small valid and bad media files, written once per test session.

    Valid: clip.mp4 (17 frames 48x64 at 8 fps, `.clip_frames` holds what was written), anim.gif
    (9 frames 32x40), still.png (40x56), frames/ (frame1..frame12.png, frame i filled with 10*i).
    Bad: missing.mp4 (does not exist), empty.mp4 (0 bytes), text.mp4 (text), truncated.mp4 (first
    half of a 24-frame mp4), empty_dir/ (no frames), notes.txt.
    """
    from PIL import Image

    from vidgpt.data.video_io import write_video

    d = tmp_path_factory.mktemp("media")
    ns = SimpleNamespace(dir=d)

    ns.clip_frames = smooth_frames(17, 48, 64, seed=1)
    ns.clip = write_video(d / "clip.mp4", ns.clip_frames, fps=8)
    ns.gif_frames = smooth_frames(9, 32, 40, seed=2)
    ns.gif = write_video(d / "anim.gif", ns.gif_frames, fps=8)
    ns.png_frame = smooth_frames(1, 40, 56, seed=3)[0]
    ns.png = d / "still.png"
    Image.fromarray(ns.png_frame).save(ns.png)

    ns.frames_dir = d / "frames"
    ns.frames_dir.mkdir()
    for i in range(1, 13):
        Image.fromarray(np.full((16, 24, 3), 10 * i, np.uint8)).save(ns.frames_dir / f"frame{i}.png")

    ns.missing = d / "missing.mp4"
    ns.empty = d / "empty.mp4"
    ns.empty.write_bytes(b"")
    ns.text = d / "text.mp4"
    ns.text.write_text("this is not a video\n" * 20)
    noise = np.random.default_rng(4).integers(0, 256, (24, 64, 96, 3), dtype=np.uint8)
    full = write_video(d / "noise_full.mp4", noise, fps=8).read_bytes()
    (d / "noise_full.mp4").unlink()
    ns.truncated = d / "truncated.mp4"
    ns.truncated.write_bytes(full[: len(full) // 2])
    ns.empty_dir = d / "empty_dir"
    ns.empty_dir.mkdir()
    ns.notes = d / "notes.txt"
    ns.notes.write_text("not media")
    ns.bad = [ns.missing, ns.empty, ns.text, ns.truncated, ns.empty_dir]
    return ns


@pytest.fixture
def killed_lm_run(monkeypatch):
    """run(cfg, out, kill_step): train_lm that dies right after writing its step-`kill_step` checkpoint
    (as a kill would), leaving `out` for a `resume=True` run."""
    from vidgpt.train import lm_trainer

    class Killed(Exception):
        pass

    real_save = lm_trainer.save_checkpoint

    def run(cfg, out, kill_step: int) -> None:
        def save_then_die(accelerator, out_dir, step, state, keep):
            path = real_save(accelerator, out_dir, step, state, keep)
            if step == kill_step:
                raise Killed()
            return path

        monkeypatch.setattr(lm_trainer, "save_checkpoint", save_then_die)
        try:
            with pytest.raises(Killed):
                lm_trainer.train_lm(cfg, out, progress=False)
        finally:
            monkeypatch.setattr(lm_trainer, "save_checkpoint", real_save)

    return run


@pytest.fixture(scope="session")
def video_tok_dir(tmp_path_factory):
    """A tiny random video tokenizer (K=6) saved to a directory, for extend -> generate tests."""
    import torch

    from vidgpt.tokenizer import TokenizerConfig, VideoTokenizer

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("vt") / "tok"
    VideoTokenizer(TokenizerConfig(codebook_bits=6, channels=8, norm_groups=4)).save_pretrained(d)
    return d


@pytest.fixture
def tiny_shards_and_lm(tmp_path):
    """tiny_shards_and_lm(frames) -> (shard folder of 6 world clips at frames x 32 x 32 coded by a random K = 6
    tokenizer, with blueprints and object masks; a tiny random LM over those codes), under tmp_path/"s"."""
    import torch

    from vidgpt.backbone import extend
    from vidgpt.data.lm_dataset import BuildLMConfig, build_lm_shards
    from vidgpt.tokenizer import TokenizerConfig, VideoTokenizer

    def make(frames: int):
        torch.manual_seed(0)
        tok = VideoTokenizer(TokenizerConfig(codebook_bits=6, channels=8, norm_groups=4)).eval()
        build_lm_shards(tmp_path / "s", tok, BuildLMConfig(num=6, frames=frames, height=32, width=32, batch_size=8,
                                                           records_per_chunk=4), progress=False)
        lm = extend("tiny-llama", None, codebook_bits=6, tiny={"hidden_size": 32, "layers": 1, "heads": 2, "kv_heads": 1})
        return tmp_path / "s", lm

    return make


@pytest.fixture
def decode_calls(monkeypatch):
    """Every call the pipeline makes to `constrained_decode` from now on, as (args, kwargs), in order; the calls
    still run. For tests of what each pass of a decode is given (prompts, negatives, scales, forced ids)."""
    from vidgpt.generate import pipeline as pl

    calls = []
    real = pl.constrained_decode

    def record(*args, **kw):
        calls.append((args, kw))
        return real(*args, **kw)

    monkeypatch.setattr(pl, "constrained_decode", record)
    return calls
