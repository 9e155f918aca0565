"""The ``cyclegan`` command (cyclegan_sdk.cli), run in-process on real files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cyclegan_sdk import GeneratorConfig, Translator, __version__, read_metadata
from cyclegan_sdk.cli import main
from cyclegan_sdk.files import read_image, write_image
from cyclegan_sdk.networks import build_generator

H, W = 40, 56
REPO = Path(__file__).resolve().parents[1]
NO_MODEL = "no such file or folder (and not a Hub repo id 'owner/name')"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    Translator.random(GeneratorConfig(ngf=4, n_blocks=1), domains=("horse", "zebra")).save(path)
    return path


@pytest.fixture(scope="module")
def translator(model) -> Translator:
    return Translator.load(model)


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    """A real 40x56 RGB photo crop (scikit-image's astronaut)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[60:60 + H, 200:200 + W])


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("cyclegan: error:")]


# -------------------------------------------------------------------- translate
def test_translate_one_file_to_a_file_equals_the_sdk(tmp_path, capsys, model, translator, rgb):
    src = write_image(tmp_path / "horse.png", rgb)
    out = tmp_path / "results" / "zebra.png"
    assert main(["translate", str(model), str(src), "-o", str(out), "--precision", "fp32"]) == 0
    expected = translator.translate(read_image(src), precision="fp32")
    result = read_image(out)
    assert result.dtype == np.uint8 and result.shape == rgb.shape
    np.testing.assert_array_equal(result, expected)
    assert f"translated 1 of 1 image into {out}" in capsys.readouterr().err


def test_translate_a_folder_keeps_structure_shape_and_dtype(tmp_path, capsys, model, translator, rgb):
    src = tmp_path / "in"
    rgb16 = rgb.astype(np.uint16) * 257 + 3  # uses the low byte too
    write_image(src / "a.png", rgb)
    write_image(src / "sub" / "b.tif", rgb16)
    write_image(src / "sub" / "deeper" / "c.jpg", rgb)
    write_image(src / "grey.png", rgb[..., 0])
    out = tmp_path / "out"
    code = main(["translate", str(model), str(src), "-o", str(out), "--precision", "fp32", "--suffix", "_zebra"])
    assert code == 0, capsys.readouterr().err

    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["a_zebra.png", "grey_zebra.png", "sub/b_zebra.tif", "sub/deeper/c_zebra.jpg"]
    for name, like in [("a_zebra.png", rgb), ("sub/b_zebra.tif", rgb16), ("sub/deeper/c_zebra.jpg", rgb)]:
        result = read_image(out / name)
        assert result.shape == like.shape and result.dtype == like.dtype, name
    # 16-bit stays 16-bit, with the values the SDK computes.
    expected = translator.translate(rgb16, precision="fp32")
    np.testing.assert_array_equal(read_image(out / "sub" / "b_zebra.tif"), expected)
    # A grey input into an RGB model comes out RGB.
    assert read_image(out / "grey_zebra.png").shape == (H, W, 3)
    assert f"translated 4 of 4 images into {out}" in capsys.readouterr().err


def test_direction_b2a_uses_the_other_generator(tmp_path, model, translator, rgb):
    src = write_image(tmp_path / "zebra.png", rgb)
    options = ["--direction", "b2a", "--precision", "fp32", "--tile", "16", "--overlap", "4", "--batch-size", "2"]
    assert main(["translate", str(model), str(src), "-o", str(tmp_path / "horse.png"), *options]) == 0
    expected = translator.translate(rgb, "b2a", precision="fp32", tile_size=16, overlap=4, batch_size=2)
    np.testing.assert_array_equal(read_image(tmp_path / "horse.png"), expected)


