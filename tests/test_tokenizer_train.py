import json
import math

import numpy as np
import pytest
import torch

from vidgpt.cli import main
from vidgpt.config import load_config
from vidgpt.metrics import psnr
from vidgpt.tokenizer import TokenizerConfig, VideoTokenizer
from vidgpt.tokenizer.losses import tokenizer_loss
from vidgpt.train.tokenizer_trainer import TokenizerTrainConfig


def smooth_clip(T=5, H=32, W=32) -> torch.Tensor:
    """A moving, smooth colour pattern [1, 3, T, H, W] in [-0.8, 0.8]."""
    t = torch.arange(T).view(T, 1, 1).float()
    y = torch.linspace(-1, 1, H).view(1, H, 1)
    x = torch.linspace(-1, 1, W).view(1, 1, W)
    r = torch.sin(3 * x + 0.5 * t + y)
    g = torch.cos(2 * y - 0.3 * t) * x
    b = torch.exp(-((x - 0.05 * t) ** 2 + y**2) * 4) * 2 - 1
    return (torch.stack([r, g, b]) * 0.8).unsqueeze(0)


def test_tiny_tokenizer_overfits_one_clip():
    torch.manual_seed(0)
    x = smooth_clip()
    cfg = TokenizerConfig(codebook_bits=10, channels=16, norm_groups=4, entropy_weight=0.0)
    tok = VideoTokenizer(cfg)
    steps = 250
    opt = torch.optim.AdamW(tok.parameters(), lr=3e-3, betas=(0.9, 0.99), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    for step in range(steps):
        loss, _ = tokenizer_loss(tok(x), x, cfg, step, l1_weight=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    tok.eval()
    assert psnr(tok.decode(tok.encode(x)), x) > 30.0


def write_clips(folder, n=3, T=9, H=32, W=32):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        np.save(folder / f"clip{i}.npy", (rng.random((T, H, W, 3)) * 255).astype(np.uint8))
    return folder


def test_trainer_runs_and_resumes(tmp_path, capsys):
    data = write_clips(tmp_path / "data")
    out = tmp_path / "run"
    args = ["tokenizer", "train", "--config", "configs/tokenizer/tiny.yaml", "--out", str(out), "--no-progress",
            "--set", f"data.paths=[{data}]", "--set", "data.synthetic=false", "--set", "train.log_every=2",
            "--set", "train.ckpt_every=4", "--set", "train.eval_every=4"]
    assert main(args + ["--set", "train.steps=4"]) == 0
    state = torch.load(out / "checkpoint" / "state.pt", weights_only=False)
    assert state["step"] == 4
    tok = VideoTokenizer.from_pretrained(out)  # OUT is a tokenizer directory
    assert tok.codebook_bits == 10
    # running again without --resume refuses to overwrite
    assert main(args + ["--set", "train.steps=6"]) == 1
    assert "--resume" in capsys.readouterr().err
    assert main(args + ["--set", "train.steps=6", "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]
    assert torch.load(out / "checkpoint" / "state.pt", weights_only=False)["step"] == 6


def test_shipped_configs_load():
    for name in ("tiny", "default", "gpu"):
        cfg = load_config(TokenizerTrainConfig, f"configs/tokenizer/{name}.yaml")
        assert (cfg.data.frames - 1) % 4 == 0
    assert load_config(TokenizerTrainConfig, "configs/tokenizer/default.yaml").model.codebook_bits == 14


@pytest.mark.parametrize("bad", ["model.channel_mults=[1,2]", "model.nope=1"])
def test_bad_config_is_one_line_error(bad, capsys):
    assert main(["tokenizer", "train", "--config", "configs/tokenizer/tiny.yaml", "--set", bad]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vidgpt: error:") and err.count("\n") == 1


def test_init_from_warm_starts_a_new_run(tmp_path):
    from vidgpt.config import load_config
    from vidgpt.errors import TrainingError
    from vidgpt.train.tokenizer_trainer import TokenizerTrainConfig, TokenizerTrainer

    cfg = load_config(TokenizerTrainConfig, "configs/tokenizer/tiny.yaml", ["train.steps=2", "train.log_every=1", "data.eval_clips=1"])
    first = TokenizerTrainer(cfg, tmp_path / "a", progress=False, log=lambda *a: None)
    first.run()
    warm = load_config(TokenizerTrainConfig, "configs/tokenizer/tiny.yaml", ["train.steps=2", f"train.init_from={tmp_path / 'a'}", "data.eval_clips=1"])
    second = TokenizerTrainer(warm, tmp_path / "b", progress=False, log=lambda *a: None)
    src = VideoTokenizer.from_pretrained(tmp_path / "a").state_dict()
    assert second.step == 0 and all(torch.equal(v, second.model.state_dict()[k]) for k, v in src.items())
    other = load_config(TokenizerTrainConfig, "configs/tokenizer/tiny.yaml", [f"train.init_from={tmp_path / 'a'}", "model.codebook_bits=8"])
    with pytest.raises(TrainingError, match="architecture differs"):
        TokenizerTrainer(other, tmp_path / "c", progress=False, log=lambda *a: None)


def test_cpu_bf16_autocast_trains(tmp_path, monkeypatch):
    from vidgpt.config import load_config
    from vidgpt.train.tokenizer_trainer import TokenizerTrainConfig, TokenizerTrainer

    cfg = load_config(TokenizerTrainConfig, "configs/tokenizer/tiny.yaml", ["train.steps=3", "train.log_every=1", "train.cpu_bf16=true", "data.eval_clips=1", "train.device=cpu"])
    monkeypatch.setenv("VIDGPT_CPU_BF16", "0")  # no native bf16: the setting falls back to fp32, with a note
    notes = []
    assert not TokenizerTrainer(cfg, tmp_path / "emulated", progress=False, log=notes.append).amp
    assert any("cpu_bf16 ignored" in n for n in notes)
    monkeypatch.setenv("VIDGPT_CPU_BF16", "1")
    tr = TokenizerTrainer(cfg, tmp_path / "run", progress=False, log=lambda *a: None)
    assert tr.amp
    last = tr.run()
    assert math.isfinite(last["loss"]) and last["psnr"] > 0
    off = load_config(TokenizerTrainConfig, "configs/tokenizer/tiny.yaml", ["train.device=cpu", "data.eval_clips=1"])
    assert not TokenizerTrainer(off, tmp_path / "off", progress=False, log=lambda *a: None).amp


def test_cell_means_and_the_cell_colour_head_train_and_resume(tmp_path):
    from vidgpt.errors import TrainingError
    from vidgpt.tokenizer.losses import cell_means
    from vidgpt.train.tokenizer_trainer import TokenizerTrainer

    x = smooth_clip(T=9, H=32, W=32)
    m = cell_means(x, 8)
    assert m.shape == (1, 3, 3, 4, 4)
    assert torch.allclose(m[:, :, 0], x[:, :, 0].reshape(1, 3, 4, 8, 4, 8).mean((3, 5)), atol=1e-6)  # frame 0 alone
    assert torch.allclose(m[:, :, 2], x[:, :, 5:9].reshape(1, 3, 4, 4, 8, 4, 8).mean((2, 4, 6)), atol=1e-6)
    assert torch.allclose(cell_means(torch.full((2, 3, 5, 16, 16), 0.25), 8), torch.full((2, 3, 2, 2, 2), 0.25))

    sets = ["train.steps=2", "train.log_every=1", "train.ckpt_every=2", "data.eval_clips=1", "train.cell_colour_weight=1.0"]
    cfg = load_config(TokenizerTrainConfig, "configs/tokenizer/tiny.yaml", sets)
    run = TokenizerTrainer(cfg, tmp_path / "a", progress=False, log=lambda *a: None)
    before = [p.detach().clone() for p in run.colour_head.parameters()]
    run.run()
    logs = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["cell_colour"]) for r in logs if "cell_colour" in r) and any("cell_colour" in r for r in logs)
    assert any(not torch.equal(a, b) for a, b in zip(before, run.colour_head.parameters()))  # the head is trained
    again = TokenizerTrainer(load_config(TokenizerTrainConfig, "configs/tokenizer/tiny.yaml", sets[1:] + ["train.steps=3"]),
                             tmp_path / "a", resume=True, progress=False, log=lambda *a: None)
    assert again.step == 2 and all(torch.equal(a, b) for a, b in zip(run.colour_head.parameters(), again.colour_head.parameters()))
    with pytest.raises(TrainingError, match="decoder-only"):
        TokenizerTrainer(load_config(TokenizerTrainConfig, "configs/tokenizer/tiny.yaml", sets + ["train.train_parts=decoder"]),
                         tmp_path / "b", progress=False, log=lambda *a: None)
