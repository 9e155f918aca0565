"""Image files on disk: reading, writing and finding them.

Formats are chosen by suffix:

- ``.png``, ``.jpg``, ``.jpeg`` through Pillow. PNG holds uint8 grey, grey +
  alpha, RGB and RGBA, and uint16 grey; JPEG holds uint8 grey and RGB.
- ``.tif``, ``.tiff`` through tifffile: any dtype, any channel count, stacks.

Arrays are numpy ``(H, W)`` or ``(H, W, C)`` (TIFF also ``(N, H, W)`` and
``(N, H, W, C)`` stacks), in the file's own dtype, so that a 16-bit file stays
16-bit through a translation. Writing is atomic: a crash never leaves a
half-written image in place of the old one.
"""

from __future__ import annotations

import glob
import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .modelfile import atomic_write

__all__ = ["IMAGE_SUFFIXES", "ImageFileError", "find_images", "read_image", "write_image"]

#: Suffixes (lower case) of the image files this module reads and writes.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

_PILLOW_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
_TIFF_SUFFIXES = (".tif", ".tiff")
#: JPEG quality of written files: translations are usually looked at closely, so well above Pillow's 75.
JPEG_QUALITY = 95


class ImageFileError(ValueError):
    """An image file that cannot be read or written; the message names the file and the problem.

    Args:
        path: the file.
        reason: what is wrong, in one line.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keeps the two-argument constructor picklable (multiprocessing)
        return type(self), (self.path, self.reason)


# ------------------------------------------------------------------- reading
def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file into a numpy array in the file's own dtype.

    PNG and JPEG (Pillow): 8-bit files give uint8, 16-bit grey PNGs give
    uint16; palette images become RGB, or RGBA when they have transparency;
    CMYK and other colour spaces become RGB. An EXIF orientation is applied,
    so the array is upright as image viewers show it.

    TIFF (tifffile): the first image series, in any dtype, as stored, e.g.
    ``(H, W)``, ``(H, W, C)`` or a stack ``(N, H, W)``. The one rearrangement
    is for channels that the file itself marks as stored in front of the
    image plane (planar RGB, or an ImageJ/OME ``C`` axis): those are moved
    last, giving ``(H, W, C)``. Any other leading axis is left where it is, for
    the translator's layout rule (or its ``layout=`` argument) to interpret.

    Args:
        path: the file; its suffix must be one of :data:`IMAGE_SUFFIXES`.

    Returns:
        The image, ``(H, W)`` or ``(H, W, C)`` (TIFF stacks with a leading axis).

    Raises:
        ImageFileError: the file is missing, is a folder, has an unsupported
            suffix, or is not a readable image of its format.
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.exists():
        raise ImageFileError(path, "no such file")
    if path.is_dir():
        raise ImageFileError(path, "is a folder, not an image file")
    if suffix in _TIFF_SUFFIXES:
        return _read_tiff(path)
    return _read_pillow(path, _PILLOW_FORMATS[suffix])


def _read_pillow(path: Path, fmt: str) -> np.ndarray:
    _refuse_16bit_colour_png(path)
    try:
        # Both formats are tried whatever the suffix says: a JPEG saved as ".png" is common.
        with Image.open(path, formats=["PNG", "JPEG"]) as im:
            im.load()  # decode now, so that a truncated file fails here and not later
            ImageOps.exif_transpose(im, in_place=True)
            return _pillow_to_array(im)
    except Image.DecompressionBombError:
        raise ImageFileError(
            path, f"too large for Pillow's safety limit (PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}); "
            "raise that limit or store the image as TIFF"
        ) from None
    except Exception as exc:  # UnidentifiedImageError, truncated or corrupt data, ...
        raise ImageFileError(path, f"cannot read as {fmt} ({_first_line(exc)})") from None


def _refuse_16bit_colour_png(path: Path) -> None:
    """Pillow decodes 16-bit colour PNGs to 8 bits per channel; fail rather than lose precision silently."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(26)
    except OSError as exc:
        raise ImageFileError(path, f"cannot open ({_first_line(exc)})") from None
    # Signature (8 bytes), IHDR length and type (8), width and height (8), then bit depth and colour type.
    if len(head) == 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        bit_depth, colour_type = struct.unpack("BB", head[24:26])
        if bit_depth == 16 and colour_type in (2, 4, 6):
            kind = {2: "RGB", 4: "grey + alpha", 6: "RGBA"}[colour_type]
            raise ImageFileError(
                path, f"16-bit {kind} PNG is not supported (Pillow reads only 8 bits per channel); "
                "convert it to a 16-bit TIFF (.tif)"
            )


