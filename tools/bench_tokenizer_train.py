#!/usr/bin/env python3
"""Training-step speed of tokenizer architecture variants on this machine (what chose cpu_8x / cpu_16x).

For each variant: parameters, the code grid of a 17x128x128 clip, and the wall time of one forward +
backward (reconstruction L1 + entropy term) on a 1x9x128x128 clip and on 4x1x128x128 images, after one
warm-up step, in fp32 and (with --bf16) under CPU bf16 autocast. Run it alone on the machine:

    OMP_NUM_THREADS=1 python tools/bench_tokenizer_train.py            # one thread, every variant
    python tools/bench_tokenizer_train.py --variants seed cpu_8x --bf16
    OMP_NUM_THREADS=1 taskset -c 1 python tools/bench_tokenizer_train.py --variants cpu_8x --bf16 --parts all decoder --disc

--parts decoder times a decoder-only fine-tune step (train.train_parts: decoder): the frozen encoder
runs under no_grad (in fp32, as the trainer does by default; `decoder-bf16enc` runs it under the
autocast too) and only the decoder is back-propagated. --disc adds the patch discriminator's
generator term and its own step (train.disc_start_step). --opt adds the AdamW update of the
trained parameters.
"""

from __future__ import annotations

import argparse
import time

import torch

from vidgpt.tokenizer import TokenizerConfig, VideoTokenizer

G16 = dict(norm_groups=16)
VARIANTS = {
    "seed": dict(),  # the seed's shape: patch 1, widths 32-64-64-128, 3D residual convs
    "p4-c128-3d": dict(patch_size=4, channels=128, channel_mults=[1, 2, 2], **G16),
    "p4-c96-rb2-3d": dict(patch_size=4, channels=96, channel_mults=[1, 2, 2], num_res_blocks=2, **G16),
    "p2-c64-3d": dict(patch_size=2, channels=64, channel_mults=[1, 2, 2, 2], **G16),
    "p4-c96-rb2": dict(patch_size=4, channels=96, channel_mults=[1, 2, 2], num_res_blocks=2, res_time_kernel=1, **G16),
    "p4-c128-rb2": dict(patch_size=4, channels=128, channel_mults=[1, 2, 2], num_res_blocks=2, res_time_kernel=1, **G16),
    "cpu_8x": dict(patch_size=2, channels=64, channel_mults=[1, 2, 2, 2], res_time_kernel=1, **G16),
    "16x-p4-c128-3d": dict(patch_size=4, space_factor=16, channels=128, channel_mults=[1, 2, 2], **G16),
    "16x-p8-c128-3d": dict(patch_size=8, space_factor=16, channels=128, channel_mults=[1, 2, 2], **G16),
    "cpu_16x": dict(patch_size=8, space_factor=16, channels=128, channel_mults=[1, 2, 2], num_res_blocks=2, res_time_kernel=1, **G16),
}


PARTS = ("all", "decoder", "decoder-bf16enc")


def step_seconds(model: VideoTokenizer, x: torch.Tensor, bf16: bool, parts: str = "all", disc=None, opt: bool = False) -> float:
    from vidgpt.tokenizer.losses import hinge_d_loss, hinge_g_loss
    from vidgpt.train.tokenizer_trainer import decoder_only_forward

    decoder_only = parts != "all"
    for p in (*model.encoder.parameters(), *model.quantizer.parameters()):
        p.requires_grad_(not decoder_only)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-5) if opt else None
    optim_d = torch.optim.AdamW(disc.parameters(), lr=1e-5) if disc is not None and opt else None
    t = 0.0
    for _ in range(2):  # warm-up, then timed
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if decoder_only:
                out = decoder_only_forward(model, x, encoder_fp32=parts == "decoder")
                loss = (out.recon.float() - x).abs().mean()
            else:
                out = model(x)
                loss = (out.recon.float() - x).abs().mean() + 0.1 * out.lfq.entropy_loss
            if disc is not None:
                loss = loss + 0.1 * hinge_g_loss(disc(out.recon))
        model.zero_grad(set_to_none=True)
        loss.backward()
        if optim:
            optim.step()
        if disc is not None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                d = hinge_d_loss(disc(x), disc(out.recon.detach()))
            disc.zero_grad(set_to_none=True)
            d.backward()
            if optim_d:
                optim_d.step()
        t = time.perf_counter() - t0
    return t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--bits", type=int, default=14)
    ap.add_argument("--bf16", action="store_true", help="also time each step under CPU bf16 autocast")
    ap.add_argument("--parts", nargs="+", default=["all"], choices=PARTS, help="what is trained (see above)")
    ap.add_argument("--disc", action="store_true", help="with the patch discriminator (32 channels) on")
    ap.add_argument("--opt", action="store_true", help="include the AdamW update(s) in the timed step")
    args = ap.parse_args()
    torch.manual_seed(0)
    modes = [False, True] if args.bf16 else [False]
    extra = " + discriminator" if args.disc else ""
    print(f"{torch.get_num_threads()} thread(s); seconds per forward+backward step{extra}{' + AdamW' if args.opt else ''}")
    print("| variant | trained | params | 17x128x128 codes | " + " | ".join(f"1x9x128² {'bf16' if m else 'fp32'} | 4x1x128² {'bf16' if m else 'fp32'}" for m in modes) + " |")
    print("|---|---|---|---|" + "---|---|" * len(modes))
    for name in args.variants:
        cfg = TokenizerConfig(codebook_bits=args.bits, entropy_group_bits=7, **VARIANTS[name])
        model = VideoTokenizer(cfg)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        grid = "x".join(map(str, model.latent_shape(17, 128, 128)))
        for parts in args.parts:
            disc = None
            if args.disc:
                from vidgpt.tokenizer.discriminator import PatchDiscriminator3D

                disc = PatchDiscriminator3D(32)
            cells = []
            for bf16 in modes:
                for b, t in ((1, 9), (4, 1)):
                    cells.append(f"{step_seconds(model, torch.rand(b, 3, t, 128, 128) * 2 - 1, bf16, parts, disc, args.opt):.2f}")
            print(f"| {name} | {parts}{extra} | {params:.1f}M | {grid} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
