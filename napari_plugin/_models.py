"""The models a napari session can translate with: bundled and installed presets, files, Hub ids, trained ones.

One registry per process, shared by the Translate, Train and Load widgets,
so that a model trained or loaded in one widget is offered in the others at
once, and so that "Translate active layer" can reuse the last model and
direction used.
"""

from __future__ import annotations

import dataclasses
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from psygnal import Signal

from cyclegan_sdk import Translator
from cyclegan_sdk.modelfile import describe_model_file
from cyclegan_sdk.translator import resolve_model_path

__all__ = ["ModelEntry", "ModelRegistry", "arrow", "preset_label", "registry"]

EntryKind = Literal["preset", "file", "hub", "trained"]


def preset_label(preset) -> str:  # noqa: ANN001 - a cyclegan_sdk.presets.Preset
    """How a preset's model is listed: its title and name."""
    return f"{preset.title} (preset {preset.name})"


def arrow(domains: tuple[str, str], direction: str) -> str:
    """``"A → B"`` for ``a2b``, ``"B → A"`` for ``b2a``."""
    a, b = domains if direction == "a2b" else domains[::-1]
    return f"{a} → {b}"


@dataclass(eq=False)
class ModelEntry:
    """A model the widgets can offer: its label, where it comes from, its domains and directions.

    The weights are read on first use (:meth:`translator`), not when the
    entry is listed: listing presets must stay instant.
    """

    label: str
    kind: EntryKind
    source: str
    domains: tuple[str, str]
    directions: tuple[str, ...]
    path: Path | None = None
    description: str = ""
    inference: dict = field(default_factory=dict)
    _translator: Translator | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_file(cls, path: str | Path, kind: EntryKind = "file", label: str | None = None,
                  source: str | None = None, **extra) -> ModelEntry:
        """An entry for a model file, described from its header alone."""
        path = Path(path)
        metadata, directions, _ = describe_model_file(path)
        domains = (metadata.domain_a.name, metadata.domain_b.name)
        return cls(label or f"{path.name} ({domains[0]} ↔ {domains[1]})", kind, source or str(path), domains,
                   tuple(directions), path=path, **extra)

    @classmethod
    def from_translator(cls, translator: Translator, label: str, kind: EntryKind = "trained",
                        source: str = "") -> ModelEntry:
        return cls(label, kind, source, translator.domains, tuple(translator.directions), _translator=translator)

    def translator(self) -> Translator:
        """The loaded model (read from disk once; safe to call from worker threads)."""
        with self._lock:
            if self._translator is None:
                if self.path is None:
                    raise ValueError(f"model {self.label!r} has no weights to load")
                self._translator = Translator.load(self.path)
            return self._translator

    def direction_choices(self) -> list[tuple[str, str]]:
        """``[("A → B", "a2b"), ...]`` for the directions this model has."""
        return [(arrow(self.domains, d), d) for d in self.directions]


class ModelRegistry:
    """Models known to this session, by label, in the order they were added; presets listed on demand."""

    changed = Signal()

    def __init__(self) -> None:
        self._entries: dict[str, ModelEntry] = {}
        self._presets: list[ModelEntry] | None = None  # read on first use, again after refresh_presets()
        self.last_used: tuple[str, str, dict] | None = None  # (label, direction, translate options)

    def entries(self) -> list[ModelEntry]:
        """Presets that ship weights first (bundled and installed), then files, Hub models and trained ones."""
        if self._presets is None:
            self._presets = self._preset_entries()
        return [*self._presets, *self._entries.values()]

    def refresh_presets(self) -> None:
        """Read the preset folders again (after an install or a removal) and tell the widgets."""
        self._presets = None
        self.changed.emit()

    def labels(self) -> list[str]:
        return [e.label for e in self.entries()]

    def get(self, label: str) -> ModelEntry:
        for entry in self.entries():
            if entry.label == label:
                return entry
        raise KeyError(f"no model {label!r} in this session")

    def add(self, entry: ModelEntry) -> ModelEntry:
        """Add (or replace, by label) an entry and tell the widgets."""
        self._entries[entry.label] = entry
        self.changed.emit()
        return entry

    def add_file(self, path: str | Path) -> ModelEntry:
        """Add a model file; raises :class:`~cyclegan_sdk.modelfile.ModelFileError` naming what is wrong."""
        return self.add(ModelEntry.from_file(path))

    def add_hub(self, repo_id: str, path: str | Path | None = None) -> ModelEntry:
        """Add a Hub model; ``path`` is its file when already fetched (off the GUI thread), else it is fetched now."""
        path = resolve_model_path(repo_id) if path is None else path
        return self.add(ModelEntry.from_file(path, kind="hub", source=repo_id,
                                             label=f"{repo_id} (Hub)"))

    def add_trained(self, translator: Translator, label: str) -> ModelEntry:
        return self.add(ModelEntry.from_translator(translator, label))

    def remember(self, label: str, direction: str, options: dict | None = None) -> None:
        """The last translation, which "Translate active layer" repeats."""
        self.last_used = (label, direction, dict(options or {}))

    def _preset_entries(self) -> list[ModelEntry]:
        from cyclegan_sdk.presets import list_presets

        entries = []
        for preset in list_presets():
            if not preset.has_weights or preset.weights_path is None:
                continue
            try:
                entries.append(ModelEntry.from_file(
                    preset.weights_path, kind="preset", source=preset.name,
                    label=preset_label(preset), description=preset.description,
                    inference=_inference_defaults(preset)))
            except (OSError, ValueError) as exc:  # a broken installed preset must not hide the others
                warnings.warn(f"preset {preset.name}: {exc}", stacklevel=2)
        return entries


def _inference_defaults(preset) -> dict:  # noqa: ANN001 - a cyclegan_sdk.presets.Preset
    """The preset's translation defaults that it sets (direction, tile_size, overlap)."""
    return {key: value for key, value in dataclasses.asdict(preset.inference).items() if value is not None}


registry = ModelRegistry()
"""The session's registry, shared by all widgets of all viewers in this process."""
