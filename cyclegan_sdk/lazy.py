"""Lazy translation of dask arrays: whole-slide images that never have to fit in memory.

The result is a dask array whose values equal :meth:`Translator.translate` on
the same image (up to float summation order, at most one unit of an integer
dtype): the same tile plan, blend windows and instance-norm statistics. The
statistics are fixed first, eagerly, from the same tiles in-memory
translation uses (all tiles when they fit ``statistics_pixels``, else a spread
sample), reading only those tiles. Then every tile is one task that depends on
one shared copy of the network with those statistics frozen, so a
``dask.distributed`` cluster receives the model once, not per chunk, and each
output region sums the (at most four) weighted tiles covering it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .images import ChannelPlan, Scaler
from .tiling import instance_norms, pooled_statistics

if TYPE_CHECKING:
    from .translator import Translator

__all__ = ["translate_dask"]


def translate_dask(
    translator: "Translator",
    array: Any,
    direction: str = "a2b",
    *,
    tile_size: int | None = None,
    overlap: int | None = None,
    precision: str = "auto",
    device: str | torch.device | None = None,
    value_range: tuple[float, float] | None = None,
    statistics_pixels: int | None = None,
) -> Any:
    """Translate a dask array ``(H, W)`` or ``(H, W, C)`` into a lazy dask array of the same shape and dtype.

    Args:
        translator: the model.
        array: a dask array (or anything ``dask.array.asarray`` takes: zarr, numpy, memory maps).
        direction, tile_size, overlap, precision, device, value_range, statistics_pixels:
            as for :meth:`Translator.translate`.

    Returns:
        A dask array, chunked like the input in height and width.

    Example:
        >>> import dask.array as da
        >>> from cyclegan_sdk import GeneratorConfig, Translator
        >>> t = Translator.random(GeneratorConfig(ngf=4, n_blocks=1))
        >>> lazy = t.translate_dask(da.zeros((300, 200, 3), dtype="uint8", chunks=100), precision="fp32")
        >>> lazy.shape, lazy.dtype.name
        ((300, 200, 3), 'uint8')
    """
    import dask
    import dask.array as da

    from .translator import STATISTICS_PIXELS

    arr = da.asarray(array)
    squeeze = arr.ndim == 2
    if squeeze:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] > 4:
        raise ValueError(f"translate_dask takes (H, W) or (H, W, C) with C <= 4, got shape {array.shape}")
    height, width, channels = arr.shape
    if height == 0 or width == 0:
        raise ValueError(f"image is empty: shape {array.shape}")
    dtype = np.dtype(arr.dtype)
    if dtype.kind not in "uif":
        raise ValueError(f"unsupported image dtype {dtype}: use uint8, uint16, integer or float")
    run = translator._make_run(direction, height, width, channels, dtype, tile_size=tile_size, overlap=overlap,
                               batch_size=1, device=device, precision=precision, compile=False,
                               value_range=value_range)
    plan = run.plan
    budget = STATISTICS_PIXELS if statistics_pixels is None else statistics_pixels
    net = _frozen_network(run, arr, budget) if len(plan) > 1 else _per_image_network(run)
    job = _TileJob(run.channels, run.scale_in, run.dtype, str(run.device))
    shared = dask.delayed(net, pure=True, traverse=False)  # one key: shipped to each worker once

    tiles = {}
    for i in range(plan.grid[0]):
        for j in range(plan.grid[1]):
            y0, y1, x0, x1 = plan.box(i, j)
            block = arr[y0 : min(y1, height), x0 : min(x1, width)]
            tiles[i, j] = dask.delayed(job)(shared, block, (y0, y1, x0, x1), plan.window(i, j))
    out_c = run.out_channels - (1 if run.channels.alpha else 0)
    row_regions = _regions(plan.rows.starts, plan.height, height)
    col_regions = _regions(plan.cols.starts, plan.width, width)
    # Which tiles cover each region, worked out per axis: tiles and regions are grids.
    row_tiles = _covering(plan.rows.starts, plan.rows.size, row_regions)
    col_tiles = _covering(plan.cols.starts, plan.cols.size, col_regions)
    rows = []
    for (r0, r1), tile_rows in zip(row_regions, row_tiles):
        row = []
        for (c0, c1), tile_cols in zip(col_regions, col_tiles):
            parts = [(tiles[a, b], plan.box(a, b)) for a in tile_rows for b in tile_cols]
            region = dask.delayed(_blend_region)([p for p, _ in parts], [b for _, b in parts], (r0, r1, c0, c1),
                                                 run.scale_out)
            row.append(da.from_delayed(region, (r1 - r0, c1 - c0, out_c), dtype=dtype))
        rows.append(da.concatenate(row, axis=1))
    out = da.concatenate(rows, axis=0)
    if run.channels.alpha:
        out = da.concatenate([out, arr[..., -1:].rechunk(out.chunks[:2] + ((1,),))], axis=-1)
    out = out.rechunk(arr.chunks[:2] + (out.shape[-1],))
    return out[..., 0] if squeeze and out.shape[-1] == 1 else out


def _regions(starts: tuple[int, ...], padded: int, real: int) -> list[tuple[int, int]]:
    """Output regions along an axis: from each tile start to the next (within the real image)."""
    bounds = [*starts[1:], padded]
    out = []
    for s, e in zip((0, *starts[1:]), bounds):
        s, e = min(s, real), min(e, real)
        if e > s:
            out.append((s, e))
    return out


def _covering(starts: tuple[int, ...], size: int, regions: list[tuple[int, int]]) -> list[list[int]]:
    """For each region of an axis, the tiles (of ``size`` from ``starts``) that overlap it."""
    return [[k for k, s in enumerate(starts) if s < r1 and s + size > r0] for r0, r1 in regions]


def _frozen_network(run: Any, arr: Any, budget: int) -> nn.Module:
    """A CPU copy of the network whose instance norms hold the whole image's statistics."""
    import dask

    stats_plan, sample = run.statistics_tiles(budget)
    boxes = [run.inside(stats_plan.box(i, j)) for i, j in sample]
    blocks = dask.compute(*[arr[y0:y1, x0:x1] for y0, y1, x0, x1 in boxes])  # only these tiles are read
    x, weights = run.statistics_batch([np.asarray(b) for b in blocks], stats_plan, sample)
    net = copy.deepcopy(run.net)
    with torch.inference_mode():
        with pooled_statistics(net, weights):
            net(x)
            stats = [(n.stats[0].clone(), n.stats[1].clone()) for n in instance_norms(net)]
    for norm, (mean, var) in zip(instance_norms(net), stats):
        norm.freeze(mean, var)
    return net


