"""Images made in code, for trying things out: demos, tests and benchmarks need no downloads."""

from __future__ import annotations

import numpy as np

__all__ = ["disc_images", "negatives_pair"]


def disc_images(n: int, seed: int = 0, size: int = 48) -> np.ndarray:
    """``n`` light, slightly warm RGB images with a few dark discs and a little noise.

    Returns:
        uint8 ``(n, size, size, 3)``.

    Example:
        >>> disc_images(2, size=32).shape
        (2, 32, 32, 3)
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    radius = (max(2, size // 12), max(3, size // 5))
    out = []
    for _ in range(n):
        img = np.full((size, size), 200.0)
        for _ in range(int(rng.integers(2, 5 + size // 40))):
            cy, cx, r = rng.integers(0, size), rng.integers(0, size), rng.integers(*radius)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 60.0
        img += rng.normal(0, 5, img.shape)
        out.append(np.clip(np.stack([img, img * 0.9, img * 0.8], -1), 0, 255).astype(np.uint8))
    return np.stack(out)


def negatives_pair(n: int, size: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An unpaired training pair with a known answer: disc images (A) and negatives of *other* disc images (B).

    The translation A -> B is ``255 - x``; since B holds negatives of different
    images, nothing is paired and a model has to find that mapping itself.
    """
    return disc_images(n, seed, size), 255 - disc_images(n, seed + 1, size)
