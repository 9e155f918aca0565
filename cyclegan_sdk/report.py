"""Pictures of a training run: preview grids and loss curves, as PNG, drawn with Pillow alone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .files import write_image

__all__ = ["preview_grid", "loss_plot", "PREVIEW_LAYOUT"]

#: Rows of a preview grid: each domain's real image, its translation and the reconstruction.
PREVIEW_LAYOUT = (("real_A", "fake_B", "rec_A"), ("real_B", "fake_A", "rec_B"))

_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127), (188, 189, 34)]


def preview_grid(images: Mapping[str, np.ndarray], path: str | os.PathLike[str] | None = None,
                 gap: int = 4, label: bool = True) -> np.ndarray:
    """Arrange preview images (uint8 ``(H, W, 3)``) as two labelled rows; optionally write a PNG.

    Returns:
        The grid, uint8 ``(H', W', 3)``.
    """
    first = next(iter(images.values()))
    # Small training crops are hard to judge: show them at least 128 pixels tall, without smoothing.
    zoom = max(1, -(-128 // first.shape[0]))
    if zoom > 1:
        images = {k: np.repeat(np.repeat(v, zoom, axis=0), zoom, axis=1) for k, v in images.items()}
    h, w = next(iter(images.values())).shape[:2]
    top = 14 if label else 0
    rows, cols = len(PREVIEW_LAYOUT), len(PREVIEW_LAYOUT[0])
    grid = np.full((rows * (h + top + gap) + gap, cols * (w + gap) + gap, 3), 255, np.uint8)
    canvas = Image.fromarray(grid)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for r, row in enumerate(PREVIEW_LAYOUT):
        for c, name in enumerate(row):
            y, x = gap + r * (h + top + gap), gap + c * (w + gap)
            if label:
                draw.text((x, y), name.replace("_", " "), fill=(0, 0, 0), font=font)
            canvas.paste(Image.fromarray(images[name]), (x, y + top))
    out = np.asarray(canvas).copy()
    if path is not None:
        write_image(path, out)
    return out


def loss_plot(history: Sequence[Mapping[str, float]], path: str | os.PathLike[str] | None = None,
              keys: Sequence[str] = ("G", "D_A", "D_B", "cycle_A", "cycle_B", "idt_A", "idt_B"),
              size: tuple[int, int] = (800, 450)) -> np.ndarray:
    """Loss curves against the step, one colour per loss, with axes and a legend; optionally write a PNG."""
    width, height = size
    left, right, top, bottom = 60, 140, 20, 40
    canvas = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    steps = [float(h["step"]) for h in history]
    keys = [k for k in keys if any(k in h for h in history)]
    values = [float(h[k]) for h in history for k in keys if k in h]
    x0, x1 = left, width - right
    y0, y1 = height - bottom, top
    draw.rectangle([x0, y1, x1, y0], outline=(0, 0, 0))
    if steps and values:
        smin, smax = min(steps), max(steps)
        vmin, vmax = 0.0, max(values) * 1.05 or 1.0
        sx = (x1 - x0) / max(smax - smin, 1.0)
        sy = (y0 - y1) / (vmax - vmin)
        for t in np.linspace(vmin, vmax, 5):
            y = y0 - (t - vmin) * sy
            draw.line([x0 - 4, y, x0, y], fill=(0, 0, 0))
            draw.text((4, y - 6), f"{t:.3g}", fill=(0, 0, 0), font=font)
        for t in np.linspace(smin, smax, 5):
            x = x0 + (t - smin) * sx
            draw.line([x, y0, x, y0 + 4], fill=(0, 0, 0))
            draw.text((x - 12, y0 + 8), f"{int(t)}", fill=(0, 0, 0), font=font)
        for k, key in enumerate(keys):
            colour = _COLOURS[k % len(_COLOURS)]
            points = [(x0 + (float(h["step"]) - smin) * sx, y0 - (float(h[key]) - vmin) * sy)
                      for h in history if key in h]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            elif points:
                draw.ellipse([points[0][0] - 2, points[0][1] - 2, points[0][0] + 2, points[0][1] + 2], fill=colour)
            ly = top + 16 * k
            draw.line([x1 + 10, ly + 6, x1 + 30, ly + 6], fill=colour, width=3)
            draw.text((x1 + 36, ly), key, fill=(0, 0, 0), font=font)
    draw.text(((x0 + x1) // 2 - 12, height - 16), "step", fill=(0, 0, 0), font=font)
    out = np.asarray(canvas).copy()
    if path is not None:
        write_image(Path(path), out)
    return out
