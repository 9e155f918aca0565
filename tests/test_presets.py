"""Presets: the format, its validation, community sources (folder, zip, Hub) and their safety."""

import os
import shutil
import stat
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cyclegan_sdk import Trainer, Translator
from cyclegan_sdk import presets as presets_module
from cyclegan_sdk.cli import main
from cyclegan_sdk.files import read_image, write_image
from cyclegan_sdk.metrics import CHECKERBOARD_VISIBLE, checkerboard_score, flat_mask, image_scores, reinhard_transfer
from cyclegan_sdk.networks import GeneratorConfig
from cyclegan_sdk.presets import (
    PresetError,
    PresetWarning,
    install_preset,
    list_presets,
    load_preset,
    remove_preset,
    render_card,
    sha256_file,
)

BUNDLED = ("jewelry-retouch", "mascot-stylize", "photo-to-painting", "stain-transfer")

PRESET_TOML = """\
name = "{name}"
version = "0.1.0"
title = "Tiny test preset"
description = "A preset for tests."
licence = "CC0-1.0"
authors = ["tests"]

[domains.a]
name = "dark"
description = "dark images"
channels = 3

[domains.b]
name = "light"
description = "light images"
channels = 3

[recipe]
augment = "flip"

[recipe.network]
ngf = 4
n_blocks = 1
upsample = "resize"

[recipe.train]
crop_size = 32
load_size = 36

[inference]
direction = "a2b"
tile_size = 0

[weights]
file = "model.safetensors"
sha256 = "{sha}"

[weights.data]
description = "random weights"

[weights.metrics]
command = "none"
heldout = "none"
model = {{ psnr = 1.0 }}

[samples]
files = ["sample.png"]
"""


@pytest.fixture(autouse=True)
def install_dir(tmp_path, monkeypatch):
    """Every test gets its own empty install directory."""
    folder = tmp_path / "installed"
    monkeypatch.setenv("CYCLEGAN_PRESETS_DIR", str(folder))
    return folder


def make_preset(folder: Path, name: str = "tiny-preset", toml: str | None = None) -> Path:
    """A valid preset folder with random tiny weights and a sample image."""
    folder.mkdir(parents=True, exist_ok=True)
    Translator.random(GeneratorConfig(ngf=4, n_blocks=1, upsample="resize"), domains=("dark", "light")).save(
        folder / "model.safetensors")
    write_image(folder / "sample.png", np.full((24, 24, 3), 60, np.uint8))
    text = toml if toml is not None else PRESET_TOML
    (folder / "preset.toml").write_text(text.format(name=name, sha=sha256_file(folder / "model.safetensors")))
    return folder


def edited(folder: Path, old: str, new: str) -> Path:
    path = folder / "preset.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return folder


def zipped(folder: Path, path: Path, extra: list[tuple[zipfile.ZipInfo | str, bytes]] = ()) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for item in sorted(folder.rglob("*")):
            zf.write(item, f"{folder.name}/{item.relative_to(folder)}")
        for info, data in extra:
            zf.writestr(info, data)
    return path


# ----------------------------------------------------------------- bundled
@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_preset_loads_validates_and_gives_its_recipe(name):
    preset = load_preset(name)
    assert preset.name == name and preset.origin == "bundled" and preset.title and preset.description
    assert [d.channels for d in preset.domains] == [3, 3]
    config = preset.train_config()
    assert config.augment == ("dihedral" if name == "stain-transfer" else "flip")
    assert config.upsample in ("resize", "bilinear")  # resize-convolution: no checkerboard
    assert config.domain_names == tuple(d.name for d in preset.domains)
    assert preset.train_config(ngf=8).ngf == 8
    assert preset.inference.direction == "a2b"
    card = render_card(preset)
    assert preset.title in card and ("sha256" in card if preset.has_weights else "recipe" in card)
    if preset.has_weights:
        assert preset.weights_path.stat().st_size < 8_000_000 and preset.samples
        assert sha256_file(preset.weights_path) == preset.weights["sha256"]


def test_list_presets_is_sorted_and_holds_the_bundled_ones():
    names = [p.name for p in list_presets()]
    assert names == sorted(names) and set(BUNDLED) <= set(names)


def test_presets_with_weights_translate_their_sample():
    shipped = [p for p in list_presets() if p.has_weights]
    assert any(p.name == "stain-transfer" for p in shipped)
    for preset in shipped:
        translator = Translator.from_preset(preset.name)
        sample = read_image(preset.samples[0])
        out = translator.translate(sample, preset.inference.direction, tile_size=preset.inference.tile_size)
        assert out.shape == sample.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - sample.astype(int)).mean() > 1.0  # it does translate


