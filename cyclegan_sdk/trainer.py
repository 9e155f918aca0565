"""Trainer: CycleGAN training as the reference does it, faster, resumable and scalable.

Two generators (``G_AB``: A -> B, ``G_BA``: B -> A) and two PatchGAN
discriminators (``D_A`` judges domain-A images, ``D_B`` domain-B images) are
trained with the reference's losses and schedule: least-squares GAN loss,
cycle consistency weighted by ``lambda_a``/``lambda_b``, identity loss weighted
by ``lambda_identity`` times those, an image pool of 50 past fakes for the
discriminators, Adam (2e-4, betas 0.5/0.999), a constant learning rate then a
linear decay to zero, normal initialisation with gain 0.02. Generators are
updated with the discriminators frozen; discriminator losses are halved.

Speed: bf16 autocast where the hardware is fast at it, float32 master weights
and losses, foreach/fused Adam, no host synchronisation between logging
intervals, optional ``torch.compile``. Checkpoints hold everything needed to
continue bit for bit: weights, optimizer state, random generator states,
image pools and counters, in one safetensors file written atomically.
"""

from __future__ import annotations

import atexit
import copy
import dataclasses
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from .data import DomainImages, Preprocess, as_domain, scaling_for, to_unit_tensor
from .images import Scaler
from .losses import GAN_MODES, cycle_loss, gan_loss, gradient_penalty, identity_loss
from .modelfile import Domain, ModelFileError, ModelMetadata, ValueScaling, atomic_write, write_model
from .networks import (
    DiscriminatorConfig,
    GeneratorConfig,
    build_discriminator,
    build_generator,
    config_from_dict,
    init_weights,
)
from .precision import resolve_device, resolve_precision
from .translator import Translator

__all__ = ["TrainConfig", "Trainer", "TrainEvent", "ImagePool", "CHECKPOINT_KEY"]

CHECKPOINT_KEY = "cyclegan_checkpoint"
CHECKPOINT_VERSION = 1
NETWORKS = ("G_AB", "G_BA", "D_A", "D_B")


