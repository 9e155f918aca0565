"""Tile plans, blend windows and whole-image instance-norm statistics for tiled translation.

Instance normalisation makes naive tiling wrong: each tile would be normalised
with its own statistics, so neighbouring tiles differ in colour. Here the
statistics are pooled over tiles instead, layer by layer: all tiles of a
statistics batch go through the network together, and every
:class:`~cyclegan_sdk.networks.InstanceNorm` computes one mean and variance per
channel over all of them (each image pixel weighted by its blend window, so it
counts once), applies it, and keeps it. Deep layers therefore see exactly the
statistics the layers before them produced on the whole image. Tiles outside
the statistics batch are then translated with the kept statistics.

When the image has more tiles than the statistics budget allows, a spread
sample of tiles (an even grid over the image) supplies the statistics; the
budget bounds memory for any image size.

Blend windows form an exact partition of unity: in the overlap of two tiles one
weight falls from 1 to 0 with a raised cosine over the middle half of the
overlap while the other rises, so the output never needs renormalising and
pixels within a quarter-overlap of a tile edge (the least accurate ones) get no
weight.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from torch import Tensor, nn

from .networks import InstanceNorm

__all__ = [
    "AxisTiles",
    "TilePlan",
    "instance_norms",
    "plan_axis",
    "plan_tiles",
    "pooled_statistics",
    "reflect_index",
    "reset_statistics",
    "spread_sample",
]


@dataclass(frozen=True)
class AxisTiles:
    """Tiles along one axis: ``starts[i]`` is where tile ``i`` begins, each ``size`` long.

    ``weights[i]`` (length ``size``) is the blend weight of tile ``i``; over the
    whole axis the weights of all tiles sum to exactly 1.
    """

    length: int
    size: int
    starts: tuple[int, ...]
    weights: tuple[np.ndarray, ...]


def plan_axis(length: int, tile: int, overlap: int, multiple: int = 1) -> AxisTiles:
    """Place tiles of at most ``tile`` pixels over ``length`` with at least ``overlap`` pixels of overlap.

    As few tiles as that allows are spread evenly from the first pixel to the
    last, and shrunk to the smallest size that still covers the axis with that
    overlap (no work wasted on excess overlap). Starts are multiples of
    ``multiple`` (the network's total stride), so every tile samples the same
    grid as the whole image would. ``length`` and ``tile`` must be multiples of
    ``multiple``; ``overlap`` is capped at half a tile.

    Example:
        >>> plan_axis(1024, 256, 64, 4).starts
        (0, 192, 384, 576, 768)
        >>> axis = plan_axis(1000, 512, 64, 4)  # three tiles are needed, and 376 pixels each suffice
        >>> axis.size, axis.starts
        (376, (0, 312, 624))
    """
    if length % multiple or tile % multiple:
        raise ValueError(f"length {length} and tile {tile} must be multiples of {multiple}")
    if tile >= length:
        return AxisTiles(length, length, (0,), (np.ones(length, np.float32),))
    overlap = min(max(overlap, 0), tile // 2)
    count = -(-(length - overlap) // max(1, tile - overlap))
    tile = min(tile, -(-(-(-(length - overlap) // count) + overlap) // multiple) * multiple)
    step = max(multiple, tile - overlap)
    gaps = -(-(length - tile) // step)  # tiles - 1
    starts = sorted({int(round(k * (length - tile) / gaps / multiple)) * multiple for k in range(gaps + 1)})
    raw = np.zeros((len(starts), length), np.float64)
    covered = np.zeros_like(raw)
    for i, s in enumerate(starts):
        w = np.ones(tile, np.float64)
        if i > 0:
            w *= 1.0 - _falling(starts[i - 1] + tile - s, tile, offset=0)
        if i < len(starts) - 1:
            w *= _falling(s + tile - starts[i + 1], tile, offset=starts[i + 1] - s)
        raw[i, s : s + tile] = w
        covered[i, s : s + tile] = 1.0
    total = raw.sum(axis=0)
    # Where crowded tiles leave a pixel with no ramp weight at all, share it equally.
    raw = np.where(total > 0, raw, covered)
    raw /= raw.sum(axis=0)
    weights = tuple(raw[i, s : s + tile].astype(np.float32) for i, s in enumerate(starts))
    return AxisTiles(length, tile, tuple(starts), weights)


def _falling(width: int, tile: int, offset: int) -> np.ndarray:
    """1 before the overlap's middle half, a raised-cosine fall across it, 0 after.

    ``offset`` is where the overlap (of ``width`` pixels) begins inside the
    tile. The neighbouring tile uses ``1 - f`` of the same curve, so in a
    two-tile overlap the weights sum to 1 and pixels within a quarter-overlap
    of a tile edge, the least accurate ones, get no weight from that tile.
    """
    x = np.arange(tile, dtype=np.float64) + 0.5 - offset
    lo, hi = width / 4.0, width - width / 4.0
    t = np.clip((x - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    return 0.5 + 0.5 * np.cos(math.pi * t)


@dataclass(frozen=True)
class TilePlan:
    """A grid of equal tiles over a (padded) image of ``height`` x ``width``."""

    rows: AxisTiles
    cols: AxisTiles

    @property
    def height(self) -> int:
        return self.rows.length

    @property
    def width(self) -> int:
        return self.cols.length

    @property
    def tile_shape(self) -> tuple[int, int]:
        return self.rows.size, self.cols.size

    @property
    def grid(self) -> tuple[int, int]:
        return len(self.rows.starts), len(self.cols.starts)

    def __len__(self) -> int:
        return len(self.rows.starts) * len(self.cols.starts)

    def window(self, i: int, j: int) -> np.ndarray:
        """Blend weight of tile ``(i, j)``, shape ``(tile_h, tile_w)``."""
        return np.outer(self.rows.weights[i], self.cols.weights[j])

    def box(self, i: int, j: int) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` of tile ``(i, j)`` in padded-image coordinates."""
        y0, x0 = self.rows.starts[i], self.cols.starts[j]
        return y0, y0 + self.rows.size, x0, x0 + self.cols.size


def plan_tiles(height: int, width: int, tile_size: int, overlap: int, multiple: int = 1) -> TilePlan:
    """A :class:`TilePlan` for an image already padded to multiples of ``multiple``.

    ``tile_size`` is rounded down to a multiple of ``multiple`` (at least one).
    """
    tile = max(multiple, tile_size // multiple * multiple)
    return TilePlan(plan_axis(height, tile, overlap, multiple), plan_axis(width, tile, overlap, multiple))


def spread_sample(grid: tuple[int, int], count: int) -> list[tuple[int, int]]:
    """At most ``count`` tiles spread evenly over a ``grid`` of tiles (all of them if that many fit).

    The sample is a regular sub-grid at the centres of equal strips, so it
    covers the interior as well as the edges.

    Example:
        >>> spread_sample((9, 9), 9)
        [(1, 1), (1, 4), (1, 7), (4, 1), (4, 4), (4, 7), (7, 1), (7, 4), (7, 7)]
    """
    rows, cols = grid
    if count >= rows * cols:
        return [(i, j) for i in range(rows) for j in range(cols)]
    n_rows = max(1, min(rows, int(math.sqrt(count * rows / cols))))
    n_cols = max(1, min(cols, count // n_rows))
    ii = ((np.arange(n_rows) + 0.5) * rows / n_rows).astype(int)
    jj = ((np.arange(n_cols) + 0.5) * cols / n_cols).astype(int)
    return [(int(i), int(j)) for i in ii for j in jj]


def reflect_index(index: np.ndarray, length: int) -> np.ndarray:
    """Map indices beyond ``[0, length)`` back inside by mirror reflection (edge not repeated)."""
    if length == 1:
        return np.zeros_like(index)
    period = 2 * (length - 1)
    r = np.mod(index, period)
    return np.where(r < length, r, period - r)


def instance_norms(module: nn.Module) -> list[InstanceNorm]:
    """Every :class:`InstanceNorm` inside ``module``."""
    return [m for m in module.modules() if isinstance(m, InstanceNorm)]


def reset_statistics(module: nn.Module) -> None:
    """Return every instance norm in ``module`` to per-sample statistics."""
    for norm in instance_norms(module):
        norm.reset()


@contextlib.contextmanager
def pooled_statistics(module: nn.Module, weight: Tensor, per_sample: bool = False) -> Iterator[None]:
    """Within this block, the next forward of ``module`` pools instance-norm statistics with ``weight``.

    After that forward the statistics stay frozen, so further forwards in the
    block (other tiles of the same image) use them. On leaving, the norms return
    to per-sample statistics.

    Args:
        module: a generator.
        weight: ``(N, 1, H, W)`` per-pixel weights at input resolution, for
            example blend windows times a mask of real (not padded) pixels.
        per_sample: pool over each sample's pixels separately instead of over the batch.
    """
    norms = instance_norms(module)
    for norm in norms:
        norm.pool(weight, per_sample=per_sample)
    try:
        yield
    finally:
        for norm in norms:
            norm.reset()