WITH_WEIGHTS = [name for name in BUNDLED if load_preset(name).has_weights]
RECIPE_ONLY = [name for name in BUNDLED if name not in WITH_WEIGHTS]


@pytest.mark.parametrize("name", WITH_WEIGHTS)
def test_model_card_scores_are_reproduced_by_their_command(name, capsys):
    """The card's command re-measures the held-out scores of the shipped weights (the retraining is documented)."""
    preset = load_preset(name)
    command = preset.weights["metrics"]["command"].split()
    assert command[:3] == ["cyclegan", "presets", "evaluate"]
    assert main(command[1:]) == 0, capsys.readouterr().err
    assert "reproduced within tolerance" in capsys.readouterr().err
    card = preset.weights["metrics"]
    # the claims a card makes: better than both baselines on colour difference and PSNR, no checkerboard
    assert card["model"]["delta_e"] < card["reinhard"]["delta_e"] and card["model"]["psnr"] > card["reinhard"]["psnr"]
    assert card["model"]["delta_e"] < card["identity"]["delta_e"]
    assert card["model"]["checkerboard_flat"] < CHECKERBOARD_VISIBLE


@pytest.mark.parametrize("name", RECIPE_ONLY)
def test_recipe_only_preset_refuses_to_translate_and_trains(name, photo_small):
    preset = load_preset(name)
    assert "weights" in preset.notes  # the card says why there are none
    with pytest.raises(PresetError, match=f"preset {name} ships no weights"):
        Translator.from_preset(name)
    trainer = Trainer.from_preset(name, ngf=4, ndf=4, n_blocks=1, crop_size=32, load_size=36, precision="fp32")
    trainer.fit([photo_small], [255 - photo_small], steps=1)
    assert trainer.config.augment == "flip" and trainer.translator().domains == tuple(d.name for d in preset.domains)


def test_trainer_from_preset_uses_the_recipe_with_overrides(photo_small):
    trainer = Trainer.from_preset("stain-transfer", ngf=4, ndf=4, n_blocks=1, crop_size=32, load_size=36,
                                  precision="fp32")
    assert trainer.config.augment == "dihedral" and trainer.config.upsample == "bilinear"
    assert trainer.config.domain_names == ("IHC", "HE")
    trainer.fit([photo_small], [255 - photo_small], steps=2)
    translator = trainer.translator()
    assert translator.metadata.source["preset"] == "stain-transfer"
    assert translator.metadata.generator.upsample == "bilinear"


# ---------------------------------------------------------------- the CLI
def test_cli_train_with_preset_and_overrides_then_translate_and_time_limit(tmp_path, capsys, photo_small):
    for k in range(2):
        write_image(tmp_path / "a" / f"{k}.png", photo_small)
        write_image(tmp_path / "b" / f"{k}.png", 255 - photo_small)
    out = tmp_path / "m.safetensors"
    tiny = ["--ngf", "4", "--ndf", "4", "--blocks", "1", "--crop", "32", "--load-size", "36", "--precision", "fp32",
            "--preview-every", "0"]
    assert main(["train", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out), "--preset", "stain-transfer",
                 "--steps", "2", *tiny]) == 0, capsys.readouterr().err
    meta = Translator.load(out).metadata
    assert (meta.domain_a.name, meta.domain_b.name) == ("IHC", "HE") and meta.generator.ngf == 4
    assert meta.training["config"]["augment"] == "dihedral" and meta.generator.upsample == "bilinear"
    assert meta.source["preset"] == "stain-transfer"
    # --minutes stops the run by the clock, with the schedule planned to end there
    timed = tmp_path / "timed.safetensors"
    assert main(["train", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(timed), "--preset", "stain-transfer",
                 "--minutes", "0.05", "--log-every", "1", "--threads", "1", *tiny]) == 0
    training = Translator.load(timed).metadata.training
    assert 1 <= training["steps"] < 1000 and training["seconds"] < 3.0 + 2.0
    capsys.readouterr()


