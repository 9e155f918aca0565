"""Images in and out of the networks: layouts, dtypes, value scaling, channel matching.

Arrays arrive as ``(H, W)``, ``(H, W, C)``, ``(N, H, W)`` or ``(N, H, W, C)``
numpy arrays, PIL images, or torch tensors (``(H, W)``, ``(C, H, W)``,
``(N, C, H, W)``). Internally every image is a numpy view of shape
``(N, H, W, C)`` in its own dtype; tiles are cut from it and scaled to float
in [-1, 1] one at a time, so no full-size float copy is ever made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from .modelfile import ValueScaling

__all__ = ["LUMA", "ChannelPlan", "ImageLayout", "ImageStack", "Scaler", "as_stack", "plan_channels"]

Layout = Literal["HW", "HWC", "NHW", "NHWC", "CHW", "NCHW"]

# ITU-R BT.601 luma, as PIL's "L" conversion uses.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)

_PIL_MODES = {"1": "L", "P": None, "L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA",
              "I;16": "I;16", "I": "I", "F": "F", "CMYK": "RGB", "YCbCr": "RGB"}


@dataclass
class ImageLayout:
    """How to give the result back in the caller's own form."""

    kind: Literal["numpy", "pil", "torch"]
    layout: str
    dtype: np.dtype
    pil_mode: str | None = None
    torch_dtype: torch.dtype | None = None
    torch_device: torch.device | None = None


@dataclass
class ImageStack:
    """An image or stack as a ``(N, H, W, C)`` numpy view plus how to undo that."""

    data: np.ndarray
    layout: ImageLayout

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]


def _guess_layout(ndim: int, shape: tuple[int, ...], channels_first: bool) -> str:
    if ndim == 2:
        return "HW"
    if ndim == 3:
        if channels_first:
            return "CHW" if shape[0] <= 4 else "NHW"
        return "HWC" if shape[-1] <= 4 else "NHW"
    if ndim == 4:
        return "NCHW" if channels_first else "NHWC"
    raise ValueError(f"image must have 2 to 4 dimensions, got shape {shape}")


