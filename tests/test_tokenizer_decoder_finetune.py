"""Decoder-only fine-tunes (`train.train_parts: decoder`) and the encoder fingerprint that keeps codes valid."""

import json

import numpy as np
import pytest
import torch

from vidgpt.config import load_config
from vidgpt.errors import DataError, TrainingError
from vidgpt.tokenizer import TokenizerConfig, VideoTokenizer
from vidgpt.tokenizer.codes_file import load_codes, save_codes
from vidgpt.train.tokenizer_trainer import TokenizerTrainConfig, TokenizerTrainer

TINY = dict(codebook_bits=10, channels=8, norm_groups=4)
QUIET = dict(progress=False, log=lambda *a: None)


def clips(n=3, T=5, H=32, W=32, seed=0) -> torch.Tensor:
    """Smooth moving blobs [n, 3, T, H, W] in [-1, 1] (structured enough for codes to vary)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(T).view(T, 1, 1).float()
    y = torch.linspace(-1, 1, H).view(1, H, 1)
    x = torch.linspace(-1, 1, W).view(1, 1, W)
    out = []
    for _ in range(n):
        a = torch.rand(6, generator=g) * 4 + 1
        r = torch.sin(a[0] * x + 0.4 * t + a[1] * y)
        gg = torch.cos(a[2] * y - 0.3 * t) * x
        b = torch.exp(-((x - 0.1 * t) ** 2 + (y - 0.2) ** 2) * a[3]) * 2 - 1
        out.append(torch.stack([r, gg, b]) * 0.9)
    return torch.stack(out)


def perturbed(tok: VideoTokenizer, part: str) -> VideoTokenizer:
    """A copy of tok with the weights of one part (encoder or decoder) nudged."""
    other = VideoTokenizer(tok.config)
    other.load_state_dict(tok.state_dict())
    other.code_compatible = list(tok.code_compatible)
    with torch.no_grad():
        for p in getattr(other, part).parameters():
            p.add_(0.05 * torch.randn_like(p))
    return other.eval()


def test_encoder_fingerprint_follows_the_encoder_only():
    torch.manual_seed(0)
    tok = VideoTokenizer(TokenizerConfig(**TINY)).eval()
    dec, enc = perturbed(tok, "decoder"), perturbed(tok, "encoder")
    assert dec.encoder_fingerprint() == tok.encoder_fingerprint() and dec.weights_fingerprint() != tok.weights_fingerprint()
    assert enc.encoder_fingerprint() != tok.encoder_fingerprint()
    x = clips()
    assert torch.equal(dec.encode(x), tok.encode(x))  # same encoder fingerprint, same codes
    assert tok.accepts_codes_of(tok.encoder_fingerprint()) and not tok.accepts_codes_of(enc.encoder_fingerprint())
    # metadata older than the encoder fingerprint: the weights fingerprint, own or of a listed parent
    assert tok.accepts_codes_of(weights_fingerprint=tok.weights_fingerprint())
    assert not dec.accepts_codes_of(weights_fingerprint=tok.weights_fingerprint())
    dec.code_compatible = [tok.weights_fingerprint()]
    assert dec.accepts_codes_of(weights_fingerprint=tok.weights_fingerprint())
    assert not tok.accepts_codes_of()


def test_code_compatible_survives_save_and_load(tmp_path):
    torch.manual_seed(0)
    tok = VideoTokenizer(TokenizerConfig(**TINY))
    tok.code_compatible = ["0123456789abcdef"]
    again = VideoTokenizer.from_pretrained(tok.save_pretrained(tmp_path / "t"))
    assert again.code_compatible == ["0123456789abcdef"]
    assert again.encoder_fingerprint() == tok.encoder_fingerprint()
    plain = VideoTokenizer(TokenizerConfig(**TINY))
    assert VideoTokenizer.from_pretrained(plain.save_pretrained(tmp_path / "p")).code_compatible == []


def test_codes_files_stay_valid_across_a_decoder_change(tmp_path, capsys):
    torch.manual_seed(0)
    tok = VideoTokenizer(TokenizerConfig(**TINY)).eval()
    codes = tok.encode(clips(1))
    path = save_codes(tmp_path / "c.npz", codes, tok)
    dec, enc = perturbed(tok, "decoder"), perturbed(tok, "encoder")
    assert torch.equal(load_codes(path, dec), codes)
    assert "warning" not in capsys.readouterr().err
    load_codes(path, enc)
    assert "codes were made by tokenizer encoder" in capsys.readouterr().err
    # a file written before the encoder fingerprint existed (only the weights fingerprint)
    with np.load(path) as z:
        old = {k: z[k] for k in z.files if k != "encoder_fingerprint"}
    np.savez(tmp_path / "old.npz", **old)
    load_codes(tmp_path / "old.npz", tok)
    assert "warning" not in capsys.readouterr().err
    load_codes(tmp_path / "old.npz", dec)
    assert "codes were made by tokenizer weights" in capsys.readouterr().err
    dec.code_compatible = [tok.weights_fingerprint()]  # what a decoder-only fine-tune of tok records
    load_codes(tmp_path / "old.npz", dec)
    assert "warning" not in capsys.readouterr().err


def test_ingest_resumes_with_a_decoder_fine_tune_and_old_progress_files(tmp_path):
    from PIL import Image

    from vidgpt.data.ingest import IngestConfig, gather_items, ingest
    from vidgpt.data.shards import progress_name

    rng = np.random.default_rng(0)
    media = tmp_path / "media"
    media.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(media / f"img{i}.png")
    items = gather_items([media])
    cfg = IngestConfig(buckets="1x32x32", records_per_chunk=1, batch_size=1)
    torch.manual_seed(0)
    tok = VideoTokenizer(TokenizerConfig(**TINY)).eval()

    class Crash(Exception):
        pass

    def crash(path):
        raise Crash(path)

    out = tmp_path / "shards"
    with pytest.raises(Crash):
        ingest(items, out, tok, cfg, progress=False, on_chunk=crash)
    with pytest.raises(DataError, match="tokenizer"):  # another encoder: its codes must not mix in
        ingest(items, out, perturbed(tok, "encoder"), cfg, progress=False)
    done = ingest(items, out, perturbed(tok, "decoder"), cfg, progress=False)  # same codes: resumes
    assert done.files_already_done == 1 and done.records == 2
    # a slice started before the encoder fingerprint: its progress names the weights fingerprint
    old = tmp_path / "old"
    with pytest.raises(Crash):
        ingest(items, old, tok, cfg, progress=False, on_chunk=crash)
    prog = old / progress_name(0)
    state = json.loads(prog.read_text())
    state["info"]["tokenizer"] = tok.weights_fingerprint()
    prog.write_text(json.dumps(state))
    child = perturbed(tok, "decoder")
    with pytest.raises(DataError):  # nothing says that child shares tok's encoder
        ingest(items, old, child, cfg, progress=False)
    child.code_compatible = [tok.weights_fingerprint()]
    assert ingest(items, old, child, cfg, progress=False).records == 2


def tiny_cfg(tmp_path, *overrides):
    data = tmp_path / "data"
    if not data.exists():
        data.mkdir()
        x = ((clips(2, T=9) + 1) * 127.5).round().clamp(0, 255).byte()
        for i, c in enumerate(x):
            np.save(data / f"clip{i}.npy", c.permute(1, 2, 3, 0).numpy())
    base = [f"data.paths=[{data}]", "data.synthetic=false", "data.eval_clips=2", "data.image_only_steps=0",
            "data.image_prob=0.0", "train.device=cpu", "train.log_every=5", "train.eval_every=1000", "train.ckpt_every=1000"]
    return load_config(TokenizerTrainConfig, "configs/tokenizer/tiny.yaml", base + list(overrides))


def test_decoder_only_fine_tune_keeps_codes_and_improves_the_decoder(tmp_path):
    torch.manual_seed(0)
    start = VideoTokenizer(tiny_cfg(tmp_path).model).save_pretrained(tmp_path / "start")
    before = VideoTokenizer.from_pretrained(start)
    cfg = tiny_cfg(tmp_path, "train.train_parts=decoder", f"train.init_from={start}", "train.steps=20", "train.lr=3e-3",
                   "train.warmup_steps=2", "train.l2_weight=1.0", "train.grad_weight=0.2")
    tr = TokenizerTrainer(cfg, tmp_path / "run", **QUIET)
    n_dec = sum(p.numel() for p in tr.model.decoder.parameters())
    assert sum(p.numel() for p in tr.trained_params) == n_dec  # only the decoder is in the optimizer
    psnr0 = tr.evaluate()["eval_psnr"]
    tr.run()
    assert tr.evaluate()["eval_psnr"] > psnr0 + 2.0  # the reconstruction improved (measured: +4.6 dB)
    after = VideoTokenizer.from_pretrained(tmp_path / "run")
    x = torch.cat([clips(3, T=tr.eval_set.shape[2], seed=5), tr.eval_set])
    assert torch.equal(after.encode(x), before.encode(x))  # bit for bit the same codes
    assert all(torch.equal(v, after.state_dict()[k]) for k, v in before.state_dict().items() if not k.startswith("decoder."))
    assert any(not torch.equal(v, after.state_dict()[k]) for k, v in before.state_dict().items() if k.startswith("decoder."))
    assert after.encoder_fingerprint() == before.encoder_fingerprint()
    assert after.code_compatible == [before.weights_fingerprint()]  # old codes files of `start` stay valid
    logs = [json.loads(ln) for ln in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert logs[-1]["rec"] < logs[0]["rec"] and "commit" not in logs[0]  # no LFQ terms in a decoder-only run


def test_decoder_only_with_the_discriminator_and_resume_rules(tmp_path):
    torch.manual_seed(0)
    start = VideoTokenizer(tiny_cfg(tmp_path).model).save_pretrained(tmp_path / "start")
    common = ["train.train_parts=decoder", f"train.init_from={start}", "train.disc_start_step=0", "train.disc_channels=8",
              "train.ckpt_every=2", "train.log_every=1"]
    tr = TokenizerTrainer(tiny_cfg(tmp_path, *common, "train.steps=12", "train.stop_at=2", "train.warmup_steps=1"), tmp_path / "run", **QUIET)
    enc0 = {k: v.clone() for k, v in tr.model.encoder.state_dict().items()}
    last = tr.run()
    assert tr.step == 2 and np.isfinite(last["d"]) and np.isfinite(last["g"])
    assert all(torch.equal(v, tr.model.encoder.state_dict()[k]) for k, v in enc0.items())
    # stop_at ends the piece; the schedule is still the 12-step one, so a resume continues it unchanged
    resumed = TokenizerTrainer(tiny_cfg(tmp_path, *common, "train.steps=12", "train.stop_at=3", "train.warmup_steps=1"), tmp_path / "run", resume=True, **QUIET)
    assert resumed.step == 2 and resumed.model.code_compatible == tr.model.code_compatible
    assert resumed.sched.get_last_lr()[0] == pytest.approx(tr.sched.get_last_lr()[0]) and tr.sched.get_last_lr()[0] > 0.9 * tr.cfg.train.lr
    resumed.run()
    assert resumed.step == 3 and torch.load(tmp_path / "run" / "checkpoint" / "state.pt", weights_only=False)["step"] == 3
    with pytest.raises(TrainingError, match="train_parts"):
        TokenizerTrainer(tiny_cfg(tmp_path, "train.disc_start_step=0", "train.disc_channels=8"), tmp_path / "run", resume=True, **QUIET)
    with pytest.raises(TrainingError, match="train_parts must be"):
        TokenizerTrainer(tiny_cfg(tmp_path, "train.train_parts=encoder"), tmp_path / "x", **QUIET)


def test_eval_tool_judges_one_object_scenes_alone(tmp_path):
    """tools/eval_tokenizer.py --no-sets --no-blueprint --judge-frames --judge-max-objects (the fine-tunes' yardstick)."""
    import os
    import subprocess
    import sys

    torch.manual_seed(0)
    d = VideoTokenizer(TokenizerConfig(**TINY)).save_pretrained(tmp_path / "tok")
    out = tmp_path / "eval"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "tools/eval_tokenizer.py", "--tokenizer", str(d), "--out", str(out), "--no-sets", "--no-blueprint",
                    "--judge", "3", "--judge-frames", "9", "--judge-max-objects", "1", "--sizes", "64"], check=True, env=env,
                   capture_output=True, timeout=120)
    res = json.loads((out / "results.json").read_text())
    assert res["sets"] == [] and len(res["roundtrip_judge"]) == 1
    j = res["roundtrip_judge"][0]
    assert j["mode"] == "fine" and j["clip"] == "9x64x64" and j["clips"] == 3 and j["objects"] == 3  # one object each
    assert j["original_pass_rate"] == 1.0 and "at most 1 object" in (out / "table.md").read_text()


