"""Layers ▸ Filter ▸ CycleGAN ▸ Train on two layers…: train a translation between two image layers (or stacks).

Training runs on a worker thread; the trainer's events (losses, previews,
checkpoints) go through a queue that a timer on the GUI thread drains, so
the window stays responsive and widgets are only touched on the GUI thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, LineEdit, PushButton, SpinBox
from napari.qt.threading import FunctionWorker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog

from cyclegan_sdk import TrainConfig, Trainer, TrainEvent
from cyclegan_sdk.data import DomainImages

from ._common import device_choices, image_layer_choices, one_line, show_worker_warning
from ._layers import LayerError, job_from_layer, plane_size, training_stack
from ._loss_plot import LossPlot
from ._models import registry

if TYPE_CHECKING:
    import napari

__all__ = ["TrainWidget", "REFERENCE_RECIPE"]

REFERENCE_RECIPE = "reference defaults"
POLL_MS = 100

WARMED_UP = threading.Event()
"""Set once the optimizer's lazily imported modules are loaded (see :func:`_warm_up`)."""


def _warm_up() -> None:
    """Import what PyTorch's optimizers import on their first step (``torch._dynamo``, about 2 s).

    Done on a background thread when the widget opens, while the form is
    filled in: done by the first training step instead, the import would hold
    the interpreter in stretches long enough (up to half a second) to stall
    the GUI thread during training.
    """
    try:
        import torch._dynamo  # noqa: F401
    finally:
        WARMED_UP.set()


