"""Translating layers off the GUI thread, with a napari progress bar and cancelling.

The worker thread only computes: it never touches layers or widgets. It
reports tiles done through a counter that a timer on the GUI thread reads,
and its result (arrays and layer settings) is turned into layers on the GUI
thread when it returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from napari.qt.threading import FunctionWorker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer

from ._common import one_line, show_worker_warning
from ._layers import LayerJob, add_or_replace, translate_job
from ._models import ModelEntry, arrow, registry

__all__ = ["Cancelled", "TranslationRun"]

POLL_MS = 100


class Cancelled(Exception):
    """Raised inside the worker when the user cancels; not an error."""


@dataclass
class _Counter:
    done: int = 0
    total: int = 0
    cancel: bool = False


class TranslationRun:
    """Translate captured layers with one model and direction, then add or replace their output layers.

    Args:
        viewer: where the outputs go.
        entry: the model.
        direction: ``"a2b"`` or ``"b2a"``.
        jobs: the layers, captured with :func:`~napari_plugin._layers.job_from_layer`.
        options: keyword arguments of :meth:`Translator.translate` (tile_size, overlap, device, precision).
        on_finish: called on the GUI thread at the end, with the output layers (empty if cancelled or failed).
    """

    def __init__(self, viewer: Any, entry: ModelEntry, direction: str, jobs: list[LayerJob],
                 options: dict[str, Any], on_finish: Callable[[list[Any]], None] | None = None) -> None:
        self.viewer = viewer
        self.entry = entry
        self.direction = direction
        self.jobs = jobs
        self.options = options
        self.on_finish = on_finish
        self.outputs: list[Any] = []
        self.error: str | None = None
        self._counter = _Counter()
        self._bar: progress | None = None
        self._timer = QTimer()
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self._started = 0.0
        self.finished = False
        self.worker = FunctionWorker(self._work)
        self.worker.returned.connect(self._returned)
        self.worker.errored.connect(self._errored)
        self.worker.warned.connect(show_worker_warning)
        self.worker.finished.connect(self._finished)

    def start(self) -> TranslationRun:
        self._bar = progress(total=0, desc=f"CycleGAN {arrow(self.entry.domains, self.direction)}")
        self._started = time.perf_counter()
        self._timer.start()
        self.worker.start()
        return self

    def cancel(self) -> None:
        """Stop after the tile being computed; nothing is added."""
        self._counter.cancel = True
        self.worker.quit()

    # ----------------------------------------------------------------- worker thread
    def _work(self) -> list[tuple[str, Any, dict[str, Any]]]:
        translator = self.entry.translator()
        counter = self._counter
        results = []
        for job in self.jobs:  # a channel mismatch fails before any work
            translator.output_channels(job.channels, self.direction)
        for index, job in enumerate(self.jobs):
            # Tiles of this job as translate reports them, plus one step per plane still to come.
            base, later = counter.done, sum(j.slices for j in self.jobs[index + 1:])

            def report(done: int, total: int, base: int = base, later: int = later) -> None:
                if counter.cancel:
                    raise Cancelled
                counter.total = base + total + later
                counter.done = base + done

            if counter.cancel:
                raise Cancelled
            data, kwargs = translate_job(translator, job, self.direction, self.options, report)
            results.append((job.name, data, kwargs))
        return results

    # ----------------------------------------------------------------- GUI thread
    def _poll(self) -> None:
        bar, counter = self._bar, self._counter
        if bar is None:
            return
        if counter.total and bar.total != counter.total:
            bar.total = counter.total
        if counter.done > bar.n:
            bar.update(counter.done - bar.n)

    def _returned(self, results: list[tuple[str, Any, dict[str, Any]]]) -> None:
        for source, data, kwargs in results:
            try:
                self.outputs.append(add_or_replace(self.viewer, data, kwargs))
            except (RuntimeError, ValueError, KeyError) as exc:  # viewer closed, or the layer list changed
                show_warning(f"CycleGAN: could not add {kwargs['name']!r}: {exc}")
                continue
            if source not in self.viewer.layers:
                show_info(f"CycleGAN: layer {source!r} was removed during translation; "
                          f"its translation is kept as {kwargs['name']!r}")
        registry.remember(self.entry.label, self.direction, self.options)
        seconds = time.perf_counter() - self._started
        if self.outputs:
            lazy = any(job.lazy for job in self.jobs)
            show_info(f"CycleGAN: translated {len(self.outputs)} layer(s) "
                      f"({arrow(self.entry.domains, self.direction)}) in {seconds:.1f} s"
                      + ("; lazy layers are translated on screen, as you view them" if lazy else ""))

    def _errored(self, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):
            show_info("CycleGAN: translation cancelled")
            return
        self.error = one_line(exc)
        show_error(f"CycleGAN: {self.error}")

    def _finished(self) -> None:
        self.finished = True
        self._timer.stop()
        if self._bar is not None:
            self._poll()
            self._bar.close()
            self._bar = None
        if self.on_finish is not None:
            self.on_finish(self.outputs)
