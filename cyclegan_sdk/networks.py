"""Generators and discriminators of CycleGAN.

With the reference choices (instance norm without affine parameters, biased
convolutions, reflection padding, ConvTranspose upsampling) the parameter names
and shapes equal those of the reference implementation's ``state_dict``, so its
checkpoints load after nothing more than prefix and legacy-key clean-up.

Every instance-norm layer is a :class:`InstanceNorm`, whose statistics can be
pooled over a batch of tiles and then frozen: this is what makes tiled
translation of large images seamless (see :mod:`cyclegan_sdk.tiling`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

__all__ = [
    "DiscriminatorConfig",
    "GeneratorConfig",
    "InstanceNorm",
    "NLayerDiscriminator",
    "ResnetBlock",
    "ResnetGenerator",
    "UnetGenerator",
    "UnetSkipBlock",
    "build_discriminator",
    "build_generator",
    "init_weights",
]

NormKind = Literal["instance", "batch", "none"]
GeneratorKind = Literal["resnet", "unet"]
UpsampleKind = Literal["convtranspose", "resize", "bilinear"]


@dataclass
class GeneratorConfig:
    """Configuration of a generator; defaults are the reference's ``resnet_9blocks``.

    Args:
        generator: ``"resnet"`` (encoder, residual blocks, decoder) or ``"unet"``.
        input_nc: channels of the input image.
        output_nc: channels of the output image.
        ngf: filters of the first convolution.
        n_blocks: residual blocks of a ResNet generator (6 or 9 in the reference).
        num_downs: downsamplings of a U-Net (7 for ``unet_128``, 8 for ``unet_256``).
        norm: ``"instance"`` (reference), ``"batch"`` or ``"none"``.
        use_dropout: dropout 0.5 inside residual blocks / U-Net inner blocks.
        upsample: ``"convtranspose"`` (reference), ``"resize"`` (nearest
            upsampling followed by a 3x3 convolution, free of checkerboard
            artefacts) or ``"bilinear"`` (the same with bilinear upsampling,
            which also avoids the faint 2- and 4-pixel grid that nearest
            upsampling leaves early in training). For ResNet and U-Net
            generators (the U-Net's 4x4 transposed convolutions become
            resize-convolutions).
    """

    generator: GeneratorKind = "resnet"
    input_nc: int = 3
    output_nc: int = 3
    ngf: int = 64
    n_blocks: int = 9
    num_downs: int = 8
    norm: NormKind = "instance"
    use_dropout: bool = False
    upsample: UpsampleKind = "convtranspose"

    def __post_init__(self) -> None:
        if self.generator not in ("resnet", "unet"):
            raise ValueError(f"generator must be 'resnet' or 'unet', got {self.generator!r}")
        if self.norm not in ("instance", "batch", "none"):
            raise ValueError(f"norm must be 'instance', 'batch' or 'none', got {self.norm!r}")
        if self.upsample not in ("convtranspose", "resize", "bilinear"):
            raise ValueError(f"upsample must be 'convtranspose', 'resize' or 'bilinear', got {self.upsample!r}")
        for name in ("input_nc", "output_nc", "ngf"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.generator == "resnet" and self.n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {self.n_blocks}")
        if self.generator == "unet" and self.num_downs < 5:
            raise ValueError(f"num_downs must be >= 5 for a U-Net, got {self.num_downs}")

    @property
    def size_multiple(self) -> int:
        """Height and width of the input must be multiples of this."""
        return 4 if self.generator == "resnet" else 2**self.num_downs

    @property
    def min_size(self) -> int:
        """Smallest height/width the network accepts (reflection pads need room)."""
        return 8 if self.generator == "resnet" else 2**self.num_downs

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        return config_from_dict(cls, data, "generator config keys")


@dataclass
class DiscriminatorConfig:
    """Configuration of a PatchGAN discriminator; defaults are the reference's ``basic`` (70x70).

    Args:
        input_nc: channels of the judged image.
        ndf: filters of the first convolution.
        n_layers: strided convolution layers (3 gives 70x70 patches).
        norm: ``"instance"`` (reference), ``"batch"`` or ``"none"``.
    """

    input_nc: int = 3
    ndf: int = 64
    n_layers: int = 3
    norm: NormKind = "instance"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class InstanceNorm(nn.Module):
    r"""Instance normalisation without affine parameters, with pooled statistics.

    In the default mode this is ``nn.InstanceNorm2d(affine=False)``: each
    sample is normalised with its own per-channel mean and variance. Tiled
    translation instead needs one set of statistics for the whole image:

    - :meth:`pool` makes the next forward compute statistics over the whole
      batch (all tiles), weighting each pixel by a mask so that each image
      pixel counts once, then apply them to every tile and keep them;
    - afterwards (frozen) the kept statistics are applied to any input;
    - :meth:`reset` returns to per-sample statistics.

    Statistics are always accumulated in float32, also for bf16 inputs.

    Args:
        num_features: channels ``C``.
        eps: added to the variance.

    Shape:
        - Input: :math:`(N, C, H, W)`
        - Output: :math:`(N, C, H, W)`

    Example:
        >>> norm = InstanceNorm(4)
        >>> norm(torch.randn(2, 4, 8, 8)).shape
        torch.Size([2, 4, 8, 8])
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self._pool_weight: Tensor | None = None
        self._per_sample = False
        self._frozen = False
        # Buffers (not persistent: they are no part of the weights) so that a
        # compiled module treats new statistics as inputs, not as constants.
        self.register_buffer("_mean", torch.zeros(0), persistent=False)
        self.register_buffer("_var", torch.zeros(0), persistent=False)

    def pool(self, weight: Tensor, per_sample: bool = False) -> None:
        """Pool statistics over the next batch with per-pixel ``weight`` of shape ``(N, 1, H0, W0)``.

        ``weight`` is at input resolution and is area-resampled to each feature
        map's resolution. With ``per_sample`` each sample gets its own
        (weighted) statistics, otherwise the whole batch shares one set.
        """
        self._pool_weight = weight
        self._per_sample = per_sample
        self._frozen = False

    def freeze(self, mean: Tensor, var: Tensor) -> None:
        """Use these statistics (shape ``(C,)`` or ``(N, C)``) from now on."""
        self._pool_weight = None
        self._mean = mean.detach().float()
        self._var = var.detach().float()
        self._frozen = True

    def reset(self) -> None:
        self._pool_weight = None
        self._frozen = False
        self._mean = torch.zeros(0, device=self._mean.device)
        self._var = torch.zeros(0, device=self._var.device)

    @property
    def stats(self) -> tuple[Tensor, Tensor] | None:
        """The frozen ``(mean, var)``, or ``None`` in per-sample mode."""
        return (self._mean, self._var) if self._frozen else None

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(
                f"InstanceNorm expects (N, {self.num_features}, H, W), got {tuple(x.shape)}"
            )
        if self._pool_weight is not None:
            self._pool(x)
        if self._frozen:
            return self._apply_frozen(x)
        return torch.nn.functional.instance_norm(x, eps=self.eps)

    def _apply_frozen(self, x: Tensor) -> Tensor:
        # batch_norm in inference mode is exactly "normalise with these statistics", in one fused kernel.
        mean, var = self._mean, self._var
        if mean.ndim == 1:
            return torch.nn.functional.batch_norm(x, mean, var, training=False, eps=self.eps)
        n, c, h, w = x.shape
        y = torch.nn.functional.batch_norm(
            x.reshape(1, n * c, h, w), mean.reshape(-1), var.reshape(-1), training=False, eps=self.eps
        )
        return y.reshape(n, c, h, w)

    def _pool(self, x: Tensor) -> None:
        """Weighted per-channel mean and variance of ``x``, per sample or over the batch, then freeze them.

        Moments are accumulated in float32 a few samples at a time (bounded
        temporaries), around each sample's plain mean so that the variance
        does not suffer from cancellation, then combined exactly.
        """
        assert self._pool_weight is not None
        n, c, h, w = x.shape
        weight = torch.nn.functional.interpolate(
            self._pool_weight.to(x.device, torch.float32), size=(h, w), mode="area"
        )[:, 0]
        chunk = max(1, (1 << 24) // max(1, c * h * w))
        means, variances, totals = [], [], []
        for a in range(0, n, chunk):
            xc = x[a : a + chunk].to(torch.float32, copy=True)  # worked on in place below
            wc = weight[a : a + chunk]
            shift = xc.mean(dim=(2, 3))
            xc = xc.sub_(shift[:, :, None, None])
            total = wc.sum(dim=(1, 2))
            safe = total.clamp_min(1e-12)[:, None]
            first = torch.einsum("kchw,khw->kc", xc, wc) / safe
            second = torch.einsum("kchw,khw->kc", xc.square_(), wc) / safe
            means.append(shift + first)
            variances.append((second - first.square()).clamp_min(0))
            totals.append(total)
        mean, var, total = torch.cat(means), torch.cat(variances), torch.cat(totals)
        if not self._per_sample:
            share = (total / total.sum().clamp_min(1e-12))[:, None]
            pooled = (share * mean).sum(0)
            var = (share * (var + (mean - pooled).square())).sum(0)
            mean = pooled
        self.freeze(mean, var)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def config_from_dict(cls: type, data: Any, what: str) -> Any:
    """``cls(**data)`` for a config dataclass, refusing (and naming) keys it does not have."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what}: {', '.join(unknown)}")
    return cls(**data)


def _norm_layer(kind: NormKind, channels: int) -> nn.Module:
    if kind == "instance":
        return InstanceNorm(channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


def _use_bias(kind: NormKind) -> bool:
    # Batch norm has its own shift; the reference then drops the conv bias.
    return kind != "batch"


class ResnetBlock(nn.Module):
    """Residual block: pad, conv, norm, ReLU, [dropout], pad, conv, norm, plus the input.

    Shape:
        - Input: :math:`(N, C, H, W)`, ``H, W >= 2``
        - Output: :math:`(N, C, H, W)`
    """

    def __init__(self, dim: int, norm: NormKind = "instance", use_dropout: bool = False) -> None:
        super().__init__()
        bias = _use_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, bias=bias),
            _norm_layer(norm, dim),
            nn.ReLU(True),
        ]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, bias=bias),
            _norm_layer(norm, dim),
        ]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)


class _ResizeConv(nn.Sequential):
    """Nearest-neighbour (``"resize"``) or bilinear 2x upsampling then a 3x3 convolution (no checkerboard artefacts)."""

    def __init__(self, cin: int, cout: int, bias: bool, kind: UpsampleKind = "resize") -> None:
        bilinear = kind == "bilinear"
        super().__init__(
            nn.Upsample(scale_factor=2, mode="bilinear" if bilinear else "nearest",
                        align_corners=False if bilinear else None),
            nn.ReflectionPad2d(1),
            nn.Conv2d(cin, cout, kernel_size=3, bias=bias),
        )


def _upsample(kind: UpsampleKind, cin: int, cout: int, bias: bool, kernel_size: int, output_padding: int = 0) -> nn.Module:
    """A 2x upsampling layer: the reference's transposed convolution (``kernel_size``, stride 2, padding 1),
    or a :class:`_ResizeConv` for ``"resize"`` and ``"bilinear"``."""
    if kind == "convtranspose":
        return nn.ConvTranspose2d(cin, cout, kernel_size=kernel_size, stride=2, padding=1,
                                  output_padding=output_padding, bias=bias)
    return _ResizeConv(cin, cout, bias, kind)


class ResnetGenerator(nn.Module):
    """ResNet generator: 7x7 conv, two stride-2 downsamplings, residual blocks, two upsamplings, 7x7 conv, tanh.

    Args:
        config: a :class:`GeneratorConfig` with ``generator="resnet"``.

    Shape:
        - Input: :math:`(N, C_{in}, H, W)` in [-1, 1], ``H`` and ``W`` multiples of 4 and at least 8
        - Output: :math:`(N, C_{out}, H, W)` in [-1, 1]

    Example:
        >>> g = ResnetGenerator(GeneratorConfig(ngf=8, n_blocks=2))
        >>> g(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 3, 32, 32])
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        ngf, norm, bias = config.ngf, config.norm, _use_bias(config.norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(config.input_nc, ngf, kernel_size=7, bias=bias),
            _norm_layer(norm, ngf),
            nn.ReLU(True),
        ]
        for i in range(2):
            mult = 2**i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=bias),
                _norm_layer(norm, ngf * mult * 2),
                nn.ReLU(True),
            ]
        for _ in range(config.n_blocks):
            layers.append(ResnetBlock(ngf * 4, norm=norm, use_dropout=config.use_dropout))
        for i in range(2):
            mult = 2 ** (2 - i)
            cin, cout = ngf * mult, ngf * mult // 2
            up = _upsample(config.upsample, cin, cout, bias, kernel_size=3, output_padding=1)
            layers += [up, _norm_layer(norm, cout), nn.ReLU(True)]
        layers += [
            nn.ReflectionPad2d(3),
            nn.Conv2d(ngf, config.output_nc, kernel_size=7),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class UnetSkipBlock(nn.Module):
    """One level of the U-Net: down, the inner levels, up, and a skip connection around them.

    Shape:
        - Input: :math:`(N, C_{outer}, H, W)` (``input_nc`` channels for the outermost level)
        - Output: :math:`(N, 2 C_{outer}, H, W)`; the outermost level returns :math:`(N, C_{outer}, H, W)`
    """

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: NormKind = "instance",
        use_dropout: bool = False,
        upsample: UpsampleKind = "convtranspose",
    ) -> None:
        super().__init__()
        self.outermost = outermost
        bias = _use_bias(norm)
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=bias)

        def up(cin: int, cout: int, up_bias: bool) -> nn.Module:
            return _upsample(upsample, cin, cout, up_bias, kernel_size=4)

        if outermost:
            assert submodule is not None
            layers = [
                downconv,
                submodule,
                nn.ReLU(True),
                up(inner_nc * 2, outer_nc, True),
                nn.Tanh(),
            ]
        elif innermost:
            layers = [
                nn.LeakyReLU(0.2, True),
                downconv,
                nn.ReLU(True),
                up(inner_nc, outer_nc, bias),
                _norm_layer(norm, outer_nc),
            ]
        else:
            assert submodule is not None
            layers = [
                nn.LeakyReLU(0.2, True),
                downconv,
                _norm_layer(norm, inner_nc),
                submodule,
                nn.ReLU(True),
                up(inner_nc * 2, outer_nc, bias),
                _norm_layer(norm, outer_nc),
            ]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net generator with ``num_downs`` levels (the reference's ``unet_128``: 7, ``unet_256``: 8).

    Shape:
        - Input: :math:`(N, C_{in}, H, W)`, ``H`` and ``W`` multiples of ``2**num_downs``
        - Output: :math:`(N, C_{out}, H, W)`

    Example:
        >>> g = UnetGenerator(GeneratorConfig(generator="unet", num_downs=5, ngf=4))
        >>> g(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 3, 32, 32])
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        ngf, norm, up = config.ngf, config.norm, config.upsample
        block = UnetSkipBlock(ngf * 8, ngf * 8, norm=norm, innermost=True, upsample=up)
        for _ in range(config.num_downs - 5):
            block = UnetSkipBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=config.use_dropout,
                                  upsample=up)
        block = UnetSkipBlock(ngf * 4, ngf * 8, submodule=block, norm=norm, upsample=up)
        block = UnetSkipBlock(ngf * 2, ngf * 4, submodule=block, norm=norm, upsample=up)
        block = UnetSkipBlock(ngf, ngf * 2, submodule=block, norm=norm, upsample=up)
        self.model = UnetSkipBlock(
            config.output_nc, ngf, input_nc=config.input_nc, submodule=block, outermost=True, norm=norm, upsample=up
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator: a grid of real/fake scores, one per overlapping patch.

    Shape:
        - Input: :math:`(N, C, H, W)`
        - Output: :math:`(N, 1, H', W')` (for 256x256 and 3 layers, 30x30)

    Example:
        >>> d = NLayerDiscriminator(DiscriminatorConfig(ndf=8))
        >>> d(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 1, 6, 6])
    """

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        ndf, norm, bias = config.ndf, config.norm, _use_bias(config.norm)
        layers: list[nn.Module] = [
            nn.Conv2d(config.input_nc, ndf, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, config.n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, kernel_size=4, stride=2, padding=1, bias=bias),
                _norm_layer(norm, ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**config.n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, kernel_size=4, stride=1, padding=1, bias=bias),
            _norm_layer(norm, ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, kernel_size=4, stride=1, padding=1),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def build_generator(config: GeneratorConfig) -> nn.Module:
    """The generator that ``config`` describes."""
    if config.generator == "resnet":
        return ResnetGenerator(config)
    return UnetGenerator(config)


def build_discriminator(config: DiscriminatorConfig) -> NLayerDiscriminator:
    """The discriminator that ``config`` describes."""
    return NLayerDiscriminator(config)


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """Reference initialisation: conv weights ~ N(0, gain), biases 0; batch-norm weights ~ N(1, gain)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net
