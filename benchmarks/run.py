"""All benchmarks in one table: translation, tiled and dask translation of huge images, a training step.

    python benchmarks/run.py                 # everything at full size: about 45 minutes on 2 cores
    python benchmarks/run.py --quick         # 4096² tiled and dask, fewer repeats: about 5 minutes
    python benchmarks/run.py --tiled-size 8192 --dask-size 16384 --dask-ngf 64

Rows:

- translate 256² and 1024²: the plain fp32 eager forward of the reference
  ``resnet_9blocks`` generator (ngf 64) against ``Translator.translate``
  with defaults (``benchmarks/translate.py``'s measurement);
- tiled NxN: ``Translator.translate`` of an N² RGB photo in a fresh process,
  time and peak RSS (``benchmarks/translate.py --child N``);
- dask NxN: ``Translator.translate_dask`` of an N² RGB array made on the fly
  from pixel coordinates (never held whole), stored into a zarr store, on a
  ``dask.distributed`` LocalCluster of 2 single-threaded worker processes;
  time and each worker's peak RSS (sampled every 0.2 s with psutil);
- train step: one ``Trainer.train_step`` at 256², ngf 64, 9 blocks, fp32
  eager against the default (``benchmarks/train.py``'s measurement).

Ratios compare figures measured in this one run; the machine's load average
is printed with them.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import train as train_bench
import translate as translate_bench

from cyclegan_sdk import GeneratorConfig, Translator


def pattern(block: np.ndarray, block_info=None) -> np.ndarray:
    """An RGB chunk computed from its pixel coordinates: smooth gradients and stripes, like no two chunks alike."""
    (y0, y1), (x0, x1), _ = block_info[None]["array-location"]
    yy = np.arange(y0, y1, dtype=np.float32)[:, None]
    xx = np.arange(x0, x1, dtype=np.float32)[None, :]
    r = 127.5 + 127.5 * np.sin(yy / 97.0) * np.cos(xx / 131.0)
    g = 127.5 + 127.5 * np.sin((yy + xx) / 211.0)
    b = np.broadcast_to((0.3 * yy + 0.7 * xx) % 256, r.shape)
    return np.stack([r, g, b], -1).astype(np.uint8)


def dask_translation(size: int, ngf: int, blocks: int, workers: int) -> dict:
    """Translate a size² array on a LocalCluster; time, per-worker peak RSS, and the result's own check."""
    import dask.array as da
    import distributed
    import psutil

    translator = Translator.random(GeneratorConfig(ngf=ngf, n_blocks=blocks))
    image = da.map_blocks(pattern, da.empty((size, size, 3), dtype=np.uint8, chunks=(2048, 2048, 3)),
                          dtype=np.uint8)
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        # One torch thread per worker: the workers share the machine's cores between them.
        client.run(torch.set_num_threads, max(1, (os.cpu_count() or 1) // workers))
        pids = list(client.run(os.getpid).values())
        procs = [psutil.Process(p) for p in pids]
        peaks = {p.pid: p.memory_info().rss for p in procs}
        start_rss = dict(peaks)
        running = [True]

        def sample() -> None:
            while running[0]:
                for p in procs:
                    peaks[p.pid] = max(peaks[p.pid], p.memory_info().rss)
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            lazy = translator.translate_dask(image, tile_size=512)
            da.to_zarr(lazy, os.path.join(tmp, "out.zarr"))
            seconds = time.perf_counter() - t0
        running[0] = False
        sampler.join()
    return {"seconds": seconds, "peak_rss_mb": [peaks[p] / 2**20 for p in pids],
            "start_rss_mb": [start_rss[p] / 2**20 for p in pids], "image_mb": size * size * 3 / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4096² tiled and dask runs, fewer repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timing repeats (default 5, quick 2)")
    parser.add_argument("--tiled-size", type=int, default=None, help="edge of the tiled run (default 8192)")
    parser.add_argument("--dask-size", type=int, default=None, help="edge of the dask run (default 16384)")
    parser.add_argument("--dask-ngf", type=int, default=64, help="generator filters of the dask run (default 64)")
    parser.add_argument("--dask-blocks", type=int, default=9, help="residual blocks of the dask run (default 9)")
    parser.add_argument("--workers", type=int, default=2, help="dask worker processes (default 2)")
    parser.add_argument("--skip", nargs="*", default=[], choices=("translate", "tiled", "dask", "train"))
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    tiled_size = args.tiled_size or (4096 if args.quick else 8192)
    dask_size = args.dask_size or (4096 if args.quick else 16384)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}; load average at start {os.getloadavg()[0]:.1f}")
    print(f"command: python benchmarks/run.py {' '.join(sys.argv[1:])}\n")
    print("| case | seconds | ratio | memory |\n|---|---|---|---|", flush=True)

    class Rows(list):
        """Each row printed as soon as it is measured: a later failure keeps the earlier figures."""

        def append(self, row: tuple[str, str, str, str]) -> None:
            super().append(row)
            print("| " + " | ".join(row) + " |", flush=True)

    rows = Rows()  # case, seconds, ratio, memory
    if "translate" not in args.skip:
        for size, n in ((256, repeats), (1024, max(2, repeats // 2))):
            times = dict(translate_bench.forwards(size, n, compile=False))
            base = times[f"{size}² fp32 eager"]
            for name, sec in times.items():
                rows.append((f"translate {name}", f"{sec:.3f}", f"{base / sec:.2f}×", ""))
    if "tiled" not in args.skip:
        r = translate_bench.large_in_child(tiled_size)
        rows.append((f"tiled {tiled_size}² (Translator.translate, tile 512, ngf 64)", f"{r['image_s']:.1f}",
                     f"{r['image_s'] / ((tiled_size / r['tile']) ** 2 * r['tile_s']):.2f} of pixels × one tile",
                     f"peak RSS {r['peak_rss_mb']:.0f} MB (input {r['image_mb']:.0f} MB, output as large)"))
    if "dask" not in args.skip:
        r = dask_translation(dask_size, args.dask_ngf, args.dask_blocks, args.workers)
        peaks = ", ".join(f"{p:.0f}" for p in r["peak_rss_mb"])
        starts = ", ".join(f"{p:.0f}" for p in r["start_rss_mb"])
        case = (f"dask {dask_size}² (translate_dask → zarr, {args.workers} workers × 1 thread, "
                f"ngf {args.dask_ngf}, {args.dask_blocks} blocks)")
        rows.append((case, f"{r['seconds']:.1f}",
                     f"{dask_size ** 2 / r['seconds'] / 1e6:.2f} Mpx/s",
                     f"peak RSS per worker {peaks} MB (at start {starts}; the image is {r['image_mb']:.0f} MB)"))
    if "train" not in args.skip:
        steps = dict(train_bench.step_times(max(1, repeats // 2), compile=False))
        base = steps["fp32 eager"]
        for name, sec in steps.items():
            rows.append((f"train step 256², ngf 64, 9 blocks: {name}", f"{sec:.2f}", f"{base / sec:.2f}×", ""))
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
