"""Layers ▸ Filter ▸ CycleGAN ▸ Load preset / model…: browse presets, install community ones, add models."""

from __future__ import annotations

from typing import TYPE_CHECKING

from magicgui.widgets import ComboBox, Container, LineEdit, PushButton, TextEdit
from napari.qt.threading import FunctionWorker
from napari.utils.notifications import show_error, show_info

from cyclegan_sdk import presets

from ._common import one_line
from ._model_picker import ModelPicker
from ._models import preset_label, registry

if TYPE_CHECKING:
    import napari

__all__ = ["ModelWidget"]


class ModelWidget(Container):
    """Presets (bundled and installed) with their model cards; install a community preset; add model files.

    A preset that ships weights is a model in every model list. Installing
    (from a folder, a ``.zip`` or a Hub repo id) validates the preset and
    copies it into the user's preset folder, where it stays for later sessions.

    Args:
        viewer: the napari viewer (unused; napari passes it to every widget).
    """

    def __init__(self, viewer: napari.viewer.Viewer | None = None) -> None:
        self._viewer = viewer
        self._listed: dict[str, presets.Preset] = {}  # as read (and verified) for the list, by name
        self._preset = ComboBox(label="Preset", choices=self._preset_choices)
        self._card = TextEdit(label="Model card", value="")
        self._card.native.setReadOnly(True)
        self._card.min_height = 180
        self._source = LineEdit(label="Install from", tooltip="a preset folder, a .zip file, or a Hub repo id")
        self._install = PushButton(text="Install preset")
        self._remove = PushButton(text="Remove installed preset", enabled=False)
        self.picker = ModelPicker()
        super().__init__(widgets=[self._preset, self._card, self._source,
                                  Container(widgets=[self._install, self._remove], layout="horizontal",
                                            labels=False),
                                  self.picker], labels=True)
        self._worker: FunctionWorker | None = None
        self._preset.changed.connect(self._show_card)
        self._install.changed.connect(self.install)
        self._remove.changed.connect(self.remove)
        self._show_card()

    def _preset_choices(self, _widget: object = None) -> list[tuple[str, str]]:
        self._listed = {p.name: p for p in presets.list_presets()}
        return [(f"{p.title} ({p.name}{'' if p.has_weights else ', recipe only'})", p.name)
                for p in self._listed.values()]

    def _show_card(self, _value: object = None) -> None:
        name = self._preset.value
        if name is None:
            self._card.value = "no preset selected"
            self._remove.enabled = False
            return
        preset = self._listed.get(name)
        if preset is None:  # listed by an earlier reading; the folder has changed since
            self._card.value = f"preset {name!r} is no longer installed"
            self._remove.enabled = False
            return
        self._card.native.setMarkdown(presets.render_card(preset))  # the card is Markdown
        self._remove.enabled = preset.origin == "installed"
        if preset.has_weights:
            label = preset_label(preset)
            if label not in self.picker._model.choices:  # installed meanwhile, by the CLI or another process
                registry.refresh_presets()
            if label in self.picker._model.choices:
                self.picker.select(label)

    def install(self, _value: object = None) -> FunctionWorker | None:
        """Install the preset named in "Install from" on a worker thread (a Hub download must not freeze)."""
        source = self._source.value.strip()
        if not source:
            show_error("CycleGAN: give a preset folder, a .zip file or a Hub repo id to install from")
            return None
        self._install.enabled = False
        worker = FunctionWorker(presets.install_preset, source, replace=True)
        worker.returned.connect(self._installed)
        worker.errored.connect(lambda exc: show_error(f"CycleGAN: {one_line(exc)}"))
        worker.finished.connect(lambda: setattr(self._install, "enabled", True))
        self._worker = worker
        worker.start()
        return worker

    def _installed(self, preset: presets.Preset) -> None:
        registry.refresh_presets()  # its weights, if any, are now a model in every list
        self._preset.reset_choices()
        self._preset.value = preset.name
        show_info(f"CycleGAN: installed preset {preset.name!r} ({preset.title})")

    def remove(self, _value: object = None) -> None:
        """Remove the selected installed preset from the user's preset folder."""
        name = self._preset.value
        if name is None:
            return
        try:
            presets.remove_preset(name)
        except (presets.PresetError, OSError) as exc:
            show_error(f"CycleGAN: {one_line(exc)}")
            return
        self._preset.reset_choices()
        registry.refresh_presets()
        show_info(f"CycleGAN: removed preset {name!r}")
