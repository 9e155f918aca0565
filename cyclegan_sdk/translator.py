"""Translator: an image in, its translation out, for any size, dtype, channel count or stack."""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .images import ChannelPlan, Scaler, as_stack, plan_channels, restore
from .modelfile import DIRECTIONS, Domain, ModelFileError, ModelMetadata, read_model, write_model
from .networks import build_generator
from .precision import resolve_device, resolve_precision
from .tiling import TilePlan, plan_tiles, pooled_statistics, reflect_index, spread_sample

__all__ = ["DEFAULT_OVERLAP", "DEFAULT_TILE_SIZE", "STATISTICS_PIXELS", "UNTILED_MAX_PIXELS", "Translator"]

#: Tile edge used when ``tile_size=None`` and the image is too large to translate whole.
DEFAULT_TILE_SIZE = 512
#: Overlap between neighbouring tiles when ``overlap=None``.
DEFAULT_OVERLAP = 64
#: With ``tile_size=None`` images up to this many (padded) pixels are translated whole.
UNTILED_MAX_PIXELS = 1024 * 1024
#: Pixels of tiles that gather instance-norm statistics together (bounds their memory).
STATISTICS_PIXELS = 2**21
#: Edge of the statistics tiles sampled from images with more tiles than :data:`STATISTICS_PIXELS` holds.
STATISTICS_TILE = 256

ProgressFn = Callable[[int, int], Any]


