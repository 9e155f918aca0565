"""Image-quality metrics and colour baselines for judging a translation against its ground truth.

Used by preset model cards (``cyclegan presets evaluate``): mean CIEDE2000
colour difference, PSNR and SSIM of a translated image against the exact
answer, the same for two baselines every learned model should beat (the input
unchanged, and Reinhard colour transfer), and a measure of checkerboard
artefacts. The colour conversions and CIEDE2000 come from scikit-image
(``pip install 'cyclegan-sdk[eval]'``); nothing here is needed to translate.

Example:
    >>> import numpy as np
    >>> truth = np.full((32, 32, 3), 120, np.uint8)
    >>> round(image_scores(truth, truth)["delta_e"], 3)
    0.0
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["CHECKERBOARD_VISIBLE", "checkerboard_score", "checkerboard_scores", "delta_e", "flat_mask",
           "image_scores", "psnr", "reinhard_transfer", "ssim"]

#: A flat-region checkerboard score (uint8 grey levels) at or above which a grid becomes visible. Calibrated
#: here on stain-transfer outputs (10-minute trainings): a ResNet with nearest-neighbour resize-convolution 1.23 (a
#: 4-pixel grid plain to see on the background), a U-Net with 4x4 transposed convolutions 0.69 (faint, visible when
#: zoomed), a ResNet with bilinear resize-convolution 0.13 (none seen), the ground truth 0.06.
CHECKERBOARD_VISIBLE = 0.5


def _skimage() -> Any:
    try:
        import skimage.color
        import skimage.metrics
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("evaluation needs scikit-image: pip install 'cyclegan-sdk[eval]'") from None
    return skimage


def _unit(image: np.ndarray) -> np.ndarray:
    """uint8/uint16/float ``(H, W, 3)`` -> float64 in [0, 1]."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float64) / 65535.0
    return np.clip(image.astype(np.float64), 0.0, 1.0)


def delta_e(image: np.ndarray, truth: np.ndarray) -> float:
    """Mean CIEDE2000 colour difference between two RGB images (0: identical; about 2.3: just noticeable).

    Args:
        image: ``(H, W, 3)`` uint8, uint16 or float in [0, 1].
        truth: the same shape.

    Returns:
        The mean over pixels of CIEDE2000 in CIELAB (D65).
    """
    sk = _skimage()
    lab_a, lab_b = sk.color.rgb2lab(_unit(image)), sk.color.rgb2lab(_unit(truth))
    return float(np.mean(sk.color.deltaE_ciede2000(lab_a, lab_b)))


