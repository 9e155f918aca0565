"""Sample data: a real immunohistochemistry field, and an unpaired pair of stacks to try training on.

Both come from scikit-image's bundled ``immunohistochemistry`` image (an IHC
stained field: haematoxylin counterstain and DAB), so nothing is downloaded.
"""

from __future__ import annotations

import numpy as np

__all__ = ["he_like", "ihc_field", "unpaired_stain_stacks"]

TILE = 128


def ihc_field() -> list[tuple]:
    """The 512 × 512 IHC field (haematoxylin + DAB), RGB uint8."""
    from skimage import data

    return [(data.immunohistochemistry(), {"name": "IHC field", "rgb": True}, "image")]


def he_like(ihc: np.ndarray) -> np.ndarray:
    """Re-stain an IHC (haematoxylin + DAB) image as haematoxylin + eosin, through colour deconvolution.

    The image is unmixed into stain concentrations with Ruifrok and
    Johnston's haematoxylin-eosin-DAB matrix (scikit-image's ``rgb2hed``);
    the DAB concentration is then rendered with the eosin colour, and the
    haematoxylin kept, so brown DAB becomes pink eosin on the same tissue.
    """
    from skimage.color import hed2rgb, rgb2hed

    hed = rgb2hed(ihc[..., :3])
    he = np.zeros_like(hed)
    he[..., 0] = hed[..., 0]
    he[..., 1] = hed[..., 2]
    rgb = hed2rgb(he)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def unpaired_stain_stacks() -> list[tuple]:
    """Two unpaired stacks of 128² tiles: IHC tiles from the field's top half, H&E-like tiles from its bottom half.

    The halves do not overlap, so no tile of one stack has its counterpart
    in the other: the unpaired setting CycleGAN is trained in.
    """
    from skimage import data

    ihc = data.immunohistochemistry()
    half = ihc.shape[0] // 2
    top, bottom = ihc[:half], he_like(ihc[half:])
    return [
        (_tiles(top), {"name": "IHC tiles (domain A)", "rgb": True}, "image"),
        (_tiles(bottom), {"name": "H&E-like tiles (domain B)", "rgb": True}, "image"),
    ]


def _tiles(image: np.ndarray) -> np.ndarray:
    rows, cols = image.shape[0] // TILE, image.shape[1] // TILE
    tiles = [image[i * TILE:(i + 1) * TILE, j * TILE:(j + 1) * TILE] for i in range(rows) for j in range(cols)]
    return np.stack(tiles)
