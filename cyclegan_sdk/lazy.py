"""Lazy translation of dask arrays: whole-slide images and stacks that never have to fit in memory.

The result is a dask array whose values equal :meth:`Translator.translate` on
the same image (up to float summation order, at most one unit of an integer
dtype): the same tile plan, blend windows and instance-norm statistics. Each
slice of a stack is translated on its own, as ``translate`` does.

Per slice, one task fixes the statistics from the same tiles in-memory
translation uses (all tiles when they fit ``statistics_pixels``, else a spread
sample), reading only those tiles, and returns a copy of the network with
them frozen. Every tile is then one task on that copy, and each output region
sums the (at most four) weighted tiles covering it. The network itself is one
node of the graph, so a ``dask.distributed`` cluster receives it once, not per
chunk. Nothing is computed until the result is.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .images import ChannelPlan, Scaler, _guess_layout
from .tiling import TilePlan, instance_norms, pooled_statistics

if TYPE_CHECKING:
    from .translator import Translator, _Run

__all__ = ["translate_dask"]

_LAYOUTS = ("HW", "HWC", "NHW", "NHWC")


def translate_dask(
    translator: Translator,
    array: Any,
    direction: str = "a2b",
    *,
    tile_size: int | None = None,
    overlap: int | None = None,
    precision: str = "auto",
    device: str | torch.device | None = None,
    value_range: tuple[float, float] | None = None,
    statistics_pixels: int | None = None,
    layout: str | None = None,
) -> Any:
    """Translate a dask array (an image or a stack) into a lazy dask array of the same layout and dtype.

    Args:
        translator: the model.
        array: a dask array (or anything ``dask.array.asarray`` takes: zarr, numpy, memory maps).
        direction, tile_size, overlap, precision, device, value_range, statistics_pixels:
            as for :meth:`Translator.translate`.
        layout: ``"HW"``, ``"HWC"``, ``"NHW"`` or ``"NHWC"``; by default guessed as
            ``translate`` does (a trailing axis of at most 4 is channels).

    Returns:
        A dask array chunked like the input (along the stack, height and width).
        The channel count is the model's output count (alpha passes through);
        a grey input keeps having no channel axis when the output is grey.

    Shape:
        - Input: :math:`(H, W)`, :math:`(H, W, C)`, :math:`(N, H, W)` or :math:`(N, H, W, C)`
        - Output: the same, with :math:`C_{out}` channels

    Example:
        >>> import dask.array as da
        >>> from cyclegan_sdk import GeneratorConfig, Translator
        >>> t = Translator.random(GeneratorConfig(ngf=4, n_blocks=1))
        >>> lazy = t.translate_dask(da.zeros((300, 200, 3), dtype="uint8", chunks=100), precision="fp32")
        >>> lazy.shape, lazy.dtype.name
        ((300, 200, 3), 'uint8')
        >>> t.translate_dask(da.zeros((5, 64, 48), dtype="uint16", chunks=(1, 64, 48)), precision="fp32").shape
        (5, 64, 48, 3)
    """
    import dask
    import dask.array as da

    from .translator import STATISTICS_PIXELS

    arr = da.asarray(array)
    if layout is None and 2 <= arr.ndim <= 4:
        layout = _guess_layout(arr.ndim, arr.shape, channels_first=False)  # as translate guesses for numpy
    if layout not in _LAYOUTS or arr.ndim != len(layout):
        raise ValueError(f"translate_dask takes (H, W), (H, W, C), (N, H, W) or (N, H, W, C) with C <= 4, "
                         f"got shape {arr.shape}" + (f" and layout {layout!r}" if layout else ""))
    stack = arr if "N" in layout else arr[None]
    stack = stack if "C" in layout else stack[..., None]
    n, height, width, channels = stack.shape
    if channels > 4:
        raise ValueError(f"translate_dask takes at most 4 channels, got shape {arr.shape} ({layout})")
    if 0 in stack.shape:
        raise ValueError(f"image is empty: shape {arr.shape}")
    dtype = np.dtype(arr.dtype)
    if dtype.kind not in "uif":
        raise ValueError(f"unsupported image dtype {dtype}: use uint8, uint16, integer or float")
    run = translator._make_run(direction, height, width, channels, dtype, tile_size=tile_size, overlap=overlap,
                               batch_size=1, device=device, precision=precision, compile=False,
                               value_range=value_range)
    budget = STATISTICS_PIXELS if statistics_pixels is None else statistics_pixels
    if len(run.plan) > 1:
        shared = dask.delayed(_Network(run.net), pure=True, traverse=False)  # one key: shipped to each worker once
        statistics = _StatisticsJob(_without_network(run), *run.statistics_tiles(budget))
    else:
        shared = dask.delayed(_Network(_per_image_network(run)), pure=True, traverse=False)
        statistics = None
    slices = [_translate_slice(run, stack[k], shared, statistics) for k in range(n)]
    out = da.stack(slices) if n > 1 else slices[0][None]
    if run.channels.alpha:
        out = da.concatenate([out, stack[..., -1:].rechunk(out.chunks[:3] + ((1,),))], axis=-1)
    out = out.rechunk(stack.chunks[:3] + (out.shape[-1],))  # the input's chunks, whatever the tiles were
    if "C" not in layout and out.shape[-1] == 1:
        out = out[..., 0]
    return out if "N" in layout else out[0]


def _translate_slice(run: _Run, image: Any, shared: Any, statistics: _StatisticsJob | None) -> Any:
    """One ``(H, W, C)`` slice: the graph of its statistics, tiles and output regions."""
    import dask
    import dask.array as da

    plan, height, width = run.plan, run.height, run.width
    if statistics is None:
        net = shared
    else:
        # Only the statistics tiles are read for this task.
        net = dask.delayed(statistics)(shared, *[image[y0:y1, x0:x1] for y0, y1, x0, x1 in statistics.boxes])
    job = _TileJob(run.channels, run.scale_in, run.dtype, str(run.device))
    out_c = run.out_channels - (1 if run.channels.alpha else 0)
    row_regions = _segments(plan.rows.starts, plan.rows.size, height)
    col_regions = _segments(plan.cols.starts, plan.cols.size, width)
    # Which tiles cover each region, worked out per axis: tiles and regions are grids.
    row_tiles = _covering(plan.rows.starts, plan.rows.size, row_regions)
    col_tiles = _covering(plan.cols.starts, plan.cols.size, col_regions)
    # Regions are where the same tiles overlap. Each tile task returns its output cut into the regions it
    # covers: the region only it covers (most of the tile, where its weight is 1) already in the output
    # dtype, the overlap strips weighted, in float. Until the neighbours are done only the strips and
    # a small integer piece wait, not a float tile.
    row_regions_of = [[r for r, tiles in enumerate(row_tiles) if i in tiles] for i in range(plan.grid[0])]
    col_regions_of = [[c for c, tiles in enumerate(col_tiles) if j in tiles] for j in range(plan.grid[1])]
    pieces: dict[tuple[int, int, int, int], Any] = {}
    for i, regions_i in enumerate(row_regions_of):
        for j, regions_j in enumerate(col_regions_of):
            y0, y1, x0, x1 = box = plan.box(i, j)
            cuts = [(r, c, _cut((y0, y1), row_regions[r]) + _cut((x0, x1), col_regions[c])
                     + (len(row_tiles[r]) == len(col_tiles[c]) == 1,))
                    for r in regions_i for c in regions_j]
            block = image[y0 : min(y1, height), x0 : min(x1, width)]
            # The window as its two 1-D factors: a full (h, w) window per tile would make the graph itself
            # as large as a float copy of the image.
            out = dask.delayed(job, nout=len(cuts))(net, block, box, plan.rows.weights[i], plan.cols.weights[j],
                                                    [cut for _, _, cut in cuts], run.scale_out)
            for (r, c, _), piece in zip(cuts, out if len(cuts) > 1 else [out]):
                pieces[r, c, i, j] = piece
    rows = []
    for r, ((r0, r1), tile_rows) in enumerate(zip(row_regions, row_tiles)):
        row = []
        for c, ((c0, c1), tile_cols) in enumerate(zip(col_regions, col_tiles)):
            keys = [(a, b) for a in tile_rows for b in tile_cols]
            if len(keys) == 1:
                region = pieces[(r, c, *keys[0])]  # final already
            else:
                offsets = [(max(plan.rows.starts[a], r0) - r0, max(plan.cols.starts[b], c0) - c0) for a, b in keys]
                region = dask.delayed(_blend_region)([pieces[r, c, a, b] for a, b in keys], offsets,
                                                     (r1 - r0, c1 - c0), run.scale_out)
            row.append(da.from_delayed(region, (r1 - r0, c1 - c0, out_c), dtype=run.scale_out.dtype))
        rows.append(da.concatenate(row, axis=1))
    return da.concatenate(rows, axis=0)


def _segments(starts: tuple[int, ...], size: int, real: int) -> list[tuple[int, int]]:
    """An axis of the real image cut wherever a tile begins or ends: each segment has one set of covering tiles."""
    bounds = sorted({0, real, *(min(s, real) for s in starts), *(min(s + size, real) for s in starts)})
    return list(itertools.pairwise(bounds))


def _cut(tile: tuple[int, int], region: tuple[int, int]) -> tuple[int, int]:
    """The part of a region along an axis that a tile covers, in the tile's coordinates."""
    return max(tile[0], region[0]) - tile[0], min(tile[1], region[1]) - tile[0]