def psnr(image: np.ndarray, truth: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of ``image`` against ``truth`` (values in [0, 1] after scaling)."""
    mse = float(np.mean((_unit(image) - _unit(truth)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def ssim(image: np.ndarray, truth: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004, 7x7 windows) averaged over the RGB channels."""
    sk = _skimage()
    return float(sk.metrics.structural_similarity(_unit(image), _unit(truth), channel_axis=-1, data_range=1.0))


def reinhard_transfer(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Reinhard et al. (2001) colour transfer: match each CIELAB channel's mean and std to ``reference``'s.

    The classic global baseline for stain normalisation and photo look
    transfer: one affine map per channel, so structure is untouched.

    Args:
        image: ``(H, W, 3)`` RGB to recolour.
        reference: RGB images of the target domain (one ``(H, W, 3)`` array or a list of them).

    Returns:
        uint8 ``(H, W, 3)``.
    """
    sk = _skimage()
    refs = reference if isinstance(reference, (list, tuple)) else [reference]
    ref_lab = np.concatenate([sk.color.rgb2lab(_unit(r)).reshape(-1, 3) for r in refs])
    lab = sk.color.rgb2lab(_unit(image))
    flat = lab.reshape(-1, 3)
    mean, std = flat.mean(0), flat.std(0) + 1e-6
    out = (lab - mean) / std * ref_lab.std(0) + ref_lab.mean(0)
    with warnings.catch_warnings():  # colours pushed outside sRGB are clipped, as intended
        warnings.simplefilter("ignore", UserWarning)
        rgb = sk.color.lab2rgb(out)
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def _grey_255(image: np.ndarray) -> np.ndarray:
    x = _unit(image) if np.asarray(image).ndim == 3 else _unit(np.repeat(np.asarray(image)[..., None], 3, -1))
    return 255.0 * (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])


def _box_mean(a: np.ndarray, k: int = 5) -> np.ndarray:
    """Mean over k x k neighbourhoods (reflected at the borders), by cumulative sums."""
    r = k // 2
    padded = np.pad(a, r, mode="reflect")
    c = np.cumsum(np.cumsum(np.pad(padded, ((1, 0), (1, 0))), 0), 1)
    h, w = a.shape
    return (c[k : k + h, k : k + w] - c[:h, k : k + w] - c[k : k + h, :w] + c[:h, :w]) / (k * k)


def flat_mask(truth: np.ndarray, max_std: float = 2.0) -> np.ndarray:
    """Pixels where ``truth`` is flat: the 5x5 standard deviation of its grey level below ``max_std`` (uint8 units).

    A generator's grid shows most, and content least, on flat background.
    """
    grey = _grey_255(truth)
    var = _box_mean(grey**2) - _box_mean(grey) ** 2
    return np.sqrt(np.maximum(var, 0.0)) < max_std


def checkerboard_score(image: np.ndarray, period: int = 4, mask: np.ndarray | None = None) -> float:
    """Strength of a pattern repeating every ``period`` pixels, in uint8 grey levels.

    Stride-2 transposed convolutions (two of them in a ResNet generator) leave
    an offset that depends on the pixel's position modulo 2 and 4: a
    checkerboard. The grey image is high-passed (minus its 5x5 box mean), then
    averaged over all pixels sharing a phase ``(y mod period, x mod period)``;
    image content averages out over the many pixels of each phase, a fixed
    pattern does not. The score is the RMS of those ``period²`` means, which
    equals the square root of the high-pass spectrum's energy at the
    harmonics of ``1/period`` cycles per pixel (Nyquist included). Compare a
    translation's score with its ground truth's: natural images give a few
    tenths of a grey level.

    Args:
        image: ``(H, W, 3)`` or ``(H, W)``.
        period: the pattern's period in pixels (4 covers the periods 2 and 4).
        mask: only these pixels count (for example :func:`flat_mask` of the ground truth, where
            content cannot hide a grid); ``None``: all pixels.

    Returns:
        RMS phase mean of the high-passed grey image, in uint8 units (NaN if the mask leaves
        fewer than 16 pixels of some phase).
    """
    grey = _grey_255(image)
    high = grey - _box_mean(grey)
    h, w = grey.shape[0] // period * period, grey.shape[1] // period * period
    weight = np.ones((h, w)) if mask is None else np.asarray(mask, dtype=np.float64)[:h, :w]
    shape = (h // period, period, w // period, period)
    sums = (high[:h, :w] * weight).reshape(shape).sum(axis=(0, 2))
    counts = weight.reshape(shape).sum(axis=(0, 2))
    if counts.min() < 16:
        return float("nan")
    phases = sums / counts
    return float(np.sqrt(np.mean(phases**2)))


def checkerboard_scores(image: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """``checkerboard`` of the whole ``image`` and, where ``truth`` has enough flat pixels, ``checkerboard_flat``.

    The flat-region score is :func:`checkerboard_score` on :func:`flat_mask` of ``truth``
    (compare it with :data:`CHECKERBOARD_VISIBLE`); pass the truth itself as ``image`` to score the truth.
    """
    scores = {"checkerboard": checkerboard_score(image)}
    flat = checkerboard_score(image, mask=flat_mask(truth))
    if not np.isnan(flat):
        scores["checkerboard_flat"] = flat
    return scores


def image_scores(image: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """All scores of ``image`` against ``truth``.

    Args:
        image: the translation, RGB ``(H, W, 3)``.
        truth: the exact answer, the same shape.

    Returns:
        A dict of floats: ``delta_e``, ``psnr``, ``ssim``, ``checkerboard`` (whole image) and, where the
        truth has enough flat pixels, ``checkerboard_flat`` (on :func:`flat_mask` of the truth; compare
        with :data:`CHECKERBOARD_VISIBLE`).
    """
    if np.asarray(image).shape != np.asarray(truth).shape:
        raise ValueError(f"image {np.asarray(image).shape} and truth {np.asarray(truth).shape} differ in shape")
    return {"delta_e": delta_e(image, truth), "psnr": psnr(image, truth), "ssim": ssim(image, truth),
            **checkerboard_scores(image, truth)}