class TrainWidget(Container):
    """Train the two generators and two discriminators on two image layers, live.

    Shows progress (images/s, ETA), a loss plot and a preview layer with the
    current translation of a fixed sample. Stop leaves a usable model, which
    appears at once in the Translate widget's model list; Save writes it as a
    model file with the domain names.

    Args:
        viewer: the napari viewer.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        self._layer_a = ComboBox(label="Domain A layer", choices=self._layer_choices, nullable=True)
        self._layer_b = ComboBox(label="Domain B layer", choices=self._layer_choices, nullable=True)
        self._name_a = LineEdit(label="Domain A name", tooltip="empty: the layer's name")
        self._name_b = LineEdit(label="Domain B name", tooltip="empty: the layer's name")
        self._recipe = ComboBox(label="Recipe", choices=self._recipe_choices, value=REFERENCE_RECIPE,
                                tooltip="a preset's training recipe, or the reference implementation's settings")
        self._steps = SpinBox(label="Steps", value=2000, min=1, max=10_000_000, step=100)
        self._crop = SpinBox(label="Crop size", value=256, min=16, max=4096, step=4,
                             tooltip="random crops of this size are trained on (a multiple of 4)")
        self._device = ComboBox(label="Device", choices=device_choices(), value="auto")
        self._advanced = CheckBox(text="Advanced settings", value=False)
        self._ngf = SpinBox(label="Generator filters", value=64, min=1, max=512)
        self._blocks = SpinBox(label="Residual blocks", value=9, min=0, max=64)
        self._ndf = SpinBox(label="Discriminator filters", value=64, min=1, max=512)
        self._threads = SpinBox(label="CPU threads", value=default_threads(), min=1, max=_cores(),
                                tooltip="threads PyTorch trains with on the CPU; one core is left to the window")
        self._preview_every = SpinBox(label="Preview every", value=50, min=0, max=1_000_000,
                                      tooltip="steps between preview updates (0: no preview)")
        self._checkpoint = FileEdit(label="Checkpoint", mode="w", filter="*.safetensors",
                                    tooltip="written every 200 steps and when training stops")
        self._resume = CheckBox(text="Resume from the checkpoint", value=False)
        self._compile = CheckBox(text="Compile the networks (faster steps after a minute or more of compiling)",
                                 value=False)
        self._settings = Container(widgets=[self._ngf, self._blocks, self._ndf, self._threads, self._preview_every,
                                            self._compile, self._checkpoint, self._resume],
                                   labels=True, visible=False)
        self._start = PushButton(text="Start")
        self._stop = PushButton(text="Stop", enabled=False)
        self._save = PushButton(text="Save model…", enabled=False)
        self._status = Label(value="")
        super().__init__(widgets=[self._layer_a, self._layer_b, self._name_a, self._name_b, self._recipe,
                                  self._steps, self._crop, self._device, self._advanced, self._settings,
                                  Container(widgets=[self._start, self._stop, self._save], layout="horizontal",
                                            labels=False),
                                  self._status], labels=True)
        self.plot = LossPlot()
        self.native.layout().addWidget(self.plot)

        self.trainer: Trainer | None = None
        self.history: list[dict[str, float]] = []
        self.error: str | None = None
        self._events: queue.Queue[TrainEvent] = queue.Queue()
        self._stop_requested = False
        self._closed = False
        self._docked = False
        self._worker: FunctionWorker | None = None
        self._bar: progress | None = None
        self._names = ("A", "B")
        self._timer = QTimer()
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._drain)

        self._advanced.changed.connect(lambda on: setattr(self._settings, "visible", on))
        self._recipe.changed.connect(self._apply_recipe)
        self._layer_a.changed.connect(self._fit_crop)
        self._layer_b.changed.connect(self._fit_crop)
        self._start.changed.connect(self.start)
        self._stop.changed.connect(self.stop)
        self._save.changed.connect(self._ask_save)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self._refresh_layers)
        self.native.destroyed.connect(self._shut_down)
        self._refresh_layers()
        if not WARMED_UP.is_set():
            threading.Thread(target=_warm_up, name="cyclegan-warm-up", daemon=True).start()

    # ----------------------------------------------------------------- form
    def _layer_choices(self, _widget: object = None) -> list[tuple[str, Any]]:
        return image_layer_choices(self._viewer)

    def _refresh_layers(self, _event: object = None) -> None:
        if self._closed:
            return
        for box in (self._layer_a, self._layer_b):
            box.reset_choices()
        choices = self._layer_a.choices
        if self._layer_a.value is None and choices:
            self._layer_a.value = choices[0]
        if self._layer_b.value is None and len(choices) > 1:
            self._layer_b.value = choices[1]
        self._fit_crop()

    def _fit_crop(self, _value: object = None) -> None:
        """Keep the crop within the smaller domain's images (a multiple of 4): larger crops would upscale them."""
        sides = [min(plane_size(layer)) for layer in (self._layer_a.value, self._layer_b.value) if layer is not None]
        if sides and self._crop.value > min(sides) >= 16:
            self._crop.value = min(sides) // 4 * 4

    @staticmethod
    def _recipe_choices(_widget: object = None) -> list[str]:
        from cyclegan_sdk.presets import list_presets

        try:
            names = [p.name for p in list_presets()]
        except (OSError, ValueError) as exc:  # a broken preset folder must not break the form
            show_error(f"CycleGAN: listing presets failed: {one_line(exc)}")
            names = []
        return [REFERENCE_RECIPE, *names]

    def _apply_recipe(self, name: str | None = None) -> None:
        config = self._base_config()
        self._crop.value = config.crop_size
        self._fit_crop()
        self._ngf.value = config.ngf
        self._blocks.value = config.n_blocks
        self._ndf.value = config.ndf

    def _base_config(self) -> TrainConfig:
        name = self._recipe.value
        if name in (None, REFERENCE_RECIPE):
            # Layers are trained at their own resolution: random crops, no resizing of the whole image.
            return TrainConfig(preprocess="crop")
        from cyclegan_sdk.presets import load_preset

        return load_preset(name).train_config()

    def config(self) -> TrainConfig:
        """The training settings the form describes (recipe, then the form's values over it)."""
        base = self._base_config()
        crop = self._crop.value
        load = round(base.load_size * crop / base.crop_size) if base.preprocess != "crop" else base.load_size
        steps = self._steps.value
        device = None if self._device.value == "auto" else self._device.value
        return dataclasses.replace(base, crop_size=crop, load_size=max(load, crop), device=device,
                                   ngf=self._ngf.value, n_blocks=self._blocks.value, ndf=self._ndf.value,
                                   domain_names=self._names,
                                   preview_every=self._preview_every.value, log_every=max(1, min(10, steps // 20)),
                                   # Off unless asked for: compiling takes the first step a minute or more,
                                   # during which Stop cannot act.
                                   compile=self._compile.value)

    # ----------------------------------------------------------------- actions
    def start(self, _value: object = None) -> FunctionWorker | None:
        """Start training on a worker thread (``None`` and a message if the form is not usable)."""
        if self._worker is not None:
            show_error("CycleGAN: training is already running")
            return None
        layer_a, layer_b = self._layer_a.value, self._layer_b.value
        if layer_a is None or layer_b is None:
            show_error("CycleGAN: choose a domain A layer and a domain B layer (image layers or stacks)")
            return None
        try:
            job_a, job_b = job_from_layer(layer_a), job_from_layer(layer_b)
            stack_a, stack_b = training_stack(job_a), training_stack(job_b)
            self._names = (self._name_a.value.strip() or layer_a.name, self._name_b.value.strip() or layer_b.name)
            if self._names[0] == self._names[1]:
                raise ValueError(f"both domains are named {self._names[0]!r}: give them different names")
            config = self.config()
        except (LayerError, ValueError, KeyError, TypeError) as exc:  # TypeError: a preset naming unknown fields
            show_error(f"CycleGAN: {one_line(exc)}")
            return None
        checkpoint = Path(str(self._checkpoint.value)) if str(self._checkpoint.value) not in ("", ".") else None
        resume = self._resume.value
        if resume and (checkpoint is None or not checkpoint.is_file()):
            show_error(f"CycleGAN: no checkpoint to resume from: {checkpoint or 'choose a checkpoint file'}")
            return None
        layouts = ("NHWC" if job_a.rgb else "NHW", "NHWC" if job_b.rgb else "NHW")
        self.history, self.error, self._stop_requested = [], None, False
        self.plot.clear()
        self._set_running(True)
        self._status.value = "starting…"
        self._bar = progress(total=self._steps.value, desc=f"CycleGAN training {self._names[0]} ↔ {self._names[1]}")
        if config.preview_every and not resume:  # a resumed run goes by its checkpoint's names and sizes
            # Made now, while nothing runs: creating a layer takes a few hundred ms, updating its data does not.
            self._show_preview(np.zeros((config.crop_size, 2 * config.crop_size, 3), np.uint8))
        worker = FunctionWorker(self._train, config, stack_a, stack_b, layouts, self._steps.value, checkpoint, resume,
                                self._threads.value)
        worker.returned.connect(self._returned)
        worker.errored.connect(self._errored)
        worker.warned.connect(show_worker_warning)
        worker.finished.connect(self._finished)
        self._worker = worker
        self._started = time.perf_counter()
        self._timer.start()
        worker.start()
        return worker

    def stop(self, _value: object = None) -> None:
        """Stop after the current step; the model trained so far is kept."""
        self._stop_requested = True
        if self.trainer is not None:
            self.trainer.request_stop()
        if not self._closed:
            self._status.value = "stopping after this step…"

    def save_model(self, path: str | Path) -> Path:
        """Write the trained model (domain names, settings, training summary) as a ``.safetensors`` file."""
        if self.trainer is None or not self.trainer.built:
            raise RuntimeError("nothing trained yet")
        if self._worker is not None:
            raise RuntimeError("stop training before saving")
        written = self.trainer.export(Path(path))
        assert written is not None  # a single process is always the main one
        return written

    def _ask_save(self, _value: object = None) -> None:
        a, b = self._names
        path, _ = QFileDialog.getSaveFileName(self.native, "Save CycleGAN model", f"{a}-{b}.safetensors",
                                              "Model files (*.safetensors)")
        if not path:
            return
        try:
            written = self.save_model(path)
        except (OSError, ValueError, RuntimeError) as exc:
            show_error(f"CycleGAN: {one_line(exc)}")
            return
        show_info(f"CycleGAN: saved {written}")

    # ----------------------------------------------------------------- worker thread
    def _train(self, config: TrainConfig, stack_a: np.ndarray, stack_b: np.ndarray, layouts: tuple[str, str],
               steps: int, checkpoint: Path | None, resume: bool, threads: int) -> tuple[Any, dict[str, Any]]:
        with _torch_threads(threads):
            if resume and checkpoint is not None:
                trainer = Trainer.resume(checkpoint, device=config.device)
                self._names = trainer.config.domain_names  # one assignment of a tuple: safe to read on the GUI thread
            else:
                trainer = Trainer(config)
            if resume and steps <= trainer.step:
                raise ValueError(f"the checkpoint is already at step {trainer.step}: ask for more steps to go on")
            self.trainer = trainer
            if self._stop_requested:
                trainer.request_stop()
            # Read here, not on the GUI thread: a dask- or zarr-backed layer is loaded now.
            a = DomainImages.from_stack(np.asarray(stack_a), self._names[0], layouts[0])
            b = DomainImages.from_stack(np.asarray(stack_b), self._names[1], layouts[1])
            summary = trainer.fit(a, b, steps=steps, callbacks=[self._events.put],
                                  checkpoint_every=200 if checkpoint else 0, checkpoint_path=checkpoint)
            if checkpoint is not None:  # finished or stopped; after a failure the last periodic checkpoint stays
                trainer.save_checkpoint(checkpoint)
            return trainer.translator(), summary

    # ----------------------------------------------------------------- GUI thread
    def _drain(self) -> None:
        if self._closed:
            return
        if self._docked and self.native.parent() is None:  # the dock was closed (napari detaches, not deletes)
            self._shut_down()
            return
        self._docked = self._docked or self.native.parent() is not None
        latest_step: TrainEvent | None = None
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            if event.kind == "step":
                self.history.append({"step": event.step, **event.losses})
                latest_step = event
            elif event.kind == "preview" and event.images:
                self._show_preview(np.concatenate([event.images["real_A"], event.images["fake_B"]], axis=1))
            elif event.kind == "checkpoint":
                show_info(f"CycleGAN: checkpoint written at step {event.step}: {event.path}")
        if latest_step is not None:
            self.plot.set_history(self.history)
            e = latest_step
            self._status.value = (f"step {e.step}/{e.total_steps} · {e.images_per_s:.2f} images/s · "
                                  f"ETA {_duration(e.eta_s)} · G {e.losses.get('G', float('nan')):.3f}")
            if self._bar is not None:
                self._bar.total = e.total_steps
                if e.step > self._bar.n:
                    self._bar.update(e.step - self._bar.n)

    def _show_preview(self, panel: np.ndarray) -> None:
        """The fixed sample and its current translation, side by side, in one RGB layer."""
        a, b = self._names
        name = f"CycleGAN preview ({a} → {b})"
        if name in self._viewer.layers:
            self._viewer.layers[name].data = panel
        else:
            self._viewer.add_image(panel, name=name, rgb=True)

    def _returned(self, result: tuple[Any, dict[str, Any]]) -> None:
        self._drain()  # the last logged steps first, so the summary below stays the last word
        translator, summary = result
        a, b = self._names
        entry = registry.add_trained(translator, f"trained here: {a} ↔ {b} (step {summary['steps']})")
        if not self._closed:
            self._status.value = (f"trained {summary['steps']} steps in {_duration(summary['seconds'])}; "
                                  f"'{entry.label}' is in the Translate widget's model list")

    def _errored(self, exc: BaseException) -> None:
        self.error = one_line(exc)
        show_error(f"CycleGAN training stopped: {self.error}")
        if not self._closed:
            self._status.value = f"failed: {self.error}"

    def _finished(self) -> None:
        self._worker = None
        self._timer.stop()
        self._drain()
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if not self._closed:
            self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self._start.enabled = not running
        self._stop.enabled = running
        self._save.enabled = not running and self.trainer is not None and self.trainer.built

    def _shut_down(self, _obj: object = None) -> None:
        """The widget is going away (viewer closed): stop training; the worker ends after its step."""
        self._closed = True
        with contextlib.suppress(RuntimeError):  # at exit Qt may have deleted the timer already
            self._timer.stop()
        if self._worker is not None:
            self.stop()
            show_warning("CycleGAN: the training widget was closed; training stops after the current step "
                         "(its model is kept in the Translate widget's list)")


def default_threads() -> int:
    """All cores but one, which stays with the window: with every core busy training, the GUI thread
    waits its turn behind PyTorch's threads and the window stutters."""
    return max(1, _cores() - 1)


def _cores() -> int:
    """Cores this process may run on (its affinity where the OS tells it, else all of them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def _torch_threads(threads: int):
    """PyTorch's intra-op thread count on this (worker) thread for the duration of a run, then the previous one.

    The count is the calling thread's (the GUI thread keeps its own); the
    previous one is restored because pool threads are reused for later work.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _duration(seconds: float) -> str:
    """``"4.2 s"`` under a minute, else ``"m:ss"`` or ``"h:mm:ss"``."""
    if seconds < 60:
        return f"{max(0.0, seconds):.1f} s"
    total = int(round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
