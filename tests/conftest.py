import os

import numpy as np
import pytest
import torch

# Tests never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def photo_1024() -> np.ndarray:
    """A real 1024x1024 RGB photo: scikit-image's astronaut, upscaled 2x."""
    from skimage import data, transform

    img = transform.resize(data.astronaut(), (1024, 1024), order=1, anti_aliasing=False)
    return (img * 255).round().astype(np.uint8)


@pytest.fixture(scope="session")
def photo_small() -> np.ndarray:
    """A real 96x128 RGB photo crop (scikit-image's chelsea)."""
    from skimage import data

    return np.ascontiguousarray(data.chelsea()[100:196, 150:278])
