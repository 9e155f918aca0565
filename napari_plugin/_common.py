"""Small pieces the widgets share: device choices, image-layer choices, one-line error messages."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["device_choices", "image_layer_choices", "one_line", "show_worker_warning"]


def device_choices() -> list[str]:
    """``auto`` first (CUDA when there is one, else the CPU), then what this machine has."""
    choices = ["auto", "cpu"]
    if torch.cuda.is_available():
        choices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        choices.append("mps")
    return choices


def image_layer_choices(viewer: Any) -> list[tuple[str, Any]]:
    """The viewer's image layers as ``(name, layer)`` choices, top of the layer list first."""
    from napari.layers import Image

    return [(layer.name, layer) for layer in reversed(viewer.layers) if isinstance(layer, Image)]


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type when it has none)."""
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # KeyError's str() adds quotes
    text = str(message).strip().splitlines()
    return text[0] if text else type(exc).__name__


_shown: set[str] = set()


def show_worker_warning(warning: tuple) -> None:
    """Show a warning from this SDK or plugin raised on a worker thread, once per message.

    napari's workers hand over ``warnings.showwarning``'s arguments for every
    warning in the process while they run (other libraries' deprecation notes
    included); only user-facing ones raised by cyclegan-sdk code are shown.
    """
    from napari.utils.notifications import show_warning

    message, category, filename = warning[0], warning[1], str(warning[2])
    ours = any(part in filename for part in ("cyclegan_sdk", "napari_plugin"))
    if not ours or not issubclass(category, UserWarning) or issubclass(category, DeprecationWarning):
        return
    text = one_line(Exception(str(message)))
    if text not in _shown:
        _shown.add(text)
        show_warning(f"CycleGAN: {text}")
