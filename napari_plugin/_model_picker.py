"""Choosing a model and a direction: presets, model files, Hub ids and models trained in this session."""

from __future__ import annotations

from magicgui.widgets import ComboBox, Container, FileEdit, Label, LineEdit, PushButton
from napari.qt.threading import FunctionWorker
from napari.utils.notifications import show_error

from cyclegan_sdk.translator import resolve_model_path

from ._common import one_line
from ._models import ModelEntry, ModelRegistry, registry

__all__ = ["ModelPicker"]


class ModelPicker(Container):
    """A model list (with the model's domains) and a direction chosen by domain name.

    The list holds every bundled or installed preset that ships weights and
    every model added in this session: files opened here, Hub ids fetched
    here, models trained in the Train widget. It follows the session
    registry, so a model added anywhere appears in every picker at once.

    Args:
        models: the registry to follow (the session's by default).
    """

    def __init__(self, models: ModelRegistry = registry) -> None:
        self._models = models
        self._model = ComboBox(label="Model", choices=self._model_choices, nullable=True,
                               tooltip="presets with weights, model files and Hub models added here, "
                               "and models trained in this session")
        self._domains = Label(label="Domains", value="")
        self._direction = ComboBox(label="Direction", choices=self._direction_choices)
        self._file = FileEdit(label="Model file", mode="r", filter="*.safetensors",
                              tooltip="a .safetensors model file (added to the model list)")
        self._hub = LineEdit(label="Hub repo id", tooltip="'owner/name' on the Hugging Face Hub")
        self._add_hub = PushButton(text="Fetch from Hub")
        super().__init__(widgets=[self._model, self._domains, self._direction, self._file, self._hub,
                                  self._add_hub], labels=True)
        self._hub_worker: FunctionWorker | None = None
        self._model.changed.connect(self._on_model)
        self._file.changed.connect(self._on_file)
        self._add_hub.changed.connect(self._on_hub)
        models.changed.connect(self._on_registry)
        # The registry outlives the widgets: a closed viewer's picker must stop listening.
        self.native.destroyed.connect(lambda *_: models.changed.disconnect(self._on_registry, missing_ok=True))
        models_listed = [c for c in self._model.choices if c is not None]
        if self._model.value is None and models_listed:
            self._model.value = models_listed[0]
        self._on_model()

    # ----------------------------------------------------------------- state
    @property
    def entry(self) -> ModelEntry | None:
        label = self._model.value
        if label is None:
            return None
        try:
            return self._models.get(label)
        except KeyError:
            return None

    @property
    def direction(self) -> str | None:
        return self._direction.value

    def select(self, label: str, direction: str | None = None) -> None:
        """Select a model (by its label) and optionally a direction."""
        self._model.reset_choices()
        if label not in self._model.choices:
            raise KeyError(f"no model {label!r} in this session")
        self._model.value = label
        if direction is not None:
            self._direction.value = direction

    # ----------------------------------------------------------------- choices
    def _model_choices(self, _widget: object = None) -> list[str]:
        try:
            return self._models.labels()
        except Exception as exc:  # noqa: BLE001 - a broken preset folder must not break the widget
            show_error(f"CycleGAN: listing models failed: {one_line(exc)}")
            return []

    def _direction_choices(self, _widget: object = None) -> list[tuple[str, str]]:
        entry = self.entry if hasattr(self, "_model") else None
        return entry.direction_choices() if entry is not None else []

    # ----------------------------------------------------------------- events
    def _on_registry(self) -> None:
        current = self._model.value
        self._model.reset_choices()
        if current in self._model.choices:
            self._model.value = current
        self._on_model()

    def _on_model(self, _value: object = None) -> None:
        entry = self.entry
        self._direction.reset_choices()
        if entry is None:
            self._domains.value = "no model selected"
            return
        a, b = entry.domains
        self._domains.value = f"{a} ↔ {b}"
        self._domains.tooltip = entry.description or entry.source
        default = entry.inference.get("direction")
        if default in entry.directions:
            self._direction.value = default

    def _on_file(self, path: object) -> None:
        if not path or not str(path).strip() or str(path) == ".":
            return
        try:
            entry = self._models.add_file(str(path))
        except (OSError, ValueError) as exc:
            show_error(f"CycleGAN: {one_line(exc)}")
            return
        self.select(entry.label)

    def _on_hub(self, _value: object = None) -> None:
        repo_id = self._hub.value.strip()
        if not repo_id:
            show_error("CycleGAN: type a Hub repo id 'owner/name' first")
            return
        self._add_hub.enabled = False
        # A download must not freeze the window (HF_HUB_OFFLINE=1 and the cache are honoured).
        worker = FunctionWorker(resolve_model_path, repo_id)
        worker.returned.connect(lambda path: self._add_fetched(repo_id, path))
        worker.errored.connect(lambda exc: show_error(f"CycleGAN: {repo_id}: {one_line(exc)}"))
        worker.finished.connect(lambda: setattr(self._add_hub, "enabled", True))
        self._hub_worker = worker
        worker.start()

    def _add_fetched(self, repo_id: str, path: object) -> None:
        try:
            entry = self._models.add_hub(repo_id, path)
        except (OSError, ValueError) as exc:  # fetched, but not a model file this SDK reads
            show_error(f"CycleGAN: {repo_id}: {one_line(exc)}")
            return
        self.select(entry.label)
