"""Training speed and the effect of bf16 on quality.

    python benchmarks/train.py                 # step times (about 5 minutes on 2 cores) and the quality check
    python benchmarks/train.py --no-compile    # skip the torch.compile case (about 70 s of compilation)

Step time: one ``Trainer.train_step`` (both generators and both
discriminators updated, image pool on) at 256², ngf 64, 9 blocks, batch 1, the
reference configuration, in float32 eager mode against the default fast path
(bf16 autocast where the hardware is fast at it) and against that plus
``torch.compile``, measured in one run (interleaved, best of the repeats).

Quality: the same short training (synthetic unpaired pair, small networks)
in float32 and in bf16, with the same seed; the cycle loss they reach.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from translate import best_of  # noqa: E402 - benchmarks/translate.py

from cyclegan_sdk.samples import disc_images, negatives_pair  # noqa: E402
from cyclegan_sdk.trainer import Trainer  # noqa: E402


def step_times(repeats: int, compile: bool) -> list[tuple[str, float]]:
    g = torch.Generator().manual_seed(0)
    real_a = torch.rand(1, 3, 256, 256, generator=g) * 2 - 1
    real_b = torch.rand(1, 3, 256, 256, generator=g) * 2 - 1
    trainers = {
        "fp32 eager": Trainer(precision="fp32", compile=False, input_nc=3, output_nc=3),
        "default (auto precision)": Trainer(compile=False, input_nc=3, output_nc=3),
    }
    rows = []
    if compile:
        t = Trainer(compile=True, input_nc=3, output_nc=3)
        t._maybe_compile(10**6)
        t0 = time.perf_counter()
        t.train_step(real_a, real_b)
        t.train_step(real_a, real_b)  # the second step compiles the discriminator-update graphs
        rows.append(("first two compiled steps (compilation)", time.perf_counter() - t0))
        trainers["default + torch.compile"] = t
    times = best_of({name: functools.partial(t.train_step, real_a, real_b) for name, t in trainers.items()}, repeats)
    return list(times.items()) + rows


def quality(steps: int) -> list[tuple[str, float, float, float]]:
    a, b = negatives_pair(32, size=80)
    test = disc_images(16, seed=2, size=80)[:, 8:72, 8:72]
    answer = 255.0 - test
    rows = []
    for precision in ("fp32", "bf16"):
        t = Trainer(ngf=16, ndf=16, n_blocks=6, crop_size=64, load_size=72, precision=precision, compile=False,
                    seed=0, log_every=10, lr=5e-4)
        t0 = time.perf_counter()
        t.fit(a, b, steps=steps)
        seconds = time.perf_counter() - t0
        tail = t.history[-5:]
        cycle = float(np.mean([h["cycle_A"] + h["cycle_B"] for h in tail]))
        err = float(np.abs(t.translator().translate(test, precision="fp32").astype(float) - answer).mean())
        rows.append((precision, cycle, err, seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--quality-steps", type=int, default=600)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")
    rows = step_times(args.repeats, compile=not args.no_compile)
    base = dict(rows)["fp32 eager"]
    print("\n| train_step, 256², ngf 64, 9 blocks, batch 1 | seconds | speed-up |\n|---|---|---|")
    for name, sec in rows:
        print(f"| {name} | {sec:.2f} | {'' if 'compilation' in name else f'{base / sec:.2f}×'} |")
    print(f"\n| same {args.quality_steps}-step training | cycle loss (A+B, last 50 steps) | "
          "error vs known answer (uint8) | seconds |\n|---|---|---|---|")
    for precision, cycle, err, sec in quality(args.quality_steps):
        print(f"| {precision} | {cycle:.3f} | {err:.1f} | {sec:.0f} |")


if __name__ == "__main__":
    main()
