"""Translate widget and the "Translate active layer" command, in a real napari viewer."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import dask.array as da  # noqa: E402

from napari_plugin._models import registry  # noqa: E402
from napari_plugin.commands import translate_active_layer  # noqa: E402
from napari_plugin.translate_widget import TranslateWidget  # noqa: E402
from napari_support import WAIT_MS, clear_messages, messages, reset_registry, screenshot, textured_rgb, tiny_translator  # noqa: E402


@pytest.fixture
def widget(make_napari_viewer, qtbot):
    clear_messages()
    viewer = make_napari_viewer()
    w = TranslateWidget(viewer)
    viewer.window.add_dock_widget(w, name="Translate layer")
    registry.add_trained(tiny_translator(), "tiny IHC-HE")
    w.picker.select("tiny IHC-HE", "a2b")
    yield viewer, w
    reset_registry()


def _run(w, qtbot):
    run = w.run()
    assert run is not None, messages()
    qtbot.waitUntil(lambda: run.finished, timeout=WAIT_MS)
    return run


def test_translates_rgb_and_stack_layers_with_their_geometry(widget, qtbot, tmp_path):
    viewer, w = widget
    rgb = textured_rgb(96, 128)
    stack = np.stack([textured_rgb(64, 80, seed=s)[..., 1].astype(np.uint16) * 200 for s in range(3)])
    layer_rgb = viewer.add_image(rgb, name="field", rgb=True, scale=(0.5, 0.5), translate=(10, 20), units="µm")
    layer_stack = viewer.add_image(stack, name="stack", scale=(2.0, 0.25, 0.25), rotate=15)
    w._layers.value = [layer_rgb, layer_stack]
    run = _run(w, qtbot)
    assert run.error is None

    out = viewer.layers["field (IHC → HE)"]
    assert out.rgb and out.data.dtype == np.uint8 and out.data.shape == rgb.shape
    np.testing.assert_array_equal(out.data, tiny_translator().translate(rgb))  # what the SDK gives
    np.testing.assert_allclose(out.scale, (0.5, 0.5))
    np.testing.assert_allclose(out.translate, (10, 20))
    assert tuple(str(u) for u in out.units) == tuple(str(u) for u in layer_rgb.units)

    # a grey 16-bit stack through an RGB model: RGB 16-bit slices, stack axis and geometry kept
    out = viewer.layers["stack (IHC → HE)"]
    assert out.rgb and out.data.dtype == np.uint16 and out.data.shape == (*stack.shape, 3)
    expected = tiny_translator().translate(stack, layout="NHW")
    np.testing.assert_array_equal(out.data, expected)
    np.testing.assert_allclose(out.scale, (2.0, 0.25, 0.25))
    np.testing.assert_allclose(out.rotate, layer_stack.rotate)
    assert registry.last_used[:2] == ("tiny IHC-HE", "a2b")

    # RGBA: colour translated, alpha passed through
    rgba = np.dstack([rgb, np.linspace(0, 255, rgb.shape[1], dtype=np.uint8)[None].repeat(rgb.shape[0], 0)])
    w._layers.value = [viewer.add_image(rgba, name="cutout", rgb=True)]
    _run(w, qtbot)
    out = viewer.layers["cutout (IHC → HE)"].data
    assert out.shape == rgba.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    np.testing.assert_array_equal(out[..., :3], tiny_translator().translate(rgb))

    image = screenshot(viewer, tmp_path / "translate.png")
    assert image.ndim == 3 and image.shape[0] > 200


def test_running_again_replaces_the_output_layer(widget, qtbot):
    viewer, w = widget
    layer = viewer.add_image(textured_rgb(), name="photo", rgb=True)
    w._layers.value = [layer]
    _run(w, qtbot)
    first = viewer.layers["photo (IHC → HE)"]
    count = len(viewer.layers)
    w.picker.select("tiny IHC-HE", "b2a")
    _run(w, qtbot)
    assert "photo (HE → IHC)" in viewer.layers
    w.picker.select("tiny IHC-HE", "a2b")
    _run(w, qtbot)
    assert len(viewer.layers) == count + 1  # the b2a output, and a2b replaced in place
    assert viewer.layers["photo (IHC → HE)"] is first


def test_lazy_and_multiscale_layers_stay_lazy(widget, qtbot):
    viewer, w = widget
    image = textured_rgb(128, 160)
    lazy = viewer.add_image(da.from_array(image, chunks=(64, 80, 3)), name="lazy", rgb=True)
    levels = [image, image[::2, ::2]]
    pyramid = viewer.add_image([da.from_array(level, chunks=(64, 64, 3)) for level in levels], name="pyramid",
                               rgb=True, multiscale=True)
    w._layers.value = [lazy, pyramid]
    run = _run(w, qtbot)
    assert run.error is None, run.error

    out = viewer.layers["lazy (IHC → HE)"]
    assert isinstance(out.data, da.Array) and out.data.shape == image.shape
    diff = np.abs(np.asarray(out.data).astype(int) - tiny_translator().translate(image).astype(int))
    assert diff.mean() <= 1.0

    out = viewer.layers["pyramid (IHC → HE)"]
    assert out.multiscale and len(out.data) == 2
    assert all(isinstance(level, da.Array) for level in out.data)
    assert [tuple(level.shape) for level in out.data] == [level.shape for level in levels]
    coarse = np.asarray(out.data[1]).astype(int)  # each level is translated at its own size
    assert np.abs(coarse - tiny_translator().translate(levels[1]).astype(int)).mean() <= 1.0


def test_lazy_stack_is_translated_slice_by_slice(widget, qtbot):
    viewer, w = widget
    stack = np.stack([textured_rgb(48, 64, seed=s) for s in range(4)])
    layer = viewer.add_image(da.from_array(stack, chunks=(2, 48, 64, 3)), name="lazy stack", rgb=True)
    w._layers.value = [layer]
    _run(w, qtbot)
    out = viewer.layers["lazy stack (IHC → HE)"]
    assert isinstance(out.data, da.Array)
    np.testing.assert_array_equal(np.asarray(out.data[2]), tiny_translator().translate(stack[2]))


def test_cancel_adds_nothing(widget, qtbot):
    viewer, w = widget
    big = np.stack([textured_rgb(256, 256, seed=s) for s in range(12)])
    layer = viewer.add_image(big, name="many", rgb=True)
    w._layers.value = [layer]
    w._advanced.value = True
    w._tile.value = 64
    w._overlap.value = 16
    run = w.run()
    w.cancel()  # before the first tile is done: nothing may come out, however fast the machine
    qtbot.waitUntil(lambda: run.finished, timeout=WAIT_MS)
    assert "many (IHC → HE)" not in viewer.layers
    assert any("cancelled" in m for m in messages("info"))
    assert w._run.enabled and not w._cancel.enabled


def test_bad_input_gives_a_message_and_loses_nothing(widget, qtbot):
    viewer, w = widget
    w._layers.value = []
    assert w.run() is None
    assert any("no image layer" in m for m in messages("error"))

    # a model that takes 2-channel images cannot take an RGB layer
    registry.add_trained(tiny_translator(channels=2), "two-channel")
    w.picker.select("two-channel", "a2b")
    layer = viewer.add_image(textured_rgb(), name="rgb", rgb=True)
    w._layers.value = [layer]
    run = _run(w, qtbot)
    assert run.error is not None and "channels" in run.error
    assert any("channels" in m for m in messages("error"))
    assert [lay.name for lay in viewer.layers] == ["rgb"]

    # the active layer is a labels layer
    w.picker.select("tiny IHC-HE", "a2b")
    _run(w, qtbot)
    labels = viewer.add_labels(np.zeros((8, 8), np.uint8), name="cells")
    viewer.layers.selection.active = labels
    assert translate_active_layer(viewer) is None
    assert any("Labels layer" in m for m in messages("error"))

    # a 1 x 1 image is translated (padded inside), not a crash
    tiny = viewer.add_image(np.full((1, 1), 7, np.uint8), name="dot")
    w._layers.value = [tiny]
    run = _run(w, qtbot)
    assert run.error is None and viewer.layers["dot (IHC → HE)"].data.shape == (1, 1, 3)


def test_layer_deleted_during_translation_keeps_its_output(widget, qtbot):
    viewer, w = widget
    layer = viewer.add_image(np.stack([textured_rgb(128, 128, seed=s) for s in range(6)]), name="doomed", rgb=True)
    w._layers.value = [layer]
    run = w.run()
    viewer.layers.remove(layer)
    qtbot.waitUntil(lambda: run.finished, timeout=WAIT_MS)
    assert "doomed (IHC → HE)" in viewer.layers
    assert any("removed during translation" in m for m in messages("info"))


def test_translate_active_layer_repeats_the_last_model_and_direction(widget, qtbot):
    viewer, w = widget
    assert translate_active_layer(viewer) is None
    assert any("no model used yet" in m for m in messages("info"))
    first = viewer.add_image(textured_rgb(seed=1), name="first", rgb=True)
    w._layers.value = [first]
    w.picker.select("tiny IHC-HE", "b2a")
    _run(w, qtbot)
    second = viewer.add_image(textured_rgb(seed=2), name="second", rgb=True)
    viewer.layers.selection.active = second
    run = translate_active_layer(viewer)
    qtbot.waitUntil(lambda: run.finished, timeout=WAIT_MS)
    np.testing.assert_array_equal(viewer.layers["second (HE → IHC)"].data,
                                  tiny_translator().translate(second.data, "b2a"))


def test_bundled_stain_transfer_preset_restains_the_ihc_sample(make_napari_viewer, qtbot, tmp_path):
    from cyclegan_sdk.presets import load_preset

    preset = load_preset("stain-transfer")
    if not preset.has_weights:
        pytest.skip("stain-transfer ships no weights")
    viewer = make_napari_viewer()
    viewer.open_sample("cyclegan-sdk", "ihc")
    w = TranslateWidget(viewer)
    viewer.window.add_dock_widget(w, name="Translate layer")
    label = f"{preset.title} (preset stain-transfer)"
    assert w.picker._model.value == label  # the bundled preset with weights is the default model
    assert w.picker._domains.value == "IHC ↔ HE" and w.picker.direction == "a2b"
    w._layers.value = [viewer.layers["IHC field"]]
    run = _run(w, qtbot)
    assert run.error is None, run.error
    field = viewer.layers["IHC field"].data
    out = viewer.layers["IHC field (IHC → HE)"].data
    assert out.shape == field.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, registry.get(label).translator().translate(field, tile_size=512, overlap=64))
    # brown DAB becomes pink eosin: blue rises much more than red
    gain = out.reshape(-1, 3).astype(float).mean(0) - field.reshape(-1, 3).astype(float).mean(0)
    assert gain[2] > 20 and gain[2] > gain[0]
    screenshot(viewer, tmp_path / "stain-transfer.png")


def test_float_and_signed_layers_keep_their_value_range(widget, qtbot):
    viewer, w = widget
    grey = textured_rgb(64, 80)[..., 0].astype(np.float32) * 10.0  # 0 .. 2550, not 0 .. 1
    signed = (textured_rgb(64, 80)[..., 1].astype(np.int16) - 128) * 100
    w._layers.value = [viewer.add_image(grey, name="float"), viewer.add_image(signed, name="signed")]
    run = _run(w, qtbot)
    assert run.error is None, run.error
    out = viewer.layers["float (IHC → HE)"].data
    low, high = viewer.layers["float"].contrast_limits_range
    expected = tiny_translator().translate(grey, value_range=(low, high))
    assert out.dtype == np.float32 and out.max() > 2.0  # not squeezed into 0 .. 1
    np.testing.assert_allclose(out, expected, atol=1e-3 * (high - low))
    out = viewer.layers["signed (IHC → HE)"].data
    assert out.dtype == np.int16 and out.min() < 0


def test_replacing_keeps_position_and_never_touches_a_users_layer(widget, qtbot):
    viewer, w = widget
    registry.add_trained(tiny_translator(channels=1), "grey IHC-HE")
    layer = viewer.add_image(textured_rgb()[..., 0], name="g")
    w._layers.value = [layer]
    _run(w, qtbot)  # RGB model: an RGB output
    assert viewer.layers["g (IHC → HE)"].rgb
    viewer.add_image(np.zeros((4, 4)), name="on top")
    index = viewer.layers.index("g (IHC → HE)")
    w.picker.select("grey IHC-HE", "a2b")
    w._layers.value = [layer]
    _run(w, qtbot)  # grey model: the RGB output is replaced by a grey one, where it was
    assert not viewer.layers["g (IHC → HE)"].rgb and viewer.layers.index("g (IHC → HE)") == index

    mine = viewer.add_image(np.ones((8, 8)), name="photo (IHC → HE)")
    w._layers.value = [viewer.add_image(textured_rgb(), name="photo", rgb=True)]
    _run(w, qtbot)
    assert np.all(mine.data == 1) and "photo (IHC → HE) [1]" in viewer.layers
