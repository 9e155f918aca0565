"""A stand-alone statement of the reference implementation's ResNet generator, for comparisons.

Written the reference's way (``nn.InstanceNorm2d(affine=False)``, one flat
``nn.Sequential``), independent of :mod:`cyclegan_sdk.networks`, so tests can
check that our networks load its checkpoints and compute the same outputs.
"""

from __future__ import annotations

import functools

import torch
from torch import nn


class ReferenceResnetBlock(nn.Module):
    def __init__(self, dim: int, use_dropout: bool = False) -> None:
        super().__init__()
        norm = functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
        block = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), norm(dim), nn.ReLU(True)]
        if use_dropout:
            block.append(nn.Dropout(0.5))
        block += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), norm(dim)]
        self.conv_block = nn.Sequential(*block)

    def forward(self, x):
        return x + self.conv_block(x)


class ReferenceResnetGenerator(nn.Module):
    def __init__(self, input_nc=3, output_nc=3, ngf=64, n_blocks=9, use_dropout=False) -> None:
        super().__init__()
        norm = functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=True), norm(ngf), nn.ReLU(True)]
        for i in range(2):
            m = 2**i
            model += [nn.Conv2d(ngf * m, ngf * m * 2, 3, stride=2, padding=1, bias=True), norm(ngf * m * 2), nn.ReLU(True)]
        for _ in range(n_blocks):
            model.append(ReferenceResnetBlock(ngf * 4, use_dropout))
        for i in range(2):
            m = 2 ** (2 - i)
            model += [
                nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, stride=2, padding=1, output_padding=1, bias=True),
                norm(ngf * m // 2),
                nn.ReLU(True),
            ]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


def randomised(net: nn.Module, seed: int = 0, std: float = 0.05) -> nn.Module:
    """Give every parameter random values (biases too), so comparisons are not trivially zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return net.eval()
