"""The patch (space-to-depth) and 16x variants of the tokenizer: shapes, causality, hashing, losses."""

import pytest
import torch

from vidgpt.errors import TokenizerError
from vidgpt.tokenizer import TokenizerConfig, VideoTokenizer, blueprint_input
from vidgpt.tokenizer.layers import depth_to_space, space_to_depth
from vidgpt.tokenizer.losses import reconstruction_loss


def tiny(**kw) -> VideoTokenizer:
    torch.manual_seed(0)
    base = dict(codebook_bits=10, channels=8, norm_groups=4)
    base.update(kw)
    return VideoTokenizer(TokenizerConfig(**base)).eval()


VARIANTS = {
    "p4-8x": dict(patch_size=4, channel_mults=[1, 2, 2], res_time_kernel=1),
    "p2-8x": dict(patch_size=2, channel_mults=[1, 2, 2, 2]),
    "p8-16x": dict(patch_size=8, space_factor=16, channel_mults=[1, 2, 2], res_time_kernel=1),
    "p4-16x": dict(patch_size=4, space_factor=16, channel_mults=[1, 2, 2]),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_shapes_and_causality(name):
    tok = tiny(**VARIANTS[name])
    f = tok.space_factor
    x = torch.rand(1, 3, 9, 4 * f, 2 * f, generator=torch.Generator().manual_seed(1)) * 2 - 1
    codes = tok.encode(x)
    assert codes.shape == (1, 3, 4, 2) == (1, *tok.latent_shape(9, 4 * f, 2 * f))
    assert tok.video_shape(3, 4, 2) == (9, 4 * f, 2 * f)
    assert tok.decode(codes).shape == x.shape
    y = x.clone()
    y[:, :, 5:] = 0.3  # frames 5.. only feed latent frame 2
    assert torch.equal(tok.encode(y)[:, :2], codes[:, :2])
    assert torch.equal(tok.encode(x[:, :, :1])[:, 0], codes[:, 0])  # an image is the first frame of a clip
    c2 = codes.clone()
    c2[:, 2] = (c2[:, 2] + 1) % tok.codebook_size
    assert torch.equal(tok.decode(codes)[:, :, :5], tok.decode(c2)[:, :, :5])


def test_16x_rejects_sizes_that_are_not_multiples_of_16():
    tok = tiny(**VARIANTS["p8-16x"])
    with pytest.raises(TokenizerError, match="multiples of 16"):
        tok.encode(torch.zeros(1, 3, 1, 24, 32))
    assert tok.latent_shape(17, 128, 128) == (5, 8, 8)
    assert blueprint_input(torch.zeros(1, 3, 5, 128, 96), 16).shape[-2:] == (64, 48)


def test_space_to_depth_round_trip():
    x = torch.randn(2, 3, 5, 16, 24)
    for p in (1, 2, 4, 8):
        y = space_to_depth(x, p)
        assert y.shape == (2, 3 * p * p, 5, 16 // p, 24 // p)
        assert torch.equal(depth_to_space(y, p), x)
    # channel c*p*p + dy*p + dx holds pixel (p*i + dy, p*j + dx)
    y = space_to_depth(x, 4)
    assert torch.equal(y[:, 1 * 16 + 2 * 4 + 3, :, 1, 2], x[:, 1, :, 4 + 2, 8 + 3])


def test_new_fields_keep_the_old_hash_and_change_it_when_set():
    assert TokenizerConfig().architecture_hash() == TokenizerConfig(patch_size=1, space_factor=8, res_time_kernel=3).architecture_hash()
    hashes = {TokenizerConfig(**v).architecture_hash() for v in VARIANTS.values()} | {TokenizerConfig().architecture_hash()}
    assert len(hashes) == len(VARIANTS) + 1


@pytest.mark.parametrize("bad", [dict(patch_size=3), dict(space_factor=12), dict(patch_size=4, channel_mults=[1, 2]), dict(patch_size=1, channel_mults=[1, 2, 2]), dict(res_time_kernel=2)])
def test_bad_variant_configs(bad):
    with pytest.raises(ValueError):
        TokenizerConfig(**bad)


def test_gradient_loss_sees_edges():
    x = torch.zeros(1, 3, 1, 16, 16)
    x[..., 4:12, 4:12] = 1.0
    blurred = torch.nn.functional.avg_pool3d(x, (1, 3, 3), stride=1, padding=(0, 1, 1))
    assert reconstruction_loss(x, x, 1.0, 1.0, grad_weight=1.0) == 0
    plain = reconstruction_loss(blurred, x, 1.0, 0.0)
    sharp = reconstruction_loss(blurred, x, 1.0, 0.0, grad_weight=1.0)
    assert sharp > plain > 0


def test_world_scenes_in_the_training_mixture():
    import numpy as np

    from vidgpt.data.judge import judge_clip
    from vidgpt.data.synthetic import WorldConfig, is_heldout
    from vidgpt.train.tokenizer_data import ClipSampler, world_scene_and_fps, world_scene_clip

    sampler = ClipSampler([], True, 1.0, [], 8, world_prob=1.0)
    a = sampler.sample(np.random.default_rng(3), 5, 64, 64)
    rng = np.random.default_rng(3)
    rng.random(), rng.random()  # the two mixture draws
    assert np.array_equal(a, world_scene_clip(rng, 5, 64, 64)) and a.shape == (5, 64, 64, 3) and a.dtype == np.uint8
    # the clips are scenes of the train split (never a held-out composition) that the judge reads
    for seed in range(3):
        scene, fps = world_scene_and_fps(np.random.default_rng(seed))
        assert not any(is_heldout(o, WorldConfig()) for o in scene.objects)
        assert judge_clip(world_scene_clip(np.random.default_rng(seed), 9, 64, 64), scene, fps=fps).passed
    # world_prob 0 keeps the old stream: the same clips as before the option existed
    plain = ClipSampler([], True, 1.0, [], 8).sample(np.random.default_rng(5), 5, 32, 32)
    from vidgpt.data.synthetic import random_training_clip

    rng = np.random.default_rng(5)
    rng.random()
    assert np.array_equal(plain, random_training_clip(rng, 5, 32, 32, None))
