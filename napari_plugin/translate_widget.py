"""Layers ▸ Filter ▸ CycleGAN ▸ Translate layer…: translate the selected image layers with a model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, Container, Label, PushButton, Select, SpinBox
from napari.utils.notifications import show_error

from cyclegan_sdk.precision import PRECISIONS
from cyclegan_sdk.translator import DEFAULT_OVERLAP

from ._common import device_choices, image_layer_choices, one_line
from ._layers import OUTPUT_KEY, LayerError, job_from_layer
from ._model_picker import ModelPicker
from ._translation import TranslationRun

if TYPE_CHECKING:
    import napari

__all__ = ["TranslateWidget"]


class TranslateWidget(Container):
    """Translate image layers (2-D, RGB/RGBA, stacks; 8/16-bit or float; lazy and multiscale kept lazy).

    Each output is a new layer named ``"<layer> (<A> → <B>)"`` on top of its
    input (same scale, translate, rotate, shear, affine and units); running
    again replaces that layer instead of adding a copy.

    Args:
        viewer: the napari viewer.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        self.picker = ModelPicker()
        self._layers = Select(label="Layers", choices=self._layer_choices,
                              tooltip="image layers to translate (several at once)")
        self._advanced = CheckBox(text="Advanced settings", value=False)
        self._tile = SpinBox(label="Tile size", value=0, min=0, max=16384, step=32,
                             tooltip="tile edge in pixels; 0: automatic (whole image up to 1024², else 512 tiles)")
        self._overlap = SpinBox(label="Overlap", value=DEFAULT_OVERLAP, min=0, max=2048, step=8,
                                tooltip="overlap of neighbouring tiles, blended smoothly")
        self._device = ComboBox(label="Device", choices=device_choices(), value="auto")
        self._precision = ComboBox(label="Precision", choices=list(PRECISIONS), value="auto",
                                   tooltip="auto: bf16 where the hardware is fast at it, else fp32")
        self._settings = Container(widgets=[self._tile, self._overlap, self._device, self._precision], labels=True,
                                   visible=False)
        self._run = PushButton(text="Translate")
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._status = Label(value="")
        super().__init__(widgets=[self.picker, self._layers, self._advanced, self._settings,
                                  Container(widgets=[self._run, self._cancel], layout="horizontal", labels=False),
                                  self._status], labels=True)
        self.current: TranslationRun | None = None
        self._advanced.changed.connect(lambda on: setattr(self._settings, "visible", on))
        self._run.changed.connect(self.run)
        self._cancel.changed.connect(self.cancel)
        self.picker._model.changed.connect(self._apply_model_defaults)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.moved):
            event.connect(self._refresh_layers)
        viewer.layers.selection.events.changed.connect(self._follow_selection)
        self._follow_selection()
        self._apply_model_defaults()

    # ----------------------------------------------------------------- layers
    def _layer_choices(self, _widget: object = None) -> list[tuple[str, Any]]:
        return image_layer_choices(self._viewer)

    def _refresh_layers(self, _event: object = None) -> None:
        chosen = [layer for layer in self._layers.value if layer in self._viewer.layers]
        self._layers.reset_choices()
        self._layers.value = [layer for layer in chosen if layer in self._layers.choices]

    def _follow_selection(self, _event: object = None) -> None:
        """Preselect the image layers selected in the layer list (not the outputs napari selects as they come)."""
        self._layers.reset_choices()
        picked = [layer for layer in self._viewer.layers.selection
                  if layer in self._layers.choices and OUTPUT_KEY not in layer.metadata]
        if picked:
            self._layers.value = picked

    def _apply_model_defaults(self, _value: object = None) -> None:
        entry = self.picker.entry
        if entry is None:
            return
        tile, overlap = entry.inference.get("tile_size"), entry.inference.get("overlap")
        self._tile.value = tile or 0
        self._overlap.value = DEFAULT_OVERLAP if overlap is None else overlap

    # ----------------------------------------------------------------- running
    @property
    def options(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`Translator.translate` from the Advanced settings."""
        return {
            "tile_size": self._tile.value or None,
            "overlap": self._overlap.value,
            "device": None if self._device.value == "auto" else self._device.value,
            "precision": self._precision.value,
        }

    def run(self, _value: object = None) -> TranslationRun | None:
        """Translate the chosen layers on a worker thread; returns the run (``None`` if nothing could start)."""
        entry, direction = self.picker.entry, self.picker.direction
        if entry is None or direction is None:
            show_error("CycleGAN: choose a model first (a preset, a model file, a Hub id or a trained model)")
            return None
        layers = list(self._layers.value)
        if not layers:
            show_error("CycleGAN: no image layer chosen: open or select an image layer to translate")
            return None
        try:
            jobs = [job_from_layer(layer) for layer in layers]
        except LayerError as exc:
            show_error(f"CycleGAN: {one_line(exc)}")
            return None
        self._set_running(True)
        self._status.value = f"translating {len(jobs)} layer(s)…"
        self.current = TranslationRun(self._viewer, entry, direction, jobs, self.options, on_finish=self._finished)
        return self.current.start()

    def cancel(self, _value: object = None) -> None:
        if self.current is not None:
            self.current.cancel()
            self._status.value = "cancelling…"

    def _finished(self, outputs: list[Any]) -> None:
        if self.native is None or _deleted(self.native):  # the widget was closed during the run
            return
        self._set_running(False)
        run = self.current
        if run is not None and run.error:
            self._status.value = f"failed: {run.error}"
        else:
            self._status.value = ", ".join(layer.name for layer in outputs) if outputs else "nothing translated"

    def _set_running(self, running: bool) -> None:
        self._run.enabled = not running
        self._cancel.enabled = running


def _deleted(widget: Any) -> bool:
    """Whether Qt has already destroyed ``widget`` (its Python wrapper can outlive it)."""
    try:
        widget.objectName()
    except RuntimeError:
        return True
    return False
