"""Large-kernel valid convolutions by FFT tiles equal F.conv2d (the heads of the per-pixel maps)."""

import math

import pytest
import torch
import torch.nn.functional as F

from ferrolens.rvae.fftconv import ValidConv, tile_size

torch.set_num_threads(2)


@pytest.mark.parametrize(
    "n, c, h, w, o, k, groups",
    [
        (2, 6, 30, 41, 3, 8, 1),  # several tiles per side, batch of 2
        (1, 16, 50, 37, 4, 20, 2),  # groups, n = 24's kernel, one tile row
        (1, 8, 20, 21, 2, 20, 1),  # one output row of two (frame about the window)
        (3, 4, 9, 70, 8, 8, 4),  # two output rows, groups of one channel
    ],
)
def test_fft_tiles_equal_a_float64_convolution(n, c, h, w, o, k, groups):
    torch.manual_seed(k + c)
    x = F.leaky_relu(torch.randn(n, c, h, w), 0.1)
    weight = torch.randn(o, c // groups, k, k) * 20 / math.sqrt(c // groups * k * k)  # outputs of order 10-50
    bias = torch.randn(o)
    conv = ValidConv(weight, bias, groups)
    assert conv.fft
    got = conv(x)
    ref = F.conv2d(x.double(), weight.double(), bias.double(), groups=groups)
    assert got.shape == ref.shape == (n, o, h - k + 1, w - k + 1) and got.dtype == torch.float32
    assert ref.abs().max() > 10
    # float32 rounding of sums of c·k² terms: F.conv2d's own error is of the same order (up to 4e-4 at n = 24)
    assert (got.double() - ref).abs().max() <= 1e-4
    # a wrong tiling (an output shifted by one pixel, a tile's outputs from its neighbour) is off by O(1)
    assert (got[..., 1:].double() - ref[..., :-1]).abs().max() > 1


def test_small_kernels_and_tiny_blocks():
    torch.manual_seed(0)
    x, weight, bias = torch.randn(2, 3, 12, 13), torch.randn(5, 3, 3, 3), torch.randn(5)
    small = ValidConv(weight, bias)
    assert not small.fft  # below FFT_FROM: F.conv2d itself
    torch.testing.assert_close(small(x), F.conv2d(x, weight, bias), rtol=0, atol=0)
    x, weight = torch.randn(1, 4, 60, 40), torch.randn(2, 4, 8, 8)
    whole, blocks = ValidConv(weight, None), ValidConv(weight, None, block_mb=1e-6)  # one tile row at a time
    torch.testing.assert_close(blocks(x), whole(x), rtol=0, atol=1e-5)
    torch.testing.assert_close(whole(x), F.conv2d(x, weight), rtol=0, atol=1e-4)
    assert [tile_size(k) for k in (4, 8, 16, 20)] == [16, 32, 64, 64]
