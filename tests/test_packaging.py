"""The built wheel (not only the editable checkout) carries the napari manifest and the bundled presets."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: hatchling comes from the test environment, so nothing is downloaded.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, timeout=600)
    (path,) = out.glob("cyclegan_sdk-*.whl")
    return path


def test_wheel_contains_manifest_presets_and_entry_points(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "napari_plugin/napari.yaml" in names
    manifest = zipfile.ZipFile(wheel).read("napari_plugin/napari.yaml")
    assert manifest == (ROOT / "napari.yaml").read_bytes()  # the file itself, not a link
    bundled = sorted(p.name for p in (ROOT / "presets").iterdir() if (p / "preset.toml").is_file())
    assert bundled and all(f"cyclegan_sdk/_presets/{name}/preset.toml" in names for name in bundled)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[napari.manifest]" in text and "cyclegan-sdk = napari_plugin:napari.yaml" in text
    assert "cyclegan = cyclegan_sdk.cli:main" in text


def test_installed_wheel_finds_its_manifest_and_presets(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, timeout=600)
    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "from importlib import metadata\n"
            "from pathlib import Path\n"
            "dist = metadata.distribution('cyclegan-sdk')\n"
            "assert Path(str(dist.locate_file(''))).resolve() == Path(sys.argv[1]).resolve(), dist.locate_file('')\n"
            "from npe2 import PluginManifest\n"
            "mf = PluginManifest.from_distribution('cyclegan-sdk')\n"
            "import cyclegan_sdk.presets as p\n"
            "assert Path(p.__file__).is_relative_to(Path(sys.argv[1]).resolve()), p.__file__\n"
            "print(mf.display_name, p.bundled_presets_dir().name, ' '.join(x.name for x in p.list_presets()))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    display, folder, names = result.stdout.split(maxsplit=2)
    assert display == "CycleGAN" and folder == "_presets"
    assert "stain-transfer" in names.split()
