"""Reading, writing and finding image files (cyclegan_sdk.files)."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from cyclegan_sdk.files import IMAGE_SUFFIXES, ImageFileError, find_images, read_image, write_image

H, W = 40, 56


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    """A real 40x56 RGB photo crop (scikit-image's astronaut)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[60:60 + H, 200:200 + W])


def _ramp(shape, dtype, high):
    """Values spread over the whole range of ``dtype`` (so a lost high byte shows)."""
    n = int(np.prod(shape))
    return (np.arange(n, dtype=np.float64) * (high / max(n - 1, 1))).round().astype(dtype).reshape(shape)


def _no_temp_files(folder):
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def _assert_round_trip(path, img):
    """Written and read back: the same dtype, shape and values, and no temporary file left."""
    back = read_image(write_image(path, img))
    assert back.dtype == img.dtype and back.shape == img.shape
    np.testing.assert_array_equal(back, img)
    assert _no_temp_files(path.parent)


# -------------------------------------------------------------------- round trips
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_uint8_round_trip(tmp_path, rgb, channels):
    if channels == 1:
        img = rgb[..., 0].copy()
    elif channels == 2:
        img = np.ascontiguousarray(rgb[..., :2])
    elif channels == 3:
        img = rgb
    else:
        img = np.dstack([rgb, _ramp((H, W), np.uint8, 255)])
    assert img.dtype == np.uint8
    _assert_round_trip(tmp_path / "x.png", img)


def test_png_uint16_grey_round_trip_is_16_bit_on_disk(tmp_path):
    img = _ramp((H, W), np.uint16, 65535)
    path = write_image(tmp_path / "x.png", img)
    with Image.open(path) as im:
        assert im.mode in ("I;16", "I")  # really 16 bits per pixel, not 8
    back = read_image(path)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, img)


def test_single_channel_axis_is_written_as_grey(tmp_path, rgb):
    path = write_image(tmp_path / "x.png", rgb[..., :1])
    np.testing.assert_array_equal(read_image(path), rgb[..., 0])


@pytest.mark.parametrize("grey", [False, True])
def test_jpeg_round_trip_is_close(tmp_path, rgb, grey):
    img = rgb[..., 1].copy() if grey else rgb
    path = write_image(tmp_path / "x.jpg", img)
    back = read_image(path)
    assert back.dtype == np.uint8 and back.shape == img.shape
    # JPEG is lossy; at the quality written, a photo comes back within a few levels on average.
    assert np.abs(back.astype(int) - img).mean() < 4
    np.testing.assert_array_equal(read_image(path), back)  # decoding is deterministic


@pytest.mark.parametrize(
    "shape, dtype, high",
    [
        ((H, W), np.uint16, 65535),
        ((H, W, 3), np.uint16, 65535),  # stored as RGB
        ((H, W, 4), np.uint8, 255),  # RGB + alpha
        ((H, W, 2), np.uint16, 65535),
        ((H, W, 5), np.uint16, 4095),
        ((H, W, 3), np.float32, 1.0),
        ((H, W, 7), np.float32, 1.0),
        ((3, H, W), np.uint16, 65535),  # a stack of three grey pages
        ((2, H, W, 3), np.uint8, 255),  # a stack of RGB pages
    ],
)
def test_tiff_round_trip_keeps_dtype_shape_and_values(tmp_path, shape, dtype, high):
    img = _ramp(shape, dtype, high)
    if dtype == np.float32:
        img = img + np.float32(1e-4) * np.float32(np.pi)  # values that are not round numbers
    _assert_round_trip(tmp_path / "x.tif", img)


def test_tiff_is_compressed_and_rgb_is_tagged(tmp_path):
    img = np.zeros((H, W, 3), np.uint16)
    path = write_image(tmp_path / "x.tiff", img)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert page.photometric == tifffile.PHOTOMETRIC.RGB
    assert path.stat().st_size < img.nbytes / 10


def test_tiff_channels_first_moved_last_only_when_the_file_says_so(tmp_path):
    chw = _ramp((3, H, W), np.uint8, 255)
    # Planar RGB: the file marks the leading axis as samples of each pixel.
    tifffile.imwrite(tmp_path / "planar.tif", chw, photometric="rgb", planarconfig="separate")
    back = read_image(tmp_path / "planar.tif")
    assert back.shape == (H, W, 3)
    np.testing.assert_array_equal(back, np.moveaxis(chw, 0, -1))
    # Three grey pages: returned as stored, for the caller's layout rule to interpret.
    tifffile.imwrite(tmp_path / "pages.tif", chw, photometric="minisblack")
    np.testing.assert_array_equal(read_image(tmp_path / "pages.tif"), chw)


def test_palette_png_becomes_rgb_or_rgba(tmp_path, rgb):
    pal = Image.fromarray(rgb).quantize(16)
    pal.save(tmp_path / "p.png")
    back = read_image(tmp_path / "p.png")
    assert back.dtype == np.uint8 and back.shape == (H, W, 3)
    np.testing.assert_array_equal(back, np.asarray(pal.convert("RGB")))
    pal.save(tmp_path / "pt.png", transparency=0)
    assert read_image(tmp_path / "pt.png").shape == (H, W, 4)


