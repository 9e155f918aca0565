"""CycleGAN losses: adversarial (lsgan, vanilla, hinge, wgan-gp), cycle consistency and identity.

Each loss is a function and an ``nn.Module`` twin. Losses are computed in
float32 whatever precision produced their inputs.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GAN_MODES", "gan_loss", "GANLoss", "cycle_loss", "identity_loss", "gradient_penalty"]

GanMode = Literal["lsgan", "vanilla", "hinge", "wgangp"]
GAN_MODES = ("lsgan", "vanilla", "hinge", "wgangp")


def gan_loss(prediction: Tensor, target_is_real: bool, mode: GanMode = "lsgan", for_discriminator: bool = True) -> Tensor:
    """Adversarial loss of discriminator scores.

    Args:
        prediction: raw discriminator output (PatchGAN score map), any shape.
        target_is_real: whether the scored images should be judged real.
        mode: ``"lsgan"`` (least squares, the reference default), ``"vanilla"``
            (binary cross-entropy on logits), ``"hinge"`` or ``"wgangp"`` (Wasserstein;
            add :func:`gradient_penalty` to the discriminator loss).
        for_discriminator: hinge loss differs for the discriminator and the generator.

    Returns:
        A float32 scalar.

    Example:
        >>> gan_loss(torch.ones(1, 1, 30, 30), True).item()
        0.0
    """
    p = prediction.float()
    if mode == "lsgan":
        return F.mse_loss(p, torch.full_like(p, 1.0 if target_is_real else 0.0))
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(p, torch.full_like(p, 1.0 if target_is_real else 0.0))
    if mode == "hinge":
        if for_discriminator:
            return F.relu(1.0 - p).mean() if target_is_real else F.relu(1.0 + p).mean()
        return -p.mean()
    if mode == "wgangp":
        return -p.mean() if target_is_real else p.mean()
    raise ValueError(f"gan_mode must be one of {', '.join(GAN_MODES)}, got {mode!r}")


class GANLoss(nn.Module):
    """Module twin of :func:`gan_loss`."""

    def __init__(self, mode: GanMode = "lsgan") -> None:
        super().__init__()
        if mode not in GAN_MODES:
            raise ValueError(f"gan_mode must be one of {', '.join(GAN_MODES)}, got {mode!r}")
        self.mode = mode

    def forward(self, prediction: Tensor, target_is_real: bool, for_discriminator: bool = True) -> Tensor:
        return gan_loss(prediction, target_is_real, self.mode, for_discriminator)


def cycle_loss(reconstructed: Tensor, real: Tensor) -> Tensor:
    """L1 distance between an image and its round trip A -> B -> A (float32 scalar)."""
    return F.l1_loss(reconstructed.float(), real.float())


def identity_loss(same: Tensor, real: Tensor) -> Tensor:
    """L1 distance between ``G_AB(b)`` and ``b``: a generator should leave its target domain alone."""
    return F.l1_loss(same.float(), real.float())


def gradient_penalty(discriminator: nn.Module, real: Tensor, fake: Tensor, weight: float = 10.0) -> Tensor:
    """WGAN-GP penalty: ``weight * (||grad D(x)|| - 1)^2`` on random interpolates of real and fake.

    Shape:
        - real, fake: :math:`(N, C, H, W)`
    """
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    score = discriminator(mixed)
    (grad,) = torch.autograd.grad(score.float().sum(), mixed, create_graph=True)
    norm = grad.float().flatten(1).norm(2, dim=1)
    return weight * ((norm - 1.0) ** 2).mean()
