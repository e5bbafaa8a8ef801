"""Train the LFQ video tokenizer: `vidgpt tokenizer train --config configs/tokenizer/NAME.yaml`.

One loop in plain PyTorch: AdamW with warmup + cosine, grad clipping, bf16 autocast on CUDA (and on
CPUs with native bf16 when train.cpu_bf16 is set),
image (T=1) then mixed image/video batches, an optional 3D patch discriminator switched on after a
step, `train.train_parts: decoder` for a decoder-only fine-tune (encoder and quantizer frozen, so the
codes of every input stay bit for bit the same and LM data made with them stays valid), atomic checkpoints in OUT/checkpoint/ (model, optimizers, scheduler, step, RNG) that
`--resume` continues from, a JSONL log, and OUT/ itself usable as a tokenizer directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import from_dict, save_config, to_dict
from ..errors import ConfigError, TrainingError
from ..metrics import psnr
from ..tokenizer import TokenizerConfig, VideoTokenizer, codebook_usage
from ..tokenizer.discriminator import PatchDiscriminator3D
from ..tokenizer.losses import LeCam, cell_colour_loss, hinge_d_loss, hinge_g_loss, reconstruction_loss, tokenizer_loss
from ..tokenizer.config import WEIGHT_COMPATIBLE_FIELDS
from ..tokenizer.model import TokenizerOutput
from ..tokenizer.locality import locality_loss, paste_rectangles
from ..utils import atomic_dir, cpu_bf16_if_native, pick_device, progress_wanted
from .schedule import warmup_cosine
from .tokenizer_data import ClipSampler, to_tensor


TRAIN_PARTS = ("all", "decoder")


@dataclass
class TokenizerDataConfig:
    paths: list[str] = field(default_factory=list)  # video/image files or folders (.npy uint8 [T,H,W,3] too)
    synthetic: bool = True  # draw clips from vidgpt.data.synthetic when it is installed
    synthetic_prob: float = 0.5  # share of synthetic clips when files are given too
    world_prob: float = 0.0  # of the synthetic clips, the share drawn as captioned world scenes (train split)
    # instead of the looser random training clips (random colours, photos)
    photos: list[str] = field(default_factory=list)  # images handed to the synthetic world as textures
    height: int = 64
    width: int = 64
    sizes: list[int] = field(default_factory=list)  # square sizes drawn per batch instead of height x width;
    # a batch's clip count is scaled by (height*width)/size**2 (at least 1) so each batch costs about the same
    frames: int = 17  # 1+4n
    max_frames_per_file: int = 256
    image_only_steps: int = 0  # image (T=1) pretraining first ...
    image_prob: float = 0.25  # ... then this share of image batches among video batches
    image_batch_size: int = 16
    eval_clips: int = 8  # fixed held-out video clips drawn at start (seed + 1)


@dataclass
class TokenizerTrainLoop:
    steps: int = 1000
    stop_at: int = 0  # end this invocation after this step (0: at `steps`); the schedule still runs to `steps`,
    # so `--resume` with a later stop_at continues it unchanged (short recipe runs, then the winner goes on)
    batch_size: int = 4  # video clips per batch
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    grad_clip: float = 1.0
    l1_weight: float = 1.0
    l2_weight: float = 0.0
    grad_weight: float = 0.0  # sharpness: L1 between the spatial gradients of reconstruction and input
    object_weight: float = 0.0  # pixels off their frame's background (objects, textures) weigh 1 + this much
    # auxiliary (issue 9's colour blobs): a linear read-out of the quantized bits must give each latent cell's mean
    # colour (losses.cell_colour_loss; its 1x1 head is trained with the model, kept in the checkpoint, not shipped)
    cell_colour_weight: float = 0.0
    # locality (issue 9, for the LM; vidgpt.tokenizer.locality): each clip is also encoded with a flat rectangle pasted
    # in, and the normalised latents of the cells more than locality_radius cells from it must not change
    locality_weight: float = 0.0
    locality_radius: int = 1
    seed: int = 0
    init_from: str = ""  # a tokenizer directory whose weights start a new run (same model config); "" = random
    train_parts: str = "all"  # "all", or "decoder": encoder + quantizer frozen (run under no_grad, eval mode),
    # only the decoder (and the discriminator) learn, on the reconstruction (+ GAN) loss alone; with
    # init_from the codes stay those of the init tokenizer, bit for bit (a decoder fine-tune)
    frozen_encoder_fp32: bool = True  # decoder-only: the frozen encoder runs in fp32 even under bf16 autocast,
    # so the decoder learns from exactly the codes encode() gives
    device: str = ""  # "" = cuda when present, else cpu
    bf16: bool = True  # autocast to bf16 on CUDA
    cpu_bf16: bool = False  # autocast to bf16 on the CPU too: ~2x faster steps where the CPU has AVX512-BF16/AMX
    # (measured on the dev box: 0.93 s against 1.9-2.2 s of CPU for a 1x9x128x128 cpu_8x step); slow without them
    channels_last: bool = False  # channels_last_3d memory format (CUDA)
    log_every: int = 10
    eval_every: int = 200
    ckpt_every: int = 200
    max_bad_steps: int = 20  # consecutive non-finite losses before giving up
    # discriminator (off when disc_start_step < 0)
    disc_start_step: int = -1
    disc_weight: float = 0.1
    disc_lr: float = 1e-4
    disc_channels: int = 32
    lecam_weight: float = 0.001
    disc_fp32: bool = True  # the discriminator outside bf16 autocast (a bf16 one went non-finite in a decoder fine-tune)


@dataclass
class TokenizerTrainConfig:
    model: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: TokenizerDataConfig = field(default_factory=TokenizerDataConfig)
    train: TokenizerTrainLoop = field(default_factory=TokenizerTrainLoop)


def lr_lambda(cfg: TokenizerTrainLoop):
    """Linear warmup to 1, cosine down to min_lr_ratio at `steps` (see schedule.warmup_cosine)."""
    return lambda step: warmup_cosine(step, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)


def image_prob_at(cfg: TokenizerDataConfig, step: int) -> float:
    return 1.0 if step < cfg.image_only_steps else cfg.image_prob


def decoder_only_forward(model: VideoTokenizer, x: torch.Tensor, encoder_fp32: bool = True) -> TokenizerOutput:
    """Frozen encoder + quantizer under no_grad, then the decoder on the exact +-1 bits that decode() reads.

    encoder_fp32: run the frozen encoder outside any autocast, so the decoder trains on the very codes
    that `encode()` gives (under bf16 autocast a few codes would differ)."""
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False) if encoder_fp32 else contextlib.nullcontext():
        lfq = model.quantizer(model.encoder(x.float() if encoder_fp32 else x), with_losses=False)
        bits = torch.where(lfq.quantized > 0, 1.0, -1.0).to(x.dtype)
    return TokenizerOutput(model.decoder(bits), lfq)


def load_with_deeper_decoder(model: VideoTokenizer, src: VideoTokenizer) -> int:
    """Load `src` into `model`, whose decoder stages have more residual blocks; returns how many were added.

    The extra blocks come after the source's in each stage (same width in and out, so their skip is the identity);
    their last conv starts at zero, so each is an identity and the model's output equals the source's."""
    missing, unexpected = model.load_state_dict(src.state_dict(), strict=False)
    keep = src.config.decoder_blocks
    bad = [k for k in missing if not (k.startswith("decoder.stages.") and int(k.split(".")[3]) >= keep)]
    if unexpected or bad:
        raise TrainingError(f"warm start with a deeper decoder: unexpected {list(unexpected)[:3]}, missing {bad[:3]}")
    added = sorted({".".join(k.split(".")[:4]) for k in missing})  # decoder.stages.<stage>.<block>
    for name in added:
        conv = model.get_submodule(name).conv2.conv
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    return len(added)


class TokenizerTrainer:
    """Holds model, optimizers, data and state; `run()` trains to cfg.train.steps."""

    def __init__(self, cfg: TokenizerTrainConfig, out_dir: str | Path, resume: bool = False, progress: bool = True, log=print):
        self.cfg, self.out, self.progress, self.log = cfg, Path(out_dir), progress, log
        t, d = cfg.train, cfg.data
        f = cfg.model.space_factor
        if (d.frames - 1) % 4 or d.frames < 1 or d.height % f or d.width % f or any(s % f for s in d.sizes):
            raise TrainingError(f"data: frames must be 1+4n and height/width/sizes multiples of {f}, got {d.frames}x{d.height}x{d.width}, sizes {d.sizes}")
        self.ckpt_dir = self.out / "checkpoint"
        if self.ckpt_dir.exists() and not resume:
            raise TrainingError(f"{self.out}: holds a checkpoint already; pass --resume to continue or pick another --out")
        self.device = pick_device(t.device or None)
        cpu_amp = cpu_bf16_if_native(self.device.type == "cpu" and t.cpu_bf16, log)
        self.amp = (self.device.type == "cuda" and t.bf16) or cpu_amp
        self.memory_format = torch.channels_last_3d if t.channels_last else torch.contiguous_format
        random.seed(t.seed)
        torch.manual_seed(t.seed)
        self.rng = np.random.default_rng(t.seed)
        if t.train_parts not in TRAIN_PARTS:
            raise TrainingError(f"train.train_parts must be one of {', '.join(TRAIN_PARTS)}, got {t.train_parts!r}")
        self.decoder_only = t.train_parts == "decoder"
        self.model = VideoTokenizer(cfg.model).to(self.device, memory_format=self.memory_format)
        if self.decoder_only:
            for p in (*self.model.encoder.parameters(), *self.model.quantizer.parameters()):
                p.requires_grad_(False)
        if t.locality_weight < 0 or t.locality_radius < 0:
            raise TrainingError(f"train.locality_weight ({t.locality_weight}) and locality_radius ({t.locality_radius}) "
                                "must be >= 0")
        if t.locality_weight > 0 and self.decoder_only:
            raise TrainingError("train.locality_weight shapes the codes; a decoder-only run keeps them (set it to 0)")
        self.colour_head = None
        if t.cell_colour_weight > 0:
            if self.decoder_only:
                raise TrainingError("train.cell_colour_weight shapes the codes; a decoder-only run keeps them (set it to 0)")
            self.colour_head = torch.nn.Conv3d(cfg.model.codebook_bits, 3, 1).to(self.device)
        self.trained_params = [p for p in self.model.parameters() if p.requires_grad]
        if self.colour_head is not None:
            self.trained_params += list(self.colour_head.parameters())
        self.opt = torch.optim.AdamW(self.trained_params, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(t))
        self.disc = self.opt_d = None
        if t.disc_start_step >= 0:
            self.disc = PatchDiscriminator3D(t.disc_channels).to(self.device)
            self.lecam = LeCam().to(self.device)
            self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=t.disc_lr, betas=(0.5, 0.9), weight_decay=0.0)
        self.step = 0
        self.bad_steps = 0
        self.sampler = ClipSampler(d.paths, d.synthetic, d.synthetic_prob, d.photos, d.max_frames_per_file, log=log, world_prob=d.world_prob)
        eval_rng = np.random.default_rng(t.seed + 1)
        self.eval_set = to_tensor([self.sampler.sample(eval_rng, d.frames, d.height, d.width) for _ in range(d.eval_clips)])
        self.out.mkdir(parents=True, exist_ok=True)
        self.log_path = self.out / "log.jsonl"
        if resume and (self.ckpt_dir / "state.pt").is_file():
            self.load_checkpoint()
        else:
            if resume:
                log(f"{self.ckpt_dir}: no checkpoint yet, starting from step 0")
            if t.init_from:
                self.init_weights(t.init_from)
            elif self.decoder_only:
                log("train.train_parts=decoder without train.init_from: the frozen encoder is a random one")
        if self.step == 0 and self.log_path.exists():
            self.log_path.unlink()
        save_config(cfg, self.out / "train_config.yaml")

    def init_weights(self, directory: str) -> None:
        """Start from a trained tokenizer's weights (a warm start with a fresh optimizer and schedule)."""
        src = VideoTokenizer.from_pretrained(directory)
        ours = self.model.config
        grown = ours.decoder_blocks - src.config.decoder_blocks
        if grown < 0:
            raise TrainingError(f"train.init_from {directory}: its decoder has {src.config.decoder_blocks} residual blocks a stage, "
                                f"this config's {ours.decoder_blocks} (model.decoder_res_blocks can only grow in a warm start)")

        def load() -> str:
            if grown:
                return f"; {load_with_deeper_decoder(self.model, src)} new decoder blocks start as identities"
            self.model.load_state_dict(src.state_dict())
            return ""

        same = dataclasses.replace(src.config, **{k: getattr(ours, k) for k in WEIGHT_COMPATIBLE_FIELDS})
        if same.architecture_hash() == ours.architecture_hash() and src.config_hash() != self.model.config_hash():
            changed = ", ".join(f"{k}: {getattr(src.config, k)} -> {getattr(ours, k)}" for k in WEIGHT_COMPATIBLE_FIELDS
                                if getattr(src.config, k) != getattr(ours, k))
            if self.decoder_only:
                raise TrainingError(f"train.init_from {directory}: train.train_parts=decoder keeps the source's encoder, "
                                    f"but this config changes what its codes mean ({changed})")
            note = load()  # the same tensors; the codes are re-learned from here
            self.log(f"initialised the weights from {directory} ({changed}){note}")
            return
        if src.config_hash() != self.model.config_hash():
            raise TrainingError(f"train.init_from {directory}: its architecture differs from this config's model (hash {src.config_hash()} vs {self.model.config_hash()})")
        note = load()
        if self.decoder_only:  # same encoder: codes named by the source's weights fingerprint stay valid
            self.model.code_compatible = list(dict.fromkeys([src.weights_fingerprint(), *src.code_compatible]))
        self.log(f"initialised the weights from {directory}{note}")

    # --- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        state = {
            "step": self.step,
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "disc": self.disc.state_dict() if self.disc else None,
            "colour_head": self.colour_head.state_dict() if self.colour_head is not None else None,
            "lecam": self.lecam.state_dict() if self.disc else None,
            "opt_d": self.opt_d.state_dict() if self.opt_d else None,
            "rng": {
                "numpy": self.rng.bit_generator.state,
                "python": random.getstate(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
            "model_config": to_dict(self.cfg.model),
            "train_parts": self.cfg.train.train_parts,
            "code_compatible": list(self.model.code_compatible),
        }
        with atomic_dir(self.ckpt_dir) as tmp:
            torch.save(state, tmp / "state.pt")
            save_config(self.cfg, tmp / "train_config.yaml")
        self.model.save_pretrained(self.out)

    def load_checkpoint(self) -> None:
        path = self.ckpt_dir / "state.pt"
        try:
            state = torch.load(path, map_location=self.device, weights_only=False)
        except Exception as e:  # noqa: BLE001
            raise TrainingError(f"{path}: cannot read checkpoint ({' '.join(str(e).split())})") from e
        try:  # fields added since the checkpoint was written take their defaults
            saved = to_dict(from_dict(TokenizerConfig, state.get("model_config")))
        except ConfigError:
            saved = None
        if saved != to_dict(self.cfg.model):
            raise TrainingError(f"{path}: checkpoint was trained with another model config; use the same --config/--set")
        if state.get("train_parts", "all") != self.cfg.train.train_parts:
            raise TrainingError(f"{path}: checkpoint was trained with train.train_parts={state.get('train_parts', 'all')}, "
                                f"not {self.cfg.train.train_parts}; use the same or start a new run with train.init_from")
        self.model.load_state_dict(state["model"])
        if self.colour_head is not None:
            if state.get("colour_head") is None:
                raise TrainingError(f"{path}: checkpoint has no cell-colour head; resume with train.cell_colour_weight=0")
            self.colour_head.load_state_dict(state["colour_head"])
        self.model.code_compatible = list(state.get("code_compatible", []))
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        if self.disc is not None and state.get("disc") is not None:
            self.disc.load_state_dict(state["disc"])
            self.lecam.load_state_dict(state["lecam"])
            self.opt_d.load_state_dict(state["opt_d"])
        self.rng.bit_generator.state = state["rng"]["numpy"]
        random.setstate(state["rng"]["python"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if state["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step = int(state["step"])
        if self.log_path.exists():  # drop log lines written after the checkpoint
            keep = [ln for ln in self.log_path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= self.step]
            self.log_path.write_text("".join(ln + "\n" for ln in keep))
        self.log(f"resumed from {path} at step {self.step}")

    # --- one step ------------------------------------------------------------------------------
    def next_batch(self) -> torch.Tensor:
        d = self.cfg.data
        image = self.rng.random() < image_prob_at(d, self.step)
        frames, bs = (1, d.image_batch_size) if image else (d.frames, self.cfg.train.batch_size)
        h, w = d.height, d.width
        if d.sizes:
            size = int(d.sizes[int(self.rng.integers(len(d.sizes)))])
            bs = max(1, round(bs * d.height * d.width / size**2))
            h = w = size
        x = to_tensor([self.sampler.sample(self.rng, frames, h, w) for _ in range(bs)])
        return x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)

    def _forward(self, x: torch.Tensor) -> tuple[TokenizerOutput, torch.Tensor | None]:
        """The model's output on x, and the locality term when it is on (one encoder call over x and x pasted)."""
        t = self.cfg.train
        if t.locality_weight <= 0:
            return self.model(x), None
        gen = torch.Generator().manual_seed(t.seed * 1_000_003 + self.step)  # the same rectangles after a resume
        pasted, far = paste_rectangles(x, self.model.space_factor, t.locality_radius, gen)
        z, z_pasted = self.model.encoder(torch.cat([x, pasted])).chunk(2)
        lfq = self.model.quantizer(z)
        out = TokenizerOutput(self.model.decoder(lfq.quantized.to(x.dtype)), lfq)
        norm = self.model.quantizer.normalize
        return out, locality_loss(norm(z), norm(z_pasted), far)

    def train_step(self, x: torch.Tensor) -> dict[str, float] | None:
        t = self.cfg.train
        self.model.train()
        if self.decoder_only:
            self.model.encoder.eval()
            self.model.quantizer.eval()
        use_disc = self.disc is not None and self.step >= t.disc_start_step
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            if self.decoder_only:
                out = decoder_only_forward(self.model, x, t.frozen_encoder_fp32)
                loss = reconstruction_loss(out.recon, x, t.l1_weight, t.l2_weight, t.grad_weight, t.object_weight)
                logs = {"rec": loss.item()}
            else:
                out, local = self._forward(x)
                loss, logs = tokenizer_loss(out, x, self.cfg.model, self.step, t.l1_weight, t.l2_weight, t.grad_weight, t.object_weight)
                if self.colour_head is not None:
                    colour = cell_colour_loss(self.colour_head, out.lfq.quantized, x, self.model.space_factor)
                    loss = loss + t.cell_colour_weight * colour
                    logs["cell_colour"] = colour.item()
                if local is not None:
                    loss = loss + t.locality_weight * local
                    logs["locality"] = local.item()
            if use_disc:
                with torch.autocast(self.device.type, enabled=False) if t.disc_fp32 else contextlib.nullcontext():
                    g = hinge_g_loss(self.disc(out.recon.float() if t.disc_fp32 else out.recon))
                loss = loss + t.disc_weight * g
                logs["g"] = g.item()
        if not torch.isfinite(loss):
            self.bad_steps += 1
            if self.bad_steps > t.max_bad_steps:
                raise TrainingError(f"{self.bad_steps} non-finite losses in a row at step {self.step}; lower train.lr")
            self.opt.zero_grad(set_to_none=True)
            return None
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.trained_params, t.grad_clip))
        if not np.isfinite(logs["grad_norm"]):  # an overflowing backward: clipping would write NaN weights
            self.bad_steps += 1
            if self.bad_steps > t.max_bad_steps:
                raise TrainingError(f"{self.bad_steps} non-finite gradients in a row at step {self.step}; lower train.lr")
            self.opt.zero_grad(set_to_none=True)
            return None
        self.bad_steps = 0
        self.opt.step()
        self.sched.step()
        if use_disc:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp and not t.disc_fp32):
                real, fake = self.disc(x), self.disc(out.recon.detach().float() if t.disc_fp32 else out.recon.detach())
                d_loss = hinge_d_loss(real, fake) + t.lecam_weight * self.lecam(real, fake)
            self.opt_d.zero_grad(set_to_none=True)
            if torch.isfinite(d_loss):  # a non-finite step would leave NaN weights in D, then in every G loss
                d_loss.backward()
                torch.nn.utils.clip_grad_norm_(self.disc.parameters(), t.grad_clip)
                self.opt_d.step()
            logs["d"] = d_loss.item()
        logs["loss"] = loss.item()
        logs["psnr"] = psnr(out.recon.detach().float().clamp(-1, 1), x)
        logs["usage"] = codebook_usage(out.lfq.codes, self.model.codebook_bits)
        logs["frames"] = x.shape[2]
        logs["lr"] = self.sched.get_last_lr()[0]
        return logs

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """PSNR and codebook usage on the fixed held-out clips."""
        self.model.eval()
        vals, codes = [], []
        for i in range(0, len(self.eval_set), max(1, self.cfg.train.batch_size)):
            x = self.eval_set[i : i + self.cfg.train.batch_size].to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                out = self.model(x, with_losses=False)
            vals.append(psnr(out.recon.float().clamp(-1, 1), x) * len(x))
            codes.append(out.lfq.codes.flatten())
        return {
            "eval_psnr": sum(vals) / len(self.eval_set),
            "eval_usage": codebook_usage(torch.cat(codes), self.model.codebook_bits),
        }

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> dict[str, float]:
        from tqdm import tqdm

        t = self.cfg.train
        end = min(t.stop_at, t.steps) if t.stop_at > 0 else t.steps
        last: dict[str, float] = {}
        bar = tqdm(total=end, initial=self.step, desc="tokenizer", disable=not progress_wanted(self.progress), dynamic_ncols=True)
        tick = time.perf_counter()
        with self.log_path.open("a") as logf:
            while self.step < end:
                logs = self.train_step(self.next_batch())
                self.step += 1
                bar.update(1)
                if logs is None:
                    continue
                last = logs
                bar.set_postfix(loss=f"{logs['loss']:.3f}", psnr=f"{logs['psnr']:.1f}", usage=f"{logs['usage']:.3f}")
                if self.step % t.log_every == 0 or self.step == end:
                    now = time.perf_counter()
                    rec = {"step": self.step, **{k: round(v, 5) for k, v in logs.items()}, "sec_per_step": round((now - tick) / t.log_every, 4)}
                    tick = now
                    if self.step % t.eval_every == 0 or self.step == end:
                        rec.update({k: round(v, 4) for k, v in self.evaluate().items()})
                        last.update(rec)
                    logf.write(json.dumps(rec) + "\n")
                    logf.flush()
                if self.step % t.ckpt_every == 0 or self.step == end:
                    self.save_checkpoint()
                    plot_curves(self.log_path, self.out / "curves.png")
        bar.close()
        return last


