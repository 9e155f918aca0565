"""Helpers for the napari tests: tiny models, waiting for workers, notifications, screenshots."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cyclegan_sdk import GeneratorConfig, Translator

WAIT_MS = 120_000


def reset_registry() -> None:
    """Forget the models, presets and last translation of earlier tests."""
    from napari_plugin._models import registry

    registry._entries.clear()
    registry._presets = None
    registry.last_used = None


def tiny_translator(domains: tuple[str, str] = ("IHC", "HE"), channels: int = 3, seed: int = 0) -> Translator:
    """A randomly initialised ResNet generator small enough for tests (ngf 4, one block)."""
    return Translator.random(GeneratorConfig(input_nc=channels, output_nc=channels, ngf=4, n_blocks=1),
                             domains=domains, seed=seed)


def messages(severity: str | None = None) -> list[str]:
    """Texts of napari notifications so far (optionally of one severity: 'error', 'warning', 'info')."""
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records
            if severity is None or str(n.severity).lower().endswith(severity)]


def clear_messages() -> None:
    from napari.utils.notifications import notification_manager

    notification_manager.records.clear()


def screenshot(viewer, path: Path) -> np.ndarray:
    """Save the whole window (widgets included) as PNG and return it."""
    from PIL import Image

    viewer.window.resize(1400, 900)  # room for the canvas beside the docked widgets
    image = viewer.screenshot(canvas_only=False, flash=False)
    Image.fromarray(image).save(path)
    return image


def textured_rgb(height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth colour image with some structure (not constant, so translations are not trivial)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([np.sin(x / 9 + k) * np.cos(y / 7 - k) for k in range(3)], axis=-1)
    noise = rng.normal(0, 0.1, (height, width, 3)).astype(np.float32)
    return np.clip((base + noise + 1) * 127.5, 0, 255).astype(np.uint8)