def _covering(starts: tuple[int, ...], size: int, regions: list[tuple[int, int]]) -> list[list[int]]:
    """For each region of an axis, the tiles (of ``size`` from ``starts``) that overlap it."""
    return [[k for k, s in enumerate(starts) if s < r1 and s + size > r0] for r0, r1 in regions]


def _without_network(run: _Run) -> _Run:
    """A shallow copy of ``run`` with no network: what a statistics task needs, small to ship."""
    light = copy.copy(run)
    light.net = light.forward = None
    return light


@dataclass
class _StatisticsJob:
    """Fix one slice's instance-norm statistics: the network and the statistics tiles in, a frozen copy out.

    The copy is what every tile of the slice runs on; the shared network is
    never changed, so slices can be translated at the same time.
    """

    run: _Run
    plan: TilePlan
    sample: list[tuple[int, int]]

    @property
    def boxes(self) -> list[tuple[int, int, int, int]]:
        """The parts of the statistics tiles inside the image: the only pixels this job reads."""
        return [self.run.inside(self.plan.box(i, j)) for i, j in self.sample]

    def __call__(self, net: _Network, *blocks: np.ndarray) -> _Network:
        x, weights = self.run.statistics_batch([np.asarray(b) for b in blocks], self.plan, self.sample)
        frozen = copy.deepcopy(net.module)
        for norm in instance_norms(frozen):
            norm.pool(weights)  # the next forward pools the statistics and freezes them in this copy
        with torch.inference_mode():
            frozen(x)
        return _Network(frozen)


