"""End to end on a CPU, tiny: video -> codes -> tokens -> LLM -> tokens -> codes -> video, through the CLI.

random video tokenizer -> `vidgpt data build-lm` -> `vidgpt lm extend --backbone tiny-llama` -> `vidgpt lm train`
-> VidGPT.from_pretrained -> generate -> `vidgpt eval model`.
"""

import json
import math

import numpy as np
import torch
import yaml

from vidgpt.cli import main


def test_video_to_llm_to_video(tmp_path, one_thread, capsys):
    from vidgpt.tokenizer import TokenizerConfig, VideoTokenizer

    torch.manual_seed(0)
    tok_dir = tmp_path / "tok"
    VideoTokenizer(TokenizerConfig(codebook_bits=6, channels=8, norm_groups=4)).save_pretrained(tok_dir)

    # 1. data: every unit kind, 9x32x32 clips (latent 3x4x4, blueprint 3x2x2)
    shards = tmp_path / "shards"
    rc = main(["data", "build-lm", "--tokenizer", str(tok_dir), "--out", str(shards), "--num", "8", "--images", "2",
               "--edits", "4", "--continuations", "2", "--frames", "9", "--size", "32", "--records-per-chunk", "4",
               "--text-out", str(tmp_path / "text"), "--no-progress"])
    assert rc == 0
    from vidgpt.data.shards import shard_stats

    stats = shard_stats(shards)
    assert stats["by_kind"]["video"] == 8 and stats["by_kind"]["image"] == 2
    assert stats["by_kind"]["edit"] + json.loads((shards / "report.json").read_text())["skipped"].__len__() == 6
    assert stats["by_shape"]["1x4x4"] == 2 and stats["by_shape"]["3x4x4"] == stats["records"] - 2

    # 2. the LM: tiny random Llama + toy tokenizer, extended with K=6 codes from the tokenizer dir
    ext = tmp_path / "ext"
    assert main(["lm", "extend", "--backbone", "tiny-llama", "--tokenizer", str(tok_dir), "--out", str(ext)]) == 0
    assert (ext / "video_tokenizer" / "config.json").is_file()

    # 3. train a few steps on the shards (+ the plain text) in the chat layout
    # (the Parquet files are listed one by one: a shards source given the folder also picks up
    #  manifest.json / progress-*.json and stops on "mixed file types"; see the report)
    parts = sorted(str(p) for p in shards.glob("part-*.parquet"))
    cfg = {"model": {"path": str(ext)},
           "data": {"sources": [{"kind": "shards", "paths": parts, "weight": 0.8},
                                {"kind": "text", "paths": [str(tmp_path / "text")], "weight": 0.2}],
                    "chat": True, "holdout_every": 5},
           "train": {"steps": 4, "micro_batch_size": 2, "seq_len": 384, "lr": 2e-3, "warmup_steps": 1, "log_every": 1,
                     "eval_every": 0, "eval_batches": 1, "ckpt_every": 0, "save_form": "full"}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert main(["lm", "train", "--config", str(tmp_path / "train.yaml"), "--out", str(run), "--no-progress"]) == 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert math.isfinite([r for r in log if "eval_loss" in r][-1]["eval_loss"])
    done = [r for r in log if r.get("event") == "done"][0]
    assert done["pack_stats"]["docs"] > 0

    # 4. generate with the trained model: the tokens parse back into a block that decodes to frames
    from vidgpt.generate import VidGPT

    pipe = VidGPT.from_pretrained(run / "model")
    assert pipe.vocab.spec.codebook_bits == 6 and pipe.video_tokenizer.codebook_bits == 6
    out = pipe.generate("a red circle moves right", frames=9, height=32, width=32, seed=0, cfg=2.0)
    assert out.videos.shape == (1, 9, 32, 32, 3) and out.videos.dtype == np.uint8
    block = out.blocks[0]
    assert tuple(block.fine.shape) == (3, 4, 4) and tuple(block.blueprint.shape) == (3, 2, 2)
    assert int(block.fine.max()) < 64
    sample = pipe.layout.parse(out.prompt_ids + out.token_ids[0])
    assert sample.turns[0].text() == "a red circle moves right" and sample.turns[1].blocks()[0] == block

    # 5. evaluate: every section runs and the report has its keys
    capsys.readouterr()
    ev_out = tmp_path / "eval"
    assert main(["eval", "model", "--model", str(run / "model"), "--n", "2", "--edits", "2", "--continuations", "1",
                 "--frames", "9", "--size", "32", "--out", str(ev_out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "Prompt adherence on held-out compositions (n = 2)" in printed
    rep = json.loads((ev_out / "report.json").read_text())
    assert set(rep) >= {"adherence", "editing", "continuation", "language", "timing", "files", "config"}
    assert set(rep["adherence"]["full"]) >= {"color", "shape", "motion", "object", "clip"}
    assert rep["adherence"]["full"]["clips"] == 2 and rep["adherence"]["preview"]["clips"] == 2
    assert rep["editing"]["n"] == 2 and rep["continuation"]["n"] == 1
    lang = rep["language"]
    assert lang["base_name"] == "tiny-llama" and math.isfinite(lang["base"]["perplexity"])
    assert math.isfinite(lang["trained"]["perplexity"]) and lang["trained"]["tokens"] == lang["base"]["tokens"]
    assert (ev_out / "samples.png").is_file() and (ev_out / "report.md").is_file()

    # 6. tools/judge_sections.py: one sampling judged as full clip, preview and upsampled blueprint
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import judge_sections

    capsys.readouterr()
    assert judge_sections.main([str(run / "model"), "--n", "2", "--frames", "9", "--size", "32", "--batch", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("2 clips,")
    rows = {ln.split()[0]: dict(zip(ln.split()[1::2], map(float, ln.split()[2::2]))) for ln in lines[-3:]}
    assert set(rows) == {"full", "preview", "upsampled"}
    assert all(set(r) == {"color", "shape", "motion", "object", "clip"} and all(0 <= v <= 1 for v in r.values())
               for r in rows.values())
    # --preview-only: the blueprint sampled alone, its preview judged (one row)
    assert judge_sections.main([str(run / "model"), "--n", "2", "--frames", "9", "--size", "32", "--batch", "2",
                                "--preview-only"]) == 0
    last = capsys.readouterr().out.splitlines()[-1].split()
    assert last[0] == "preview" and last[1::2] == ["color", "shape", "motion", "object", "clip"]