def plot_curves(log_path: Path, png: Path) -> Path | None:
    """Loss and PSNR against step from the JSONL log; skipped silently without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    recs = [json.loads(ln) for ln in log_path.read_text().splitlines() if ln.strip()]
    if not recs:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    # the total loss goes negative (the LFQ entropy term), so plot the reconstruction part on a log scale
    a.plot([r["step"] for r in recs], [r.get("rec", r["loss"]) for r in recs], label="reconstruction loss (L1 + L2)")
    a.set_xlabel("step"), a.set_yscale("log"), a.legend()
    b.plot([r["step"] for r in recs], [r["psnr"] for r in recs], label="train PSNR")
    ev = [r for r in recs if "eval_psnr" in r]
    b.plot([r["step"] for r in ev], [r["eval_psnr"] for r in ev], "o-", label="eval PSNR")
    b.set_xlabel("step"), b.set_ylabel("dB"), b.legend()
    fig.tight_layout()
    from ..utils import atomic_path

    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return png


def train_tokenizer(cfg: TokenizerTrainConfig, out_dir: str | Path, resume: bool = False, progress: bool = True) -> dict[str, float]:
    """Train (or resume) and leave a tokenizer directory at out_dir. Returns the last logs."""
    return TokenizerTrainer(cfg, out_dir, resume=resume, progress=progress).run()