@dataclass
class TrainConfig:
    """Everything that defines a training run; defaults are the reference implementation's.

    Field names match the ``cyclegan train`` flags. ``input_nc``/``output_nc``
    default to the channel counts of the training images.
    """

    # networks
    generator: Literal["resnet", "unet"] = "resnet"
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    num_downs: int = 8
    n_layers_d: int = 3
    norm: Literal["instance", "batch", "none"] = "instance"
    use_dropout: bool = False
    upsample: Literal["convtranspose", "resize", "bilinear"] = "convtranspose"
    input_nc: int | None = None
    output_nc: int | None = None
    # data
    preprocess: Literal["resize_and_crop", "crop", "scale_width_and_crop", "none"] = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    augment: Literal["flip", "dihedral", "none"] = "flip"
    value_scaling: Literal["dtype", "percentile"] = "dtype"
    # losses
    gan_mode: Literal["lsgan", "vanilla", "hinge", "wgangp"] = "lsgan"
    lambda_a: float = 10.0
    lambda_b: float = 10.0
    lambda_identity: float = 0.5
    lambda_gp: float = 10.0
    pool_size: int = 50
    # optimisation
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 1
    decay_fraction: float = 0.5
    init_gain: float = 0.02
    ema_decay: float | None = None
    # run
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: str | None = None
    compile: bool | Literal["auto"] = "auto"
    seed: int = 0
    log_every: int = 10
    preview_every: int = 0
    domain_names: tuple[str, str] = ("A", "B")

    def __post_init__(self) -> None:
        if self.gan_mode not in GAN_MODES:
            raise ValueError(f"gan_mode must be one of {', '.join(GAN_MODES)}, got {self.gan_mode!r}")
        for name in ("ngf", "ndf", "batch_size", "crop_size", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise ValueError(f"decay_fraction must be in [0, 1], got {self.decay_fraction}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        self.domain_names = tuple(self.domain_names)  # type: ignore[assignment]
        Preprocess(self.preprocess, self.load_size, self.crop_size, self.augment)  # validates those fields
        multiple = 4 if self.generator == "resnet" else 2**self.num_downs
        if self.preprocess != "none" and self.crop_size % multiple:
            raise ValueError(f"crop_size must be a multiple of {multiple} for this {self.generator} generator, "
                             f"got {self.crop_size}")

    def generator_config(self, input_nc: int, output_nc: int) -> GeneratorConfig:
        return GeneratorConfig(generator=self.generator, input_nc=input_nc, output_nc=output_nc, ngf=self.ngf,
                               n_blocks=self.n_blocks, num_downs=self.num_downs, norm=self.norm,
                               use_dropout=self.use_dropout, upsample=self.upsample)

    def discriminator_config(self, channels: int) -> DiscriminatorConfig:
        return DiscriminatorConfig(input_nc=channels, ndf=self.ndf, n_layers=self.n_layers_d, norm=self.norm)

    @property
    def preprocessing(self) -> Preprocess:
        return Preprocess(self.preprocess, self.load_size, self.crop_size, self.augment)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["domain_names"] = list(self.domain_names)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        return config_from_dict(cls, data, "TrainConfig fields")


@dataclass
class TrainEvent:
    """What a training run reports to its callbacks.

    ``kind`` is ``"step"`` (every ``log_every`` steps, with losses, learning
    rate, images/s and ETA), ``"epoch"``, ``"preview"`` (with ``images``: real,
    fake and reconstructed images of fixed samples, uint8 ``(H, W, 3)``),
    ``"checkpoint"`` (with ``path``) or ``"end"``.
    """

    kind: Literal["step", "epoch", "preview", "checkpoint", "end"]
    step: int
    total_steps: int
    epoch: int
    losses: dict[str, float] = field(default_factory=dict)
    lr: float = 0.0
    images_per_s: float = 0.0
    eta_s: float = 0.0
    images: dict[str, np.ndarray] | None = None
    path: Path | None = None


class ImagePool:
    """The reference's buffer of past fakes: the discriminator sees a mix of new and older generator outputs.

    Until full, each new image is stored and returned; afterwards, with
    probability 1/2 a stored image is returned in its place (and replaced).

    Args:
        size: images kept; 0 disables the pool.
        generator: source of randomness (its state is part of checkpoints).
    """

    def __init__(self, size: int, generator: torch.Generator) -> None:
        self.size = size
        self.generator = generator
        self.images: list[Tensor] = []

    def query(self, images: Tensor) -> Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image[None]
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=self.generator) > 0.5:
                k = int(torch.randint(0, self.size, (1,), generator=self.generator))
                out.append(self.images[k].clone())
                self.images[k] = image.clone()
            else:
                out.append(image)
        return torch.cat(out)


class Trainer:
    """Train a CycleGAN on two unpaired image sets.

    Args:
        config: a :class:`TrainConfig` (default: the reference's settings).
        overrides: :class:`TrainConfig` fields replacing those of ``config``.

    Example:
        >>> import numpy as np
        >>> a = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
        >>> trainer = Trainer(ngf=4, ndf=4, n_blocks=1, crop_size=32, load_size=36, precision="fp32")
        >>> summary = trainer.fit(a, 255 - a, steps=2)
        >>> trainer.step
        2
    """

    def __init__(self, config: TrainConfig | None = None, **overrides: Any) -> None:
        config = config or TrainConfig()
        if overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = config
        self.device = resolve_device(config.device)
        if config.precision == "fp16":
            raise ValueError("fp16 training is not supported (it needs loss scaling); use precision 'bf16' or 'fp32'")
        self.compute_dtype = resolve_precision(config.precision, self.device)
        if self.compute_dtype == torch.float16:  # "auto" on a GPU without bf16: train in float32
            self.compute_dtype = torch.float32
        self.step = 0
        self.epoch = 0
        self.total_steps = 0
        self.scaling: dict[str, ValueScaling] = {"a": ValueScaling(), "b": ValueScaling()}
        self.networks: dict[str, nn.Module] = {}
        self.history: list[dict[str, float]] = []
        self._stop = False
        self._data_state: dict[str, Any] = {}
        self._dist = _Distributed()
        rank = self._dist.rank
        # Independent streams, so that, say, a different pool size does not change the crops.
        # The epoch order is shared by all processes (each takes its own shard of it);
        # the B images drawn and the augmentations differ per process.
        self._order_rng = np.random.Generator(np.random.PCG64([config.seed, 1]))
        self._data_rng = np.random.Generator(np.random.PCG64([config.seed, 2, rank]))
        self._aug_gen = torch.Generator().manual_seed(_stream_seed(config.seed, 3, rank))
        self._pool_gen = torch.Generator().manual_seed(_stream_seed(config.seed, 4, rank))
        self.pools = {"a": ImagePool(config.pool_size, self._pool_gen), "b": ImagePool(config.pool_size, self._pool_gen)}
        self._compiled: dict[str, Callable[..., Tensor]] = {}
        self._compile_verified = False
        self.ema: dict[str, Any] = {}
        self._seconds = 0.0
        if config.input_nc is not None and config.output_nc is not None:
            self._build(config.input_nc, config.output_nc)

    @classmethod
    def from_preset(cls, name_or_source: str | os.PathLike[str], **overrides: Any) -> "Trainer":
        """A trainer with a preset's recipe (see :mod:`cyclegan_sdk.presets`), from scratch.

        Args:
            name_or_source: a bundled or installed preset's name, a preset folder, a ``.zip`` or a Hub repo id.
            overrides: :class:`TrainConfig` fields replacing the recipe's.

        Example:
            >>> trainer = Trainer.from_preset("stain-transfer", ngf=8)
            >>> trainer.config.augment, trainer.config.ngf
            ('dihedral', 8)
        """
        from .presets import load_preset

        preset = load_preset(name_or_source)
        trainer = cls(preset.train_config(**overrides))
        trainer.preset = preset
        return trainer

    #: The preset the recipe came from (:meth:`from_preset`), else ``None``.
    preset: Any = None

    # ------------------------------------------------------------- networks
    @property
    def built(self) -> bool:
        return bool(self.networks)

    @property
    def is_main_process(self) -> bool:
        """Whether this process writes files (the first of a multi-process run, or the only one)."""
        return self._dist.is_main

    def finish(self) -> None:
        """End a multi-process run: wait for every process, then leave the process group (no-op otherwise)."""
        self._dist.finish()

    def _build(self, input_nc: int, output_nc: int) -> None:
        cfg = self.config
        torch.manual_seed(cfg.seed)  # the same initial weights on every process
        g_ab = build_generator(cfg.generator_config(input_nc, output_nc))
        g_ba = build_generator(cfg.generator_config(output_nc, input_nc))
        d_a = build_discriminator(cfg.discriminator_config(input_nc))
        d_b = build_discriminator(cfg.discriminator_config(output_nc))
        self.networks = {}
        for name, net in zip(NETWORKS, (g_ab, g_ba, d_a, d_b)):
            self.networks[name] = init_weights(net, cfg.init_gain).to(self.device).train()
        self.input_nc, self.output_nc = input_nc, output_nc
        fused = self.device.type == "cuda"
        options = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        options.update(fused=True) if fused else options.update(foreach=True)
        self.opt_g = torch.optim.Adam([*g_ab.parameters(), *g_ba.parameters()], **options)
        self.opt_d = torch.optim.Adam([*d_a.parameters(), *d_b.parameters()], **options)
        if cfg.ema_decay is not None:
            from diffusers.training_utils import EMAModel

            self.ema = {n: EMAModel(self.networks[n].parameters(), decay=cfg.ema_decay) for n in ("G_AB", "G_BA")}
        self._compiled = {}

    def _net(self, name: str) -> Callable[..., Tensor]:
        return self._compiled.get(name, self.networks[name])

    def _maybe_compile(self, planned_steps: int) -> None:
        choice = self.config.compile
        # Compilation takes about a minute on a CPU and saves about a third of each step:
        # worth it for long runs, never for a handful of steps.
        wanted = choice is True or (choice == "auto" and planned_steps >= 2000 and self.device.type in ("cpu", "cuda"))
        if wanted and not self._compiled:
            self._compiled = {n: torch.compile(m) for n, m in self.networks.items()}
            self._compile_verified = False

    # ----------------------------------------------------------- one step
    def learning_rate(self, step: int | None = None) -> float:
        """The learning rate at ``step``: constant, then linear decay to zero over ``decay_fraction`` of the run."""
        step = self.step if step is None else step
        if self.total_steps <= 0:  # no planned run (train_step used directly): the base rate
            return self.config.lr
        total = max(self.total_steps, step + 1)
        decay_steps = int(round(total * self.config.decay_fraction))
        start = total - decay_steps
        # As the reference: the first decayed step already loses 1/(decay+1), the last keeps 1/(decay+1).
        factor = 1.0 - max(0, step + 1 - start) / float(decay_steps + 1)
        return self.config.lr * factor

    def train_step(self, real_a: Tensor, real_b: Tensor) -> dict[str, float]:
        """One update of both generators and both discriminators.

        Args:
            real_a: ``(N, C_a, H, W)`` float in [-1, 1].
            real_b: ``(N, C_b, H, W)`` float in [-1, 1].

        Returns:
            The losses of this step as floats (this synchronises with the
            device; :meth:`fit` only does so at logging intervals).
        """
        if real_a.ndim != 4 or real_b.ndim != 4:
            raise ValueError(f"train_step takes (N, C, H, W) tensors, got {tuple(real_a.shape)} and {tuple(real_b.shape)}")
        if not self.built:
            self._build(real_a.shape[1], real_b.shape[1])
        if real_a.shape[1] != self.input_nc or real_b.shape[1] != self.output_nc:
            raise ValueError(f"networks take {self.input_nc} and {self.output_nc} channels, "
                             f"got {real_a.shape[1]} and {real_b.shape[1]}")
        losses = self._train_step(real_a.to(self.device), real_b.to(self.device))
        return {k: float(v) for k, v in losses.items()}

    def _train_step(self, real_a: Tensor, real_b: Tensor) -> dict[str, Tensor]:
        cfg = self.config
        lr = self.learning_rate()
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = lr
        g_ab, g_ba, d_a, d_b = (self._net(n) for n in NETWORKS)
        use_idt = cfg.lambda_identity > 0 and self.input_nc == self.output_nc  # the reference requires equal counts
        autocast = torch.autocast(self.device.type, dtype=self.compute_dtype,
                                  enabled=self.compute_dtype != torch.float32)
        # Generators, with the discriminators frozen.
        _requires_grad((self.networks["D_A"], self.networks["D_B"]), False)
        with autocast:
            fake_b = g_ab(real_a)
            rec_a = g_ba(fake_b)
            fake_a = g_ba(real_b)
            rec_b = g_ab(fake_a)
            score_fake_b = d_b(fake_b)
            score_fake_a = d_a(fake_a)
            if use_idt:
                idt_b = g_ab(real_b)
                idt_a = g_ba(real_a)
        loss_g_ab = gan_loss(score_fake_b, True, cfg.gan_mode, for_discriminator=False)
        loss_g_ba = gan_loss(score_fake_a, True, cfg.gan_mode, for_discriminator=False)
        loss_cycle_a = cycle_loss(rec_a, real_a) * cfg.lambda_a
        loss_cycle_b = cycle_loss(rec_b, real_b) * cfg.lambda_b
        if use_idt:
            loss_idt_b = identity_loss(idt_b, real_b) * cfg.lambda_b * cfg.lambda_identity
            loss_idt_a = identity_loss(idt_a, real_a) * cfg.lambda_a * cfg.lambda_identity
        else:
            loss_idt_a = loss_idt_b = torch.zeros((), device=self.device)
        loss_g = loss_g_ab + loss_g_ba + loss_cycle_a + loss_cycle_b + loss_idt_a + loss_idt_b
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self._dist.average_gradients(self.opt_g)
        self.opt_g.step()
        # Discriminators, on real images and on fakes drawn from the pools.
        _requires_grad((self.networks["D_A"], self.networks["D_B"]), True)
        pooled_b = self.pools["b"].query(fake_b.detach().float())
        pooled_a = self.pools["a"].query(fake_a.detach().float())
        with autocast:
            real_score_b, fake_score_b = d_b(real_b), d_b(pooled_b)
            real_score_a, fake_score_a = d_a(real_a), d_a(pooled_a)
        loss_d_b = 0.5 * (gan_loss(real_score_b, True, cfg.gan_mode) + gan_loss(fake_score_b, False, cfg.gan_mode))
        loss_d_a = 0.5 * (gan_loss(real_score_a, True, cfg.gan_mode) + gan_loss(fake_score_a, False, cfg.gan_mode))
        if cfg.gan_mode == "wgangp":
            loss_d_b = loss_d_b + gradient_penalty(self.networks["D_B"], real_b, pooled_b, cfg.lambda_gp)
            loss_d_a = loss_d_a + gradient_penalty(self.networks["D_A"], real_a, pooled_a, cfg.lambda_gp)
        self.opt_d.zero_grad(set_to_none=True)
        (loss_d_a + loss_d_b).backward()
        self._dist.average_gradients(self.opt_d)
        self.opt_d.step()
        for name, ema in self.ema.items():
            ema.step(self.networks[name].parameters())
        self.step += 1
        return {
            "G": loss_g.detach(), "G_AB": loss_g_ab.detach(), "G_BA": loss_g_ba.detach(),
            "cycle_A": loss_cycle_a.detach(), "cycle_B": loss_cycle_b.detach(),
            "idt_A": loss_idt_a.detach(), "idt_B": loss_idt_b.detach(),
            "D_A": loss_d_a.detach(), "D_B": loss_d_b.detach(),
        }

    def _first_compiled_step(self, real_a: Tensor, real_b: Tensor) -> dict[str, Tensor]:
        """The first step with compiled networks; if compilation fails (no C++ compiler, an unsupported
        backend), undo whatever the step changed and run it, and the rest, eagerly."""
        saved = {
            "nets": {n: copy.deepcopy(m.state_dict()) for n, m in self.networks.items()},
            "opts": [copy.deepcopy(o.state_dict()) for o in (self.opt_g, self.opt_d)],
            "pools": {k: list(p.images) for k, p in self.pools.items()},
            "rng": (torch.get_rng_state(), self._pool_gen.get_state()), "step": self.step,
        }
        try:
            losses = self._train_step(real_a, real_b)
        except Exception as exc:  # noqa: BLE001 - any compiler failure means: train eagerly
            warnings.warn(f"torch.compile failed ({type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}); "
                          "training eagerly", stacklevel=3)
            self._compiled = {}
            for n, m in self.networks.items():
                m.load_state_dict(saved["nets"][n])
            for opt, state in zip((self.opt_g, self.opt_d), saved["opts"]):
                opt.load_state_dict(state)
            for k, pool in self.pools.items():
                pool.images = saved["pools"][k]
            torch.set_rng_state(saved["rng"][0])
            self._pool_gen.set_state(saved["rng"][1])
            self.step = saved["step"]
            losses = self._train_step(real_a, real_b)
        self._compile_verified = True
        return losses

    # ---------------------------------------------------------------- fit
    def request_stop(self) -> None:
        """Ask :meth:`fit` to stop after the current step (callable from another thread or a signal handler)."""
        self._stop = True

    def fit(
        self,
        domain_a: Any,
        domain_b: Any,
        *,
        steps: int | None = None,
        epochs: int | None = None,
        callbacks: Iterable[Callable[[TrainEvent], Any]] = (),
        checkpoint_every: int = 0,
        checkpoint_path: str | os.PathLike[str] | None = None,
        max_seconds: float | None = None,
    ) -> dict[str, Any]:
        """Train on two unpaired image sets until ``steps`` (in total, counting earlier runs), ``epochs``
        or ``max_seconds`` of wall-clock time.

        Args:
            domain_a: a folder, a list of images, a stack ``(N, H, W[, C])`` or
                :class:`~cyclegan_sdk.data.DomainImages`.
            domain_b: the same for domain B.
            steps: total number of steps to reach (a resumed trainer continues towards it).
            epochs: alternatively, epochs of ``max(len(A), len(B)) / batch_size`` steps.
            callbacks: called with each :class:`TrainEvent`.
            checkpoint_every: write a checkpoint every this many steps (0: never).
            checkpoint_path: where (default ``checkpoint.safetensors``).
            max_seconds: stop after this many seconds of this call (the step under way is finished).
                Without ``steps`` and ``epochs``, the run is planned by time: the total step count, and
                with it the learning-rate decay, is re-estimated from the measured speed at each logging
                interval, so the decay ends when the time is up.

        Returns:
            The training summary (also stored in exported model files).
        """
        cfg = self.config
        pre = cfg.preprocessing
        a = as_domain(domain_a, cfg.domain_names[0])
        b = as_domain(domain_b, cfg.domain_names[1])
        for domain in (a, b):
            small = pre.undersized(domain)
            if small:
                warnings.warn(f"domain {domain.name}: {len(small)} of {len(domain)} images are smaller than the "
                              f"{cfg.crop_size} crop and are scaled up (first: {small[0]})", stacklevel=2)
        if not self.built:
            self._build(cfg.input_nc or a.channels, cfg.output_nc or b.channels)
        if cfg.lambda_identity > 0 and self.input_nc != self.output_nc and self.step == 0:
            warnings.warn(f"identity loss is off: domain {a.name} has {self.input_nc} channels and domain {b.name} "
                          f"{self.output_nc}; it needs equal counts", stacklevel=2)
        if cfg.batch_size > 1 and cfg.preprocess == "none" and len({s[:2] for s in (*a.shapes, *b.shapes)}) > 1:
            raise ValueError("batch_size > 1 with preprocess 'none' needs images of one size; "
                             "use a cropping preprocess or batch_size 1")
        if (a.channels, b.channels) != (self.input_nc, self.output_nc):
            raise ValueError(f"the networks take {self.input_nc}-channel A and {self.output_nc}-channel B images; "
                             f"domain {a.name} has {a.channels} and domain {b.name} has {b.channels} channels")
        if self.step == 0:
            self.scaling = {"a": scaling_for(a, cfg.value_scaling), "b": scaling_for(b, cfg.value_scaling)}
        per_epoch = max(1, max(len(a), len(b)) // (cfg.batch_size * self._dist.world))
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
        by_time = steps is None and epochs is None and max_seconds is not None
        if steps is None and epochs is None and not by_time:
            raise ValueError("give steps= or epochs= (or max_seconds=)")
        # A run planned by time starts from a guess of one step per second, corrected as it goes.
        target = (self.step + int(max_seconds) if by_time else  # type: ignore[arg-type]
                  steps if steps is not None else epochs * per_epoch)  # type: ignore[operator]
        if target < self.step:
            raise ValueError(f"steps={target} is behind this trainer's step {self.step}")
        self.total_steps = target
        self._maybe_compile(target)  # from the whole run, so a resumed run decides as the original did
        callbacks = list(callbacks)
        # Made once per run, not per step: the preprocessing (above) and each domain's value mapping.
        scalers = {"a": Scaler(a.dtype, self.scaling["a"]), "b": Scaler(b.dtype, self.scaling["b"])}
        samples = self._preview_samples(a, b, pre, scalers) if cfg.preview_every and self._dist.is_main else None
        started, started_step = time.perf_counter(), self.step
        pending: list[dict[str, Tensor]] = []
        path = Path(checkpoint_path or "checkpoint.safetensors")
        last: dict[str, float] = {}
        deadline = None if max_seconds is None else started + max_seconds
        while self.step < target and not self._dist.any(self._stop):  # all processes stop at the same step
            real_a, real_b = self._batch(a, b, pre, scalers)
            pending.append(self._first_compiled_step(real_a, real_b) if self._compiled and not self._compile_verified
                           else self._train_step(real_a, real_b))
            if self.step % cfg.log_every == 0 or self.step == target or self._stop:
                last = _mean_losses(pending)  # the only host sync: once per logging interval
                pending = []
                self.history.append({"step": self.step, **last})
                elapsed = time.perf_counter() - started
                if by_time:  # replan: the steps that fit in the time left, at the speed so far
                    per_step = elapsed / max(1, self.step - started_step)
                    target = max(self.step + 1, self.step + int((deadline - time.perf_counter()) / per_step))
                    self.total_steps = target
                rate = (self.step - started_step) * cfg.batch_size * self._dist.world / max(elapsed, 1e-9)
                eta = (target - self.step) * cfg.batch_size * self._dist.world / max(rate, 1e-9)
                self._emit(callbacks, TrainEvent("step", self.step, target, self.epoch, last, self.learning_rate(),
                                                 rate, eta))
            if self.step // per_epoch > self.epoch:  # an epoch: max(len(A), len(B)) images, as the reference
                self._emit(callbacks, TrainEvent("epoch", self.step, target, self.epoch, last, self.learning_rate()))
                self.epoch = self.step // per_epoch
            if samples is not None and self.step % cfg.preview_every == 0:
                self._emit(callbacks, TrainEvent("preview", self.step, target, self.epoch,
                                                 images=self.preview(*samples)))
            if checkpoint_every and self.step % checkpoint_every == 0 and self.step < target:
                self.save_checkpoint(path)
                self._emit(callbacks, TrainEvent("checkpoint", self.step, target, self.epoch, path=path))
            # Every process must agree, so the first one's clock decides (through the stop vote).
            if deadline is not None and self._dist.is_main and time.perf_counter() >= deadline:
                self._stop = True
        timed_out = deadline is not None and self._stop and time.perf_counter() >= deadline
        self._seconds += time.perf_counter() - started
        stopped, self._stop = self._stop, False
        if timed_out:
            self.total_steps = self.step  # the run is complete: a resume does not continue towards a guess
        if stopped and pending:
            last = _mean_losses(pending)
            self.history.append({"step": self.step, **last})
        summary = self.summary(last)
        self._emit(callbacks, TrainEvent("end", self.step, target, self.epoch, last, self.learning_rate()))
        return summary

    def _emit(self, callbacks: list[Callable[[TrainEvent], Any]], event: TrainEvent) -> None:
        if self._dist.is_main:
            for callback in callbacks:
                callback(event)

    def _batch(self, a: DomainImages, b: DomainImages, pre: Preprocess,
               scalers: dict[str, Scaler]) -> tuple[Tensor, Tensor]:
        """The next batch: A in a shuffled order (each process its own shard), B at random, as the reference."""
        state = self._data_state
        n = len(a)
        if state.get("size", n) != n:
            warnings.warn(f"domain {a.name} has {n} images, the checkpoint's run had {state['size']}: "
                          "starting a new epoch order", stacklevel=3)
            state.clear()
        order = state.get("order")
        if order is None or state["position"] >= len(order):
            perm = self._order_rng.permutation(n).tolist()
            order = perm[self._dist.rank :: self._dist.world] or perm
            state.update(order=order, position=0, size=n)
        xs_a, xs_b = [], []
        for _ in range(self.config.batch_size):
            if state["position"] >= len(state["order"]):
                state["position"] = 0
            ia = state["order"][state["position"]]
            state["position"] += 1
            ib = int(self._data_rng.integers(len(b)))
            xs_a.append(pre(to_unit_tensor(a.load(ia), scalers["a"], self.device), self._aug_gen))
            xs_b.append(pre(to_unit_tensor(b.load(ib), scalers["b"], self.device), self._aug_gen))
        return torch.cat(xs_a), torch.cat(xs_b)

    # ------------------------------------------------------------ previews
    def _preview_samples(self, a: DomainImages, b: DomainImages, pre: Preprocess,
                         scalers: dict[str, Scaler]) -> tuple[Tensor, Tensor]:
        """Fixed samples for previews: the first image of each domain, resized as in training, centre crop."""
        return (pre.centre(to_unit_tensor(a.load(0), scalers["a"], self.device)),
                pre.centre(to_unit_tensor(b.load(0), scalers["b"], self.device)))

    @torch.no_grad()
    def preview(self, real_a: Tensor, real_b: Tensor) -> dict[str, np.ndarray]:
        """Real, translated and reconstructed images of both domains as uint8 ``(H, W, 3)`` (grey shown as RGB)."""
        nets = {n: self.networks[n] for n in ("G_AB", "G_BA")}
        modes = {n: m.training for n, m in nets.items()}
        for m in nets.values():
            m.eval()
        try:
            fake_b = nets["G_AB"](real_a)
            fake_a = nets["G_BA"](real_b)
            out = {"real_A": real_a, "fake_B": fake_b, "rec_A": nets["G_BA"](fake_b),
                   "real_B": real_b, "fake_A": fake_a, "rec_B": nets["G_AB"](fake_a)}
        finally:
            for n, m in nets.items():
                m.train(modes[n])
        return {k: _to_rgb_uint8(v) for k, v in out.items()}

    # ------------------------------------------------------------- results
    def summary(self, last_losses: Mapping[str, float] | None = None) -> dict[str, Any]:
        """What the run did: steps, epochs, time, final losses, settings."""
        last = dict(last_losses or (self.history[-1] if self.history else {}))
        last.pop("step", None)
        return {
            "steps": self.step, "epochs": self.epoch, "seconds": round(self._seconds, 1),
            "precision": str(self.compute_dtype).removeprefix("torch."), "device": str(self.device),
            "processes": self._dist.world, "final_losses": {k: round(v, 5) for k, v in last.items()},
            "config": self.config.to_dict(),
        }

    def metadata(self) -> ModelMetadata:
        names = self.config.domain_names
        return ModelMetadata(
            generator=self.config.generator_config(self.input_nc, self.output_nc),
            domain_a=Domain(names[0], channels=self.input_nc, scaling=self.scaling["a"]),
            domain_b=Domain(names[1], channels=self.output_nc, scaling=self.scaling["b"]),
            source={"kind": "trained", "ema": self.config.ema_decay is not None,
                    **({"preset": self.preset.name} if self.preset is not None else {})},
            training=self.summary(),
        )

    def generator_state_dicts(self) -> dict[str, dict[str, Tensor]]:
        """Current generator weights (the EMA weights when EMA is on), float32 on the CPU."""
        out = {}
        for name, direction in (("G_AB", "a2b"), ("G_BA", "b2a")):
            net = self.networks[name]
            if name in self.ema:
                net = copy.deepcopy(net)
                self.ema[name].copy_to(net.parameters())
            out[direction] = {k: v.detach().float().cpu().clone() for k, v in net.state_dict().items()}
        return out

    def translator(self) -> Translator:
        """A :class:`Translator` with a copy of the current generator weights."""
        self._require_built()
        return Translator.from_state_dicts(self.generator_state_dicts(), self.metadata())

    def export(self, path: str | os.PathLike[str], dtype: torch.dtype = torch.float32) -> Path | None:
        """Write the model file (domain names, config, training summary); only the main process writes."""
        self._require_built()
        if not self._dist.is_main:
            return None
        return write_model(path, self.generator_state_dicts(), self.metadata(), dtype=dtype)

    def _require_built(self) -> None:
        if not self.built:
            raise RuntimeError("the trainer has no networks yet: call fit() or train_step() first")

    # --------------------------------------------------------- checkpoints
    def save_checkpoint(self, path: str | os.PathLike[str]) -> Path | None:
        """Write everything needed to continue bit for bit, atomically; only the main process writes."""
        self._require_built()
        if not self._dist.is_main:
            return None
        tensors: dict[str, Tensor] = {}
        for name, net in self.networks.items():
            for k, v in net.state_dict().items():
                tensors[f"{name}.{k}"] = v.detach().cpu().contiguous()
        groups = {}
        for key, opt in (("opt_G", self.opt_g), ("opt_D", self.opt_d)):
            state = opt.state_dict()
            for index, values in state["state"].items():
                for k, v in values.items():
                    tensors[f"{key}.{index}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
            groups[key] = [{k: v for k, v in g.items() if k != "params"} for g in state["param_groups"]]
        for name, ema in self.ema.items():
            for i, p in enumerate(ema.shadow_params):
                tensors[f"ema.{name}.{i}"] = p.detach().cpu().contiguous()
        for key, pool in self.pools.items():
            for i, image in enumerate(pool.images):  # one key each: crops may differ in size
                tensors[f"pool.{key}.{i}"] = image.cpu().contiguous()
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.aug"] = self._aug_gen.get_state()
        tensors["rng.pool"] = self._pool_gen.get_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        meta = {
            "version": CHECKPOINT_VERSION, "config": self.config.to_dict(), "step": self.step, "epoch": self.epoch,
            "total_steps": self.total_steps, "channels": [self.input_nc, self.output_nc],
            "scaling": {k: dataclasses.asdict(v) for k, v in self.scaling.items()},
            "param_groups": groups, "data_rng": _jsonable_rng(self._data_rng),
            "order_rng": _jsonable_rng(self._order_rng), "data_state": self._data_state,
            "history": self.history[-10000:], "seconds": self._seconds,
            "ema_steps": {n: e.optimization_step for n, e in self.ema.items()},
        }
        with atomic_write(path) as tmp:
            save_file(tensors, str(tmp), metadata={CHECKPOINT_KEY: json.dumps(meta)})
        return Path(path)

    @classmethod
    def resume(cls, path: str | os.PathLike[str], **overrides: Any) -> "Trainer":
        """A trainer in exactly the state :meth:`save_checkpoint` wrote (``overrides``: e.g. ``device``)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such checkpoint")
        try:
            fh = safe_open(str(path), framework="pt")
        except Exception as exc:  # noqa: BLE001 - safetensors has its own error types
            raise ModelFileError(f"{path}: not a readable checkpoint ({exc})") from None
        with fh:
            raw = (fh.metadata() or {}).get(CHECKPOINT_KEY)
            if raw is None:
                raise ModelFileError(f"{path}: not a cyclegan-sdk training checkpoint (model files are loaded "
                                     "with Translator.load)")
            meta = json.loads(raw)
            if meta.get("version") != CHECKPOINT_VERSION:
                raise ModelFileError(f"{path}: checkpoint version {meta.get('version')} is not supported")
            config = TrainConfig.from_dict({**meta["config"], "domain_names": tuple(meta["config"]["domain_names"])})
            config = dataclasses.replace(config, **overrides) if overrides else config
            trainer = cls(config)
            if not trainer.built:  # a config naming both channel counts builds the networks already
                trainer._build(*meta["channels"])
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        for name, net in trainer.networks.items():
            prefix = f"{name}."
            net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        for key, opt in (("opt_G", trainer.opt_g), ("opt_D", trainer.opt_d)):
            state: dict[int, dict[str, Tensor]] = {}
            prefix = f"{key}."
            for k, v in tensors.items():
                if k.startswith(prefix):
                    index, name = k[len(prefix):].split(".", 1)
                    state.setdefault(int(index), {})[name] = v
            groups = meta["param_groups"][key]
            params = opt.state_dict()["param_groups"]
            for g, p in zip(groups, params):
                g["params"] = p["params"]
                if "betas" in g:
                    g["betas"] = tuple(g["betas"])
            opt.load_state_dict({"state": state, "param_groups": groups})
            for group in opt.param_groups:  # the implementation that suits this device, not the saving one
                group["fused"] = trainer.device.type == "cuda"
                group["foreach"] = None if group["fused"] else True
        for name, ema in trainer.ema.items():
            for i, p in enumerate(ema.shadow_params):
                p.copy_(tensors[f"ema.{name}.{i}"])
            ema.optimization_step = meta["ema_steps"][name]
        for key, pool in trainer.pools.items():
            count = sum(1 for k in tensors if k.startswith(f"pool.{key}."))
            pool.images = [tensors[f"pool.{key}.{i}"].to(trainer.device) for i in range(count)]
        torch.set_rng_state(tensors["rng.torch"])
        trainer._aug_gen.set_state(tensors["rng.aug"])
        trainer._pool_gen.set_state(tensors["rng.pool"])
        if trainer.device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"], trainer.device)
        trainer._data_rng.bit_generator.state = meta["data_rng"]
        trainer._order_rng.bit_generator.state = meta["order_rng"]
        trainer._data_state = meta["data_state"]
        trainer.step, trainer.epoch, trainer.total_steps = meta["step"], meta["epoch"], meta["total_steps"]
        trainer.scaling = {k: ValueScaling(**v) for k, v in meta["scaling"].items()}
        trainer.history = meta["history"]
        trainer._seconds = meta["seconds"]
        if trainer._dist.world > 1:
            # The checkpoint holds the first process's streams: give every process its own again.
            rank, seed = trainer._dist.rank, [trainer.config.seed, trainer.step]
            trainer._data_rng = np.random.Generator(np.random.PCG64([*seed, 2, rank]))
            step_seed = trainer.config.seed * 1_000_003 + trainer.step
            trainer._aug_gen.manual_seed(_stream_seed(step_seed, 3, rank))
            trainer._pool_gen.manual_seed(_stream_seed(step_seed, 4, rank))
            trainer._data_state = {}
        return trainer


def _stream_seed(seed: int, stream: int, rank: int) -> int:
    """A 63-bit seed for one random stream of one process, independent of all others."""
    return int(np.random.SeedSequence([seed, stream, rank]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _requires_grad(nets: Iterable[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


def _mean_losses(pending: list[dict[str, Tensor]]) -> dict[str, float]:
    if not pending:
        return {}
    keys = list(pending[0])
    stacked = torch.stack([torch.stack([p[k].float() for k in keys]) for p in pending]).mean(0).tolist()
    return dict(zip(keys, stacked))


def _to_rgb_uint8(x: Tensor) -> np.ndarray:
    img = ((x[0].float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    # Fewer than 3 channels: the first shown as grey; more: the first 3.
    img = np.repeat(img[..., :1], 3, axis=-1) if img.shape[-1] < 3 else img[..., :3]
    return np.ascontiguousarray(img)


def _jsonable_rng(rng: np.random.Generator) -> dict[str, Any]:
    state = rng.bit_generator.state
    return json.loads(json.dumps(state, default=int))


class _Distributed:
    """Data-parallel training across processes (``accelerate launch`` or ``torchrun``), or a no-op.

    Gradients are averaged explicitly after each backward pass, rather than by
    DistributedDataParallel, because a CycleGAN step runs each discriminator
    in both the generator and the discriminator update.
    """

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.accelerator = None
        if self.world > 1:
            from accelerate import Accelerator

            self.accelerator = Accelerator(cpu=not torch.cuda.is_available())
            self.world = self.accelerator.num_processes
            self.rank = self.accelerator.process_index
            # A process that exits with its process group alive can abort in the group's threads.
            atexit.register(self._shut_down)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def finish(self) -> None:
        """Wait for every process (the first one writes files last), then leave the process group."""
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()
            self._shut_down()

    @staticmethod
    def _shut_down() -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    def any(self, flag: bool) -> bool:
        """True on every process if ``flag`` is true on any (so all stop at the same step)."""
        if self.world == 1:
            return flag
        device = torch.device("cuda", torch.cuda.current_device()) if torch.distributed.get_backend() == "nccl" else "cpu"
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        torch.distributed.all_reduce(t)
        return bool(t.item() > 0)

    def average_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        if self.world == 1:
            return
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n