def test_a_bad_file_is_reported_and_the_batch_goes_on(tmp_path, capsys, model, rgb):
    src = tmp_path / "in"
    write_image(src / "good.png", rgb)
    (src / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    write_image(src / "grey16.png", (rgb[..., 0].astype(np.uint16) * 257))  # RGB uint16 result: PNG cannot hold it
    write_image(src / "z_last.tif", rgb)
    out = tmp_path / "out"
    assert main(["translate", str(model), str(src), "-o", str(out), "--precision", "fp32"]) == 2
    err = capsys.readouterr().err
    errors = _error_lines(err)
    assert len(errors) == 2, err
    assert errors[0].startswith(f"cyclegan: error: {src / 'corrupt.png'}: cannot read")
    assert errors[1].startswith(f"cyclegan: error: {src / 'grey16.png'}: cannot write {out / 'grey16.png'}")
    assert ".tif" in errors[1]
    assert "Traceback" not in err
    assert f"translated 2 of 4 images into {out}" in err
    assert (out / "good.png").is_file() and (out / "z_last.tif").is_file()
    assert not (out / "corrupt.png").exists() and not (out / "grey16.png").exists()


def test_never_overwrites_an_input(tmp_path, capsys, model, rgb):
    src = write_image(tmp_path / "a.png", rgb)
    before = src.read_bytes()
    assert main(["translate", str(model), str(src), "-o", str(src)]) == 2
    assert main(["translate", str(model), str(tmp_path), "-o", str(tmp_path)]) == 2
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 2 and all("would overwrite the input" in e for e in errors)
    assert src.read_bytes() == before
    # With a name suffix the same folder is fine.
    assert main(["translate", str(model), str(tmp_path), "-o", str(tmp_path), "--suffix", "_out"]) == 0
    assert (tmp_path / "a_out.png").is_file() and src.read_bytes() == before


def test_several_inputs_need_an_output_folder(tmp_path, capsys, model, rgb):
    a = write_image(tmp_path / "a.png", rgb)
    b = write_image(tmp_path / "b.png", rgb)
    assert main(["translate", str(model), str(a), str(b), "-o", str(tmp_path / "out.png")]) == 2
    assert "give a folder" in capsys.readouterr().err


def test_unusable_settings_fail_once_before_any_file(tmp_path, capsys, model, rgb):
    src = write_image(tmp_path / "a.png", rgb)
    out = str(tmp_path / "o")
    assert main(["translate", str(model), str(src), "-o", out, "--device", "cpu", "--precision", "fp16"]) == 2
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "fp16" in errors[0]
    assert main(["translate", str(model), str(tmp_path / "*.jpg"), "-o", out]) == 2
    assert "pattern matches no image files" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_interrupt_exits_130(tmp_path, capsys, monkeypatch, model, rgb):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Translator, "translate", interrupted)
    src = write_image(tmp_path / "a.png", rgb)
    assert main(["translate", str(model), str(src), "-o", str(tmp_path / "o.png")]) == 130
    assert "Traceback" not in capsys.readouterr().err


# ------------------------------------------------------------------------- info
def test_info_describes_the_model(capsys, model):
    assert main(["info", str(model)]) == 0
    out = capsys.readouterr().out
    assert "horse" in out and "zebra" in out
    assert "a2b (horse -> zebra), b2a (zebra -> horse)" in out
    assert "ngf=4" in out and "n_blocks=1" in out and "float32" in out and "random" in out