def _pillow_to_array(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.array(im)
    if mode.startswith("I;16") or mode == "I":
        # 16-bit grey PNGs open as "I;16" (or "I", int32, in older Pillow); values are 0..65535 either way.
        return np.array(im).astype(np.uint16)
    if mode == "1":
        return np.array(im.convert("L"))
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        return np.array(im.convert("RGBA" if has_alpha else "RGB"))
    return np.array(im.convert("RGB"))  # CMYK, YCbCr, LAB, ...


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ValueError("no image data")
            series = tif.series[0]
            axes = series.axes
            data = series.asarray()
    except Exception as exc:  # TiffFileError, missing codec (imagecodecs), truncated strips, ...
        raise ImageFileError(path, f"cannot read as TIFF ({_first_line(exc)})") from None
    # "S" (samples of planar RGB) or "C" (ImageJ/OME channels) right before the image plane:
    # the file says these are channels, so give them in the (H, W, C) order of all other images.
    if data.ndim >= 3 and len(axes) == data.ndim and axes.endswith("YX") and axes[-3] in "SC":
        data = np.moveaxis(data, -3, -1)
    return np.ascontiguousarray(data)


# ------------------------------------------------------------------- writing
def write_image(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` to an image file whose format is given by the suffix.

    - PNG: uint8 with 1 to 4 channels (grey, grey + alpha, RGB, RGBA) and uint16 grey.
    - JPEG: uint8 grey and RGB, quality :data:`JPEG_QUALITY`.
    - TIFF: any dtype tifffile supports, zlib-compressed. 3- and 4-channel
      uint8/uint16 images are stored as RGB (the 4th channel as alpha), all
      others as grey samples; ``(H, W, C)`` is one page with ``C`` samples
      (last axis of at most 4, or any last axis of a 4-D stack), while
      ``(N, H, W)`` is ``N`` pages.

    A trailing channel axis of length 1 is stored as grey. Folders are
    created as needed, and the file is written under a temporary name and
    renamed, so an existing file is replaced only by a complete one.

    Args:
        path: destination file; its suffix must be one of :data:`IMAGE_SUFFIXES`.
        array: the image.

    Returns:
        The written path.

    Raises:
        ImageFileError: unsupported suffix, or a dtype or channel count the
            format cannot hold (the message suggests a format that can).
    """
    path = Path(path)
    suffix = _suffix(path)
    array = np.asarray(array)
    if array.ndim >= 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.size == 0:
        raise ImageFileError(path, f"cannot write an empty image (shape {array.shape})")
    if suffix in _TIFF_SUFFIXES:
        _write_tiff(path, array)
    else:
        fmt = _PILLOW_FORMATS[suffix]
        _check_pillow_writable(path, fmt, array)
        image = Image.fromarray(np.ascontiguousarray(array))
        options = {"quality": JPEG_QUALITY} if fmt == "JPEG" else {}
        try:
            with atomic_write(path) as tmp:
                # The temporary name ends in ".tmp", so the format is given explicitly.
                image.save(tmp, format=fmt, **options)
        except OSError as exc:
            raise ImageFileError(path, f"cannot write ({_first_line(exc)})") from None
    return path


def _check_pillow_writable(path: Path, fmt: str, array: np.ndarray) -> None:
    channels = 1 if array.ndim == 2 else array.shape[-1]
    what = f"{array.dtype} with {channels} channel{'s' if channels != 1 else ''} (shape {array.shape})"
    if array.ndim not in (2, 3):
        raise ImageFileError(path, f"{fmt} holds one image, got shape {array.shape}; write a stack as .tif")
    if fmt == "PNG":
        if array.dtype == np.uint8 and channels <= 4:
            return
        if array.dtype == np.uint16 and channels == 1:
            return
        raise ImageFileError(
            path, f"PNG holds uint8 grey/RGB/RGBA or uint16 grey, not {what}; write it as .tif"
        )
    if array.dtype == np.uint8 and channels in (1, 3):
        return
    hint = ".png or .tif" if array.dtype == np.uint8 or (array.dtype == np.uint16 and channels == 1) else ".tif"
    raise ImageFileError(path, f"JPEG holds uint8 grey or RGB, not {what}; write it as {hint}")


def _write_tiff(path: Path, array: np.ndarray) -> None:
    import tifffile

    # Which axis is channels: the last one of a 4-D stack, or of a 3-D array when it
    # is short (the same rule as the translator's layout guess); otherwise pages.
    channels_last = array.ndim == 4 or (array.ndim == 3 and array.shape[-1] <= 4)
    channels = array.shape[-1] if channels_last else 1
    options: dict = {"compression": "zlib", "bigtiff": array.nbytes > 2**31}
    if channels_last and channels in (3, 4) and array.dtype in (np.uint8, np.uint16):
        options["photometric"] = "rgb"
        if channels == 4:
            options["extrasamples"] = ["unassalpha"]
    else:
        options["photometric"] = "minisblack"
        if channels_last:
            options["planarconfig"] = "contig"  # without it tifffile stores (H, W, C) as H pages
    try:
        with atomic_write(path) as tmp:
            tifffile.imwrite(tmp, array, **options)
    except Exception as exc:  # unsupported dtype, disk full, ...
        raise ImageFileError(path, f"cannot write as TIFF ({_first_line(exc)})") from None


# ------------------------------------------------------------------- finding
def find_images(inputs: list[str]) -> list[tuple[Path, Path]]:
    """Expand files, folders and glob patterns into the image files they name.

    - A file is taken as it is (even with another suffix, so that reading it
      reports the problem).
    - A folder is searched recursively for files with an image suffix (any
      case); hidden files and folders (names starting with ``"."``) are skipped.
    - Anything else is a glob pattern (``*``, ``?``, ``[...]``, ``**``),
      expanded recursively; matches are filtered to image suffixes.

    Args:
        inputs: files, folders and patterns, as given on a command line.

    Returns:
        ``(path, relative_output_path)`` pairs, in input order and sorted within
        each folder or pattern, without repeats. The relative path keeps the
        sub-folders below a folder input; for files and pattern matches it is
        the file name.

    Raises:
        ImageFileError: an input that names nothing, or a folder or pattern
            without images.
    """
    found: list[tuple[Path, Path]] = []
    seen: set[Path] = set()

    def add(path: Path, relative: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append((path, relative))

    for text in inputs:
        path = Path(os.path.expanduser(text))
        if path.is_file():
            add(path, Path(path.name))
        elif path.is_dir():
            images = sorted(
                p.relative_to(path)
                for p in path.rglob("*")
                if _is_image_name(p) and p.is_file() and not _is_hidden(p.relative_to(path))
            )
            if not images:
                raise ImageFileError(path, f"folder has no image files ({', '.join(IMAGE_SUFFIXES)})")
            for relative in images:
                add(path / relative, relative)
        elif glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
            images = [m for m in matches if _is_image_name(m) and m.is_file()]
            if not images:
                raise ImageFileError(text, "pattern matches no image files")
            for match in images:
                add(match, Path(match.name))
        else:
            raise ImageFileError(text, "no such file or folder")
    return found


# ------------------------------------------------------------------- helpers
def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        shown = f"'{path.suffix}'" if path.suffix else "(none)"
        raise ImageFileError(path, f"unsupported image suffix {shown}; use one of {', '.join(IMAGE_SUFFIXES)}")
    return suffix


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _is_hidden(relative: Path) -> bool:
    # Also skips macOS "._name.png" resource forks, which have an image suffix but no image.
    return any(part.startswith(".") for part in relative.parts)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