V1_ENCODER = "697731af0e93934c"  # encoder fingerprint of the shipped tokenizer v1 (and of its decoder fine-tunes)
V1_WEIGHTS = "d65a07297ae908ab"  # v1's weights fingerprint, what codes files and shards made with v1 name


V2_ENCODER = "cadaee765d8579bd"  # encoder fingerprint of tokenizer v2 (bf16 weights as committed; checkpoints/tokenizer_v2)
T2_ENCODER = "fd5b571855764f7d"  # encoder fingerprint of T2, the shipped tokenizer/ since 2026-12-07 (bf16, as committed)


def test_the_lm_tokenizers_keep_their_codes():
    """A guard: the shipped default LM (model/, piece 40 since 2026-12-07) was trained on T2's codes, so the tokenizer
    its vidgpt.json names (the repo's tokenizer/) must keep T2's encoder; checkpoints/tokenizer_v2 keeps v2's (pieces
    8-22 were trained on it) and checkpoints/tokenizer_v1 v1's (pieces 1-7). A decoder-only fine-tune may replace a
    decoder; a new encoder means rebuilding an LM's data: then update these constants with it."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    v1 = VideoTokenizer.from_pretrained(root / "checkpoints" / "tokenizer_v1")
    assert v1.encoder_fingerprint() == V1_ENCODER
    assert v1.accepts_codes_of(weights_fingerprint=V1_WEIGHTS)
    meta = json.loads((root / "model" / "vidgpt.json").read_text())
    assert (root / "model" / meta["video_tokenizer"]).resolve() == (root / "tokenizer").resolve()
    t2 = VideoTokenizer.from_pretrained(root / "tokenizer")
    assert t2.encoder_fingerprint() == T2_ENCODER
    v2 = VideoTokenizer.from_pretrained(root / "checkpoints" / "tokenizer_v2")
    assert v2.encoder_fingerprint() == V2_ENCODER and v2.config_hash() == t2.config_hash()
    assert not v2.accepts_codes_of(weights_fingerprint=V1_WEIGHTS)
    assert not t2.accepts_codes_of(weights_fingerprint=v2.weights_fingerprint())
    # the decoder fine-tune config starts from the shipped weights (init_from checks the architecture hash)
    ft = load_config(TokenizerTrainConfig, "configs/tokenizer/cpu_8x_decoder_ft.yaml")
    assert ft.train.train_parts == "decoder" and ft.model.architecture_hash() == v2.config_hash()


def test_object_weight_weighs_pixels_off_the_background():
    from vidgpt.tokenizer.losses import foreground_mask, reconstruction_loss

    x = torch.full((1, 3, 1, 32, 32), -0.8)
    x[..., 12:20, 12:20] = 0.9  # a bright square on a dark background
    m = foreground_mask(x)
    assert m.sum() == 64 and m[..., 12:20, 12:20].all()
    on_object, on_background = x.clone(), x.clone()
    on_object[..., 12:20, 12:20] -= 0.2
    on_background[..., 0:8, 0:8] += 0.2  # the same error on as many background pixels
    plain = [reconstruction_loss(y, x, 1.0, 1.0, 0.5) for y in (on_object, on_background)]
    weighted = [reconstruction_loss(y, x, 1.0, 1.0, 0.5, object_weight=4.0) for y in (on_object, on_background)]
    assert weighted[0] > plain[0] and weighted[1] < plain[1] and weighted[0] > 2 * weighted[1]
    assert reconstruction_loss(x, x, 1.0, 1.0, 0.5, object_weight=4.0) == 0


def test_a_deeper_decoder_warm_starts_as_the_source_and_keeps_the_codes(tmp_path):
    torch.manual_seed(0)
    start = VideoTokenizer(tiny_cfg(tmp_path).model).save_pretrained(tmp_path / "start")
    before = VideoTokenizer.from_pretrained(start).eval()
    cfg = tiny_cfg(tmp_path, "train.train_parts=decoder", f"train.init_from={start}", "model.decoder_res_blocks=3",
                   "train.steps=4", "train.warmup_steps=1")
    tr = TokenizerTrainer(cfg, tmp_path / "run", **QUIET)
    tr.model.eval()
    x = clips(2, T=5, seed=3)
    with torch.no_grad():
        codes = before.encode(x)
        assert torch.equal(tr.model.encode(x), codes)
        assert torch.allclose(tr.model.decode(codes), before.decode(codes), atol=1e-6)  # new blocks start as identities
    assert sum(p.numel() for p in tr.trained_params) > sum(p.numel() for p in before.decoder.parameters())
    tr.run()
    after = VideoTokenizer.from_pretrained(tmp_path / "run")
    assert after.config.decoder_blocks == 3 and all(len(stage) == 3 for stage in after.decoder.stages)
    assert after.config_hash() == before.config_hash() and after.encoder_fingerprint() == before.encoder_fingerprint()
    assert torch.equal(after.encode(x), codes)
    with pytest.raises(TrainingError, match="can only grow"):  # a shallower decoder than the source's is refused
        TokenizerTrainer(tiny_cfg(tmp_path, f"train.init_from={tmp_path / 'run'}", "train.train_parts=decoder"), tmp_path / "y", **QUIET)
    with pytest.raises(ValueError, match="decoder_res_blocks"):
        TokenizerConfig(num_res_blocks=2, decoder_res_blocks=1)


def test_a_checkpoint_from_before_a_new_model_field_resumes(tmp_path):
    cfg = tiny_cfg(tmp_path, "train.steps=6", "train.stop_at=2", "train.warmup_steps=1")
    TokenizerTrainer(cfg, tmp_path / "run", **QUIET).run()
    path = tmp_path / "run" / "checkpoint" / "state.pt"
    state = torch.load(path, weights_only=False)
    del state["model_config"]["decoder_res_blocks"]  # written before the field existed
    torch.save(state, path)
    resumed = TokenizerTrainer(tiny_cfg(tmp_path, "train.steps=6", "train.stop_at=3", "train.warmup_steps=1"), tmp_path / "run", resume=True, **QUIET)
    assert resumed.step == 2
    with pytest.raises(TrainingError, match="another model config"):
        TokenizerTrainer(tiny_cfg(tmp_path, "model.decoder_res_blocks=2"), tmp_path / "run", resume=True, **QUIET)
