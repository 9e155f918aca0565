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

__all__ = ["checkerboard_score", "delta_e", "image_scores", "psnr", "reinhard_transfer", "ssim"]


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


def checkerboard_score(image: np.ndarray, period: int = 4) -> float:
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

    Returns:
        RMS phase mean of the high-passed grey image, in uint8 units.
    """
    x = _unit(image) if np.asarray(image).ndim == 3 else _unit(np.repeat(np.asarray(image)[..., None], 3, -1))
    grey = 255.0 * (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])
    padded = np.pad(grey, 2, mode="reflect")
    # 5x5 box mean by cumulative sums (no SciPy dependency)
    c = np.cumsum(np.cumsum(np.pad(padded, ((1, 0), (1, 0))), 0), 1)
    h, w = grey.shape
    box = (c[5 : 5 + h, 5 : 5 + w] - c[:h, 5 : 5 + w] - c[5 : 5 + h, :w] + c[:h, :w]) / 25.0
    high = grey - box
    h, w = h // period * period, w // period * period
    phases = high[:h, :w].reshape(h // period, period, w // period, period).mean(axis=(0, 2))
    return float(np.sqrt(np.mean(phases**2)))


def image_scores(image: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """All scores of ``image`` against ``truth``: ``delta_e``, ``psnr``, ``ssim`` and ``checkerboard``.

    Args:
        image: the translation, RGB ``(H, W, 3)``.
        truth: the exact answer, the same shape.

    Returns:
        A dict of floats.
    """
    if np.asarray(image).shape != np.asarray(truth).shape:
        raise ValueError(f"image {np.asarray(image).shape} and truth {np.asarray(truth).shape} differ in shape")
    return {"delta_e": delta_e(image, truth), "psnr": psnr(image, truth), "ssim": ssim(image, truth),
            "checkerboard": checkerboard_score(image)}
