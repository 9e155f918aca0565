"""The first thing to run after installing: translate a bundled sample with a bundled preset's weights.

Works offline on a fresh install: the preset's weights and sample image ship
with the package.

Example:
    >>> from cyclegan_sdk.demo import run_demo
    >>> paths = run_demo("demo-out")                 # doctest: +SKIP
    >>> sorted(paths)                                # doctest: +SKIP
    ['panel', 'translated']
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["DEMO_PRESET", "before_after_panel", "run_demo"]

#: The preset the demo uses unless told otherwise.
DEMO_PRESET = "stain-transfer"


def before_after_panel(before: np.ndarray, after: np.ndarray, labels: tuple[str, str] = ("before", "after"),
                       gap: int = 8) -> np.ndarray:
    """Two RGB images side by side on white, each with a label above it.

    Args:
        before: uint8 ``(H, W, 3)``.
        after: uint8 ``(H, W, 3)``, the same height.
        labels: the two captions.
        gap: white pixels around and between the images.

    Returns:
        uint8 ``(H', W', 3)``.
    """
    h, w = before.shape[:2]
    top = 16
    panel = Image.new("RGB", (2 * w + 3 * gap, h + top + 2 * gap), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    font = ImageFont.load_default()
    for k, (image, label) in enumerate(zip((before, after), labels)):
        x = gap + k * (w + gap)
        draw.text((x, gap), label, fill=(0, 0, 0), font=font)
        panel.paste(Image.fromarray(np.ascontiguousarray(image[..., :3])), (x, gap + top))
    return np.asarray(panel).copy()


def run_demo(output_dir: str | os.PathLike[str] = "cyclegan-demo", preset: str = DEMO_PRESET) -> dict[str, Path]:
    """Translate the preset's first sample image and write the result and a before/after panel (PNG).

    Args:
        output_dir: folder to write into (created if needed).
        preset: a preset that ships weights and a sample image.

    Returns:
        ``{"translated": path, "panel": path}``.
    """
    from .files import read_image, write_image
    from .presets import PresetError
    from .translator import Translator

    translator = Translator.from_preset(preset)
    p = translator.preset
    if not p.samples:
        raise PresetError(f"preset {p.name} ships no sample image to demonstrate")
    sample = p.samples[0]
    image = read_image(sample)
    inf = p.inference
    result = translator.translate(image, inf.direction, tile_size=inf.tile_size, overlap=inf.overlap)
    src, dst = translator.domains if inf.direction == "a2b" else translator.domains[::-1]
    out = Path(output_dir)
    translated = write_image(out / f"{sample.stem}_{dst}.png", result)
    panel = write_image(out / f"{sample.stem}_before_after.png",
                        before_after_panel(image, result, (f"{src} (input)", f"{dst} ({p.name})")))
    return {"translated": translated, "panel": panel}