def _per_image_network(run: Any) -> nn.Module:
    """A single tile covers the image: per-image statistics, except over the padding."""
    h, w = run.plan.tile_shape
    padded = (h, w) != (run.height, run.width)
    return _MaskedWhole(copy.deepcopy(run.net), torch.from_numpy(run.valid(0, h, 0, w))[None, None] if padded else None)


class _MaskedWhole(nn.Module):
    """The network on one padded image, its statistics excluding the padding (as ``translate`` does)."""

    def __init__(self, net: nn.Module, weight: torch.Tensor | None) -> None:
        super().__init__()
        self.net, self.weight = net, weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is None:
            return self.net(x)
        with pooled_statistics(self.net, self.weight, per_sample=True):
            return self.net(x)


@dataclass
class _TileJob:
    """Translate one tile: small and picklable, the network comes as an argument."""

    channels: ChannelPlan
    scale_in: Scaler
    dtype: torch.dtype
    device: str

    def __call__(self, net: nn.Module, block: np.ndarray, box: tuple[int, int, int, int],
                 window: np.ndarray) -> np.ndarray:
        from .translator import read_window

        y0, y1, x0, x1 = box
        tile = read_window(np.asarray(block), (y1 - y0, x1 - x0), self.channels, self.scale_in)
        x = torch.from_numpy(tile)[None].to(self.device, self.dtype)
        with torch.inference_mode():
            y = net(x)[0].float().cpu().numpy()
        return y.transpose(1, 2, 0) * window[:, :, None]


def _blend_region(parts: list[np.ndarray], boxes: list[tuple[int, int, int, int]], region: tuple[int, int, int, int],
                  scale_out: Scaler) -> np.ndarray:
    r0, r1, c0, c1 = region
    acc = None
    for part, (y0, y1, x0, x1) in zip(parts, boxes):
        ys, ye = max(r0, y0), min(r1, y1)
        xs, xe = max(c0, x0), min(c1, x1)
        piece = part[ys - y0 : ye - y0, xs - x0 : xe - x0]
        if acc is None:
            acc = np.zeros((r1 - r0, c1 - c0, part.shape[-1]), np.float32)
        acc[ys - r0 : ye - r0, xs - c0 : xe - c0] += piece
    assert acc is not None
    return scale_out.from_unit(acc)
