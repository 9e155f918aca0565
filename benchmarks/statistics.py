"""Sampled instance-norm statistics against statistics from all tiles, on images large enough to sample.

    python benchmarks/statistics.py                      # 4096² astronaut and IHC, ResNet-6 ngf 16 (a few minutes)
    python benchmarks/statistics.py --size 2048 --images astronaut

When an image has more tile pixels than ``statistics_pixels`` (2²¹ by
default), translation fixes the instance-norm statistics from a spread sample
of 256² tiles instead of from all tiles (in memory and with dask alike). This
measures what that costs: the mean absolute difference, in uint8 units, of
each variant's output from the output whose statistics were pooled over all
tiles (the exact tiled result, itself within about 0.1 of whole-image
translation), and for comparison naive tiling, where every tile is
normalised with its own statistics.

The images are scikit-image's samples upscaled (bilinear) to the size: a
photo (``astronaut``) and a stained tissue section (``immunohistochemistry``).
The generator is randomly initialised (reference init): the statistics rule
does not depend on what the weights learnt, and no trained weights are
needed offline.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from cyclegan_sdk import GeneratorConfig, Translator
from cyclegan_sdk.translator import STATISTICS_PIXELS, _Run

TILE, OVERLAP = 512, 64


def sample_image(name: str, size: int) -> np.ndarray:
    """A scikit-image sample, RGB, upscaled to ``size`` x ``size``."""
    from skimage import data, transform

    image = getattr(data, name)()[..., :3]
    return (transform.resize(image, (size, size), order=1, anti_aliasing=False) * 255).round().astype(np.uint8)


def naive_tiles(run: _Run, image: np.ndarray) -> np.ndarray:
    """Tiled translation where each tile is normalised with its own statistics (same tiles and blend windows)."""
    height, width, _ = image.shape
    plan = run.plan
    acc = np.zeros((plan.height, plan.width, 3), np.float32)
    with torch.inference_mode():
        for i in range(plan.grid[0]):
            for j in range(plan.grid[1]):
                y0, y1, x0, x1 = plan.box(i, j)
                y = run.net(torch.from_numpy(run.read(image, y0, y1, x0, x1))[None])[0].numpy()
                acc[y0:y1, x0:x1] += y.transpose(1, 2, 0) * plan.window(i, j)[:, :, None]
    return run.scale_out.from_unit(acc[:height, :width])


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--images", nargs="+", default=["astronaut", "immunohistochemistry"])
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--budgets", type=int, nargs="+", default=[STATISTICS_PIXELS, 4 * STATISTICS_PIXELS],
                        help="statistics_pixels values to compare (default 2^21, the default, and 2^23)")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    translator = Translator.random(GeneratorConfig(ngf=args.ngf, n_blocks=args.blocks), seed=0)
    print(f"ResNet generator ngf {args.ngf}, {args.blocks} blocks, random weights; {args.size}² RGB uint8, "
          f"tiles {TILE} overlap {OVERLAP}, fp32\n")
    print("| image | statistics | statistics tiles | mean abs. difference from all-tile statistics (uint8) | "
          "99th percentile | seconds |\n|---|---|---|---|---|---|")
    for name in args.images:
        image = sample_image(name, args.size)
        options = {"tile_size": TILE, "overlap": OVERLAP, "precision": "fp32"}
        run = translator._make_run("a2b", *image.shape, image.dtype, batch_size=1, device=None, compile=False,
                                   value_range=None, **options)
        th, tw = run.plan.tile_shape
        exact, t_exact = timed(translator.translate, image, statistics_pixels=2**62, **options)
        print(f"| {name} | all {len(run.plan)} tiles pooled (reference) | {len(run.plan)} of {th}×{tw} | 0 | 0 | "
              f"{t_exact:.1f} |", flush=True)
        for budget in args.budgets:
            plan, sample = run.statistics_tiles(budget)
            out, t = timed(translator.translate, image, statistics_pixels=budget, **options)
            diff = np.abs(out.astype(np.int16) - exact)
            label = "all tiles" if plan is run.plan else f"{len(sample)} of {plan.tile_shape[0]}² sampled"
            print(f"| {name} | statistics_pixels 2^{int(np.log2(budget))} | {label} | {diff.mean():.2f} | "
                  f"{np.percentile(diff, 99):.0f} | {t:.1f} |", flush=True)
        out, t = timed(naive_tiles, run, image)
        diff = np.abs(out.astype(np.int16) - exact)
        print(f"| {name} | per tile (naive tiling) | each tile its own | {diff.mean():.2f} | "
              f"{np.percentile(diff, 99):.0f} | {t:.1f} |", flush=True)


if __name__ == "__main__":
    main()
