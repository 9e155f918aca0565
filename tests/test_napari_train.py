"""Train widget: training off the GUI thread on two layers, live progress, stop, save, resume, closing."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qtpy.QtCore import QTimer  # noqa: E402

from cyclegan_sdk import Translator  # noqa: E402
from napari_plugin._models import registry  # noqa: E402
from napari_plugin.sample_data import unpaired_stain_stacks  # noqa: E402
from napari_plugin.train_widget import WARMED_UP, TrainWidget  # noqa: E402
from napari_plugin.translate_widget import TranslateWidget  # noqa: E402
from napari_support import WAIT_MS, clear_messages, messages, reset_registry, screenshot  # noqa: E402


@pytest.fixture
def viewer(make_napari_viewer):
    clear_messages()
    v = make_napari_viewer()
    (a, ka, _), (b, kb, _) = unpaired_stain_stacks()
    v.add_image(a[:4, :64, :64], **ka)
    v.add_image(b[:4, :64, :64], **kb)
    yield v
    reset_registry()


def _form(viewer, steps: int, **advanced) -> TrainWidget:
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w, name="Train on two layers")
    w._layer_a.value = viewer.layers["IHC tiles (domain A)"]
    w._layer_b.value = viewer.layers["H&E-like tiles (domain B)"]
    w._name_a.value, w._name_b.value = "IHC", "HE"
    w._steps.value = steps
    w._crop.value = 32
    w._ngf.value, w._blocks.value, w._ndf.value = 4, 1, 8
    w._preview_every.value = advanced.pop("preview_every", 2)
    for key, value in advanced.items():
        getattr(w, f"_{key}").value = value
    return w


def test_trains_live_without_freezing_the_window_then_saves(viewer, qtbot, tmp_path):
    w = _form(viewer, steps=12)
    translate = TranslateWidget(viewer)
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    assert WARMED_UP.wait(60)  # as when a user fills in the form before pressing Start
    worker = w.start()
    assert worker is not None, messages()
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(tick)
    last[0] = time.perf_counter()
    timer.start()
    assert not w._start.enabled and w._stop.enabled
    qtbot.waitUntil(lambda: w._worker is None, timeout=WAIT_MS)
    timer.stop()
    assert w.error is None, w.error

    # the event loop kept running: timer events at most 200 ms apart while training
    assert len(gaps) > 5 and max(gaps) < 0.2, f"longest gap {max(gaps):.3f} s"
    # live outputs: losses logged and plotted, a preview layer, progress text
    assert [row["step"] for row in w.history][-1] == 12
    assert all(len(w.plot.series[name]) == len(w.history) for name in w.plot.series)
    preview = viewer.layers["CycleGAN preview (IHC → HE)"]
    assert preview.rgb and preview.data.shape == (32, 64, 3)
    assert "12 steps" in w._status.value

    # the trained model is in the Translate widget's list at once, with its domain names
    label = "trained here: IHC ↔ HE (step 12)"
    assert label in translate.picker._model.choices
    translate.picker.select(label, "a2b")
    translate._layers.value = [viewer.layers["IHC tiles (domain A)"]]
    run = translate.run()
    qtbot.waitUntil(lambda: run.finished, timeout=WAIT_MS)
    out = viewer.layers["IHC tiles (domain A) (IHC → HE)"]
    assert out.data.shape == (4, 64, 64, 3) and out.data.dtype == np.uint8

    assert w._save.enabled
    path = w.save_model(tmp_path / "ihc-he.safetensors")
    saved = Translator.load(path)
    assert saved.domains == ("IHC", "HE")
    np.testing.assert_array_equal(saved.translate(out.data[0] * 0 + 128),
                                  registry.get(label).translator().translate(out.data[0] * 0 + 128))
    screenshot(viewer, tmp_path / "train.png")


def test_stop_leaves_a_usable_model_and_training_resumes_from_the_checkpoint(viewer, qtbot, tmp_path):
    checkpoint = tmp_path / "run.checkpoint.safetensors"
    w = _form(viewer, steps=100_000, checkpoint=checkpoint, preview_every=0)
    w._advanced.value = True
    w.start()
    qtbot.waitUntil(lambda: len(w.history) >= 1, timeout=WAIT_MS)
    viewer.layers.remove("IHC tiles (domain A)")  # training goes on with the images it started with
    qtbot.waitUntil(lambda: len(w.history) >= 2, timeout=WAIT_MS)
    w.stop()
    qtbot.waitUntil(lambda: w._worker is None, timeout=WAIT_MS)
    stopped_at = w.trainer.step
    assert 2 <= stopped_at < 100_000 and w.error is None
    assert any(e.label == f"trained here: IHC ↔ HE (step {stopped_at})" for e in registry.entries())
    assert checkpoint.is_file()

    w._steps.value = stopped_at + 3
    w._resume.value = True
    w._layer_a.value = viewer.layers["H&E-like tiles (domain B)"]
    w._name_a.value, w._name_b.value = "B1", "B2"  # a resumed run keeps the checkpoint's names
    w.start()
    qtbot.waitUntil(lambda: w._worker is None, timeout=WAIT_MS)
    assert w.error is None, w.error
    assert w.trainer.step == stopped_at + 3
    assert any(e.label == f"trained here: IHC ↔ HE (step {stopped_at + 3})" for e in registry.entries())


def test_bad_training_input_gives_a_message(viewer, qtbot):
    w = _form(viewer, steps=5)
    w._name_b.value = "IHC"
    assert w.start() is None
    assert any("both domains are named" in m for m in messages("error"))

    viewer.add_image(np.zeros((1, 1), np.uint8), name="dot")
    w._name_b.value = "HE"
    w._layer_b.value = viewer.layers["dot"]
    assert w.start() is None
    assert any("training needs at least 16×16" in m for m in messages("error"))

    w._layer_b.value = viewer.layers["H&E-like tiles (domain B)"]
    w._resume.value = True
    assert w.start() is None
    assert any("no checkpoint to resume from" in m for m in messages("error"))
    assert len(viewer.layers) == 3


def test_closing_the_viewer_while_training_stops_it_cleanly(viewer, qtbot):
    w = _form(viewer, steps=100_000, preview_every=0)
    w.start()
    qtbot.waitUntil(lambda: len(w.history) >= 1, timeout=WAIT_MS)
    trainer = w.trainer
    viewer.close()
    qtbot.waitUntil(lambda: w._worker is None, timeout=WAIT_MS)
    assert trainer.step < 100_000
    assert any("training stops" in m for m in messages("warning"))


def test_closing_the_dock_stops_training(viewer, qtbot):
    w = _form(viewer, steps=100_000, preview_every=0)
    w.start()
    qtbot.waitUntil(lambda: len(w.history) >= 1, timeout=WAIT_MS)
    viewer.window.remove_dock_widget(w.native.parent())  # the dock's close button does this
    qtbot.waitUntil(lambda: w._worker is None, timeout=WAIT_MS)
    assert w.trainer.step < 100_000
    assert any(e.label.startswith("trained here: IHC ↔ HE") for e in registry.entries())


def test_a_preset_recipe_fills_the_form(viewer):
    from cyclegan_sdk.presets import load_preset

    w = _form(viewer, steps=5)
    recipe = load_preset("stain-transfer").train_config()
    w._recipe.value = "stain-transfer"
    assert (w._ngf.value, w._blocks.value, w._ndf.value) == (recipe.ngf, recipe.n_blocks, recipe.ndf)
    assert w._crop.value == min(recipe.crop_size, 64)  # within the 64-pixel layers
    config = w.config()
    assert config.augment == recipe.augment and config.upsample == recipe.upsample
    assert config.generator == recipe.generator and config.lambda_identity == recipe.lambda_identity
