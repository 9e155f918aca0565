"""Training images: sources for each domain, value scaling, preprocessing and augmentation.

A domain's images come from a folder (recursive; PNG, JPEG, TIFF including
16-bit and multichannel), a list of arrays of different sizes, or a stack
``(N, H, W[, C])``. All images of one domain must have the same channel count;
the two domains may differ (grey -> RGB is a valid task).

Preprocessing follows the reference: resize to ``load_size`` then a random
``crop_size`` crop (``"resize_and_crop"``), a crop only (``"crop"``), or
``"scale_width_and_crop"``; then horizontal flips (photos) or all 8
rotations/flips (``augment="dihedral"``, for microscopy, where orientation
means nothing). Augmentation runs on tensors, on the training device, with
kornia and a dedicated random generator whose state goes into checkpoints.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from kornia.geometry.transform import resize
from torch import Tensor

from .files import IMAGE_SUFFIXES, ImageFileError, find_images, read_image
from .images import Scaler, as_stack
from .modelfile import ValueScaling

__all__ = ["DomainImages", "Preprocess", "as_domain", "scaling_for", "to_unit_tensor"]

PreprocessMode = Literal["resize_and_crop", "crop", "scale_width_and_crop", "none"]
AugmentPolicy = Literal["flip", "dihedral", "none"]

#: Decoded folder images are kept in memory while they total less than this.
CACHE_BYTES = 1 << 30


class DomainImages:
    """One domain's training images, loaded lazily from files or held as arrays.

    Use :meth:`from_folder`, :meth:`from_arrays`, :meth:`from_stack`, or
    :func:`as_domain` which picks one from what it is given.
    """

    def __init__(self, name: str, items: list[Any], shapes: list[tuple[int, int, int]], dtype: np.dtype,
                 labels: list[str]) -> None:
        self.name = name
        self._items = items  # arrays (H, W, C) or Paths
        self.shapes = shapes
        self.dtype = np.dtype(dtype)
        self.labels = labels
        self._cache: dict[int, np.ndarray] = {}
        self._cached_bytes = 0

    # ---------------------------------------------------------------- sources
    @classmethod
    def from_folder(cls, folder: str | Path, name: str = "A") -> "DomainImages":
        """All images below ``folder``; unreadable files are skipped with one warning that counts them."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"domain {name}: {folder} is not a folder")
        try:
            files = [p for p, _ in find_images([str(folder)])]
        except ImageFileError:
            files = []
        if not files:
            raise ValueError(f"domain {name}: no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
        items, shapes, labels, bad, dtypes = [], [], [], [], set()
        decoded: dict[int, np.ndarray] = {}
        for path in files:
            try:
                shape, dtype, arr = _probe(path)
            except (ImageFileError, OSError, ValueError) as exc:
                bad.append(f"{path.name} ({str(exc).splitlines()[0].split(': ', 1)[-1]})")
                continue
            if arr is not None:  # already decoded to find its shape: keep it rather than read it again
                decoded[len(items)] = arr
            items.append(path)
            shapes.append(shape)
            labels.append(str(path.relative_to(folder)))
            dtypes.add(dtype)
        if bad:
            shown = "; ".join(bad[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
            if not items:
                raise ValueError(f"domain {name}: none of the {len(bad)} images in {folder} can be read: {shown}")
            warnings.warn(f"domain {name}: skipping {len(bad)} unreadable of {len(files)} images in {folder}: {shown}",
                          stacklevel=2)
        domain = cls._checked(name, items, shapes, dtypes, labels)
        for index, arr in decoded.items():
            domain._remember(index, arr)
        return domain

    @classmethod
    def from_arrays(cls, arrays: Sequence[Any], name: str = "A", layout: str | None = None) -> "DomainImages":
        """A list of images (numpy ``(H, W[, C])``, PIL images, tensors), sizes may differ."""
        if len(arrays) == 0:
            raise ValueError(f"domain {name}: the list of images is empty")
        items, shapes, labels, dtypes = [], [], [], set()
        for k, image in enumerate(arrays):
            stack = as_stack(image, layout)
            if stack.shape[0] != 1:
                raise ValueError(f"domain {name}: item {k} is a stack of {stack.shape[0]}; give single images or use from_stack")
            arr = stack.data[0]
            items.append(arr)
            shapes.append(tuple(arr.shape))
            labels.append(f"{name}[{k}]")
            dtypes.add(arr.dtype)
        return cls._checked(name, items, shapes, dtypes, labels)

    @classmethod
    def from_stack(cls, stack: Any, name: str = "A", layout: str | None = None) -> "DomainImages":
        """A stack ``(N, H, W)`` or ``(N, H, W, C)`` (for example a napari layer); each slice is one image."""
        s = as_stack(stack, layout)
        arrays = [s.data[k] for k in range(s.shape[0])]
        return cls._checked(name, arrays, [tuple(a.shape) for a in arrays], {s.data.dtype},
                            [f"{name}[{k}]" for k in range(len(arrays))])

    @classmethod
    def _checked(cls, name: str, items: list[Any], shapes: list[tuple[int, int, int]], dtypes: set[np.dtype],
                 labels: list[str]) -> "DomainImages":
        counts: dict[int, list[str]] = {}
        for shape, label in zip(shapes, labels):
            counts.setdefault(shape[2], []).append(label)
        if len(counts) > 1 and max(counts, key=lambda c: len(counts[c])) == 3 and set(counts) <= {1, 3, 4}:
            # Mostly RGB with some grey or RGBA files (common in photo sets): make them all RGB, as the reference does.
            odd = [label for c, v in counts.items() if c != 3 for label in v]
            warnings.warn(f"domain {name}: {len(odd)} of {len(labels)} images are grey or RGBA and are used as RGB "
                          f"(first: {odd[0]})", stacklevel=3)
            shapes = [(h, w, 3) for h, w, _ in shapes]
            counts = {3: labels}
        if len(counts) > 1:
            parts = [f"{c}-channel: {len(v)} ({', '.join(v[:2])}{', ...' if len(v) > 2 else ''})"
                     for c, v in sorted(counts.items(), key=lambda kv: -len(kv[1]))]
            raise ValueError(f"domain {name} mixes channel counts: {'; '.join(parts)}")
        kinds = {np.dtype(d).kind for d in dtypes}
        if len(dtypes) > 1 and not kinds <= {"f"}:
            raise ValueError(f"domain {name} mixes dtypes {sorted(str(d) for d in dtypes)}; convert them to one")
        for shape, label in zip(shapes, labels):
            if min(shape[:2]) < 1:
                raise ValueError(f"domain {name}: {label} is empty (shape {shape})")
        dtype = max(dtypes, key=lambda d: np.dtype(d).itemsize)
        return cls(name, items, shapes, dtype, labels)

    # ---------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self._items)

    @property
    def channels(self) -> int:
        return self.shapes[0][2]

    def load(self, index: int) -> np.ndarray:
        """Image ``index`` as ``(H, W, C)`` in its own dtype."""
        item = self._items[index]
        if isinstance(item, np.ndarray):
            return _as_channels(item, self.channels)
        if index in self._cache:
            return self._cache[index]
        return self._remember(index, read_image(item))

    def _remember(self, index: int, arr: np.ndarray) -> np.ndarray:
        """A decoded file in the domain's channel layout, kept while the cache has room."""
        arr = _as_channels(arr[..., None] if arr.ndim == 2 else arr, self.channels)
        if self._cached_bytes + arr.nbytes <= CACHE_BYTES:
            self._cache[index] = arr
            self._cached_bytes += arr.nbytes
        return arr

    def __repr__(self) -> str:
        return f"DomainImages({self.name!r}, {len(self)} images, {self.channels} channels, {self.dtype})"


def _as_channels(arr: np.ndarray, channels: int) -> np.ndarray:
    """Grey -> RGB by replication, RGBA -> RGB by dropping alpha; other arrays unchanged."""
    if channels == 3 and arr.shape[-1] == 1:
        return np.repeat(arr, 3, axis=-1)
    if channels == 3 and arr.shape[-1] == 4:
        return arr[..., :3]
    return arr


def _probe(path: Path) -> tuple[tuple[int, int, int], np.dtype, np.ndarray | None]:
    """Shape ``(H, W, C)`` and dtype of an image file, and the pixels if they had to be decoded for that.

    TIFF headers tell the shape; other formats are decoded (orientation and
    palettes change what Pillow's header says).
    """
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype = series.shape, series.dtype
        if len(shape) == 2:
            return (shape[0], shape[1], 1), np.dtype(dtype), None
        if len(shape) == 3 and shape[-1] <= 4:
            return (shape[0], shape[1], shape[2]), np.dtype(dtype), None
    arr = read_image(path)  # Pillow formats, and TIFFs the layout rules of read_image must decide
    if arr.ndim == 2:
        return (*arr.shape, 1), arr.dtype, arr
    if arr.ndim != 3:
        raise ValueError(f"{path}: a stack of images (shape {arr.shape}); give single images in a folder")
    return tuple(arr.shape), arr.dtype, arr  # type: ignore[return-value]


def as_domain(source: Any, name: str = "A") -> DomainImages:
    """A :class:`DomainImages` from a folder path, a list of images, a stack, or a DomainImages."""
    if isinstance(source, DomainImages):
        return source
    if isinstance(source, (str, Path)):
        return DomainImages.from_folder(source, name)
    if isinstance(source, (list, tuple)):
        return DomainImages.from_arrays(source, name)
    stack = as_stack(source)
    return DomainImages.from_stack(stack.data, name, layout="NHWC")


def scaling_for(domain: DomainImages, mode: Literal["dtype", "percentile"] = "dtype",
                percentiles: tuple[float, float] = (0.1, 99.9), max_images: int = 32) -> ValueScaling:
    """The value scaling to train (and later translate) a domain with.

    ``"dtype"`` uses the full range of the dtype (floats: 0..1). ``"percentile"``
    measures bounds on up to ``max_images`` evenly chosen images, for 16-bit
    microscopy whose signal fills a small part of 0..65535.
    """
    if mode == "dtype":
        return ValueScaling()
    if mode != "percentile":
        raise ValueError(f"value scaling must be 'dtype' or 'percentile', got {mode!r}")
    picks = np.unique(np.linspace(0, len(domain) - 1, min(len(domain), max_images)).astype(int))
    values = np.concatenate([domain.load(int(k))[::4, ::4].reshape(-1) for k in picks]).astype(np.float64)
    low, high = np.percentile(values, percentiles)
    if not high > low:
        high = low + 1.0
    return ValueScaling("range", float(low), float(high))


def to_unit_tensor(image: np.ndarray, scaler: Scaler, device: torch.device) -> Tensor:
    """``(H, W, C)`` image -> float32 ``(1, C, H, W)`` in [-1, 1] on ``device``, values mapped by ``scaler``."""
    x = scaler.to_unit(image)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(device)


@dataclass
class Preprocess:
    """The reference's preprocessing, with its defaults.

    Args:
        mode: ``"resize_and_crop"`` (resize to ``load_size`` square, random crop),
            ``"crop"`` (random crop only), ``"scale_width_and_crop"`` (width to
            ``load_size``, keeping the aspect ratio, then crop), ``"none"``
            (only make the size a multiple of 4).
        load_size: size to resize to before cropping.
        crop_size: size of the random crop the networks see.
        augment: ``"flip"`` (random horizontal flips; photos), ``"dihedral"``
            (the 8 rotations and flips; microscopy) or ``"none"``.
    """

    mode: PreprocessMode = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    augment: AugmentPolicy = "flip"

    def __post_init__(self) -> None:
        if self.mode not in ("resize_and_crop", "crop", "scale_width_and_crop", "none"):
            raise ValueError(f"preprocess must be resize_and_crop, crop, scale_width_and_crop or none, got {self.mode!r}")
        if self.augment not in ("flip", "dihedral", "none"):
            raise ValueError(f"augment must be 'flip', 'dihedral' or 'none', got {self.augment!r}")
        if self.crop_size < 8:
            raise ValueError(f"crop_size must be at least 8, got {self.crop_size}")
        if self.mode != "crop" and self.load_size < self.crop_size:
            raise ValueError(f"load_size ({self.load_size}) must be at least crop_size ({self.crop_size})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def undersized(self, domain: DomainImages) -> list[str]:
        """Images that must be scaled up to give a ``crop_size`` crop (only ``mode="crop"`` can have them)."""
        if self.mode != "crop":
            return []
        return [label for shape, label in zip(domain.shapes, domain.labels) if min(shape[:2]) < self.crop_size]

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """One image ``(1, C, H, W)`` in [-1, 1] -> ``(1, C, crop, crop)``, augmented; randomness from ``generator``."""
        return self._crop_and_augment(self._resize(x), generator)

    def centre(self, x: Tensor) -> Tensor:
        """The same resize, then the centre crop and no augmentation: what previews show."""
        x = self._resize(x)
        h, w = x.shape[-2:]
        if self.mode == "none":
            return x[..., : max(4, h // 4 * 4), : max(4, w // 4 * 4)].clamp(-1, 1).clone()
        top, left = (h - self.crop_size) // 2, (w - self.crop_size) // 2
        return x[..., top : top + self.crop_size, left : left + self.crop_size].clamp(-1, 1).clone()

    def _resize(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        crop = self.crop_size
        if self.mode == "resize_and_crop":
            x = resize(x, (self.load_size, self.load_size), interpolation="bicubic", antialias=True)
        elif self.mode == "scale_width_and_crop":
            new_h = max(crop, round(h * self.load_size / w))
            x = resize(x, (new_h, max(crop, self.load_size)), interpolation="bicubic", antialias=True)
        elif self.mode == "crop" and min(h, w) < crop:
            # too small for the crop: scale up (keeping the aspect ratio) rather than pad with nothing
            factor = crop / min(h, w)
            x = resize(x, (max(crop, round(h * factor)), max(crop, round(w * factor))), interpolation="bicubic")
        return x

    def _crop_and_augment(self, x: Tensor, generator: torch.Generator) -> Tensor:
        crop = self.crop_size
        if self.mode == "none":
            h, w = x.shape[-2:]
            x = x[..., : max(4, h // 4 * 4), : max(4, w // 4 * 4)]
        else:
            h, w = x.shape[-2:]
            top = int(torch.randint(0, h - crop + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - crop + 1, (1,), generator=generator))
            x = x[..., top : top + crop, left : left + crop]
        x = x.clamp(-1, 1)
        if self.augment == "flip":
            if torch.rand((), generator=generator) < 0.5:
                x = x.flip(-1)
        elif self.augment == "dihedral":
            k = int(torch.randint(0, 8, (1,), generator=generator))
            if k >= 4:
                x = x.flip(-1)
            x = torch.rot90(x, k % 4, dims=(-2, -1))
        return x.contiguous()