class Translator:
    """A trained CycleGAN's generators, ready to translate images.

    Args:
        generators: ``{"a2b": G_AB, "b2a": G_BA}``; either may be absent.
        metadata: the model's :class:`~cyclegan_sdk.modelfile.ModelMetadata`.

    Example:
        >>> import numpy as np
        >>> from cyclegan_sdk.networks import GeneratorConfig
        >>> t = Translator.random(GeneratorConfig(ngf=4, n_blocks=1))
        >>> t.translate(np.zeros((30, 40, 3), np.uint8), precision="fp32").shape
        (30, 40, 3)
    """

    #: The preset the model came from (:meth:`from_preset`), else ``None``.
    preset: Any = None

    def __init__(self, generators: Mapping[str, nn.Module], metadata: ModelMetadata) -> None:
        unknown = sorted(set(generators) - set(DIRECTIONS))
        if unknown or not generators:
            raise ValueError(f"generators must be keyed by 'a2b'/'b2a', got {sorted(generators)}")
        metadata.check()
        self.metadata = metadata
        self._generators = {d: g.eval() for d, g in generators.items()}
        self.device = resolve_device(None)
        self._runtime: dict[tuple[str, str, torch.dtype], nn.Module] = {}
        self._compiled: dict[tuple[str, str, torch.dtype], Callable[[Tensor], Tensor]] = {}

    # ----------------------------------------------------------------- creation
    @classmethod
    def from_state_dicts(cls, state_dicts: Mapping[str, Mapping[str, Tensor]], metadata: ModelMetadata) -> Translator:
        generators = {}
        for direction, sd in state_dicts.items():
            net = build_generator(metadata.generator_config(direction))
            net.load_state_dict(dict(sd))
            generators[direction] = net
        return cls(generators, metadata)

    @classmethod
    def random(cls, config=None, domains: tuple[str, str] = ("A", "B"), seed: int = 0) -> Translator:
        """A randomly initialised model (reference init); for tests and benchmarks."""
        from .networks import GeneratorConfig

        config = config or GeneratorConfig()
        meta = ModelMetadata(
            generator=config,
            domain_a=Domain(domains[0], channels=config.input_nc),
            domain_b=Domain(domains[1], channels=config.output_nc),
            source={"kind": "random", "seed": seed},
        )
        gen = torch.Generator().manual_seed(seed)
        nets = {}
        for direction in DIRECTIONS:
            net = build_generator(meta.generator_config(direction))
            with torch.no_grad():
                for p in net.parameters():
                    if p.ndim > 1:
                        p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
                    else:
                        p.zero_()
            nets[direction] = net
        return cls(nets, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Translator:
        """Load a ``.safetensors`` model file (validated; see :mod:`cyclegan_sdk.modelfile`)."""
        state_dicts, metadata = read_model(path)
        return cls.from_state_dicts(state_dicts, metadata)

    @classmethod
    def from_pretrained(
        cls,
        repo_id_or_path: str | os.PathLike[str],
        *,
        filename: str = "model.safetensors",
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        token: str | bool | None = None,
    ) -> Translator:
        """Load from a model file, a local folder, or a Hugging Face Hub repo id.

        A folder holds ``filename`` (or exactly one ``.safetensors`` file). A
        repo id (``"owner/name"``) is fetched with ``huggingface_hub``, which
        honours ``HF_HUB_OFFLINE=1`` and its cache.
        """
        return cls.load(resolve_model_path(repo_id_or_path, filename=filename, revision=revision,
                                           cache_dir=cache_dir, token=token))

    @classmethod
    def from_preset(cls, name_or_source: str | os.PathLike[str], *, device: str | torch.device | None = None
                    ) -> Translator:
        """Load the weights a preset ships (see :mod:`cyclegan_sdk.presets`).

        Args:
            name_or_source: a bundled or installed preset's name, a preset folder, a ``.zip`` or a Hub repo id.
            device: where to run (default: CUDA when available, else the CPU).

        Returns:
            The translator; ``translator.preset`` holds the preset, whose ``inference`` has the
            direction, tile size and overlap it suggests.

        Raises:
            PresetError: the preset is invalid, or ships no weights (it is a recipe: train with it).

        Example:
            >>> t = Translator.from_preset("stain-transfer")
            >>> t.domains
            ('IHC', 'HE')
        """
        from .presets import PresetError, load_preset

        preset = load_preset(name_or_source)
        if preset.weights_path is None:
            raise PresetError(f"preset {preset.name} ships no weights (it is a recipe): train a model with "
                              f"`cyclegan train DIR_A DIR_B --preset {preset.name} -o model.safetensors` "
                              f"or Trainer.from_preset({preset.name!r})")
        translator = cls.load(preset.weights_path)
        translator.preset = preset
        if device is not None:
            translator.to(device)
        return translator

    @classmethod
    def from_reference_checkpoint(
        cls,
        g_ab_path: str | os.PathLike[str],
        g_ba_path: str | os.PathLike[str] | None = None,
        **network: Any,
    ) -> Translator:
        """Import generator checkpoints (``.pth``) of the reference implementation.

        See :func:`cyclegan_sdk.reference.import_reference` for ``network`` keywords
        (``n_blocks``, ``ngf``, ``domains``, ...).
        """
        from .reference import import_reference

        state_dicts, metadata = import_reference(g_ab_path, g_ba_path, **network)
        return cls.from_state_dicts(state_dicts, metadata)

    # ------------------------------------------------------------------ saving
    def state_dicts(self) -> dict[str, dict[str, Tensor]]:
        return {d: {k: v.detach().cpu() for k, v in g.state_dict().items()} for d, g in self._generators.items()}

    def save(self, path: str | os.PathLike[str], dtype: torch.dtype = torch.float32) -> Path:
        """Write the model file (atomically); ``dtype`` float32 or float16 (half the size)."""
        return write_model(path, self.state_dicts(), self.metadata, dtype=dtype)

    def save_pretrained(self, directory: str | os.PathLike[str], dtype: torch.dtype = torch.float32) -> Path:
        """Write a Hub-style folder: ``model.safetensors``, ``config.json`` (the metadata) and a ``README.md``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.save(directory / "model.safetensors", dtype=dtype)
        (directory / "config.json").write_text(json.dumps(json.loads(self.metadata.to_json()), indent=2) + "\n")
        a, b = self.metadata.domain_a, self.metadata.domain_b
        card = [
            "---", "library_name: cyclegan-sdk", "tags: [cyclegan, image-to-image]", "---", "",
            f"# {a.name} ↔ {b.name}", "",
            f"- {a.name}: {a.description or '(no description)'} ({a.channels} channels)",
            f"- {b.name}: {b.description or '(no description)'} ({b.channels} channels)",
            f"- directions: {', '.join(self.directions)}", "",
            "```python", "from cyclegan_sdk import Translator",
            f"translator = Translator.from_pretrained({str(directory.name)!r})",
            "out = translator.translate(image)", "```", "",
        ]
        (directory / "README.md").write_text("\n".join(card))
        return directory

    def export_onnx(self, path: str | os.PathLike[str], direction: str = "a2b", opset: int = 18) -> Path:
        """Write the ``direction`` generator as an ONNX file (see :mod:`cyclegan_sdk.onnx_export`).

        The graph takes float32 ``(N, C, H, W)`` in [-1, 1], with dynamic batch,
        height and width (multiples of the generator's stride), and returns the same.
        """
        from .onnx_export import export_generator

        direction = self._check_direction(direction)
        config = self.metadata.generator_config(direction)
        src, dst = self.domains if direction == "a2b" else self.domains[::-1]
        net = copy.deepcopy(self._generators[direction]).float().cpu()
        meta = {"cyclegan.direction": direction, "cyclegan.source_domain": src, "cyclegan.target_domain": dst,
                "cyclegan.model": self.metadata.to_json()}
        return export_generator(net, path, input_nc=config.input_nc, size_multiple=config.size_multiple,
                                metadata=meta, opset=opset)

    # -------------------------------------------------------------- properties
    @property
    def domains(self) -> tuple[str, str]:
        """Names of domain A and domain B."""
        return self.metadata.domain_a.name, self.metadata.domain_b.name

    @property
    def directions(self) -> tuple[str, ...]:
        """The directions this model has, among ``"a2b"`` and ``"b2a"``."""
        return tuple(d for d in DIRECTIONS if d in self._generators)

    def output_channels(self, image_channels: int, direction: str = "a2b") -> int:
        """Channels of the translation of an ``image_channels``-channel image (alpha passes through).

        Raises:
            ValueError: when the generator cannot take such an image, naming both counts.

        Example:
            >>> from cyclegan_sdk import GeneratorConfig, Translator
            >>> Translator.random(GeneratorConfig(ngf=4, n_blocks=1)).output_channels(4)  # RGBA in, RGBA out
            4
        """
        direction = self._check_direction(direction)
        config = self.metadata.generator_config(direction)
        src, dst = self.domains if direction == "a2b" else self.domains[::-1]
        plan = plan_channels(image_channels, config.input_nc, f"the {src}→{dst} generator")
        return config.output_nc + (1 if plan.alpha else 0)

    def generator(self, direction: str = "a2b") -> nn.Module:
        """The float32 generator for ``direction``."""
        return self._generators[self._check_direction(direction)]

    def to(self, device: str | torch.device) -> Translator:
        """Make ``device`` the default for :meth:`translate`."""
        self.device = resolve_device(device)
        return self

    def __repr__(self) -> str:
        a, b = self.domains
        return f"Translator({a!r} ↔ {b!r}, directions={self.directions}, generator={self.metadata.generator})"

    def _check_direction(self, direction: str) -> str:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'a2b' or 'b2a', got {direction!r}")
        if direction not in self._generators:
            a, b = self.domains
            have = " and ".join(self.directions)
            raise ValueError(f"this {a}/{b} model has no {direction} generator (it has {have})")
        return direction

    # ------------------------------------------------------------- translation
    def translate(
        self,
        image: Any,
        direction: str = "a2b",
        *,
        tile_size: int | None = None,
        overlap: int | None = None,
        batch_size: int | None = None,
        device: str | torch.device | None = None,
        precision: str = "auto",
        compile: bool = False,
        layout: str | None = None,
        value_range: tuple[float, float] | None = None,
        statistics_pixels: int = STATISTICS_PIXELS,
        progress: ProgressFn | bool | None = None,
    ) -> Any:
        """Translate an image or a stack of images.

        Args:
            image: numpy ``(H, W)``, ``(H, W, C)``, ``(N, H, W)``, ``(N, H, W, C)``;
                a PIL image; or a torch tensor ``(H, W)``, ``(C, H, W)``, ``(N, C, H, W)``.
                uint8, uint16 and float (0..1) values; other integers need ``value_range``.
            direction: ``"a2b"`` or ``"b2a"``.
            tile_size: tile edge in pixels. ``None``: whole image up to
                :data:`UNTILED_MAX_PIXELS`, else tiles of :data:`DEFAULT_TILE_SIZE`.
                ``0``: never tile.
            overlap: overlap of neighbouring tiles (default :data:`DEFAULT_OVERLAP`).
            batch_size: tiles or slices per forward pass (default 1 on CPU, 4 on GPU).
            device: where to compute (default: the translator's device).
            precision: ``"auto"`` (bf16 where the hardware is fast at it), ``"fp32"``, ``"bf16"``, ``"fp16"``.
            compile: ``torch.compile`` the generator (pays off for many tiles or images).
            layout: the input's axes when the guess is wrong, e.g. ``"NHW"``.
            value_range: ``(low, high)`` of the input values mapped to [-1, 1] (and of the output).
            statistics_pixels: at most this many tile pixels gather instance-norm
                statistics together; larger images use a spread sample of tiles.
            progress: ``True`` for a progress bar, or a callable ``(done, total)``.

        Returns:
            The translation in the input's form: same type, layout, dtype,
            height and width. The channel count is the model's output count
            (an alpha channel passes through untouched).

        Shape:
            - Input: :math:`(H, W)`, :math:`(H, W, C)`, :math:`(N, H, W)` or :math:`(N, H, W, C)`
            - Output: the same, with :math:`C_{out}` channels
        """
        stack = as_stack(image, layout)
        n, height, width, channels = stack.shape
        run = self._make_run(direction, height, width, channels, stack.layout.dtype, tile_size=tile_size,
                             overlap=overlap, batch_size=batch_size, device=device, precision=precision,
                             compile=compile, value_range=value_range)
        out = np.empty((n, height, width, run.out_channels), stack.layout.dtype)
        total = n * len(run.plan)
        bar, report = _progress(progress, total)
        try:
            with torch.inference_mode():
                if len(run.plan) == 1:
                    run.whole(stack.data, out, report)
                else:
                    for k in range(n):
                        run.tiled(stack.data[k], out[k], statistics_pixels, report)
        finally:
            if bar is not None:
                bar.close()
        if run.channels.alpha:
            out[..., -1] = stack.data[..., -1]
        return restore(out, stack.layout)

    def translate_dask(self, array: Any, direction: str = "a2b", **options: Any) -> Any:
        """Translate a dask image or stack ``(N, H, W[, C])`` lazily; see :func:`cyclegan_sdk.lazy.translate_dask`."""
        from .lazy import translate_dask

        return translate_dask(self, array, direction, **options)

    def _make_run(self, direction: str, height: int, width: int, channels: int, image_dtype: np.dtype, *,
                  tile_size: int | None, overlap: int | None, batch_size: int | None,
                  device: str | torch.device | None, precision: str, compile: bool,
                  value_range: tuple[float, float] | None) -> "_Run":
        """Everything one translation needs: network, tile plan, channel and value conversions."""
        direction = self._check_direction(direction)
        meta = self.metadata
        config = meta.generator_config(direction)
        src, dst = (meta.domain_a, meta.domain_b) if direction == "a2b" else (meta.domain_b, meta.domain_a)
        plan_c = plan_channels(channels, config.input_nc, f"the {src.name}→{dst.name} generator")
        scale_in = Scaler(image_dtype, src.scaling, value_range)
        scale_out = Scaler(image_dtype, dst.scaling, value_range)

        dev = resolve_device(device) if device is not None else self.device
        dtype = resolve_precision(precision, dev)
        net = self._runtime_module(direction, dev, dtype)
        forward = self._compiled_forward(direction, dev, dtype, net) if compile else net
        batch = batch_size or (1 if dev.type == "cpu" else 4)
        if batch < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch}")

        m = config.size_multiple
        padded_h = max(_round_up(height, m), config.min_size)
        padded_w = max(_round_up(width, m), config.min_size)
        if tile_size is None:
            tile = 0 if padded_h * padded_w <= UNTILED_MAX_PIXELS else DEFAULT_TILE_SIZE
        else:
            if tile_size < 0:
                raise ValueError(f"tile_size must be >= 0, got {tile_size}")
            tile = tile_size
        if tile and tile < config.min_size:
            raise ValueError(f"tile_size {tile} is below this generator's minimum of {config.min_size}")
        ov = DEFAULT_OVERLAP if overlap is None else overlap
        if ov < 0:
            raise ValueError(f"overlap must be >= 0, got {ov}")
        if tile == 0 or tile >= max(padded_h, padded_w):
            plan = plan_tiles(padded_h, padded_w, max(padded_h, padded_w), 0, m)
        else:
            plan = plan_tiles(padded_h, padded_w, tile, ov, m)

        return _Run(net, forward, plan, plan_c, scale_in, scale_out, height, width, dev, dtype, batch,
                    multiple=m, min_size=config.min_size, out_channels=config.output_nc + (1 if plan_c.alpha else 0))

    # ---------------------------------------------------------------- runtime
    def _runtime_module(self, direction: str, device: torch.device, dtype: torch.dtype) -> nn.Module:
        key = (direction, str(device), dtype)
        if key not in self._runtime:
            master = self._generators[direction]
            if device.type == "cpu" and dtype == torch.float32:
                net = master
            else:
                net = copy.deepcopy(master).to(device=device, dtype=dtype)
            self._runtime[key] = net.eval()
        return self._runtime[key]

    def _compiled_forward(self, direction: str, device: torch.device, dtype: torch.dtype,
                          net: nn.Module) -> Callable[[Tensor], Tensor]:
        key = (direction, str(device), dtype)
        if key not in self._compiled:
            self._compiled[key] = _CompiledForward(net)
        return self._compiled[key]


class _CompiledForward:
    """``torch.compile`` of a generator that falls back to eager mode if compilation fails.

    Compilation happens on the first call; where it cannot work (no C++
    compiler, an unsupported device) translation still runs, with a warning.
    """

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        self.compiled = torch.compile(net, dynamic=False)
        self.works: bool | None = None

    def __call__(self, x: Tensor) -> Tensor:
        if self.works is False:
            return self.net(x)
        try:
            y = self.compiled(x)
        except Exception as exc:  # noqa: BLE001 - any compiler failure means: run eagerly
            if self.works:
                raise
            warnings.warn(f"torch.compile failed ({type(exc).__name__}: {exc}); running eagerly", stacklevel=3)
            self.works = False
            return self.net(x)
        self.works = True
        return y


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _progress(progress: ProgressFn | bool | None, total: int) -> tuple[Any, Callable[[int], None]]:
    done = [0]
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="tile", leave=False, disable=None)  # None: no bar off a terminal

        def report(k: int) -> None:
            bar.update(k)

        return bar, report
    if callable(progress):
        fn = progress

        def report(k: int) -> None:
            done[0] += k
            fn(done[0], total)

        return None, report
    return None, lambda k: None


class _Run:
    """One translation call: cuts tiles, runs the generator, blends and writes the output."""

    def __init__(self, net: nn.Module, forward: Callable[[Tensor], Tensor], plan: TilePlan,
                 channels: ChannelPlan, scale_in: Scaler, scale_out: Scaler, height: int, width: int,
                 device: torch.device, dtype: torch.dtype, batch: int, multiple: int, min_size: int,
                 out_channels: int) -> None:
        self.net, self.forward, self.plan, self.channels = net, forward, plan, channels
        self.multiple, self.min_size, self.out_channels = multiple, min_size, out_channels
        self.scale_in, self.scale_out = scale_in, scale_out
        self.height, self.width = height, width
        self.device, self.dtype, self.batch = device, dtype, batch

    def read(self, image: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Region of the reflection-padded image as float32 ``(C_model, h, w)`` in [-1, 1]."""
        r0, r1, c0, c1 = self.inside((y0, y1, x0, x1))
        return self.read_window(image[r0:r1, c0:c1], y0, y1, x0, x1)

    def inside(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """The part of a padded-image box that lies in the real image."""
        y0, y1, x0, x1 = box
        return y0, min(y1, self.height), x0, min(x1, self.width)

    def statistics_batch(self, blocks: list[np.ndarray], stats_plan: TilePlan,
                         sample: list[tuple[int, int]]) -> tuple[Tensor, Tensor]:
        """The statistics tiles (``blocks``: their parts inside the image) as one input batch, and their
        pooling weights: blend window times real pixels, so each pixel counts once and padding not at all."""
        boxes = [stats_plan.box(i, j) for i, j in sample]
        x = self._to_device([self.read_window(block, *box) for block, box in zip(blocks, boxes)])
        weights = np.stack([stats_plan.window(i, j) * self.valid(*box) for (i, j), box in zip(sample, boxes)])
        return x, torch.from_numpy(weights[:, None])

    def read_window(self, block: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Like :meth:`read`, given only ``block``, the part of the image inside the region.

        The padding beyond the image's bottom and right edges mirrors rows and
        columns of the block itself, which is where the whole image's mirror
        lies too (padding is less than a tile).
        """
        return read_window(block, (y1 - y0, x1 - x0), self.channels, self.scale_in)

    def statistics_tiles(self, statistics_pixels: int) -> tuple[TilePlan, list[tuple[int, int]]]:
        """The tiles that fix the instance-norm statistics: all of them if they fit, else a spread sample."""
        plan = self.plan
        th, tw = plan.tile_shape
        if len(plan) * th * tw <= statistics_pixels:
            return plan, [(i, j) for i in range(plan.grid[0]) for j in range(plan.grid[1])]
        side = max(self.min_size, min(th, STATISTICS_TILE) // self.multiple * self.multiple)
        stats_plan = plan_tiles(plan.height, plan.width, side, side // 4, self.multiple)
        return stats_plan, spread_sample(stats_plan.grid, max(1, statistics_pixels // (side * side)))

    def valid(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """1 on real pixels, 0 on reflection padding; shape ``(h, w)``."""
        rows = (np.arange(y0, y1) < self.height).astype(np.float32)
        cols = (np.arange(x0, x1) < self.width).astype(np.float32)
        return np.outer(rows, cols)

    def _to_device(self, arrays: list[np.ndarray]) -> Tensor:
        return torch.from_numpy(np.stack(arrays)).to(self.device, self.dtype)

    def _to_host(self, y: Tensor) -> np.ndarray:
        return y.float().cpu().numpy()

    def whole(self, data: np.ndarray, out: np.ndarray, report: Callable[[int], None]) -> None:
        """Each slice in one piece (slices batched); padding excluded from the statistics."""
        h, w = self.plan.height, self.plan.width
        padded = (h, w) != (self.height, self.width)
        for k0 in range(0, data.shape[0], self.batch):
            xs = [self.read(data[k], 0, h, 0, w) for k in range(k0, min(k0 + self.batch, data.shape[0]))]
            x = self._to_device(xs)
            if padded:
                weight = torch.from_numpy(self.valid(0, h, 0, w))[None, None].expand(len(xs), 1, h, w)
                with pooled_statistics(self.net, weight, per_sample=True):
                    y = self.net(x)
            else:
                y = self.forward(x)
            ys = self._to_host(y)
            for k, yk in zip(range(k0, k0 + len(xs)), ys):
                out[k, :, :, : yk.shape[0]] = self.scale_out.from_unit(
                    yk[:, : self.height, : self.width].transpose(1, 2, 0))
            report(len(xs))

    def tiled(self, image: np.ndarray, out: np.ndarray, statistics_pixels: int,
              report: Callable[[int], None]) -> None:
        """One slice in tiles, with instance-norm statistics pooled over all tiles or a spread sample.

        When every tile fits the statistics budget, all tiles go through the
        network as one batch: each norm layer pools over all of them and the
        results are final. Otherwise a spread sample of smaller statistics
        tiles fixes the statistics first, and then every tile is translated.
        """
        plan = self.plan
        done: dict[tuple[int, int], np.ndarray] = {}
        stats_plan, sample = self.statistics_tiles(statistics_pixels)
        blocks = [image[y0:y1, x0:x1] for y0, y1, x0, x1 in (self.inside(stats_plan.box(i, j)) for i, j in sample)]
        x, weights = self.statistics_batch(blocks, stats_plan, sample)
        with pooled_statistics(self.net, weights):
            # One batch through the network: each norm layer pools over all these
            # tiles, applies the result, and keeps it for every later tile.
            ys = self._to_host(self.net(x))
            del x
            if stats_plan is plan:
                done = dict(zip(sample, ys))
                report(len(sample))
            del ys
            self._blend_rows(image, out, done, report)

    def _blend_rows(self, image: np.ndarray, out: np.ndarray, done: dict[tuple[int, int], np.ndarray],
                    report: Callable[[int], None]) -> None:
        plan = self.plan
        th, _ = plan.tile_shape
        rows, cols = plan.grid
        out_c = None
        acc: np.ndarray | None = None
        acc_y = 0
        for i in range(rows):
            y0 = plan.rows.starts[i]
            if acc is not None:
                self._flush(out, acc[: y0 - acc_y], acc_y)
                carry = acc[y0 - acc_y:]
                acc = np.zeros_like(acc)
                acc[: carry.shape[0]] = carry
                acc_y = y0
            todo = [j for j in range(cols) if (i, j) not in done]
            for b0 in range(0, len(todo), self.batch):
                js = todo[b0 : b0 + self.batch]
                ys = self._to_host(self.forward(self._to_device([self.read(image, *plan.box(i, j)) for j in js])))
                done.update({(i, j): y for j, y in zip(js, ys)})
                report(len(js))
            for j in range(cols):
                y = done.pop((i, j))
                if acc is None:
                    out_c = y.shape[0]
                    acc = np.zeros((th, plan.width, out_c), np.float32)
                _, _, x0, x1 = plan.box(i, j)
                acc[:, x0:x1] += y.transpose(1, 2, 0) * plan.window(i, j)[:, :, None]
        assert acc is not None
        self._flush(out, acc, acc_y)

    def _flush(self, out: np.ndarray, rows: np.ndarray, y: int) -> None:
        """Write finished rows (padded-image row ``y`` onwards) into ``out``, cropping the padding."""
        n = min(rows.shape[0], self.height - y)
        if n <= 0:
            return
        block = rows[:n, : self.width]
        out[y : y + n, :, : block.shape[-1]] = self.scale_out.from_unit(block)


def read_window(block: np.ndarray, size: tuple[int, int], channels: ChannelPlan, scale_in: Scaler) -> np.ndarray:
    """A tile of ``size`` from ``block`` (the part of it inside the image), as float32 ``(C_model, h, w)`` in [-1, 1].

    Rows and columns beyond the block mirror those of the block (padding at the
    image's bottom and right edges, always less than a tile).
    """
    h, w = block.shape[:2]
    if size == (h, w):
        region = block[:, :, : channels.color]
    else:
        rows = reflect_index(np.arange(size[0]), h)
        cols = reflect_index(np.arange(size[1]), w)
        region = block[rows[:, None], cols[None, :], : channels.color]
    x = channels.to_model(scale_in.to_unit(np.asarray(region)))
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def resolve_model_path(
    repo_id_or_path: str | os.PathLike[str],
    *,
    filename: str = "model.safetensors",
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
) -> Path:
    """The local model file for a file path, a folder, or a Hub repo id (downloaded or from the cache)."""
    path = Path(repo_id_or_path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        candidate = path / filename
        if candidate.is_file():
            return candidate
        found = sorted(path.glob("*.safetensors"))
        if len(found) == 1:
            return found[0]
        if not found:
            raise ModelFileError(f"{path}: folder has no {filename} (and no other .safetensors file)")
        raise ModelFileError(f"{path}: folder has several .safetensors files; name one with filename=")
    repo_id = str(repo_id_or_path)
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/", "~")) or repo_id.endswith(".safetensors"):
        raise FileNotFoundError(f"{repo_id}: no such file or folder (and not a Hub repo id 'owner/name')")
    local_hint = f"no file or folder {repo_id!r} here; as a Hub repo id, "
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - a declared dependency
        raise ModelFileError("huggingface_hub is needed to load models from the Hub") from None
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir, token=token))
    except LocalEntryNotFoundError:
        raise ModelFileError(
            f"{repo_id}: {local_hint}{filename} is not in the local Hub cache and the Hub cannot be reached "
            "(offline, HF_HUB_OFFLINE=1, or no network)"
        ) from None
    except HfHubHTTPError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{repo_id}: {local_hint}cannot fetch {filename} from the Hub ({first})") from None
