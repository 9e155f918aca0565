"""Sample data: a real immunohistochemistry field, and an unpaired pair of stacks to try training on.

Both come from scikit-image's bundled ``immunohistochemistry`` image (an IHC
stained field: haematoxylin counterstain and DAB), so nothing is downloaded.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ihc_field", "unpaired_stain_stacks"]

TILE = 128


def ihc_field() -> list[tuple]:
    """The 512 × 512 IHC field (haematoxylin + DAB), RGB uint8."""
    from skimage import data

    return [(data.immunohistochemistry(), {"name": "IHC field", "rgb": True}, "image")]


def unpaired_stain_stacks() -> list[tuple]:
    """Two unpaired stacks of 128² tiles: IHC tiles from the field's top half, H&E-like tiles from its bottom half.

    The halves do not overlap, so no tile of one stack has its counterpart
    in the other: the unpaired setting CycleGAN is trained in. The re-staining
    is the one the ``stain-transfer`` preset's domain B is made with
    (:func:`cyclegan_sdk.preset_data.restain_ihc_as_he`, colour deconvolution).
    """
    from skimage import data

    from cyclegan_sdk.preset_data import restain_ihc_as_he

    ihc = data.immunohistochemistry()
    half = ihc.shape[0] // 2
    top, bottom = ihc[:half], restain_ihc_as_he(ihc[half:])
    return [
        (_tiles(top), {"name": "IHC tiles (domain A)", "rgb": True}, "image"),
        (_tiles(bottom), {"name": "H&E-like tiles (domain B)", "rgb": True}, "image"),
    ]


def _tiles(image: np.ndarray) -> np.ndarray:
    rows, cols = image.shape[0] // TILE, image.shape[1] // TILE
    tiles = [image[i * TILE:(i + 1) * TILE, j * TILE:(j + 1) * TILE] for i in range(rows) for j in range(cols)]
    return np.stack(tiles)
