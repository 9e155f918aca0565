import numpy as np
import pytest
import torch

from cyclegan_sdk.precision import resolve_precision
from cyclegan_sdk.tiling import plan_axis, plan_tiles, reflect_index, spread_sample


@pytest.mark.parametrize(
    "length,tile,overlap,multiple",
    [(1024, 256, 64, 4), (1000, 256, 64, 4), (1028, 256, 128, 4), (8192, 512, 64, 4), (260, 256, 64, 4),
     (777, 100, 30, 1), (4096, 1024, 300, 256)],
)
def test_axis_plan_is_a_partition_of_unity(length, tile, overlap, multiple):
    if length % multiple:
        length = -(-length // multiple) * multiple
    axis = plan_axis(length, tile, overlap, multiple)
    size = axis.size
    assert size <= tile and size % multiple == 0
    total = np.zeros(length)
    for s, w in zip(axis.starts, axis.weights):
        assert s % multiple == 0 and len(w) == size
        total[s : s + size] += w
    assert np.allclose(total, 1.0, atol=1e-6)
    assert axis.starts[0] == 0 and axis.starts[-1] + size == length
    overlaps = np.array(axis.starts[:-1]) + size - np.array(axis.starts[1:])
    assert (overlaps >= min(overlap, tile // 2) - multiple).all()  # the overlap asked for, to the stride grid
    # no more tiles than tiles of the full size would need
    assert len(axis.starts) == -(-(length - min(overlap, tile // 2)) // (tile - min(overlap, tile // 2)))
    # no weight on the quarter-overlap next to an inner tile edge
    if len(axis.starts) > 1:
        ov = axis.starts[0] + size - axis.starts[1]
        assert axis.weights[0][-(ov // 4) + 1 :].max() < 1e-6


def test_single_tile_when_tile_covers_axis():
    axis = plan_axis(96, 256, 64, 4)
    assert axis.starts == (0,) and axis.size == 96 and np.all(axis.weights[0] == 1)


def test_plan_tiles_windows_sum_to_one():
    plan = plan_tiles(600, 400, 256, 64, 4)
    total = np.zeros((600, 400))
    for i in range(plan.grid[0]):
        for j in range(plan.grid[1]):
            y0, y1, x0, x1 = plan.box(i, j)
            total[y0:y1, x0:x1] += plan.window(i, j)
    assert np.allclose(total, 1.0, atol=1e-6)
    assert len(plan) == plan.grid[0] * plan.grid[1] == 3 * 2


def test_reflect_index_matches_numpy_reflect():
    a = np.arange(7)
    idx = np.arange(-9, 20)
    assert np.array_equal(a[reflect_index(idx, 7)], np.pad(a, (9, 13), mode="reflect"))
    assert np.array_equal(reflect_index(np.arange(5), 1), np.zeros(5, int))


def test_spread_sample_covers_the_grid():
    sample = spread_sample((19, 19), 16)
    assert len(sample) == 16
    rows = sorted({i for i, _ in sample})
    assert rows[0] > 0 and rows[-1] < 18 and len(rows) == 4
    assert spread_sample((3, 3), 100) == [(i, j) for i in range(3) for j in range(3)]
    assert len(spread_sample((2, 40), 8)) == 8


def test_precision_resolution():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == torch.float32
    assert resolve_precision("bf16", cpu) == torch.bfloat16
    assert resolve_precision("auto", cpu) in (torch.float32, torch.bfloat16)
    with pytest.raises(ValueError, match="fp16' is for GPUs"):
        resolve_precision("fp16", cpu)
