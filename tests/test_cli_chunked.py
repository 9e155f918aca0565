"""``cyclegan translate`` on zarr stores and tiled TIFFs: read, translated and written chunk by chunk.

The large case makes a 16384² RGB TIFF (768 MiB of pixels) from a tile
generator, so the test process never holds it, and translates it into a tiled
TIFF in a child process whose peak RSS (from ``wait4``) is compared with the
same command on a 2048² image.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cyclegan_sdk import GeneratorConfig, Translator
from cyclegan_sdk.cli import main

da = pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")
tifffile = pytest.importorskip("tifffile")

from cyclegan_sdk.chunked import is_lazy_input, open_lazy, write_tiff, write_zarr

TILE = 512


def pattern_tiles(size: int, tile: int = TILE):
    """Tiles of a size x size RGB image made from pixel coordinates, in TIFF order, one tile at a time."""
    for y in range(0, size, tile):
        yy = (np.arange(y, min(y + tile, size))[:, None] // 8).astype(np.uint16)
        for x in range(0, size, tile):
            xx = (np.arange(x, min(x + tile, size))[None, :] // 8).astype(np.uint16)
            r, g, b = (yy + xx) & 255, (3 * yy + xx // 2) & 255, np.broadcast_to((5 * xx) & 255, (yy.size, xx.size))
            yield np.stack(np.broadcast_arrays(r, g, b), -1).astype(np.uint8)


def write_pattern_tiff(path: Path, size: int) -> Path:
    tifffile.imwrite(path, pattern_tiles(size), shape=(size, size, 3), dtype=np.uint8, tile=(TILE, TILE),
                     photometric="rgb", compression="zlib", compressionargs={"level": 1})
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    # As small as a generator gets: the large test is about memory, not the network.
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    Translator.random(GeneratorConfig(ngf=1, n_blocks=0), seed=2).save(path)
    return path


def peak_rss_mib(args: list[str]) -> float:
    """Run the CLI in a child process; its own peak resident memory in MiB."""
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "cyclegan_sdk.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's rusage alone, unlike RUSAGE_CHILDREN
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode()
    assert proc.returncode == 0, err
    return usage.ru_maxrss / 1024  # kB on Linux


def test_16k_tiff_is_translated_without_holding_it(model, tmp_path):
    size = 16384
    small = write_pattern_tiff(tmp_path / "small.tif", 2048)
    big = write_pattern_tiff(tmp_path / "big.tif", size)
    assert big.stat().st_size < 200 * 2**20  # compressed on disk; 768 MiB as pixels
    options = ["--precision", "fp32", "--tile", "1024"]
    baseline = peak_rss_mib(["translate", str(model), str(small), "-o", str(tmp_path / "small_out.tif"), *options])
    peak = peak_rss_mib(["translate", str(model), str(big), "-o", str(tmp_path / "big_out.tif"), *options])
    image_mib = size * size * 3 / 2**20
    print(f"peak RSS: 2048² {baseline:.0f} MiB, 16384² {peak:.0f} MiB (the image is {image_mib:.0f} MiB)")
    assert peak - baseline < 0.6 * image_mib  # 64 times the pixels, and not one whole copy of them
    with tifffile.TiffFile(tmp_path / "big_out.tif") as tif:
        page = tif.pages[0]
        assert page.shape == (size, size, 3) and page.is_tiled and page.dtype == np.uint8
    # Values are checked against in-memory translation on 1024² below; here a corner equals the same
    # translation of the small image's corner (same pattern, same tiles there, statistics sampled alike).
    out = open_lazy(tmp_path / "big_out.tif")
    assert out[::4096, ::4096].compute().std() > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.parametrize("source_kind, target_suffix", [("zarr", ".tif"), ("tiff", ".zarr"), ("zarr", ".zarr")])
def test_chunked_outputs_equal_in_memory_translation(model, photo_1024, tmp_path, source_kind, target_suffix):
    if source_kind == "zarr":
        source = write_zarr(da.from_array(photo_1024, chunks=(300, 400, 3)), tmp_path / "photo.zarr")
    else:
        source = tmp_path / "photo.tif"
        tifffile.imwrite(source, photo_1024, tile=(256, 256), photometric="rgb")
    assert is_lazy_input(source)
    target = tmp_path / f"out{target_suffix}"
    assert main(["translate", str(model), str(source), "-o", str(target), "--tile", "256",
                 "--precision", "fp32"]) == 0
    expected = Translator.load(model).translate(photo_1024, tile_size=256, precision="fp32")
    result = np.asarray(open_lazy(target))
    assert result.shape == expected.shape and result.dtype == np.uint8
    assert np.abs(result.astype(int) - expected).max() <= 1


def test_stacks_and_grey_round_trip_through_chunked_files(tmp_path):
    stack = np.random.default_rng(0).integers(0, 65535, (3, 300, 260), dtype=np.uint16)
    tiff = write_tiff(da.from_array(stack, chunks=(1, 128, 128)), tmp_path / "stack.tif", tile=128)
    with tifffile.TiffFile(tiff) as tif:
        assert len(tif.pages) == 3 and tif.pages[0].is_tiled
    assert np.array_equal(open_lazy(tiff).compute(), stack)
    grey = write_zarr(da.from_array(stack[0], chunks=100), tmp_path / "grey.zarr")
    assert open_lazy(grey).chunksize == (300, 260)  # small source chunks merged
    assert np.array_equal(np.asarray(open_lazy(grey)), stack[0])


def test_small_strip_tiffs_stay_in_memory(tmp_path, photo_small):
    path = tmp_path / "strips.tif"
    tifffile.imwrite(path, photo_small, photometric="rgb")
    assert not is_lazy_input(path)
    assert is_lazy_input(tmp_path / "anything.zarr")


def test_errors_name_the_file_and_leave_nothing_behind(model, tmp_path, capsys, photo_small):
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    assert main(["translate", str(model), str(empty), "-o", str(tmp_path / "out.tif")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"cyclegan: error: {empty}: cannot read as zarr")
    assert not (tmp_path / "out.tif").exists()
    # A stack of 5-channel images cannot be translated: one line, and no output under the final name.
    five = write_zarr(da.zeros((2, 64, 64, 5), dtype="uint8", chunks=32), tmp_path / "five.zarr")
    assert main(["translate", str(model), str(five), "-o", str(tmp_path / "five_out.zarr")]) == 2
    assert f"cyclegan: error: {five}: translate_dask takes at most 4 channels" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.zarr", "five.zarr"]
    # An existing folder that is not a zarr store is never replaced.
    keep = tmp_path / "keep.zarr"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    source = write_zarr(da.from_array(photo_small, chunks=64), tmp_path / "photo.zarr")
    assert main(["translate", str(model), str(source), "-o", str(keep)]) == 2
    assert "keep.zarr: exists and is not a zarr store" in capsys.readouterr().err
    assert (keep / "notes.txt").read_text() == "mine"