class _Network:
    """A network as a value in the graph (the shared one, or a slice's copy with frozen statistics).

    Not an ``nn.Module`` itself, so ``dask.distributed`` pickles it whole with
    torch's own pickling: its serializer for modules goes through numpy, which
    has no bfloat16.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module


def _per_image_network(run: _Run) -> nn.Module:
    """A single tile covers each slice: per-slice statistics, except over the padding."""
    h, w = run.plan.tile_shape
    padded = (h, w) != (run.height, run.width)
    return _MaskedWhole(run.net, torch.from_numpy(run.valid(0, h, 0, w))[None, None] if padded else None)


class _MaskedWhole(nn.Module):
    """The network on one padded image, its statistics excluding the padding (as ``translate`` does)."""

    def __init__(self, net: nn.Module, weight: torch.Tensor | None) -> None:
        super().__init__()
        self.net, self.weight = net, weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is None:
            return self.net(x)  # plain per-sample instance norm: nothing changes, threads may share it
        # Pooling sets state on the norm layers: each call gets its own copy (slices may run at once).
        net = copy.deepcopy(self.net)
        with pooled_statistics(net, self.weight, per_sample=True):
            return net(x)


@dataclass
class _TileJob:
    """Translate one tile: small and picklable, the network comes as an argument."""

    channels: ChannelPlan
    scale_in: Scaler
    dtype: torch.dtype
    device: str

    def __call__(self, net: _Network, block: np.ndarray, box: tuple[int, int, int, int],
                 row_weights: np.ndarray, col_weights: np.ndarray,
                 cuts: list[tuple[int, int, int, int, bool]], scale_out: Scaler) -> tuple[np.ndarray, ...] | np.ndarray:
        """The tile's output times its blend window (``row_weights`` outer ``col_weights``), cut into
        ``(h, w, C)`` pieces ``[y0:y1, x0:x1]``, one per cut; a cut marked final (covered by this tile alone,
        where the window is 1) comes in the output dtype. Pieces are copies: none keeps the whole tile alive."""
        from .translator import read_window

        y0, y1, x0, x1 = box
        tile = read_window(np.asarray(block), (y1 - y0, x1 - x0), self.channels, self.scale_in)
        x = torch.from_numpy(tile)[None].to(self.device, self.dtype)
        with torch.inference_mode():
            y = net.module(x)[0].float().cpu().numpy()
        y = y.transpose(1, 2, 0)
        # In place: a tile's float output is the largest thing a task holds.
        y *= row_weights[:, None, None]
        y *= col_weights[None, :, None]
        parts = tuple(scale_out.from_unit(y[y0:y1, x0:x1]) if final else np.ascontiguousarray(y[y0:y1, x0:x1])
                      for y0, y1, x0, x1, final in cuts)
        return parts if len(parts) > 1 else parts[0]


def _blend_region(parts: list[np.ndarray], offsets: list[tuple[int, int]], shape: tuple[int, int],
                  scale_out: Scaler) -> np.ndarray:
    """Sum the weighted tile pieces of one output region (at ``offsets`` in it) and convert to the output dtype."""
    acc = np.zeros((*shape, parts[0].shape[-1]), np.float32)
    for part, (y, x) in zip(parts, offsets):
        acc[y : y + part.shape[0], x : x + part.shape[1]] += part
    return scale_out.from_unit(acc)