def test_jpeg_exif_orientation_is_applied(tmp_path, rgb):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.fromarray(rgb).save(tmp_path / "r.jpg", exif=exif, quality=95)
    assert read_image(tmp_path / "r.jpg").shape == (W, H, 3)


def _png_16bit_rgb(path, arr):
    """A 16-bit RGB PNG, written by hand (Pillow cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def test_16_bit_colour_png_is_refused_rather_than_truncated(tmp_path):
    path = tmp_path / "rgb16.png"
    _png_16bit_rgb(path, _ramp((4, 5, 3), np.uint16, 65535))
    with pytest.raises(ImageFileError, match=r"rgb16\.png: 16-bit RGB PNG .*\.tif"):
        read_image(path)


# ------------------------------------------------------------------ write refusals
@pytest.mark.parametrize(
    "name, img, words",
    [
        ("x.png", np.zeros((H, W, 3), np.uint16), ["PNG", "uint16", "3 channels", ".tif"]),
        ("x.png", np.zeros((H, W), np.float32), ["PNG", "float32", ".tif"]),
        ("x.png", np.zeros((2, H, W, 3), np.uint8), ["stack", ".tif"]),
        ("x.jpg", np.zeros((H, W, 4), np.uint8), ["JPEG", "uint8", "4 channels", ".png"]),
        ("x.jpeg", np.zeros((H, W), np.uint16), ["JPEG", "uint16", ".png or .tif"]),
        ("x.jpg", np.zeros((H, W, 3), np.float32), ["JPEG", "float32", ".tif"]),
    ],
)
def test_write_refuses_what_the_format_cannot_hold(tmp_path, name, img, words):
    with pytest.raises(ImageFileError) as info:
        write_image(tmp_path / name, img)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(tmp_path / name))
    for word in words:
        assert word in message
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_refused_write_leaves_the_existing_file_alone(tmp_path, rgb):
    path = write_image(tmp_path / "x.jpg", rgb)
    before = path.read_bytes()
    with pytest.raises(ImageFileError):
        write_image(path, np.zeros((H, W, 3), np.uint16))
    assert path.read_bytes() == before and _no_temp_files(tmp_path)


def test_write_creates_folders(tmp_path, rgb):
    path = write_image(tmp_path / "a" / "b" / "x.png", rgb)
    np.testing.assert_array_equal(read_image(path), rgb)


# -------------------------------------------------------------------- read errors
def test_read_errors_are_one_line_and_name_the_file(tmp_path, rgb):
    write_image(tmp_path / "good.png", rgb)
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.png").write_bytes(b"not an image at all" * 10)
    (tmp_path / "garbage.tif").write_bytes(b"II*\x00" + b"\xff" * 64)
    (tmp_path / "image.bmp").write_bytes(b"BM")
    (tmp_path / "folder.png").mkdir()
    cases = {
        "missing.png": "no such file",
        "truncated.png": "cannot read",
        "garbage.png": "cannot read",
        "garbage.tif": "cannot read as TIFF",
        "image.bmp": "unsupported image suffix '.bmp'",
        "folder.png": "folder",
    }
    for name, words in cases.items():
        with pytest.raises(ImageFileError) as info:
            read_image(tmp_path / name)
        message = str(info.value)
        assert isinstance(info.value, ValueError)
        assert "\n" not in message and name in message and words in message, message


# ---------------------------------------------------------------------- finding
def test_find_images_in_folders_files_and_patterns(tmp_path, monkeypatch, rgb):
    root = tmp_path / "data"
    for rel in ["b.png", "a.JPG", "sub/c.tif", "sub/deeper/d.tiff", "sub/e.jpeg"]:
        write_image(root / rel, rgb)  # suffixes are matched in any case
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    write_image(root / ".hidden" / "x.png", rgb)
    write_image(root / "._b.png", rgb)

    found = find_images([str(root)])
    assert [str(rel) for _, rel in found] == ["a.JPG", "b.png", "sub/c.tif", "sub/deeper/d.tiff", "sub/e.jpeg"]
    assert all(path == root / rel for path, rel in found)

    # A file: its name; repeats are dropped.
    assert find_images([str(root / "sub" / "c.tif"), str(root / "sub" / "c.tif")]) == [
        (root / "sub" / "c.tif", Path("c.tif"))
    ]

    # Patterns, relative to the working folder, recursive with **; only images match.
    monkeypatch.chdir(tmp_path)
    pattern = find_images(["data/**/*.t*"])
    assert [(str(p), str(rel)) for p, rel in pattern] == [
        ("data/sub/c.tif", "c.tif"), ("data/sub/deeper/d.tiff", "d.tiff")
    ]
    assert [str(rel) for _, rel in find_images(["data/*"])] == ["a.JPG", "b.png"]


def test_find_images_names_what_matches_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("")
    for text, words in [
        (str(tmp_path / "nope.png"), "no such file or folder"),
        (str(tmp_path / "*.png"), "pattern matches no image files"),
        (str(tmp_path / "empty"), "folder has no image files"),
    ]:
        with pytest.raises(ImageFileError) as info:
            find_images([text])
        assert str(info.value).startswith(f"{text}: {words}")


def test_image_suffixes():
    assert IMAGE_SUFFIXES == (".png", ".jpg", ".jpeg", ".tif", ".tiff")
