"""ONNX export: onnxruntime computes what PyTorch computes, on sizes and batches not seen at export."""

import numpy as np
import pytest
import torch

from cyclegan_sdk import GeneratorConfig, Translator
from cyclegan_sdk.cli import main

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def model():
    return Translator.random(GeneratorConfig(ngf=8, n_blocks=3), domains=("horse", "zebra"), seed=5)


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


@pytest.mark.parametrize("direction", ["a2b", "b2a"])
def test_onnx_equals_pytorch_on_unseen_sizes(tmp_path, model, direction):
    path = model.export_onnx(tmp_path / "g.onnx", direction)
    x = torch.rand(2, 3, 200, 312, generator=torch.Generator().manual_seed(0)) * 2 - 1  # export used 64x64, batch 1
    with torch.no_grad():
        expected = model.generator(direction)(x).numpy()
    out = _run(path, x)
    assert out.shape == (2, 3, 200, 312) and out.dtype == np.float32
    assert np.abs(out - expected).max() <= 1e-4
    # instance norm as PyTorch computes it: a constant image stays constant per channel, no NaN
    flat = _run(path, torch.zeros(1, 3, 96, 128))
    assert np.isfinite(flat).all()
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["cyclegan.direction"] == direction and meta["cyclegan.size_multiple"] == "4"
    assert meta["cyclegan.target_domain"] == ("zebra" if direction == "a2b" else "horse")


def test_onnx_with_grey_model_and_documented_preprocessing(tmp_path, photo_small):
    grey = Translator.random(GeneratorConfig(ngf=4, n_blocks=1, input_nc=1, output_nc=1))
    path = grey.export_onnx(tmp_path / "grey.onnx")
    image = photo_small[:, :, 1]  # 96 x 128 uint8, multiples of 4: no padding needed
    x = torch.from_numpy(image.astype(np.float32) / 127.5 - 1)[None, None]
    y = _run(path, x)[0, 0]
    by_hand = np.clip(np.rint((y + 1) * 127.5), 0, 255).astype(np.uint8)
    assert np.abs(by_hand.astype(int) - grey.translate(image, precision="fp32")).max() <= 1


def test_cli_export_onnx(tmp_path, capsys, model):
    model.save(tmp_path / "m.safetensors")
    assert main(["export-onnx", str(tmp_path / "m.safetensors"), "-o", str(tmp_path / "out.onnx"),
                 "--direction", "b2a"]) == 0
    assert "zebra -> horse" in capsys.readouterr().out
    assert (tmp_path / "out.onnx").stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "out.onnx"]  # no temporary files left
