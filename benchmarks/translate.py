"""Translation speed and memory.

    python benchmarks/translate.py             # 256² and 1024² forwards, compile, 8192² tiled
    python benchmarks/translate.py --no-8k     # skip the 8192² run (about 4 minutes on 2 cores)

Every ratio compares figures measured in this one run (interleaved repeats,
the best of each), because shared machines are noisy. The network is the
reference ``resnet_9blocks`` generator (ngf 64, 11.4 M parameters), randomly
initialised: speed does not depend on the weights.

- "fp32 eager" is the plain forward of the generator on a float tensor:
  ``torch.no_grad()``, float32, no tiling, no conversions; our instance norm
  in this mode is ``torch.nn.functional.instance_norm``, as in the reference.
- "Translator" is ``Translator.translate`` on a uint8 RGB array with default
  settings, including conversion to and from uint8.
- The 8192² case runs in a child process so that its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from cyclegan_sdk import GeneratorConfig, Translator  # noqa: E402
from cyclegan_sdk.translator import DEFAULT_TILE_SIZE  # noqa: E402


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


def child_8k() -> None:
    """Runs in a fresh process: one default tile alone, then the 8192² image."""
    from skimage import data

    translator = Translator.random(GeneratorConfig())
    tile = DEFAULT_TILE_SIZE
    rng = np.random.default_rng(0)
    # Real photo content: the astronaut, repeated and jittered to 8192x8192.
    base = data.astronaut()
    image = np.tile(base, (16, 16, 1))
    image = np.clip(image.astype(np.int16) + rng.integers(-8, 9, image.shape, dtype=np.int16), 0, 255).astype(np.uint8)
    one = image[:tile, :tile].copy()
    translator.translate(one)
    t_tile = min(_timed(lambda: translator.translate(one)) for _ in range(3))
    rss_before = _rss_mb()
    t_image = _timed(lambda: translator.translate(image))
    print(json.dumps({
        "tile_s": t_tile, "image_s": t_image, "tile": tile,
        "rss_before_mb": rss_before, "peak_rss_mb": _rss_mb(),
        "image_mb": image.nbytes / 2**20,
    }))


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-8k", action="store_true", help="skip the 8192² tiled run")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--child-8k", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_8k:
        child_8k()
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
    if not args.no_8k:
        out = subprocess.run([sys.executable, __file__, "--child-8k"], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        expected = (8192 * 8192) / (r["tile"] ** 2) * r["tile_s"]
        print(f"\n8192² RGB uint8, default tiling (tile {r['tile']}):")
        print(f"| one {r['tile']}² tile alone | {r['tile_s']:.3f} s |")
        print(f"| 8192² image | {r['image_s']:.1f} s |")
        print(f"| ratio to (pixels / tile pixels) × one tile | {r['image_s'] / expected:.2f} (target ≤ 1.6) |")
        print(f"| peak RSS | {r['peak_rss_mb']:.0f} MB (before translating: {r['rss_before_mb']:.0f} MB; "
              f"input and output arrays {2 * r['image_mb']:.0f} MB) |")


if __name__ == "__main__":
    main()
