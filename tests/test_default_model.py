"""The shipped default model (model/): it loads on the CPU and the README's main job runs on it.

Skipped while no model ships. The model is mid-training (issue 11): its clips follow the colour a prompt names (since
piece 8) and, since piece 40 (shipped 2026-12-07 with its copy read-out sampled at gain 2), the way a straight move
goes more often than not; not yet the shape. vidgpt.json says so (`status`, printed at load). So this guards what holds
today: the shipped form (delta, bf16, <= 50 MB, the repo's tokenizer referenced), the model's default clip, one full
clip of the main command on the fast path (the right shape, not blank), the asked colour on previews, and the asked
way of a straight move on previews (judged by the project's judge).
"""

import json

import numpy as np
import pytest

from vidgpt.generate.pipeline import default_model_dir

MODEL = default_model_dir()
pytestmark = [pytest.mark.skipif(not (MODEL / "vidgpt.json").is_file(), reason=f"no shipped model at {MODEL}"),
              pytest.mark.usefixtures("one_thread")]


def test_the_shipped_model_is_small_and_describes_itself():
    meta = json.loads((MODEL / "vidgpt.json").read_text())
    assert meta["form"] == "delta" and meta["base"] == "smollm2-135m"
    assert meta["default_clip"] == {"frames": 9, "height": 128, "width": 128}
    assert meta["contrast_motion"] is True  # motion-contrast guidance by default (model/README.md, measured at n = 300)
    assert meta["copy_gain"] == 2.0  # the copy read-out's gain at sampling (model/README.md, "Piece 40 shipped")
    assert meta["best_of"] == 4 and (MODEL / "motion_verifier.safetensors").is_file()  # model/README.md, "Best of N"
    assert meta["fine_temperature"] == 0.3  # the fine section after the kept blueprint (model/README.md, "Fine temperature")
    assert (MODEL / meta["video_tokenizer"]).resolve() == (MODEL.parent / "tokenizer").resolve()
    assert (MODEL / meta["video_tokenizer"] / "config.json").is_file()
    size = sum(p.stat().st_size for p in MODEL.rglob("*") if p.is_file())
    assert size <= 50 * 2**20, f"model/ holds {size / 2**20:.1f} MB"


def test_the_main_job_draws_a_clip_of_the_default_size():
    from vidgpt.generate import VidGPT

    pipe = VidGPT.from_pretrained(device="cpu")
    assert pipe.default_clip == (9, 128, 128)
    assert pipe.default_negative("a red circle moving right") == "a red circle moving left"
    out = pipe.generate("a red circle moving right", seed=0, progress=False)
    video = np.asarray(out.videos[0])
    assert video.shape == (9, 128, 128, 3) and video.dtype == np.uint8
    assert video.std() > 5  # not a blank frame
    block = out.blocks[0]
    assert block.shape == (3, 16, 16) and block.blueprint.shape == (3, 8, 8)


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_the_shipped_model_draws_the_colour_it_is_asked_for(dtype):
    """Prompt adherence that pieces 1-7 never had (piece 8, colour-word rows): blueprint previews of three prompts,
    four seeds each; the largest named colour region must be the asked colour in at least 8 of 12 (chance ~1.3;
    measured 11 of 12 when shipped). Motion and shape are not asserted: the model does not follow them yet.
    int8: `--int8-weights` (the model's int8_maxima.safetensors smooths it) keeps that adherence."""
    from vidgpt.data.judge import segment
    from vidgpt.generate import VidGPT
    from vidgpt.generate.fast_decode import int8_supported

    if dtype == "int8" and not int8_supported():
        pytest.skip("no fbgemm/x86 quantized kernels in this PyTorch")
    # one blueprint a prompt: the colour is decided before any verifier picks (best_of would only cost 4x here)
    pipe = VidGPT.from_pretrained(device="cpu", decode_options={"dtype": dtype, "best_of": 1})
    if dtype == "int8":
        layers = {i for i in pipe.backend.int8_maxima if i >= 0}  # -1: the head's input, for int8_head
        assert pipe.backend.layer_kind == "int8" and layers == set(range(pipe.model.config.num_hidden_layers))
    hits = []
    for prompt, colour in (("a red circle moving right", "red"), ("a blue square moving left", "blue"),
                           ("a yellow triangle moving up", "yellow")):
        out = pipe.generate(prompt, seed=0, num=4, blueprint_only=True, progress=False)
        for video in out.videos:
            names, label = segment(np.asarray(video))
            counts = np.bincount(label[label >= 0].ravel(), minlength=len(names))
            hits.append(bool(counts.sum()) and names[int(counts.argmax())] == colour)
    assert sum(hits) >= 8, f"asked colours drawn in {sum(hits)} of 12 previews"


