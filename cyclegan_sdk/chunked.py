"""Image files too large for memory: zarr stores and big or tiled TIFFs, read lazily and written chunk by chunk.

Reading gives a dask array; nothing is decoded until a chunk is needed:

- ``.zarr`` folders: a zarr array, or a group holding one (an OME-Zarr
  image: its first, full-resolution level, channels moved last);
- ``.tif``/``.tiff``: the first image series through tifffile's zarr view of
  its tiles or strips; pyramidal files (OME-TIFF, SVS) give level 0.

Writing computes a dask array chunk by chunk and never holds it whole:

- ``.zarr``: each chunk stored as it is computed;
- ``.tif``/``.tiff``: a tiled TIFF (BigTIFF when large). TIFF tiles must be
  written in order, while dask finishes chunks in any order, so the chunks
  are first stored in a temporary zarr store beside the output (compressed)
  and then copied into the TIFF one band of tiles at a time.

Outputs are written under a temporary name and renamed when complete, so an
interrupted run never leaves a half-written output under the final name.
Problems raise :class:`~cyclegan_sdk.files.ImageFileError` naming the file.

Example:
    >>> import tempfile, dask.array as da
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = write_zarr(da.zeros((600, 500, 3), dtype="uint8", chunks=256), f"{folder}/image.zarr")
    ...     open_lazy(path).shape
    (600, 500, 3)
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .files import ImageFileError, find_images, read_image, write_image
from .modelfile import atomic_write

if TYPE_CHECKING:
    from .translator import Translator

__all__ = [
    "CHUNK",
    "LAZY_TIFF_BYTES",
    "TIFF_TILE",
    "find_inputs",
    "is_lazy_input",
    "is_zarr_path",
    "open_lazy",
    "translate_file",
    "write_lazy",
    "write_tiff",
    "write_zarr",
]

#: TIFFs whose first series holds more bytes than this (uncompressed) are read lazily, as are all tiled ones.
LAZY_TIFF_BYTES = 2**28
#: Chunk edge of the dask arrays read from files whose own tiles or strips are smaller (fewer, larger tasks).
CHUNK = 2048
#: Tile edge of written TIFFs.
TIFF_TILE = 512

_TIFF_SUFFIXES = (".tif", ".tiff")


def is_zarr_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a zarr store (by its ``.zarr`` suffix)."""
    return Path(path).suffix.lower() == ".zarr"


