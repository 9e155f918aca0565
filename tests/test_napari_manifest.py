"""The npe2 manifest: valid, importable, menus napari accepts, every widget reachable from its menu."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("napari")
pytest.importorskip("npe2")

from npe2 import PluginManifest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = yaml.safe_load((ROOT / "napari.yaml").read_text())


def test_npe2_validate_with_imports_passes():
    npe2 = Path(sys.executable).with_name("npe2")
    result = subprocess.run([str(npe2), "validate", "cyclegan-sdk", "--imports"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_the_installed_manifest_is_the_one_at_the_repository_root():
    installed = PluginManifest.from_distribution("cyclegan-sdk")
    assert installed.name == "cyclegan-sdk"
    assert installed.model_dump(exclude={"package_metadata"}) == \
        PluginManifest.from_file(ROOT / "napari.yaml").model_dump(exclude={"package_metadata"})


def test_menus_use_contributable_ids_and_existing_commands():
    from napari._app_model.constants import MenuId

    contributions = MANIFEST["contributions"]
    commands = {c["id"] for c in contributions["commands"]}
    submenus = {s["id"] for s in contributions["submenus"]}
    contributable = {str(m) for m in MenuId.contributables()}
    for menu_id, items in contributions["menus"].items():
        if menu_id.startswith("napari/"):
            assert menu_id in contributable, f"{menu_id} is not a menu plugins may contribute to"
        else:
            assert menu_id in submenus, f"menu {menu_id} is not a submenu of this manifest"
        for item in items:
            if "command" in item:
                assert item["command"] in commands, f"menu {menu_id} names a missing command {item['command']}"
            else:
                assert item["submenu"] in submenus, f"menu {menu_id} names a missing submenu {item['submenu']}"
    for widget in contributions["widgets"]:
        assert widget["command"] in commands
    for sample in contributions["sample_data"]:
        assert sample["command"] in commands
    assert {"command": "cyclegan-sdk.translate_widget", "group": "1_widgets"} in contributions["menus"]["cyclegan-sdk.menu"]
    assert contributions["menus"]["napari/layers/filter"] == [{"submenu": "cyclegan-sdk.menu"}]


def test_sdk_and_plugin_package_import_neither_qt_nor_napari():
    code = ("import sys, cyclegan_sdk, napari_plugin\n"
            "from cyclegan_sdk import cli, translator, trainer, presets, lazy, data, networks\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('napari', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'qtpy', 'magicgui', 'superqt', 'vispy'))\n"
            "print(bad); assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_widget_opens_from_the_cyclegan_menu(make_napari_viewer, qtbot, tmp_path):
    from napari._app_model import get_app_model

    from napari_support import screenshot

    viewer = make_napari_viewer()
    app = get_app_model()
    filter_items = app.menus.get_menu("napari/layers/filter")
    submenu = [item for item in filter_items if getattr(item, "submenu", None) == "cyclegan-sdk.menu"]
    assert submenu and submenu[0].title == "CycleGAN"
    entries = {item.command.id: item.command.title for item in app.menus.get_menu("cyclegan-sdk.menu")}
    assert entries == {"cyclegan-sdk.translate_widget": "Translate layer… (CycleGAN)",
                       "cyclegan-sdk.train_widget": "Train on two layers… (CycleGAN)",
                       "cyclegan-sdk.model_widget": "Load preset / model… (CycleGAN)",
                       "cyclegan-sdk.translate_active_layer": "Translate active layer (CycleGAN)"}
    # the widgets are also under Plugins, the samples under File > Open Sample
    plugins = {item.command.id for item in app.menus.get_menu("napari/plugins/cyclegan-sdk")}
    assert plugins == {"cyclegan-sdk.translate_widget", "cyclegan-sdk.train_widget", "cyclegan-sdk.model_widget"}
    samples = {item.command.id for item in app.menus.get_menu("napari/file/samples/cyclegan-sdk")}
    assert samples == {"cyclegan-sdk.ihc", "cyclegan-sdk.unpaired"}
    for command in ("cyclegan-sdk.translate_widget", "cyclegan-sdk.train_widget", "cyclegan-sdk.model_widget"):
        app.commands.execute_command(command).result()
    docked = {name for name in viewer.window._wrapped_dock_widgets}
    assert {"Translate layer… (CycleGAN)", "Train on two layers… (CycleGAN)",
            "Load preset / model… (CycleGAN)"} <= docked, docked
    screenshot(viewer, tmp_path / "menus.png")


def test_sample_data_opens_from_napari(make_napari_viewer):
    import numpy as np

    viewer = make_napari_viewer()
    viewer.open_sample("cyclegan-sdk", "ihc")
    field = viewer.layers["IHC field"]
    assert field.rgb and field.data.shape == (512, 512, 3) and field.data.dtype == np.uint8
    viewer.open_sample("cyclegan-sdk", "unpaired")
    a, b = viewer.layers["IHC tiles (domain A)"], viewer.layers["H&E-like tiles (domain B)"]
    assert a.data.shape == b.data.shape == (8, 128, 128, 3)
    # unpaired: the stacks come from different halves of the field, re-stained from IHC to H&E-like
    assert not any(np.array_equal(x, y) for x in a.data for y in b.data)
    mean_a, mean_b = a.data.reshape(-1, 3).mean(0), b.data.reshape(-1, 3).mean(0)
    # brown DAB (red over green, little blue) becomes pink eosin: more red over green, and much more blue
    assert mean_b[0] - mean_b[1] > mean_a[0] - mean_a[1] and mean_b[2] > mean_a[2] + 50
