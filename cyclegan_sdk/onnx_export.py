"""ONNX export of a generator, for running translations without Python or PyTorch.

The graph is the generator alone: float32 ``(N, C_in, H, W)`` in [-1, 1] in,
float32 ``(N, C_out, H, W)`` in [-1, 1] out, with dynamic batch, height and
width (``H`` and ``W`` multiples of the generator's stride: 4 for ResNet
generators). Instance normalisation is exported as ONNX
``InstanceNormalization`` over the whole input, as PyTorch computes it.

Pre- and post-processing for users of the file (also stored in the model's
metadata under ``cyclegan.preprocessing``):

1. to float32 and to [-1, 1]: ``x / 127.5 - 1`` for uint8, ``x / 32767.5 - 1``
   for uint16, ``2 x - 1`` for floats in [0, 1]; channels first, a batch axis;
2. pad height and width by reflection to the next multiple of ``size_multiple``;
3. run; crop the padding off; ``(y + 1) / 2`` times the range of the output dtype.

Needs the ``onnx`` extra: ``pip install cyclegan-sdk[onnx]``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .modelfile import atomic_write
from .tiling import reset_statistics

__all__ = ["export_generator", "PREPROCESSING"]

PREPROCESSING = (
    "input: float32 NCHW in [-1, 1] (uint8: x/127.5-1; uint16: x/32767.5-1; float in [0,1]: 2x-1); "
    "pad H and W by reflection to multiples of size_multiple; output: float32 NCHW in [-1, 1], "
    "crop the padding, then (y+1)/2 times the output dtype's range"
)


def export_generator(generator: nn.Module, path: str | os.PathLike[str], *, input_nc: int, size_multiple: int,
                     metadata: dict[str, str] | None = None, opset: int = 18) -> Path:
    """Export ``generator`` to an ONNX file with dynamic batch, height and width (written atomically).

    Args:
        generator: a generator from :mod:`cyclegan_sdk.networks`.
        path: the ``.onnx`` file.
        input_nc: its input channels.
        size_multiple: height and width must be multiples of this.
        metadata: extra key/value pairs stored in the model's metadata.
        opset: the ONNX opset.
    """
    try:
        import onnx
    except ImportError:
        raise RuntimeError("ONNX export needs the onnx extra: pip install 'cyclegan-sdk[onnx]'") from None
    net = generator.eval()
    reset_statistics(net)  # per-image statistics: InstanceNormalization
    side = max(2 * size_multiple, 64)
    example = torch.zeros(1, input_nc, side, side)
    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    path = Path(path)
    with atomic_write(path) as tmp:
        onnx_path = tmp.with_suffix(".onnx")
        try:
            with torch.no_grad():
                program = torch.onnx.export(net, (example,), dynamo=True, dynamic_shapes=(dims,),
                                            input_names=["image"], output_names=["translated"], opset_version=opset,
                                            verbose=False)
            program.save(str(onnx_path))
            model = onnx.load(str(onnx_path))
            props = {"cyclegan.size_multiple": str(size_multiple), "cyclegan.preprocessing": PREPROCESSING,
                     **(metadata or {})}
            for key, value in props.items():
                entry = model.metadata_props.add()
                entry.key, entry.value = key, value
            onnx.save(model, str(tmp))
        finally:
            onnx_path.unlink(missing_ok=True)
    return path


