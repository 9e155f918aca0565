"""cyclegan-sdk: unpaired image-to-image translation (CycleGAN) for Python, napari and the command line.

    >>> from cyclegan_sdk import Translator
    >>> translator = Translator.load("horse2zebra.safetensors")      # doctest: +SKIP
    >>> zebra = translator.translate(horse_rgb_uint8)                 # doctest: +SKIP
"""

from .modelfile import Domain, ModelFileError, ModelMetadata, ValueScaling, read_metadata, read_model, write_model
from .networks import DiscriminatorConfig, GeneratorConfig
from .translator import Translator

__version__ = "0.1.0"

__all__ = [
    "Translator",
    "GeneratorConfig",
    "DiscriminatorConfig",
    "ModelMetadata",
    "Domain",
    "ValueScaling",
    "ModelFileError",
    "read_model",
    "read_metadata",
    "write_model",
    "__version__",
]
