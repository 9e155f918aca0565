"""cyclegan-sdk: unpaired image-to-image translation (CycleGAN) for Python, napari and the command line.

    >>> from cyclegan_sdk import Translator
    >>> translator = Translator.load("horse2zebra.safetensors")      # doctest: +SKIP
    >>> zebra = translator.translate(horse_rgb_uint8)                 # doctest: +SKIP

Names are imported on first use, so ``cyclegan --help`` does not wait for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Translator": "translator",
    "Trainer": "trainer",
    "TrainConfig": "trainer",
    "TrainEvent": "trainer",
    "GeneratorConfig": "networks",
    "DiscriminatorConfig": "networks",
    "ModelMetadata": "modelfile",
    "Domain": "modelfile",
    "ValueScaling": "modelfile",
    "ModelFileError": "modelfile",
    "read_model": "modelfile",
    "read_metadata": "modelfile",
    "write_model": "modelfile",
}

__all__ = sorted(_EXPORTS) + ["__version__"]  # noqa: PLE0604

if TYPE_CHECKING:
    from .modelfile import Domain, ModelFileError, ModelMetadata, ValueScaling, read_metadata, read_model, write_model
    from .networks import DiscriminatorConfig, GeneratorConfig
    from .trainer import TrainConfig, TrainEvent, Trainer
    from .translator import Translator


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cyclegan_sdk' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
