"""A plain U-Net (``nn.Module``): no Lightning, no I/O, no plotting.

Shapes: input ``(batch, in_channels, H, W)`` float32 → logits
``(batch, n_classes, H, W)``, for any ``H, W ≥ 1``: the input is padded on the
bottom/right to a multiple of ``2**depth`` (reflect where possible, else
replicate) and the output cropped back, so no size assertion is needed.

With the defaults (``depth=3, base_filters=16``) the encoder has 16-32-64
filters and the bottleneck 128, the size of the field's reference U-Net.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _block(c_in: int, c_out: int, n_convs: int, batchnorm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_convs):
        # no conv bias before batch-norm: BN's shift makes it redundant
        layers.append(nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """U-Net for per-pixel classification.

    Parameters
    ----------
    in_channels : image channels (1 for a grey-scale frame).
    n_classes : output classes (logit channels).
    depth : number of 2×2 max-poolings; filters at level ``l`` are
        ``base_filters * 2**l`` and the bottleneck has ``base_filters * 2**depth``.
    base_filters : filters of the first level (16 → 16-32-64 / 128 at depth 3).
    convs_per_block : 3×3 convolutions (+BN+ReLU) per level (2 in the classic U-Net).
    batchnorm : batch-normalisation after every convolution.
    dropout : channel dropout probability applied to the bottleneck (0 = off).
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 3,
        depth: int = 3,
        base_filters: int = 16,
        convs_per_block: int = 2,
        batchnorm: bool = True,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if depth < 1 or base_filters < 1 or convs_per_block < 1 or n_classes < 1:
            raise ValueError("depth, base_filters, convs_per_block and n_classes must be ≥ 1")
        self.depth = depth
        self.convs_per_block = convs_per_block
        widths = [base_filters * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths[:-1]:
            self.down.append(_block(c, w, convs_per_block, batchnorm))
            c = w
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = _block(c, widths[-1], convs_per_block, batchnorm)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for level in reversed(range(depth)):
            # transposed 2×2/2 convolution: each output pixel depends on exactly one
            # coarse pixel, so tiles aligned on 2**depth see the same computation
            self.up.append(nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2))
            self.merge.append(_block(2 * widths[level], widths[level], convs_per_block, batchnorm))
        self.head = nn.Conv2d(widths[0], n_classes, 1)

    @property
    def multiple(self) -> int:
        """Input sizes are padded to a multiple of this (``2**depth``)."""
        return 1 << self.depth

    def context_margin(self) -> int:
        """Pixels from an input edge beyond which the output no longer depends on
        what lies past that edge (half the receptive field + the pooling grid).

        Tiles are blended only where they are at least this far from a cut.
        """
        return context_margin(self.depth, self.convs_per_block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.dropout(self.bottleneck(x))
        for up, merge, skip in zip(self.up, self.merge, reversed(skips), strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)[..., :h, :w]


def context_margin(depth: int, convs_per_block: int) -> int:
    """Receptive-field half-width of :class:`UNet` in input pixels, plus ``2**depth``.

    Receptive-field size: each 3×3 conv at stride ``s`` adds ``2s``, each 2×2
    pool adds ``s`` (then ``s`` doubles); transposed 2×2/2 convs add nothing.
    """
    size, stride = 1, 1
    for _ in range(depth):
        size += 2 * convs_per_block * stride + stride
        stride *= 2
    size += 2 * convs_per_block * stride  # bottleneck
    for _ in range(depth):
        stride //= 2
        size += 2 * convs_per_block * stride
    return size // 2 + 2**depth


def fuse_for_inference(net: UNet, logit_bias: torch.Tensor | None = None) -> UNet:
    """An eval-mode copy of ``net`` for fast inference: every batch-norm folded
    into the convolution before it (equal outputs to float rounding, one
    pass less over each activation) and weights in channels-last layout,
    which oneDNN/cuDNN convolutions prefer. ``net`` itself is left unchanged.

    ``logit_bias`` ``(K,)`` (the model's calibrated decision, :mod:`.calibrate`) is added to the
    head's bias: the copy's logits are ``net(x) + logit_bias``."""
    net = copy.deepcopy(net).eval()
    if logit_bias is not None:
        head_bias = net.head.bias
        assert head_bias is not None  # the head convolution is built with a bias
        with torch.no_grad():
            head_bias += logit_bias.to(head_bias)
    for block in net.modules():
        if isinstance(block, nn.Sequential):
            layers = list(block)
            for i in range(len(layers) - 1):
                conv, norm = layers[i], layers[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                    block[i] = fuse_conv_bn_eval(conv, norm)
                    block[i + 1] = nn.Identity()
    # Module.to takes memory_format at run time (documented), but torch's overloads leave it out
    return net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
