"""Tiny end-to-end check of more causal-LM families than the test suite covers (CPU, seconds each).

For each model type: a random tiny model built from its config (no download) and a toy tokenizer are saved
as a plain HF directory -> `vidgpt lm extend --backbone DIR` -> `lm train` full and LoRA (delta form) ->
VidGPT.from_pretrained -> generate / edit / chat. Prints one line per family.

    OMP_NUM_THREADS=1 python tools/check_backbone_families.py                 # the extra families below
    OMP_NUM_THREADS=1 python tools/check_backbone_families.py opt bloom llama # any of them, or TINY_FAMILIES
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

# tiny shapes for families beyond vidgpt.backbone.TINY_FAMILIES (each config class names its sizes its own way)
EXTRA = {
    "opt": dict(hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4, word_embed_proj_dim=32,
                max_position_embeddings=2048),
    "bloom": dict(hidden_size=32, n_layer=2, n_head=4),  # ALiBi: no position ids
    "falcon": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=2048),
    "phi": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
    "starcoder2": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64),
    "olmo2": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
    "qwen2_moe": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                      moe_intermediate_size=16, shared_expert_intermediate_size=16, num_experts=4, num_experts_per_tok=2),
}


def build(family: str, d: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from vidgpt.backbone import TINY_FAMILIES, tiny_causal_lm, toy_text_tokenizer

    tok = toy_text_tokenizer(128)
    if family in TINY_FAMILIES:
        model = tiny_causal_lm(family, len(tok), hidden_size=32, max_positions=2048)
    else:
        cfg = AutoConfig.for_model(family, vocab_size=len(tok), bos_token_id=1, eos_token_id=2, pad_token_id=2, **EXTRA[family])
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def check(family: str, root: Path, video_tok: Path) -> str:
    import yaml

    from vidgpt.cli import main
    from vidgpt.generate import VidGPT

    d = root / family
    bb = build(family, d / "backbone")
    if main(["lm", "extend", "--backbone", str(bb), "--tokenizer", str(video_tok), "--out", str(d / "ext")]) != 0:
        return "extend failed"
    for lora in (False, True):
        cfg = {"model": {"path": str(d / "ext")}, "lora": {"enabled": lora, "r": 4, "alpha": 8},
               "data": {"sources": [{"kind": "synthetic", "shapes": [[2, 2, 2]], "words": 4}], "chat": True},
               "train": {"steps": 2, "micro_batch_size": 2, "seq_len": 64, "lr": 1e-3, "warmup_steps": 1, "eval_batches": 0,
                         "ckpt_every": 0, "save_form": "delta" if lora else "full"}}
        (d / "train.yaml").write_text(yaml.safe_dump(cfg))
        if main(["lm", "train", "--config", str(d / "train.yaml"), "--out", str(d / f"run-lora{int(lora)}"), "--no-progress"]) != 0:
            return f"train (lora={lora}) failed"
    pipe = VidGPT.from_pretrained(d / "run-lora1" / "model")
    out = pipe.generate("ab", frames=5, height=16, width=16, seed=0, cfg=2.0)
    pipe.edit(out.videos[0], "make it blue", task="instruct", seed=0, cfg=1.0)
    reply = pipe.chat("draw a dot", frames=1, height=16, width=16, seed=0)
    if out.videos.shape != (1, 5, 16, 16, 3) or not reply.is_clip:
        return f"unexpected output shapes {out.videos.shape}"
    return "ok"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("families", nargs="*", help=f"model types (default: {' '.join(EXTRA)})")
    args = ap.parse_args(argv)
    import torch

    from vidgpt.tokenizer import TokenizerConfig, VideoTokenizer

    warnings.filterwarnings("ignore")
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        VideoTokenizer(TokenizerConfig(codebook_bits=6, channels=8, norm_groups=4)).save_pretrained(root / "tok")
        for family in args.families or list(EXTRA):
            t0 = time.time()
            try:
                verdict = check(family, root, root / "tok")
            except Exception as e:  # report and go on to the next family
                verdict = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
            bad += verdict != "ok"
            print(f"{family:12s} {verdict} ({time.time() - t0:.1f} s)", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