def as_stack(image: Any, layout: str | None = None) -> ImageStack:
    """Turn a numpy array, PIL image or torch tensor into an :class:`ImageStack`.

    Args:
        image: the input.
        layout: one of ``"HW"``, ``"HWC"``, ``"NHW"``, ``"NHWC"``, ``"CHW"``,
            ``"NCHW"``; by default guessed: a trailing axis of at most 4 is
            channels for numpy, a leading one for torch tensors.

    Raises:
        ValueError: for unsupported types, dtypes, empty arrays, NaN or inf.
    """
    pil_mode = torch_dtype = torch_device = None
    if isinstance(image, Image.Image):
        kind = "pil"
        mode = _PIL_MODES.get(image.mode, "RGB")
        if mode is None:  # palette: keep transparency if it has any
            mode = "RGBA" if "transparency" in image.info else "RGB"
        if mode != image.mode:
            image = image.convert(mode)
        pil_mode = mode
        arr = np.asarray(image)
        if mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535:
            arr = arr.astype(np.uint16)  # Pillow opens 16-bit PNGs as 32-bit "I"
        layout = "HW" if arr.ndim == 2 else "HWC"
    elif isinstance(image, torch.Tensor):
        kind = "torch"
        torch_dtype, torch_device = image.dtype, image.device
        t = image.detach().cpu()
        if t.dtype == torch.bfloat16:
            t = t.float()
        arr = t.numpy()
        layout = layout or _guess_layout(arr.ndim, arr.shape, channels_first=True)
    elif isinstance(image, np.ndarray):
        kind = "numpy"
        arr = image
        layout = layout or _guess_layout(arr.ndim, arr.shape, channels_first=False)
    else:
        raise TypeError(f"cannot translate a {type(image).__name__}: give a numpy array, PIL image or torch tensor")

    if layout not in ("HW", "HWC", "NHW", "NHWC", "CHW", "NCHW"):
        raise ValueError(f"unknown layout {layout!r}")
    if arr.ndim != len(layout):
        raise ValueError(f"layout {layout!r} needs {len(layout)} dimensions, image has shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"image is empty: shape {arr.shape}")
    _check_dtype(arr.dtype)
    if arr.dtype.kind == "f":
        bad = _count_non_finite(arr)
        if bad:
            raise ValueError(f"image contains {bad} NaN or infinite values (shape {arr.shape})")
    src = layout
    view = arr
    if "C" not in src:
        view = view[..., None]
        src = src + "C"
    if "N" not in src:
        view = view[None]
        src = "N" + src
    view = np.transpose(view, [src.index(a) for a in "NHWC"])
    return ImageStack(view, ImageLayout(kind, layout, arr.dtype, pil_mode, torch_dtype, torch_device))


def _count_non_finite(arr: np.ndarray, chunk: int = 1 << 24) -> int:
    """NaN and inf values, counted in chunks so a huge (memory-mapped) image needs no full-size mask."""
    flat = arr.reshape(-1) if arr.flags.c_contiguous else None
    if flat is None:
        return int((~np.isfinite(arr)).sum())
    return sum(int((~np.isfinite(flat[k : k + chunk])).sum()) for k in range(0, flat.size, chunk))


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.kind in "ui" or dtype.kind == "f":
        return
    if dtype.kind == "b":
        raise ValueError("boolean images are masks, not images: convert to uint8 (0/255) first")
    raise ValueError(f"unsupported image dtype {dtype}: use uint8, uint16, integer or float")


def restore(out: np.ndarray, like: ImageLayout) -> Any:
    """Give ``out`` (``(N, H, W, C)`` in the output dtype) back in the caller's form.

    The layout is the caller's; a grey input whose result has colour gains a
    channel axis (last for numpy and PIL, first for torch).
    """
    layout = like.layout
    arr, src = out, "NHWC"
    if "C" not in layout:
        if arr.shape[-1] == 1:
            arr, src = arr[..., 0], "NHW"
        elif like.kind == "torch":
            layout = "NCHW" if "N" in layout else "CHW"
        else:
            layout += "C"
    if "N" not in layout:
        arr, src = arr[0], src[1:]
    arr = np.ascontiguousarray(np.transpose(arr, [src.index(a) for a in layout]))
    if like.kind == "pil":
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        return Image.fromarray(arr)
    if like.kind == "torch":
        return torch.from_numpy(arr).to(device=like.torch_device, dtype=like.torch_dtype)
    return arr


@dataclass(frozen=True)
class ChannelPlan:
    """Which input channels feed the network and which pass through as alpha."""

    image_channels: int
    model_channels: int
    color: int  # channels converted for the network
    alpha: bool  # last channel passes through untouched

    def to_model(self, tile: np.ndarray) -> np.ndarray:
        """``(h, w, C)`` float -> ``(h, w, model_channels)``."""
        x = tile[..., : self.color]
        if self.color == self.model_channels:
            return x
        if self.color == 1:
            return np.repeat(x, self.model_channels, axis=-1)
        return (x @ LUMA)[..., None]  # RGB -> grey


def plan_channels(image_channels: int, model_channels: int, model_name: str = "model") -> ChannelPlan:
    """Decide how an image with ``image_channels`` feeds a network taking ``model_channels``.

    Equal counts go straight in. Grey into a 3-channel model is replicated, RGB
    into a 1-channel model becomes luma; a 2- or 4-channel image whose first 1
    or 3 channels match that way has its last channel passed through as alpha.
    """
    if image_channels == model_channels:
        return ChannelPlan(image_channels, model_channels, image_channels, False)
    convertible = {(1, 3), (3, 1)}
    if (image_channels, model_channels) in convertible:
        return ChannelPlan(image_channels, model_channels, image_channels, False)
    if image_channels in (2, 4):
        color = image_channels - 1
        if color == model_channels or (color, model_channels) in convertible:
            return ChannelPlan(image_channels, model_channels, color, True)
    raise ValueError(
        f"image has {image_channels} channels but {model_name} takes {model_channels}; "
        "only equal counts, grey<->RGB and an extra alpha channel are converted"
    )


class Scaler:
    """Maps an image dtype's values to [-1, 1] and back.

    Args:
        dtype: the image's dtype (and the output's).
        scaling: the domain's :class:`~cyclegan_sdk.modelfile.ValueScaling`.
        value_range: explicit ``(low, high)`` overriding ``scaling``.
    """

    def __init__(self, dtype: np.dtype, scaling: ValueScaling, value_range: tuple[float, float] | None = None):
        self.dtype = np.dtype(dtype)
        if value_range is not None:
            low, high = map(float, value_range)
            if not high > low:
                raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
        elif scaling.mode == "range":
            low, high = float(scaling.low), float(scaling.high)  # type: ignore[arg-type]
        elif self.dtype.kind == "u":
            low, high = 0.0, float(np.iinfo(self.dtype).max)
        elif self.dtype.kind == "f":
            low, high = 0.0, 1.0
        else:
            raise ValueError(
                f"signed integer images ({self.dtype}) have no natural range: pass value_range=(low, high)"
            )
        self.low, self.high = low, high

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """Image values -> float32 in [-1, 1] (clipped)."""
        y = (x.astype(np.float32) - self.low) * (2.0 / (self.high - self.low)) - 1.0
        return np.clip(y, -1.0, 1.0, out=y)

    def from_unit(self, y: np.ndarray) -> np.ndarray:
        """Float in [-1, 1] -> values of the image dtype (rounded and clipped for integers)."""
        v = (y.astype(np.float32) + 1.0) * ((self.high - self.low) / 2.0) + self.low
        if self.dtype.kind in "ui":
            info = np.iinfo(self.dtype)
            v = np.clip(np.rint(v), info.min, info.max)
        return v.astype(self.dtype)