def is_lazy_input(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` should be read lazily: a zarr store, or a TIFF that is tiled or larger than
    :data:`LAZY_TIFF_BYTES`. Other files (and unreadable TIFFs, for the eager reader to report) are not."""
    path = Path(path)
    if is_zarr_path(path):
        return True
    if path.suffix.lower() not in _TIFF_SUFFIXES or not path.is_file():
        return False
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return bool(series.pages[0].is_tiled) or len(series.levels) > 1 or series.nbytes > LAZY_TIFF_BYTES
    except Exception:  # noqa: BLE001 - not a readable TIFF: the ordinary reader says why
        return False


def find_inputs(inputs: Sequence[str]) -> list[tuple[Path, Path]]:
    """:func:`~cyclegan_sdk.files.find_images`, with ``.zarr`` folders taken as single images.

    Returns:
        ``(path, relative_output_path)`` pairs in input order.
    """
    found: list[tuple[Path, Path]] = []
    for text in inputs:
        path = Path(os.path.expanduser(text))
        if is_zarr_path(path) and path.is_dir():
            found.append((path, Path(path.name)))
        else:
            found.extend(find_images([text]))
    unique: dict[Path, tuple[Path, Path]] = {}
    for path, relative in found:
        unique.setdefault(path.resolve(), (path, relative))
    return list(unique.values())


# ------------------------------------------------------------------- reading
def open_lazy(path: str | os.PathLike[str], chunk: int = CHUNK) -> Any:
    """Open an image file as a dask array without reading its pixels.

    Args:
        path: a ``.zarr`` store, a TIFF, or a PNG/JPEG (read eagerly, then wrapped).
        chunk: height and width of the chunks when the file's own are smaller
            (a multiple of them, so each is decoded once per chunk).

    Returns:
        A dask array ``(H, W)``, ``(H, W, C)`` or a stack ``(N, H, W[, C])`` in the
        file's dtype, channels last.

    Raises:
        ImageFileError: missing file, no image in it, or a format that cannot be read.
    """
    path = Path(path)
    if not path.exists():
        raise ImageFileError(path, "no such file or folder")
    if is_zarr_path(path):
        arr = _open_zarr(path)
    elif path.suffix.lower() in _TIFF_SUFFIXES:
        arr = _open_tiff(path)
    else:
        return _eager(path, chunk)
    if arr.ndim < 2 or 0 in arr.shape:
        raise ImageFileError(path, f"no image in it (shape {arr.shape})")
    return arr.rechunk(_chunks(arr, chunk))


def _eager(path: Path, chunk: int) -> Any:
    import dask.array as da

    image = read_image(path)
    return da.from_array(image, chunks=tuple(chunk if k in (0, 1) else -1 for k in range(image.ndim)))


def _open_zarr(path: Path) -> Any:
    import dask.array as da

    zarr = _need("zarr", path)
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001 - zarr raises several kinds for "not a store"
        raise ImageFileError(path, f"cannot read as zarr ({_first_line(exc)})") from None
    axes = None
    if not hasattr(node, "shape"):  # a group: an OME-Zarr image, or a group with a single array
        multiscales = node.attrs.get("multiscales") or node.attrs.get("ome", {}).get("multiscales")
        if multiscales:
            level = multiscales[0]["datasets"][0]["path"]
            axes = [a["name"] if isinstance(a, dict) else a for a in multiscales[0].get("axes", [])] or None
        else:
            names = sorted(name for name, _ in node.arrays())
            if len(names) != 1:
                raise ImageFileError(path, f"zarr group holds {len(names)} arrays ({', '.join(names) or 'none'}); "
                                     "name one, e.g. image.zarr/0")
            level = names[0]
        node = node[level]
    arr = da.from_zarr(node)
    return _channels_last(arr, axes) if axes else arr


def _channels_last(arr: Any, axes: list[str]) -> Any:
    """OME-Zarr ``(t, c, z, y, x)``-style axes to ``(N, y, x, c)``: single-element axes dropped, channels last."""
    import dask.array as da

    keep = [k for k, name in enumerate(axes) if arr.shape[k] > 1 or name in ("y", "x")]
    arr = arr[tuple(slice(None) if k in keep else 0 for k in range(arr.ndim))]
    names = [axes[k] for k in keep]
    if "c" in names:
        arr = da.moveaxis(arr, names.index("c"), -1)
    return arr


def _open_tiff(path: Path) -> Any:
    import dask.array as da
    import tifffile

    _need("zarr", path)
    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:  # noqa: BLE001
        raise ImageFileError(path, f"cannot read as TIFF ({_first_line(exc)})") from None
    try:
        if not tif.series:
            raise ValueError("no image data")
        series = tif.series[0]
        axes = series.levels[0].axes
        import zarr

        # The store keeps the file open for as long as the array is used.
        arr = da.from_zarr(zarr.open(series.aszarr(level=0), mode="r"))
    except Exception as exc:  # noqa: BLE001 - missing codec, unsupported layout, ...
        tif.close()
        raise ImageFileError(path, f"cannot read as TIFF ({_first_line(exc)})") from None
    # As files.read_image does: channels the file marks as stored before the plane go last.
    if arr.ndim >= 3 and len(axes) == arr.ndim and axes.endswith("YX") and axes[-3] in "SC":
        arr = da.moveaxis(arr, -3, -1)
    return arr


def _chunks(arr: Any, chunk: int) -> tuple[int, ...]:
    """Chunks of about ``chunk`` along height and width: small source chunks merged (whole multiples of
    them), large ones split; one slice per chunk along a stack axis, channels whole."""
    h_axis = 1 if arr.ndim == 4 or (arr.ndim == 3 and arr.shape[-1] > 4) else 0
    out = []
    for axis, size in enumerate(arr.chunksize):
        if axis in (h_axis, h_axis + 1):
            if size < chunk:
                out.append(chunk // size * size)
            else:
                out.append(size if size <= 2 * chunk else chunk)
        elif axis < h_axis:
            out.append(1)
        else:
            out.append(arr.shape[axis])
    return tuple(out)


# ------------------------------------------------------------------- writing
def write_lazy(array: Any, path: str | os.PathLike[str]) -> Path:
    """Write a dask array to ``path`` in the format its suffix names (``.zarr``, TIFF, or PNG/JPEG computed whole).

    Returns:
        The written path.
    """
    path = Path(path)
    if is_zarr_path(path):
        return write_zarr(array, path)
    if path.suffix.lower() in _TIFF_SUFFIXES:
        return write_tiff(array, path)
    return write_image(path, np.asarray(array))  # PNG and JPEG hold one picture: it is computed whole


def write_zarr(array: Any, path: str | os.PathLike[str]) -> Path:
    """Store a dask array in a new zarr store, chunk by chunk as each is computed, keeping its chunks.

    An existing zarr store at ``path`` is replaced only once the new one is
    complete; anything else there is refused.

    Args:
        array: a dask array (irregular chunks are made regular).
        path: the ``.zarr`` folder to write.

    Returns:
        ``path``.
    """
    import dask.array as da

    path = Path(path)
    arr = da.asarray(array)
    _need("zarr", path)
    if path.exists() and not _looks_like_zarr(path):
        raise ImageFileError(path, "exists and is not a zarr store; refusing to replace it")
    if any(len(set(c[:-1])) > 1 or (len(c) > 1 and c[-1] > c[0]) for c in arr.chunks):
        arr = arr.rechunk(arr.chunksize)  # zarr needs equal chunks (the last may be shorter)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        da.to_zarr(arr, str(tmp))
        if path.exists():
            old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except ImageFileError:
        raise
    except Exception as exc:  # disk full, a failed chunk, ...: nothing half-written is left behind
        raise ImageFileError(path, f"cannot write as zarr ({_first_line(exc)})") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def write_tiff(array: Any, path: str | os.PathLike[str], tile: int = TIFF_TILE, compression: str = "zlib") -> Path:
    """Write a dask array as a tiled TIFF without ever holding it whole.

    Channels and pages follow :func:`~cyclegan_sdk.files.write_image`:
    3- and 4-channel uint8/uint16 images are RGB (the 4th channel alpha),
    ``(N, H, W[, C])`` stacks are ``N`` pages. The file is BigTIFF when the
    pixels exceed 2 GiB.

    Args:
        array: a dask array ``(H, W)``, ``(H, W, C)``, ``(N, H, W)`` or ``(N, H, W, C)``.
        path: the TIFF to write.
        tile: tile edge (a multiple of 16).
        compression: a tifffile compression, ``"zlib"`` by default.

    Returns:
        ``path``.
    """
    import dask.array as da
    import tifffile

    path = Path(path)
    arr = da.asarray(array)
    zarr = _need("zarr", path)
    if arr.ndim >= 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3, 4):
        raise ImageFileError(path, f"a TIFF holds (H, W[, C]) images or stacks of them, got shape {arr.shape}")
    channels_last = arr.ndim == 4 or (arr.ndim == 3 and arr.shape[-1] <= 4)
    plane = arr.ndim - (3 if channels_last else 2)  # axis of the image height
    options: dict[str, Any] = {"compression": compression, "bigtiff": arr.nbytes > 2**31}
    if channels_last and arr.shape[-1] in (3, 4) and arr.dtype in (np.uint8, np.uint16):
        options["photometric"] = "rgb"
        if arr.shape[-1] == 4:
            options["extrasamples"] = ["unassalpha"]
    else:
        options["photometric"] = "minisblack"
        if channels_last:
            options["planarconfig"] = "contig"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=f".{path.name}.", suffix=".parts", dir=path.parent) as parts:
            # Chunks one tile high, so that copying a band of tiles decodes each stored chunk once.
            bands = arr.rechunk(_band_chunks(arr.ndim, plane, tile))
            da.to_zarr(bands, os.path.join(parts, "bands.zarr"))
            stored = zarr.open(os.path.join(parts, "bands.zarr"), mode="r")
            with atomic_write(path) as tmp:
                tifffile.imwrite(tmp, _tiles(stored, plane, tile), shape=arr.shape, dtype=arr.dtype,
                                 tile=(tile, tile), **options)
    except ImageFileError:
        raise
    except Exception as exc:
        raise ImageFileError(path, f"cannot write as TIFF ({_first_line(exc)})") from exc
    return path


def _band_chunks(ndim: int, plane: int, tile: int) -> tuple[int, ...]:
    """One page, ``tile`` rows, a whole number of tiles across, all channels."""
    across = max(tile, CHUNK // tile * tile)
    return tuple(1 if k < plane else tile if k == plane else across if k == plane + 1 else -1 for k in range(ndim))


def _tiles(stored: Any, plane: int, tile: int) -> Iterator[np.ndarray]:
    """The tiles of ``stored`` in TIFF order: page by page, row by row, left to right."""
    pages = stored.shape[:plane]
    height, width = stored.shape[plane], stored.shape[plane + 1]
    for page in np.ndindex(*pages):
        for y in range(0, height, tile):
            band = np.asarray(stored[page + (slice(y, y + tile),)])
            for x in range(0, width, tile):
                yield band[:, x : x + tile]


# --------------------------------------------------------------- translation
def translate_file(translator: Translator, source: str | os.PathLike[str], target: str | os.PathLike[str],
                   direction: str = "a2b", **options: Any) -> Path:
    """Translate an image file into another without loading either whole (for zarr and TIFF).

    Args:
        translator: the model.
        source: the input file (see :func:`open_lazy`).
        target: the output file; its suffix picks the format (see :func:`write_lazy`).
        direction: ``"a2b"`` or ``"b2a"``.
        options: keywords of :meth:`Translator.translate_dask` (``tile_size``, ``overlap``, ``precision``, ...).

    Returns:
        The written path.
    """
    lazy = translator.translate_dask(open_lazy(source), direction, **options)
    return write_lazy(lazy, target)


# ------------------------------------------------------------------- helpers
def _looks_like_zarr(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in ("zarr.json", ".zarray", ".zgroup"))


def _need(module: str, path: Path) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise ImageFileError(path, f"needs the {module} package: pip install 'cyclegan-sdk[dask]'") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

