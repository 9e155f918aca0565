"""Translation speed and memory.

    python benchmarks/translate.py             # 256² and 1024² forwards, compile, 8192² tiled
    python benchmarks/translate.py --no-8k     # skip the 4096² and 8192² runs (about 7 minutes on 2 cores)

Every ratio compares figures measured in this one run (interleaved repeats,
the best of each), because shared machines are noisy. The network is the
reference ``resnet_9blocks`` generator (ngf 64, 11.4 M parameters), randomly
initialised: speed does not depend on the weights.

- "fp32 eager" is the plain forward of the generator on a float tensor:
  ``torch.no_grad()``, float32, no tiling, no conversions; our instance norm
  in this mode is ``torch.nn.functional.instance_norm``, as in the reference.
- "Translator" is ``Translator.translate`` on a uint8 RGB array with default
  settings, including conversion to and from uint8.
- The large cases run in child processes so that their RSS is their own; RSS
  is sampled every 20 ms while translating. The input is already in memory
  before and the output array (as large as the input) is allocated during.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from cyclegan_sdk import GeneratorConfig, Translator
from cyclegan_sdk.translator import DEFAULT_TILE_SIZE


def best_of(fns: dict[str, callable], repeats: int) -> dict[str, float]:
    """Run each function once to warm up, then ``repeats`` interleaved rounds; the best time of each."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items()}


def forwards(size: int, repeats: int, compile: bool) -> list[tuple[str, float]]:
    translator = Translator.random(GeneratorConfig())
    net = translator.generator("a2b")
    x = torch.rand(1, 3, size, size) * 2 - 1
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)

    def eager():
        with torch.no_grad():
            net(x)

    fns = {"fp32 eager": eager, "Translator (default)": lambda: translator.translate(image)}
    compile_s = None
    if compile:
        t0 = time.perf_counter()
        translator.translate(image, compile=True)
        compile_s = time.perf_counter() - t0
        fns["Translator (compile=True)"] = lambda: translator.translate(image, compile=True)
    times = best_of(fns, repeats)
    rows = [(f"{size}² {k}", v) for k, v in times.items()]
    if compile_s is not None:
        rows.append((f"{size}² first compiled call (compilation)", compile_s))
    return rows


def child_large(size: int) -> None:
    """Runs in a fresh process: one default tile alone, then a ``size``² RGB image, sampling RSS meanwhile."""
    import threading

    from skimage import data

    translator = Translator.random(GeneratorConfig())
    tile = DEFAULT_TILE_SIZE
    # Real photo content: the astronaut repeated to size x size, built row band by row band
    # so that making the input needs no full-size temporaries.
    base = data.astronaut()
    image = np.empty((size, size, 3), np.uint8)
    for y in range(0, size, 512):
        image[y : y + 512] = np.tile(base, (1, size // 512, 1))[: min(512, size - y)]
    one = np.ascontiguousarray(image[:tile, :tile])
    translator.translate(one)
    t_tile = min(_timed(lambda: translator.translate(one)) for _ in range(3))
    # Time spent inside the generator during the big run: what is left is tiling, blending and conversion.
    net = translator._runtime_module("a2b", translator.device, _auto_dtype(translator))
    inside = [0.0]
    net.register_forward_pre_hook(lambda m, i: setattr(m, "_t0", time.perf_counter()))
    net.register_forward_hook(lambda m, i, o: inside.__setitem__(0, inside[0] + time.perf_counter() - m._t0))
    baseline = _current_rss_mb()
    peak = [baseline]
    running = [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], _current_rss_mb())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t_image = _timed(lambda: translator.translate(image))
    running[0] = False
    sampler.join()
    network_s = inside[0]
    # The machine is shared: time the tile again after the long run and use the mean of both.
    t_tile_after = min(_timed(lambda: translator.translate(one)) for _ in range(3))
    print(json.dumps({
        "size": size, "tile_s": (t_tile + t_tile_after) / 2, "tile_before_s": t_tile, "tile_after_s": t_tile_after,
        "image_s": t_image, "network_s": network_s, "tile": tile,
        "baseline_rss_mb": baseline, "peak_rss_mb": peak[0], "image_mb": image.nbytes / 2**20,
    }))


def large_in_child(size: int) -> dict:
    """:func:`child_large` in a fresh process, so that its RSS is its own; the figures it prints."""
    out = subprocess.run([sys.executable, __file__, "--child", str(size)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _auto_dtype(translator: Translator) -> torch.dtype:
    from cyclegan_sdk.precision import resolve_precision

    return resolve_precision("auto", translator.device)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-8k", action="store_true", help="skip the large tiled runs")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--large", type=int, nargs="*", default=[4096, 8192], metavar="SIZE",
                        help="edges of the large tiled runs (default 4096 8192)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_large(args.child)
        return
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")
    rows = forwards(256, args.repeats, compile=not args.no_compile)
    rows += forwards(1024, max(2, args.repeats // 2), compile=False)
    base = {s: dict(rows)[f"{s}² fp32 eager"] for s in (256, 1024)}
    print("\n| case | seconds | speed-up vs fp32 eager |\n|---|---|---|")
    for name, sec in rows:
        size = int(name.split("²")[0])
        ratio = "" if "compilation" in name else f"{base[size] / sec:.2f}×"
        print(f"| {name} | {sec:.3f} | {ratio} |")
    if args.no_8k:
        return
    print(f"\nLarge RGB uint8 images, default tiling (tile {DEFAULT_TILE_SIZE}, overlap 64), each in a fresh process:")
    print("\n| image | one tile alone | image | ratio to (pixels / tile pixels) × one tile | "
          "outside the network | RSS before | peak RSS | peak − before − input − output |\n"
          "|---|---|---|---|---|---|---|---|")
    for size in args.large:
        r = large_in_child(size)
        expected = (size * size) / (r["tile"] ** 2) * r["tile_s"]
        extra = r["peak_rss_mb"] - r["baseline_rss_mb"] - r["image_mb"]  # the output array is as big as the input
        outside = 1 - r["network_s"] / r["image_s"]
        print(f"| {size}² | {r['tile_s']:.3f} s (before {r['tile_before_s']:.3f}, after {r['tile_after_s']:.3f}) | "
              f"{r['image_s']:.1f} s | {r['image_s'] / expected:.2f} (target ≤ 1.6) | {outside:.1%} | "
              f"{r['baseline_rss_mb']:.0f} MB | {r['peak_rss_mb']:.0f} MB | {extra:.0f} MB |")


if __name__ == "__main__":
    main()
