"""Image layers to arrays for the SDK and translations back to layers, without Qt.

napari's conventions decide the axes: the last two axes of a layer are
height and width, plus a trailing colour axis when ``layer.rgb`` is true;
every axis before those is a stack axis, translated slice by slice.
Multiscale and dask- or zarr-backed layers stay lazy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cyclegan_sdk import Translator

from ._models import arrow

__all__ = ["LayerError", "LayerJob", "job_from_layer", "output_name", "plane_size", "translate_job",
           "add_or_replace", "training_stack"]

# Output layers carry where they come from under this metadata key.
OUTPUT_KEY = "cyclegan"

# What an output layer takes over from its input, so that it lies exactly on top of it.
GEOMETRY = ("scale", "translate", "rotate", "shear", "affine", "units", "axis_labels")

ProgressFn = Callable[[int, int], None]


class LayerError(ValueError):
    """A layer that cannot be used, with a message that names it."""


@dataclass
class LayerJob:
    """One layer's data and geometry, captured on the GUI thread so the layer may change or go away meanwhile."""

    name: str
    data: Any  # numpy or lazy array; for multiscale layers, the list of levels
    rgb: bool
    multiscale: bool
    geometry: dict[str, Any] = field(default_factory=dict)
    contrast_limits: tuple[float, float] | None = None
    value_range: tuple[float, float] | None = None  # values mapped to [-1, 1], when the dtype does not say

    @property
    def lazy(self) -> bool:
        return self.multiscale or not isinstance(self.data, np.ndarray)

    @property
    def plane_ndim(self) -> int:
        return 3 if self.rgb else 2

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple((self.data[0] if self.multiscale else self.data).shape)

    @property
    def channels(self) -> int:
        return self.shape[-1] if self.rgb else 1

    @property
    def slices(self) -> int:
        """Planes translated one after the other (1 for a single image)."""
        return int(np.prod(self.shape[: -self.plane_ndim], dtype=np.int64))


def job_from_layer(layer: Any) -> LayerJob:
    """Capture an image layer for translation or training.

    Raises:
        LayerError: for layers that are not images (labels, points, ...) or
            hold no pixels.
    """
    from napari.layers import Image

    if not isinstance(layer, Image):
        raise LayerError(f"layer {layer.name!r} is a {type(layer).__name__} layer; "
                         "CycleGAN translates image layers only")
    data = list(layer.data) if layer.multiscale else layer.data
    first = data[0] if layer.multiscale else data
    if not isinstance(first, np.ndarray) and not hasattr(first, "chunks"):
        data = [np.asarray(level) for level in data] if layer.multiscale else np.asarray(data)
    job = LayerJob(layer.name, data, bool(layer.rgb), bool(layer.multiscale),
                   {key: _copy(getattr(layer, key)) for key in GEOMETRY if hasattr(layer, key)},
                   tuple(float(v) for v in layer.contrast_limits))
    if 0 in job.shape:
        raise LayerError(f"layer {layer.name!r} is empty: shape {job.shape}")
    job.value_range = _value_range(layer, np.dtype(first.dtype))
    return job


def _value_range(layer: Any, dtype: np.dtype) -> tuple[float, float] | None:
    """The layer's data range where its dtype does not fix one: signed integers, floats beyond 0..1.

    uint8 and uint16 (and floats within 0..1) go by the model's own value
    scaling; for the others, napari's range of the data is the best guess.
    """
    if dtype.kind == "u" and dtype.itemsize <= 2:
        return None
    low, high = (float(v) for v in layer.contrast_limits_range)
    if dtype.kind == "f" and 0.0 <= low and high <= 1.0:
        return None
    return (low, high) if high > low else (low, low + 1.0)


def plane_size(layer: Any) -> tuple[int, int]:
    """Height and width of one image of an image layer or a :class:`LayerJob` (level 0 of a pyramid), unread."""
    data = layer.data[0] if layer.multiscale else layer.data
    return tuple(data.shape[-(3 if layer.rgb else 2):][:2])


def _copy(value: Any) -> Any:
    return value.copy() if hasattr(value, "copy") else value


def output_name(name: str, domains: tuple[str, str], direction: str) -> str:
    """``"<layer> (<A> → <B>)"``."""
    return f"{name} ({arrow(domains, direction)})"


def translate_job(translator: Translator, job: LayerJob, direction: str, options: dict[str, Any],
                  progress: ProgressFn | None = None) -> tuple[Any, dict[str, Any]]:
    """Translate one captured layer; returns the output data and the keyword arguments of its layer.

    In-memory layers are translated now (``progress(done, total)`` per tile);
    lazy layers become lazy translations: each level of a multiscale layer
    is translated on demand, when napari reads the part of it on screen.
    """
    if job.value_range is not None:
        options = {**options, "value_range": job.value_range}
    if job.multiscale:
        out: Any = [_lazy(translator, level, job, direction, options) for level in job.data]
        first = out[0]
    elif job.lazy:
        out = first = _lazy(translator, job.data, job, direction, options)
    else:
        out = first = _in_memory(translator, job, direction, options, progress)
    out_rgb = first.ndim == len(job.shape) + (0 if job.rgb else 1)  # grey planes lose the colour axis
    kwargs: dict[str, Any] = {
        "name": output_name(job.name, translator.domains, direction),
        "rgb": bool(out_rgb),
        "multiscale": job.multiscale,
        "metadata": {OUTPUT_KEY: {"source": job.name, "domains": list(translator.domains), "direction": direction}},
        **{k: v for k, v in job.geometry.items() if v is not None},
    }
    if not out_rgb:
        kwargs["colormap"] = "gray"
        # A lazy output would be read whole to find its range: give one instead.
        if job.lazy:
            kwargs["contrast_limits"] = job.value_range or _display_range(np.dtype(first.dtype), job.contrast_limits)
    return out, kwargs