def test_the_shipped_model_moves_the_object_the_asked_way():
    """Previews of four straight-move prompts (one a direction), four seeds each, judged by the project's judge: the
    object moves the asked way (within 45 degrees, fast enough to count as a move) in at least 6 of 16 and at least
    three times as often as the opposite way. Measured when shipped (one thread): 8 of 16 the asked way, 1 the
    opposite; the same model at its trained gain 0.05 draws 3 and 1, at gain 0 4 and 2 (so the read-out's gain is
    what this guards)."""
    from vidgpt.data.judge import MIN_SPEED, judge_clip
    from vidgpt.data.world.scene import DIRECTIONS
    from vidgpt.generate import VidGPT

    pipe = VidGPT.from_pretrained(device="cpu")
    asked = opposite = 0
    for colour, shape, way in (("red", "circle", "right"), ("blue", "square", "left"), ("green", "triangle", "up"),
                               ("yellow", "hexagon", "down")):
        out = pipe.generate(f"a {colour} {shape} moving {way}", seed=0, num=4, blueprint_only=True, progress=False)
        dx, dy = DIRECTIONS[way]
        for video in out.videos:
            scene = {"objects": [{"shape": shape, "color": colour, "motion": way}]}
            m = judge_clip(np.asarray(video), scene).objects[0].measures
            if "vx" not in m or np.hypot(m["vx"], m["vy"]) < MIN_SPEED:
                continue
            cos = (m["vx"] * dx + m["vy"] * dy) / np.hypot(m["vx"], m["vy"])
            asked += cos >= np.cos(np.pi / 4)
            opposite += cos <= -np.cos(np.pi / 4)
    assert asked >= 6 and asked >= 3 * opposite, f"asked way {asked} of 16, opposite {opposite}"


def test_the_shipped_verifier_reads_the_way_of_true_blueprints():
    """model/motion_verifier.safetensors (what `best_of` picks blueprints with; tools/train_verifier.py on the
    training shards): on the true blueprints of 8 held-out scenes of the model's scope, rendered and encoded at half
    size by the shipped tokenizer as the training data was, it names the scene's direction in at least 7 of 8
    (measured 8 of 8 when shipped)."""
    import torch

    from vidgpt.data.synthetic import load_world_config, render_scene, sample_scene
    from vidgpt.tokenizer import VideoTokenizer, blueprint_input
    from vidgpt.verifier import load_verifier

    meta = json.loads((MODEL / "vidgpt.json").read_text())
    verifier = load_verifier(MODEL)
    assert verifier is not None and verifier.bits == meta["vocab"]["codebook_bits"]
    tok = VideoTokenizer.from_pretrained(MODEL / meta["video_tokenizer"], device="cpu")
    world = load_world_config(None, meta["scope"]["world_set"], frames=9)
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(8):
        scene = sample_scene(rng, world, "heldout")
        frames = render_scene(scene, frames=9, height=128, width=128, fps=8)
        x = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0
        with torch.inference_mode():
            codes = tok.encode(blueprint_input(x, getattr(tok, "space_factor", 8)))
        hits += int(verifier(codes).argmax(-1)) == verifier.directions.index(scene.objects[0].motion)
    assert hits >= 7, f"the verifier named the direction of {hits} of 8 true blueprints"
