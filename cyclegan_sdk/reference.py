"""Import of the reference implementation's generator checkpoints (``.pth``).

The reference (pytorch-CycleGAN-and-pix2pix) saves each generator's
``state_dict`` on its own: ``latest_net_G_A.pth`` (A -> B) and
``latest_net_G_B.pth`` (B -> A) from training, and single files such as
``horse2zebra.pth`` among its pretrained models. Our networks use the same
parameter names, so importing is loading with ``torch.load(weights_only=True)``
(no pickle code runs), dropping ``module.`` prefixes of DataParallel saves and
the instance-norm running statistics of old PyTorch versions, and inferring the
architecture from the tensor shapes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .modelfile import Domain, ModelFileError, ModelMetadata, describe_mismatch, expected_shapes
from .networks import GeneratorConfig

__all__ = ["clean_state_dict", "import_reference", "infer_generator_config", "load_reference_state_dict"]

_LEGACY = ("running_mean", "running_var", "num_batches_tracked")


def load_reference_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a reference ``.pth`` generator checkpoint safely and clean its keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, refused globals
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: not a loadable PyTorch checkpoint ({first})") from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ModelFileError(f"{path}: expected a generator state_dict (a mapping of names to tensors)")
    return clean_state_dict(obj)


def clean_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop ``module.`` prefixes and legacy instance-norm statistics; convert to float32.

    Old PyTorch versions saved ``running_mean``/``running_var`` for instance
    norms without affine parameters; a layer with those but no ``weight`` is
    such a norm (batch norms have a weight and keep their statistics).
    """
    stripped = {}
    for key, value in state_dict.items():
        while key.startswith("module."):
            key = key[len("module."):]
        stripped[key] = value
    cleaned = {}
    for key, value in stripped.items():
        prefix, _, leaf = key.rpartition(".")
        if leaf in _LEGACY and f"{prefix}.weight" not in stripped:
            continue
        cleaned[key] = value.detach().float() if value.is_floating_point() else value.detach()
    return cleaned


def infer_generator_config(state_dict: Mapping[str, Tensor], **overrides: Any) -> GeneratorConfig:
    """Infer a ResNet or U-Net generator's config from the tensor shapes of its ``state_dict``.

    ``overrides`` (``n_blocks``, ``ngf``, ``norm``, ``use_dropout``, ...) win over
    what the shapes say; they are checked against the weights when loading.
    """
    keys = list(state_dict)
    if any(k.startswith("model.model.") for k in keys):
        # U-Net: model.model.0 is the outermost down conv; depth is the nesting count.
        first = state_dict["model.model.0.weight"]
        ngf, input_nc = int(first.shape[0]), int(first.shape[1])
        depth = max(k.count("model.") for k in keys if k.endswith(".weight")) - 1
        last = [k for k in keys if re.fullmatch(r"model\.model\.\d+\.weight", k)]
        output_nc = int(state_dict[max(last, key=lambda k: int(k.split(".")[2]))].shape[1])
        config = dict(generator="unet", input_nc=input_nc, output_nc=output_nc, ngf=ngf, num_downs=depth)
        config["norm"] = "batch" if "model.model.1.model.2.weight" in state_dict else "instance"
    else:
        if "model.1.weight" not in state_dict:
            raise ModelFileError("not a reference generator state_dict (no 'model.1.weight' or 'model.model.0.weight')")
        first = state_dict["model.1.weight"]
        ngf, input_nc = int(first.shape[0]), int(first.shape[1])
        blocks = {int(m.group(1)) for k in keys if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
        n_blocks = len(blocks)
        # With dropout the block's second conv moves from conv_block.5 to conv_block.6.
        dropout = any(k.endswith(".conv_block.6.weight") and state_dict[k].ndim == 4 for k in keys)
        last_index = max(int(m.group(1)) for k in keys if (m := re.fullmatch(r"model\.(\d+)\.weight", k)))
        output_nc = int(state_dict[f"model.{last_index}.weight"].shape[0])
        norm = "batch" if "model.2.weight" in state_dict else "instance"
        config = dict(generator="resnet", input_nc=input_nc, output_nc=output_nc, ngf=ngf,
                      n_blocks=n_blocks, use_dropout=dropout, norm=norm)
    config.update({k: v for k, v in overrides.items() if v is not None})
    return GeneratorConfig(**config)


def import_reference(
    g_ab_path: str | os.PathLike[str],
    g_ba_path: str | os.PathLike[str] | None = None,
    *,
    domains: tuple[str, str] = ("A", "B"),
    descriptions: tuple[str, str] = ("", ""),
    **network: Any,
) -> tuple[dict[str, dict[str, Tensor]], ModelMetadata]:
    """Import one or two reference generator checkpoints.

    Args:
        g_ab_path: the A -> B generator (``latest_net_G_A.pth``, ``horse2zebra.pth``, ...).
        g_ba_path: the B -> A generator (``latest_net_G_B.pth``), if there is one.
        domains: names of domain A and domain B.
        descriptions: their descriptions.
        network: :class:`GeneratorConfig` fields that override what the shapes say,
            for example ``n_blocks=6`` or ``norm="batch"``.

    Returns:
        ``(state_dicts, metadata)``, ready for :func:`~cyclegan_sdk.modelfile.write_model`
        or :meth:`Translator.from_state_dicts`.

    Raises:
        ModelFileError: when a checkpoint does not match the architecture,
            naming the file and the first differing tensors.
    """
    paths = {"a2b": Path(g_ab_path)}
    if g_ba_path is not None:
        paths["b2a"] = Path(g_ba_path)
    state_dicts = {d: load_reference_state_dict(p) for d, p in paths.items()}
    config = infer_generator_config(state_dicts["a2b"], **network)
    meta = ModelMetadata(
        generator=config,
        domain_a=Domain(domains[0], descriptions[0], channels=config.input_nc),
        domain_b=Domain(domains[1], descriptions[1], channels=config.output_nc),
        source={"kind": "reference", "files": {d: p.name for d, p in paths.items()}},
    )
    for direction, sd in state_dicts.items():
        expected = expected_shapes(meta.generator_config(direction))
        got = {k: tuple(v.shape) for k, v in sd.items()}
        if got != expected:
            depth = f"n_blocks={config.n_blocks}" if config.generator == "resnet" else f"num_downs={config.num_downs}"
            raise ModelFileError(
                f"{paths[direction]}: does not match {config.generator} generator "
                f"(ngf={config.ngf}, {depth}): {describe_mismatch(expected, got)}"
            )
    return state_dicts, meta
