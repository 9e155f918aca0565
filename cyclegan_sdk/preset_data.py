"""Domain pairs with a known answer, built from scikit-image's bundled sample images.

Bundled presets that ship weights were trained on these and are scored on
their held-out parts, where the ground truth is the exact transform. Each
pair is: unpaired training images of domain A and of domain B (from
*different* image regions, so nothing is paired), held-out A images, and the
exact B version of those. The transforms are simple, documented and
physically or artistically motivated, so the numbers say how well a recipe
learns a known mapping, not how it does on real stains or real retouching.

``preset.toml`` files name a pair here by its key (``[weights.data] name``):
data, not code. Building needs scikit-image (``pip install 'cyclegan-sdk[eval]'``).

Example:
    >>> pair = build_pair("skimage-ihc-restain")          # doctest: +SKIP
    >>> pair.train_a[0].shape, pair.heldout_truth[0].shape  # doctest: +SKIP
    ((320, 256, 3), (192, 512, 3))
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["PAIRS", "DomainPair", "build_pair", "write_pair", "restain_ihc_as_he", "retouch_degrade",
           "mascot_style", "kuwahara_painting"]


@dataclass(frozen=True)
class DomainPair:
    """Unpaired training images of two domains and held-out inputs with their exact translations.

    Attributes:
        name: the key in :data:`PAIRS`.
        description: what the images are and how domain B is made.
        train_a: domain-A training images, uint8 ``(H, W, 3)``.
        train_b: domain-B training images, from other regions than ``train_a``.
        heldout_a: domain-A images used in neither list above.
        heldout_truth: the exact domain-B version of each ``heldout_a`` image.
    """

    name: str
    description: str
    train_a: list[np.ndarray]
    train_b: list[np.ndarray]
    heldout_a: list[np.ndarray]
    heldout_truth: list[np.ndarray]


def _skimage_data():  # noqa: ANN202 - a module
    try:
        from skimage import data
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("building preset data needs scikit-image: pip install 'cyclegan-sdk[eval]'") from None
    return data


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------ stain transfer
#: Ruifrok & Johnston (2001) optical densities of haematoxylin, eosin and DAB (rows; RGB columns), the
#: stain vectors scikit-image's ``rgb2hed``/``hed2rgb`` use.
RUIFROK_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
#: Eosin given to a pixel per unit of DAB, and per unit of haematoxylin (eosin counterstains what
#: haematoxylin marks, as in H&E, where no tissue is unstained by it).
EOSIN_PER_DAB, EOSIN_PER_HAEMATOXYLIN = 0.5, 0.25


def restain_ihc_as_he(ihc: np.ndarray) -> np.ndarray:
    """Re-stain an IHC (haematoxylin + DAB) RGB image as H&E-like, by colour deconvolution.

    The image is unmixed into haematoxylin, eosin and DAB concentrations with
    the Ruifrok-Johnston stain matrix (:data:`RUIFROK_HED`); the haematoxylin
    is kept, the DAB concentration becomes eosin (``EOSIN_PER_DAB`` per unit)
    with an eosin counterstain proportional to the haematoxylin, and no DAB
    remains; the result is mixed back with the same matrix. Brown membranes
    turn pink, blue nuclei stay blue, white background stays white: the look
    of H&E, pixel by pixel, with the tissue's structure unchanged.

    Args:
        ihc: uint8 ``(H, W, 3)``.

    Returns:
        uint8 ``(H, W, 3)``.
    """
    from skimage.color import hed2rgb, rgb2hed

    hed = rgb2hed(ihc)
    h, d = hed[..., 0], hed[..., 2]
    he = np.stack([h, EOSIN_PER_DAB * d + EOSIN_PER_HAEMATOXYLIN * h, np.zeros_like(h)], axis=-1)
    return _to_uint8(hed2rgb(he))


def _stain_pair() -> DomainPair:
    ihc = _skimage_data().immunohistochemistry()  # 512 x 512
    he = restain_ihc_as_he(ihc)
    return DomainPair(
        "skimage-ihc-restain",
        "scikit-image's immunohistochemistry field (512x512, haematoxylin + DAB). A: IHC, rows 0-319, "
        "columns 0-255; B: the same field re-stained H&E-like by colour deconvolution "
        "(cyclegan_sdk.preset_data.restain_ihc_as_he), rows 0-319, columns 256-511; held out: rows 320-511, "
        "all columns, with the re-stained version as ground truth.",
        train_a=[ihc[:320, :256]], train_b=[he[:320, 256:]], heldout_a=[ihc[320:]], heldout_truth=[he[320:]],
    )


# ----------------------------------------------------------------- retouching
def retouch_degrade(photo: np.ndarray) -> np.ndarray:
    """What an unretouched product photo looks like next to its retouched version.

    In linear light: a tungsten white-balance cast (red x1.10, blue x0.80),
    half a stop of under-exposure (x0.71); then, in sRGB, a flat contrast
    curve (x0.85 around mid-grey). Retouching is the inverse: a per-pixel
    colour correction, the job of a retoucher's white balance, exposure and
    curves.

    Args:
        photo: the retouched image, uint8 ``(H, W, 3)``.

    Returns:
        The raw-looking image, uint8 ``(H, W, 3)``.
    """
    x = photo.astype(np.float64) / 255.0
    linear = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    linear = np.clip(linear * np.array([1.10, 1.0, 0.80]) * 0.71, 0.0, 1.0)
    srgb = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
    return _to_uint8(0.5 + 0.85 * (srgb - 0.5))


def _photos() -> list[np.ndarray]:
    data = _skimage_data()
    return [data.coffee(), data.chelsea(), data.rocket(), data.astronaut()]


def _split_photo_pair(name: str, description: str, to_a: Callable[[np.ndarray], np.ndarray],
                      to_b: Callable[[np.ndarray], np.ndarray]) -> DomainPair:
    """Each photo: top three quarters split into a left half (domain A) and a right half (domain B);
    the bottom quarter held out, as A with its B version as ground truth."""
    train_a, train_b, held_a, held_b = [], [], [], []
    for photo in _photos():
        h, w = photo.shape[:2]
        top, mid = h * 3 // 4 // 4 * 4, w // 2 // 4 * 4
        train_a.append(to_a(photo[:top, :mid]))
        train_b.append(to_b(photo[:top, mid:]))
        bottom = photo[top : top + (h - top) // 4 * 4, : w // 4 * 4]
        held_a.append(to_a(bottom))
        held_b.append(to_b(bottom))
    return DomainPair(name, description, train_a, train_b, held_a, held_b)


def _retouch_pair() -> DomainPair:
    return _split_photo_pair(
        "skimage-photos-retouch",
        "scikit-image's colour photos coffee, chelsea, rocket and astronaut (no jewelry: stand-ins for product "
        "shots). A: raw look (cyclegan_sdk.preset_data.retouch_degrade: warm cast, -0.5 EV, flat curve) of the "
        "left half of each photo's top three quarters; B: the photos as they are (retouched), right halves; "
        "held out: each photo's bottom quarter.",
        to_a=retouch_degrade, to_b=lambda x: x,
    )


# --------------------------------------------------------------------- mascot
def mascot_style(photo: np.ndarray, regions: int = 150, levels: int = 5) -> np.ndarray:
    """Flat-colour illustration of a photo: SLIC superpixels filled with posterised mean colours, black outlines.

    The look of a flat vector mascot or sticker: few, saturated, uniform
    colours and dark contours where regions meet.

    Args:
        photo: uint8 ``(H, W, 3)``.
        regions: approximate number of flat regions.
        levels: posterisation levels per channel.

    Returns:
        uint8 ``(H, W, 3)``.
    """
    from skimage.color import hsv2rgb, label2rgb, rgb2hsv
    from skimage.segmentation import find_boundaries, slic

    labels = slic(photo, n_segments=regions, compactness=12, start_label=0)
    flat = label2rgb(labels, photo.astype(np.float64) / 255.0, kind="avg", bg_label=-1)
    hsv = rgb2hsv(np.clip(flat, 0, 1))
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.35, 0, 1)  # mascot colours are saturated
    flat = hsv2rgb(hsv)
    flat = np.round(flat * (levels - 1)) / (levels - 1)
    flat[find_boundaries(labels, mode="thick")] = 0.08
    return _to_uint8(flat)


def _mascot_pair() -> DomainPair:
    return _split_photo_pair(
        "skimage-photos-mascot",
        "scikit-image's colour photos coffee, chelsea, rocket and astronaut. A: photos (left halves of each "
        "photo's top three quarters); B: flat mascot style (cyclegan_sdk.preset_data.mascot_style: SLIC regions "
        "in posterised, saturated mean colours with dark outlines) of the right halves; held out: each photo's "
        "bottom quarter.",
        to_a=lambda x: x, to_b=mascot_style,
    )


# ------------------------------------------------------------------- painting
def kuwahara_painting(photo: np.ndarray, radius: int = 4, saturation: float = 1.25) -> np.ndarray:
    """An oil-painting look: the Kuwahara filter (Kuwahara et al. 1976), then more saturated colour.

    Each pixel takes the mean colour of whichever of its four overlapping
    ``(radius+1)²`` quadrants has the lowest variance: flat strokes that keep
    edges sharp, the classic painterly filter.

    Args:
        photo: uint8 ``(H, W, 3)``.
        radius: quadrant size minus one; larger means broader strokes.
        saturation: saturation gain applied afterwards.

    Returns:
        uint8 ``(H, W, 3)``.
    """
    from skimage.color import hsv2rgb, rgb2hsv

    x = photo.astype(np.float64) / 255.0
    r = radius
    k = r + 1
    pad = np.pad(x, ((r, r), (r, r), (0, 0)), mode="reflect")
    grey = pad.mean(-1)

    def box(a: np.ndarray) -> np.ndarray:  # k x k window sums at every top-left corner
        c = np.cumsum(np.cumsum(np.pad(a, ((1, 0), (1, 0)) + ((0, 0),) * (a.ndim - 2)), 0), 1)
        return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)

    mean, mean_g, mean_g2 = box(pad), box(grey), box(grey**2)
    var = mean_g2 - mean_g**2
    h, w = x.shape[:2]
    # quadrant top-left corners relative to the padded pixel (y + r, x + r): up-left, up-right, down-left, down-right
    offsets = [(0, 0), (0, r), (r, 0), (r, r)]
    variances = np.stack([var[dy : dy + h, dx : dx + w] for dy, dx in offsets])
    means = np.stack([mean[dy : dy + h, dx : dx + w] for dy, dx in offsets])
    best = np.argmin(variances, axis=0)
    out = np.take_along_axis(means, best[None, ..., None].repeat(3, -1), 0)[0]
    hsv = rgb2hsv(np.clip(out, 0, 1))
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 1)
    return _to_uint8(hsv2rgb(hsv))


def _painting_pair() -> DomainPair:
    return _split_photo_pair(
        "skimage-photos-kuwahara",
        "scikit-image's colour photos coffee, chelsea, rocket and astronaut. A: photos (left halves of each "
        "photo's top three quarters); B: oil-painting look (cyclegan_sdk.preset_data.kuwahara_painting: "
        "Kuwahara filter, radius 4, saturation x1.25) of the right halves; held out: each photo's bottom quarter.",
        to_a=lambda x: x, to_b=kuwahara_painting,
    )


#: Domain pairs by the name a ``preset.toml`` uses for them.
PAIRS: dict[str, Callable[[], DomainPair]] = {
    "skimage-ihc-restain": _stain_pair,
    "skimage-photos-retouch": _retouch_pair,
    "skimage-photos-mascot": _mascot_pair,
    "skimage-photos-kuwahara": _painting_pair,
}


def build_pair(name: str) -> DomainPair:
    """The domain pair called ``name`` (a key of :data:`PAIRS`)."""
    if name not in PAIRS:
        raise ValueError(f"unknown preset data {name!r}; known: {', '.join(sorted(PAIRS))}")
    return PAIRS[name]()


def write_pair(name: str, directory: str | os.PathLike[str]) -> dict[str, Path]:
    """Write a pair's images as PNG files: ``A/``, ``B/``, ``heldout_A/`` and ``heldout_truth/``.

    Args:
        name: a key of :data:`PAIRS`.
        directory: where to create the four folders.

    Returns:
        The four folders by name; ``cyclegan train DIR/A DIR/B --preset ...`` trains on the first two.
    """
    from .files import write_image

    pair = build_pair(name)
    root = Path(directory)
    folders = {"A": pair.train_a, "B": pair.train_b, "heldout_A": pair.heldout_a, "heldout_truth": pair.heldout_truth}
    out = {}
    for folder, images in folders.items():
        for k, image in enumerate(images):
            write_image(root / folder / f"{k:03d}.png", image)
        out[folder] = root / folder
    return out


# ----------------------------------------------------------------- evaluation
#: How far a re-measured score may be from a model card's and still count as reproduced.
DEFAULT_TOLERANCE = {"delta_e": 0.25, "psnr": 0.25, "ssim": 0.01, "checkerboard": 0.1, "checkerboard_flat": 0.1}


def evaluate_translator(translator, pair: DomainPair, direction: str = "a2b") -> dict[str, dict[str, float]]:  # noqa: ANN001
    """Score a translator on a pair's held-out images, beside the identity and Reinhard baselines.

    Each held-out image is translated whole, in float32 (so the numbers do not
    depend on the CPU's bf16 support), and scored against its exact answer
    with :func:`cyclegan_sdk.metrics.image_scores`; scores are averaged over
    the held-out images. Reinhard transfer takes its target statistics from
    the domain-B training images.

    Args:
        translator: a :class:`~cyclegan_sdk.translator.Translator`.
        pair: the domain pair (see :func:`build_pair`).
        direction: the direction that maps ``pair.heldout_a`` to the truth.

    Returns:
        ``{"model": scores, "reinhard": scores, "identity": scores, "truth": {"checkerboard": ...}}``.
    """
    from .metrics import checkerboard_scores, image_scores, reinhard_transfer

    rows: dict[str, list[dict[str, float]]] = {"model": [], "reinhard": [], "identity": [], "truth": []}
    for image, truth in zip(pair.heldout_a, pair.heldout_truth):
        out = translator.translate(image, direction, tile_size=0, precision="fp32")
        rows["model"].append(image_scores(out, truth))
        rows["reinhard"].append(image_scores(reinhard_transfer(image, pair.train_b), truth))
        rows["identity"].append(image_scores(image, truth))
        rows["truth"].append(checkerboard_scores(truth, truth))
    return {name: _mean_scores(scores) for name, scores in rows.items()}


def _mean_scores(scores: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over the images that have it (flat-region scores need flat regions)."""
    keys = dict.fromkeys(k for s in scores for k in s)
    return {k: round(float(np.mean([s[k] for s in scores if k in s])), 4) for k in keys}


def card_differences(measured: dict[str, dict[str, float]], card: dict, tolerance: dict | None = None) -> list[str]:
    """Scores that differ from a model card's ``[weights.metrics]`` by more than the tolerance.

    Args:
        measured: as returned by :func:`evaluate_translator`.
        card: the preset's ``weights.metrics`` table.
        tolerance: per metric; default :data:`DEFAULT_TOLERANCE` updated by the card's ``tolerance`` table.

    Returns:
        One line per difference; empty when the card is reproduced.
    """
    tol = {**DEFAULT_TOLERANCE, **card.get("tolerance", {}), **(tolerance or {})}
    out = []
    for row in ("model", "reinhard", "identity", "truth"):
        for metric, expected in card.get(row, {}).items():
            got = measured.get(row, {}).get(metric)
            if got is None:
                out.append(f"{row} {metric}: not measured")
            elif abs(got - expected) > tol.get(metric, 0.0):
                out.append(f"{row} {metric}: card {expected:g}, measured {got:g} (tolerance {tol.get(metric, 0):g})")
    return out
