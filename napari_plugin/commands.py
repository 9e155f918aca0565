"""Commands without a widget: translate the active layer with the last model and direction used."""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari.utils.notifications import show_error, show_info

from ._common import one_line
from ._layers import LayerError, job_from_layer
from ._models import registry
from ._translation import TranslationRun

if TYPE_CHECKING:
    import napari

__all__ = ["translate_active_layer"]

_runs: list[TranslationRun] = []  # running translations stay referenced until they finish


def translate_active_layer(viewer: napari.viewer.Viewer) -> TranslationRun | None:
    """Translate the active layer with the model and direction of the last translation in this session."""
    if registry.last_used is None:
        show_info("CycleGAN: no model used yet in this session: translate once from "
                  "Layers ▸ Filter ▸ CycleGAN ▸ Translate layer…, then this repeats it on the active layer")
        return None
    label, direction, options = registry.last_used
    layer = viewer.layers.selection.active
    if layer is None:
        show_error("CycleGAN: no active layer: select an image layer to translate")
        return None
    try:
        entry = registry.get(label)
        job = job_from_layer(layer)
    except (KeyError, LayerError) as exc:
        show_error(f"CycleGAN: {one_line(exc)}")
        return None
    run = TranslationRun(viewer, entry, direction, [job], options, on_finish=lambda _outputs: _runs.remove(run))
    _runs.append(run)
    return run.start()
