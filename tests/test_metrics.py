import math

import numpy as np
import torch

from vidgpt.metrics import psnr, ssim


def test_psnr_known_value_and_identity():
    x = torch.zeros(1, 3, 5, 16, 16)
    y = x + 0.2  # mse 0.04, range 2 -> 10*log10(4/0.04) = 20 dB
    assert abs(psnr(x, y) - 20.0) < 1e-4
    assert math.isinf(psnr(x, x))


def test_uint8_arrays_use_255_range():
    a = np.zeros((2, 8, 8, 3), np.uint8)
    b = a + 10
    assert abs(psnr(a, b) - 10 * math.log10(255**2 / 100)) < 1e-4


def test_ssim_bounds():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 1, 32, 32, generator=g) * 2 - 1
    assert abs(ssim(x, x) - 1.0) < 1e-5
    noisy = (x + 0.5 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    assert ssim(x, noisy) < 0.7