def test_cli_translate_with_preset_and_presets_list_show(tmp_path, capsys):
    sample = load_preset("stain-transfer").samples[0]
    out = tmp_path / "out.png"
    assert main(["translate", "--preset", "stain-transfer", str(sample), "-o", str(out)]) == 0, capsys.readouterr().err
    assert read_image(out).shape == read_image(sample).shape
    capsys.readouterr()
    assert main(["presets", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == sorted(line.split()[0] for line in listed)
    assert any(line.startswith("stain-transfer") and "weights" in line for line in listed)
    assert main(["presets", "show", "stain-transfer"]) == 0
    shown = capsys.readouterr().out
    assert "ΔE2000" in shown and "reinhard" in shown and "IHC" in shown
    assert main(["translate", "--preset", "no-such-preset", str(sample), "-o", str(out)]) == 2
    assert "no-such-preset: no such preset" in capsys.readouterr().err


def test_demo_writes_translation_and_panel(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "demo")]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    files = sorted((tmp_path / "demo").iterdir())
    assert len(files) == 2 and all(f.suffix == ".png" and str(f) in printed for f in files)
    panel = next(f for f in files if "before_after" in f.name)
    translated = next(f for f in files if f != panel)
    h, w = read_image(translated).shape[:2]
    assert read_image(panel).shape[1] > 2 * w and read_image(panel).shape[0] > h


# ------------------------------------------------------- community presets
def test_folder_zip_and_hub_presets_load_the_same(tmp_path):
    folder = make_preset(tmp_path / "src" / "tiny-preset")
    from_folder = load_preset(folder)
    assert from_folder.origin == "folder" and from_folder.has_weights and from_folder.domains[1].name == "light"
    from_zip = load_preset(zipped(folder, tmp_path / "tiny.zip"))
    assert from_zip.origin == "zip" and from_zip.weights["sha256"] == from_folder.weights["sha256"]
    assert Translator.from_preset(tmp_path / "tiny.zip").domains == ("dark", "light")
    # a Hub repo, offline, from a local cache laid out as huggingface_hub lays it out (files link to blobs)
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--lab--tiny-preset"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "blobs").mkdir()
    (repo / "snapshots" / commit).mkdir(parents=True)
    for item in folder.iterdir():
        blob = repo / "blobs" / sha256_file(item)
        shutil.copyfile(item, blob)
        os.symlink(os.path.relpath(blob, repo / "snapshots" / commit), repo / "snapshots" / commit / item.name)
    from_hub = load_preset("lab/tiny-preset", cache_dir=tmp_path / "hub")
    assert from_hub.origin == "hub" and from_hub.source == "lab/tiny-preset" and from_hub.has_weights
    with pytest.raises(PresetError, match="lab/missing: .*not in the local Hub cache"):
        load_preset("lab/missing", cache_dir=tmp_path / "hub")
    installed = install_preset("lab/tiny-preset", cache_dir=tmp_path / "hub")
    assert installed.origin == "installed" and not any(p.is_symlink() for p in installed.folder.iterdir())


def test_install_list_remove_through_the_cli(tmp_path, install_dir, capsys):
    folder = make_preset(tmp_path / "src" / "tiny-preset")
    assert main(["presets", "install", str(zipped(folder, tmp_path / "tiny.zip"))]) == 0, capsys.readouterr().err
    assert (install_dir / "tiny-preset" / "preset.toml").is_file()
    assert "tiny-preset" in [p.name for p in list_presets()]
    assert load_preset("tiny-preset").origin == "installed"
    assert main(["presets", "install", str(folder)]) == 2
    assert "already installed" in capsys.readouterr().err
    assert main(["presets", "install", str(folder), "--replace"]) == 0
    assert main(["presets", "remove", "tiny-preset"]) == 0
    assert not (install_dir / "tiny-preset").exists()
    capsys.readouterr()
    assert main(["presets", "remove", "stain-transfer"]) == 2
    assert "bundled preset" in capsys.readouterr().err
    bundled_copy = shutil.copytree(load_preset("stain-transfer").folder, tmp_path / "copy")
    with pytest.raises(PresetError, match="name of a bundled preset"):
        install_preset(bundled_copy)


def test_a_broken_installed_preset_is_skipped_with_a_warning(tmp_path, install_dir):
    make_preset(install_dir / "good-one", name="good-one")
    edited(make_preset(install_dir / "bad-one", name="bad-one"), 'channels = 3', 'channels = "three"')
    with pytest.warns(PresetWarning, match="skipping installed preset bad-one: .*domains.a.channels"):
        names = [p.name for p in list_presets()]
    assert "good-one" in names and "bad-one" not in names


# ------------------------------------------------------ malformed presets
MALFORMED = [
    ('channels = 3', '', "missing required field 'domains.a.channels'"),
    ('channels = 3', 'channels = "3"', "field 'domains.a.channels' must be an integer, got '3'"),
    ('augment = "flip"', 'augment = "rotate"', "field 'recipe.augment' must be 'flip', 'dihedral' or 'none'"),
    ('direction = "a2b"', 'direction = "up"', "field 'inference.direction' must be 'a2b' or 'b2a'"),
    ('crop_size = 32', 'crop_size = 30', "field 'recipe' is not a valid training config: crop_size must be a multiple"),
    ('crop_size = 32', 'crop_size = "big"', "field 'recipe.train.crop_size' must be an integer"),
    ('crop_size = 32', 'steps_per_hour = 3', "field 'recipe.train.steps_per_hour' is not a training setting"),
    ('version = "0.1.0"', '', "missing required field 'version'"),
    ('file = "model.safetensors"', 'file = "../model.safetensors"', "field 'weights.file' must be a path inside"),
    ('file = "model.safetensors"', 'file = "other.safetensors"', "field 'weights.file': other.safetensors does not exist"),
    ('[weights.metrics]', '[weights.metricz]', "missing required field 'weights.metrics'"),
    ('model = { psnr = 1.0 }', 'model = { psnr = "high" }', "field 'weights.metrics.model.psnr' must be a number"),
    ('files = ["sample.png"]', 'files = ["/etc/passwd"]', "field 'samples.files' must be a path inside"),
    ('title = "Tiny test preset"', 'title = "unterminated', "not valid TOML"),
]


@pytest.mark.parametrize("old,new,message", MALFORMED, ids=[m[2][:40] for m in MALFORMED])
def test_malformed_preset_names_file_and_field(tmp_path, old, new, message):
    folder = edited(make_preset(tmp_path / "p"), old, new)
    with pytest.raises(PresetError) as info:
        load_preset(folder)
    text = str(info.value)
    assert text.startswith(f"{folder / 'preset.toml'}: ") and message in text and "\n" not in text


def test_bad_names_sha256_and_unknown_fields(tmp_path):
    for bad in ("../escape", "Upper", "a/b", ".hidden"):
        folder = make_preset(tmp_path / f"n{abs(hash(bad))}", name=bad)
        with pytest.raises(PresetError, match="field 'name' must be lower-case"):
            load_preset(folder)
    folder = make_preset(tmp_path / "sha")
    with open(folder / "model.safetensors", "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(PresetError, match="field 'weights.sha256' does not match model.safetensors"):
        load_preset(folder)
    folder = edited(make_preset(tmp_path / "unknown"), 'licence = "CC0-1.0"', 'licence = "CC0-1.0"\nhomepage = "x"')
    with pytest.warns(PresetWarning, match="unknown field 'homepage' ignored"):
        assert load_preset(folder).licence == "CC0-1.0"
    link_folder = make_preset(tmp_path / "link")
    (link_folder / "sample.png").unlink()
    os.symlink("/etc/hostname", link_folder / "sample.png")
    with pytest.raises(PresetError, match="sample.png is a link"):
        load_preset(link_folder)
    with pytest.raises(PresetError, match="_install_target|not a valid preset name"):
        remove_preset("../../etc")


def _info(name: str, mode: int | None = None) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    if mode is not None:
        info.external_attr = mode << 16
    return info


def test_malicious_zips_are_refused_each_with_its_reason(tmp_path, monkeypatch):
    folder = make_preset(tmp_path / "tiny-preset")
    cases = {
        "absolute": ([(_info("/etc/evil"), b"x")], "entry '/etc/evil' has an absolute path"),
        "dotdot": ([(_info("tiny-preset/../../evil"), b"x")], "entry 'tiny-preset/../../evil' leaves the preset folder"),
        "symlink": ([(_info("tiny-preset/link", stat.S_IFLNK | 0o777), b"/etc/passwd")],
                    "entry 'tiny-preset/link' is a symbolic link"),
    }
    for label, (extra, message) in cases.items():
        path = zipped(folder, tmp_path / f"{label}.zip", extra)
        with pytest.raises(PresetError, match=message.replace(".", r"\.")):
            load_preset(path)
        with pytest.raises(PresetError):
            install_preset(path)
    monkeypatch.setattr(presets_module, "MAX_ZIP_BYTES", 1000)
    with pytest.raises(PresetError, match="unpacks to more than the limit"):
        load_preset(zipped(folder, tmp_path / "big.zip"))
    monkeypatch.undo()
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as zf:
        zf.writestr("readme.txt", "no preset here")
    with pytest.raises(PresetError, match="no preset.toml at the top of the zip"):
        load_preset(tmp_path / "empty.zip")
    (tmp_path / "fake.zip").write_bytes(b"not a zip at all")
    with pytest.raises(PresetError, match="fake.zip: not a readable zip file"):
        load_preset(tmp_path / "fake.zip")
    assert not list((tmp_path / "installed").glob("*")) if (tmp_path / "installed").exists() else True


def test_time_limited_fit_plans_the_decay_to_the_deadline(photo_small):
    trainer = Trainer(ngf=4, ndf=4, n_blocks=1, crop_size=32, load_size=36, precision="fp32", log_every=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no stray warnings from the time-planned run
        summary = trainer.fit([photo_small], [255 - photo_small], max_seconds=2.0)
    assert summary["steps"] >= 2 and summary["seconds"] < 2.0 + 1.5
    assert trainer.total_steps == trainer.step  # the run is complete
    # the learning rate decayed: by the end of the run it is well below the base rate
    assert trainer.learning_rate(trainer.step - 1) < 0.5 * trainer.config.lr
    with pytest.raises(ValueError, match="max_seconds must be > 0"):
        trainer.fit([photo_small], [photo_small], max_seconds=0)


@pytest.mark.parametrize("kind", ["resnet", "unet"])
def test_bilinear_resize_convolution_generator_saves_loads_and_tiles(tmp_path, photo_small, kind):
    """The recipes' upsampling: same parameters as "resize", through a model file, tiled seamlessly."""
    net = dict(generator=kind, ngf=4, n_blocks=1, num_downs=5)
    nearest = Translator.random(GeneratorConfig(**net, upsample="resize"))
    bilinear = Translator.random(GeneratorConfig(**net, upsample="bilinear"))
    shapes = {k: v.shape for k, v in bilinear.state_dicts()["a2b"].items()}
    assert shapes == {k: v.shape for k, v in nearest.state_dicts()["a2b"].items()}
    bilinear.save(tmp_path / "b.safetensors")
    loaded = Translator.load(tmp_path / "b.safetensors")
    assert loaded.metadata.generator.upsample == "bilinear"
    image = photo_small if kind == "resnet" else np.tile(photo_small, (3, 3, 1))[:256, :384]
    whole = loaded.translate(image, precision="fp32", tile_size=0)
    # A U-Net's five levels see far wider than a ResNet: bigger tiles for the same seam error (reference
    # U-Nets with transposed convolutions do about as well: 0.7 here).
    tiled = loaded.translate(image, precision="fp32", tile_size=64 if kind == "resnet" else 128,
                             overlap=32 if kind == "resnet" else 64)
    assert np.abs(whole.astype(int) - tiled.astype(int)).mean() < (1.0 if kind == "resnet" else 2.5)
    assert not np.array_equal(whole, nearest.translate(image, precision="fp32", tile_size=0))


@pytest.mark.parametrize("name", ["presets", "metrics"])
def test_docstring_examples_of_preset_modules(name):
    import doctest
    import importlib

    module = importlib.import_module(f"cyclegan_sdk.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_metrics_measure_what_they_say(photo_small):
    scores = image_scores(photo_small, photo_small)
    assert scores["delta_e"] == 0 and scores["psnr"] == float("inf") and scores["ssim"] == pytest.approx(1.0)
    # a 2-pixel checkerboard of +-2 grey levels on a flat grey image, as a stride-2 upsampler leaves it
    flat = np.full((64, 64, 3), 128, np.uint8)
    grid = (np.indices((64, 64)).sum(0) % 2 * 4 - 2)[..., None]
    chequered = (flat.astype(int) + grid).astype(np.uint8)
    assert checkerboard_score(flat) == 0 and checkerboard_score(chequered) > 1.5
    assert flat_mask(flat).all() and checkerboard_score(chequered, mask=flat_mask(flat)) > CHECKERBOARD_VISIBLE
    assert checkerboard_score(photo_small) < 1.0  # a real photo's content averages out
    # Reinhard transfer gives the reference's colour statistics
    from skimage.color import rgb2lab

    moved = reinhard_transfer(photo_small, 255 - photo_small)
    assert np.allclose(rgb2lab(moved).reshape(-1, 3).mean(0), rgb2lab(255 - photo_small).reshape(-1, 3).mean(0), atol=2)
