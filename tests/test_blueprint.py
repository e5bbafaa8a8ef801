import pytest
import torch

from vidgpt.layout import blueprint_shape
from vidgpt.tokenizer import TokenizerConfig, VideoTokenizer, blueprint_input


@pytest.mark.parametrize("H,W", [(128, 128), (120, 64), (72, 40), (64, 96)])
def test_blueprint_latent_matches_layout(H, W):
    tok = VideoTokenizer(TokenizerConfig(codebook_bits=8, channels=8, norm_groups=4)).eval()
    x = torch.rand(1, 3, 5, H, W) * 2 - 1
    bp = tok.encode(blueprint_input(x))
    assert tuple(bp.shape[1:]) == blueprint_shape(tok.latent_shape(5, H, W))


def test_blueprint_of_even_latent_is_2x2_average():
    x = torch.arange(16.0).view(1, 1, 1, 4, 4).expand(1, 3, 1, 4, 4) / 16
    x = torch.nn.functional.interpolate(x[:, :, 0], scale_factor=4, mode="nearest")[:, :, None]  # 16x16
    y = blueprint_input(x)
    assert y.shape[-2:] == (8, 8)
    assert torch.allclose(y, torch.nn.functional.avg_pool2d(x[:, :, 0], 2)[:, :, None])
