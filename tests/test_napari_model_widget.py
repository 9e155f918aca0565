"""Load preset / model widget: preset cards, installing and removing a community preset, adding model files."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from cyclegan_sdk.presets import list_presets, sha256_file  # noqa: E402
from napari_plugin._models import registry  # noqa: E402
from napari_plugin.model_widget import ModelWidget  # noqa: E402
from napari_plugin.translate_widget import TranslateWidget  # noqa: E402
from napari_support import WAIT_MS, clear_messages, messages, reset_registry, screenshot, tiny_translator  # noqa: E402

PRESET = """\
name = "{name}"
version = "0.1.0"
title = "Tiny test preset"
description = "A randomly initialised model, for testing installs."
licence = "CC0-1.0"
authors = ["tests"]

[domains.a]
name = "Day"
description = "photos by day"
channels = 3

[domains.b]
name = "Night"
description = "photos by night"
channels = 3

[recipe]
augment = "flip"

[inference]
direction = "b2a"
tile_size = 256
overlap = 32

[weights]
file = "model.safetensors"
sha256 = "{sha}"

[weights.data]
description = "none: random weights"

[weights.metrics]
command = "none"
heldout = "none"

[weights.metrics.model]
psnr = 0.0
"""


@pytest.fixture
def community_preset(tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLEGAN_PRESETS_DIR", str(tmp_path / "installed"))
    folder = tmp_path / "day-night"
    folder.mkdir()
    tiny_translator(("Day", "Night")).save(folder / "model.safetensors")
    (folder / "preset.toml").write_text(PRESET.format(name="day-night", sha=sha256_file(folder / "model.safetensors")),
                                        encoding="utf-8")
    reset_registry()
    yield folder
    reset_registry()


def test_install_shows_the_card_and_offers_the_model_everywhere(make_napari_viewer, qtbot, community_preset,
                                                               tmp_path):
    clear_messages()
    viewer = make_napari_viewer()
    widget = ModelWidget(viewer)
    translate = TranslateWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Load preset / model")
    bundled = {p.name for p in list_presets()}
    assert set(widget._preset.choices) == bundled
    assert "stain-transfer" in widget._preset.choices
    widget._preset.value = "stain-transfer"
    assert "IHC" in widget._card.value and not widget._remove.enabled

    widget._source.value = str(community_preset)
    worker = widget.install()
    qtbot.waitUntil(lambda: not worker.is_running and widget._install.enabled, timeout=WAIT_MS)
    assert widget._preset.value == "day-night", messages()
    assert "Tiny test preset" in widget._card.value and widget._remove.enabled
    label = "Tiny test preset (preset day-night)"
    assert label in translate.picker._model.choices
    translate.picker.select(label)
    assert translate.picker.direction == "b2a"  # the preset's inference default
    assert translate._tile.value == 256 and translate._overlap.value == 32
    screenshot(viewer, tmp_path / "presets.png")

    widget.remove()
    assert "day-night" not in widget._preset.choices
    assert label not in translate.picker._model.choices


def test_bad_sources_and_model_files_give_a_message(make_napari_viewer, qtbot, community_preset, tmp_path):
    clear_messages()
    viewer = make_napari_viewer()
    widget = ModelWidget(viewer)
    widget._source.value = str(tmp_path / "nowhere")
    worker = widget.install()
    qtbot.waitUntil(lambda: widget._install.enabled, timeout=WAIT_MS)
    assert worker is not None and any("nowhere" in m for m in messages("error"))

    (community_preset / "model.safetensors").write_bytes(b"tampered")
    widget._source.value = str(community_preset)
    widget.install()
    qtbot.waitUntil(lambda: widget._install.enabled, timeout=WAIT_MS)
    assert any("sha256" in m for m in messages("error"))

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a model")
    widget.picker._file.value = broken
    assert any("broken.safetensors" in m for m in messages("error"))

    good = tiny_translator(("Day", "Night")).save(tmp_path / "good.safetensors")
    widget.picker._file.value = good
    assert widget.picker.entry is not None and widget.picker.entry.domains == ("Day", "Night")
    assert widget.picker._domains.value == "Day ↔ Night"


def test_a_preset_installed_outside_the_viewer_shows_up(make_napari_viewer, community_preset):
    from cyclegan_sdk.presets import install_preset

    viewer = make_napari_viewer()
    widget = ModelWidget(viewer)
    registry.entries()  # the registry has read the presets before the install
    install_preset(community_preset)  # as `cyclegan presets install` in another terminal would
    widget._preset.reset_choices()
    widget._preset.value = "day-night"
    assert widget.picker._model.value == "Tiny test preset (preset day-night)"
