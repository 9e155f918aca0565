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


class ReferencePatchDiscriminator(nn.Module):
    """The reference's ``NLayerDiscriminator`` with instance norm (CycleGAN's default)."""

    def __init__(self, input_nc=3, ndf=64, n_layers=3) -> None:
        super().__init__()
        norm = functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
        seq = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=True), norm(ndf * mult),
                    nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=True), norm(ndf * mult),
                nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


def reference_step(g_a, g_b, d_a, d_b, opt_g, opt_d, real_a, real_b, lambda_a=10.0, lambda_b=10.0, lambda_idt=0.5):
    """One optimisation step as the reference's ``CycleGANModel.optimize_parameters`` (lsgan, no image pool).

    Reference names: ``g_a``: A -> B, ``g_b``: B -> A, ``d_a`` judges B images (fakes of g_a), ``d_b`` judges A.
    """
    mse, l1 = nn.MSELoss(), nn.L1Loss()

    def gan(pred, real):
        return mse(pred, torch.full_like(pred, 1.0 if real else 0.0))

    fake_b = g_a(real_a)
    rec_a = g_b(fake_b)
    fake_a = g_b(real_b)
    rec_b = g_a(fake_a)
    for p in [*d_a.parameters(), *d_b.parameters()]:
        p.requires_grad_(False)
    opt_g.zero_grad()
    loss_idt_a = l1(g_a(real_b), real_b) * lambda_b * lambda_idt
    loss_idt_b = l1(g_b(real_a), real_a) * lambda_a * lambda_idt
    loss_g = (gan(d_a(fake_b), True) + gan(d_b(fake_a), True) + l1(rec_a, real_a) * lambda_a
              + l1(rec_b, real_b) * lambda_b + loss_idt_a + loss_idt_b)
    loss_g.backward()
    opt_g.step()
    for p in [*d_a.parameters(), *d_b.parameters()]:
        p.requires_grad_(True)
    opt_d.zero_grad()
    loss_d_a = (gan(d_a(real_b), True) + gan(d_a(fake_b.detach()), False)) * 0.5
    loss_d_a.backward()
    loss_d_b = (gan(d_b(real_a), True) + gan(d_b(fake_a.detach()), False)) * 0.5
    loss_d_b.backward()
    opt_d.step()
    return loss_g.item(), loss_d_a.item(), loss_d_b.item()