def test_info_json_is_the_metadata(capsys, model):
    assert main(["info", str(model), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["domains"]["a"]["name"] == "horse" and doc["domains"]["b"]["name"] == "zebra"
    assert doc["generator"]["ngf"] == 4


def test_info_accepts_a_model_folder(tmp_path, capsys, translator):
    translator.save_pretrained(tmp_path / "horse2zebra")
    assert main(["info", str(tmp_path / "horse2zebra")]) == 0
    assert "horse" in capsys.readouterr().out


# ------------------------------------------------------------- import-reference
def test_import_reference_makes_a_usable_model(tmp_path, capsys, rgb):
    config = GeneratorConfig(ngf=4, n_blocks=6)
    torch.manual_seed(0)
    g_a = build_generator(config).state_dict()
    torch.save({f"module.{k}": v for k, v in g_a.items()}, tmp_path / "latest_net_G_A.pth")  # a DataParallel save
    torch.save(build_generator(config).state_dict(), tmp_path / "latest_net_G_B.pth")
    out = tmp_path / "h2z.safetensors"
    code = main(["import-reference", str(tmp_path / "latest_net_G_A.pth"), str(tmp_path / "latest_net_G_B.pth"),
                 "-o", str(out), "--blocks", "6", "--domains", "horse", "zebra", "--fp16"])
    assert code == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "a2b (horse -> zebra), b2a (zebra -> horse)" in printed

    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "n_blocks=6" in info and "ngf=4" in info and "float16" in info and "reference" in info
    meta = read_metadata(out)
    assert (meta.generator.n_blocks, meta.generator.ngf) == (6, 4)

    # The imported weights are the checkpoint's (within float16 rounding).
    loaded = Translator.load(out)
    for key, value in g_a.items():
        torch.testing.assert_close(loaded.generator("a2b").state_dict()[key], value, atol=1e-3, rtol=1e-3)
    src = write_image(tmp_path / "horse.png", rgb)
    assert main(["translate", str(out), str(src), "-o", str(tmp_path / "zebra.png")]) == 0


def test_import_reference_with_a_wrong_override_fails_cleanly(tmp_path, capsys):
    torch.save(build_generator(GeneratorConfig(ngf=4, n_blocks=6)).state_dict(), tmp_path / "g.pth")
    out = tmp_path / "m.safetensors"
    assert main(["import-reference", str(tmp_path / "g.pth"), "-o", str(out), "--blocks", "9"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "g.pth" in err and "n_blocks=9" in err
    assert not out.exists()


# ----------------------------------------------------------------- bad models
@pytest.mark.parametrize("command", [["info"], ["translate", "{model}", "x.png", "-o", "out"]])
def test_missing_model_is_one_line_and_exit_2(tmp_path, capsys, command):
    missing = str(tmp_path / "missing.safetensors")
    args = [missing if part == "{model}" else part for part in command]
    if args == ["info"]:
        args.append(missing)
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == f"cyclegan: error: {missing}: {NO_MODEL}"


def test_not_a_model_file(tmp_path, capsys):
    (tmp_path / "x.safetensors").write_bytes(b"\x00" * 4)
    assert main(["info", str(tmp_path / "x.safetensors")]) == 2
    assert _error_lines(capsys.readouterr().err) == [
        f"cyclegan: error: {tmp_path / 'x.safetensors'}: not a safetensors file (4 bytes, too short for a header)"
    ]


def test_console_entry_point_has_no_traceback(tmp_path, rgb):
    src = write_image(tmp_path / "a.png", rgb)
    missing = tmp_path / "nope.safetensors"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(
        [sys.executable, "-m", "cyclegan_sdk", "translate", str(missing), str(src), "-o", str(tmp_path / "o")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"cyclegan: error: {missing}: {NO_MODEL}"]


def test_version_and_usage(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"cyclegan {__version__}"
    assert main([]) == 2  # a command is required
    assert main(["translate", "m", "x.png", "-o", "o", "--tile", "-1"]) == 2
    assert "must be >= 0" in capsys.readouterr().err


def test_format_option_writes_another_file_type(tmp_path, capsys, model, rgb):
    src = tmp_path / "in"
    write_image(src / "grey16.png", rgb[..., 0].astype(np.uint16) * 257)  # uint16 RGB result: needs TIFF
    out = tmp_path / "out"
    assert main(["translate", str(model), str(src), "-o", str(out), "--format", "tif"]) == 0, capsys.readouterr().err
    result = read_image(out / "grey16.tif")
    assert result.dtype == np.uint16 and result.shape == (H, W, 3)