def _as_nhwc(data: Any, job: LayerJob) -> Any:
    """``(N, H, W, C)`` view of a layer's planes (numpy or dask)."""
    plane = data.shape[-job.plane_ndim:]
    flat = data.reshape((-1, *plane))
    return flat if job.rgb else flat[..., None]


def _from_nhwc(out: Any, lead: tuple[int, ...]) -> Any:
    """Back to the layer's stack axes; one output channel is a grey plane, more are colour."""
    if out.shape[-1] == 1:
        out = out[..., 0]
    return out.reshape((*lead, *out.shape[1:]))


def _in_memory(translator: Translator, job: LayerJob, direction: str, options: dict[str, Any],
               progress: ProgressFn | None) -> np.ndarray:
    data = job.data
    out = translator.translate(_as_nhwc(data, job), direction, layout="NHWC", progress=progress, **options)
    return _from_nhwc(out, data.shape[: data.ndim - job.plane_ndim])


def _lazy(translator: Translator, arr: Any, job: LayerJob, direction: str, options: dict[str, Any]) -> Any:
    """A lazy translation of one level through ``translate_dask``: nothing is computed until napari reads it."""
    import dask.array as da

    arr = da.asarray(arr)
    options = {k: v for k, v in options.items()
               if k in ("tile_size", "overlap", "precision", "device", "value_range")}
    if arr.ndim == job.plane_ndim:
        return translator.translate_dask(arr, direction, layout="HWC" if job.rgb else "HW", **options)
    out = translator.translate_dask(_as_nhwc(arr, job), direction, layout="NHWC", **options)
    return _from_nhwc(out, arr.shape[: arr.ndim - job.plane_ndim])


def _display_range(dtype: np.dtype, input_limits: tuple[float, float] | None) -> tuple[float, float]:
    if dtype == np.uint8:
        return (0.0, 255.0)
    if dtype.kind == "f":
        return (0.0, 1.0)
    return input_limits or (float(np.iinfo(dtype).min), float(np.iinfo(dtype).max))


def add_or_replace(viewer: Any, data: Any, kwargs: dict[str, Any]) -> Any:
    """Add the output layer, or update the output of an earlier run in place (same name, same position).

    Only a layer this plugin made (marked in its metadata) is replaced; a
    user's layer that happens to have the name is left alone, and napari
    gives the new one a numbered name.
    """
    from napari.layers import Image

    name = kwargs["name"]
    old = viewer.layers[name] if name in viewer.layers else None
    if old is None or not isinstance(old, Image) or OUTPUT_KEY not in old.metadata:
        return viewer.add_image(data, **kwargs)
    ndim = (len(data[0].shape) if kwargs["multiscale"] else data.ndim) - kwargs["rgb"]
    if old.rgb == kwargs["rgb"] and old.multiscale == kwargs["multiscale"] and old.ndim == ndim:
        old.data = data
        for key in (*GEOMETRY, "metadata"):
            if key in kwargs:
                setattr(old, key, kwargs[key])
        old.reset_contrast_limits_range()  # the dtype may have changed
        if "contrast_limits" in kwargs:
            old.contrast_limits = kwargs["contrast_limits"]
        else:
            old.reset_contrast_limits()
        return old
    index = viewer.layers.index(old)
    viewer.layers.remove(old)
    layer = viewer.add_image(data, **kwargs)
    viewer.layers.move(viewer.layers.index(layer), index)
    return layer


# Training reads both layers into memory; beyond this it is a whole slide, not a training set.
TRAINING_BYTES = 4 << 30


def training_stack(job: LayerJob) -> Any:
    """A layer's images as a ``(N, H, W[, C])`` stack for the Trainer (level 0 of a pyramid), not yet read.

    Raises:
        LayerError: for images under 16 × 16 pixels, or layers too large to train on in memory.
    """
    data = job.data[0] if job.multiscale else job.data
    height, width = plane_size(job)
    if min(height, width) < 16:
        raise LayerError(f"layer {job.name!r} has {height}×{width} images; training needs at least 16×16")
    size = int(np.prod(data.shape, dtype=np.int64)) * np.dtype(data.dtype).itemsize
    if size > TRAINING_BYTES:
        raise LayerError(f"layer {job.name!r} holds {size / 2**30:.1f} GiB; training reads it into memory: "
                         f"crop or downsample it to at most {TRAINING_BYTES >> 30} GiB")
    return data.reshape((-1, *job.shape[-job.plane_ndim:]))
