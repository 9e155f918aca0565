"""The model file: one ``.safetensors`` file holding a CycleGAN's generators and its description.

Layout:

- tensors ``G_AB.<param>`` (domain A -> B) and/or ``G_BA.<param>`` (B -> A), float16,
  bfloat16 or float32, named as the generator's ``state_dict``;
- header metadata with one key, ``"cyclegan"``, whose value is a JSON document::

      {"format_version": 1,
       "generator": {GeneratorConfig of G_AB; G_BA has input_nc/output_nc swapped},
       "domains": {"a": {"name", "description", "channels", "scaling"}, "b": {...}},
       "source": {"kind": "trained" | "reference" | "preset" | ..., ...},
       "training": {...summary...}}

Reading needs nothing but ``safetensors`` and validates everything: a file that
is not safetensors, a truncated file, an unknown format version, missing or
extra tensors, a shape that does not match the config, an unsupported dtype.
Writing goes to a temporary file that is renamed into place, so a crash never
leaves a half-written model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from .networks import GeneratorConfig, build_generator

__all__ = [
    "FORMAT_VERSION",
    "METADATA_KEY",
    "Domain",
    "ModelFileError",
    "ModelMetadata",
    "ValueScaling",
    "atomic_write",
    "describe_mismatch",
    "expected_shapes",
    "read_metadata",
    "describe_model_file",
    "read_model",
    "write_model",
]

FORMAT_VERSION = 1
METADATA_KEY = "cyclegan"
DIRECTIONS = ("a2b", "b2a")
_PREFIX = {"a2b": "G_AB.", "b2a": "G_BA."}
_STORED_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the file and the problem."""


@dataclass
class ValueScaling:
    """How a domain's pixel values map to the network's [-1, 1].

    Args:
        mode: ``"dtype"`` scales by the array's dtype (uint8 0..255, uint16
            0..65535, float 0..1); ``"range"`` maps ``[low, high]`` (in the
            image's own units, for example percentile bounds of 16-bit
            microscopy) to [-1, 1] and clips outside it.
        low: lower bound for ``mode="range"``.
        high: upper bound for ``mode="range"``.
    """

    mode: Literal["dtype", "range"] = "dtype"
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("dtype", "range"):
            raise ValueError(f"scaling mode must be 'dtype' or 'range', got {self.mode!r}")
        if self.mode == "range":
            if self.low is None or self.high is None or not float(self.high) > float(self.low):
                raise ValueError(
                    f"scaling mode 'range' needs low < high, got low={self.low}, high={self.high}"
                )


@dataclass
class Domain:
    """One side of the translation."""

    name: str = "A"
    description: str = ""
    channels: int = 3
    scaling: ValueScaling = field(default_factory=ValueScaling)


@dataclass
class ModelMetadata:
    """Everything a model file says about its model besides the weights.

    ``generator`` configures ``G_AB``; ``G_BA`` is the same network with the
    channel counts swapped.
    """

    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    domain_a: Domain = field(default_factory=lambda: Domain("A"))
    domain_b: Domain = field(default_factory=lambda: Domain("B"))
    source: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def generator_config(self, direction: str) -> GeneratorConfig:
        """The config of the generator for ``direction`` (``"a2b"`` or ``"b2a"``)."""
        if direction == "a2b":
            return self.generator
        return dataclasses.replace(
            self.generator, input_nc=self.generator.output_nc, output_nc=self.generator.input_nc
        )

    def to_json(self) -> str:
        doc = {
            "format_version": self.format_version,
            "generator": self.generator.to_dict(),
            "domains": {"a": dataclasses.asdict(self.domain_a), "b": dataclasses.asdict(self.domain_b)},
            "source": self.source,
            "training": self.training,
        }
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "model") -> ModelMetadata:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"{where}: metadata is not valid JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise ModelFileError(f"{where}: metadata must be a JSON object")
        version = doc.get("format_version")
        if not isinstance(version, int):
            raise ModelFileError(f"{where}: metadata has no integer 'format_version'")
        if version > FORMAT_VERSION or version < 1:
            raise ModelFileError(
                f"{where}: format version {version} is not supported (this cyclegan-sdk reads "
                f"version {FORMAT_VERSION}); upgrade cyclegan-sdk"
            )
        missing = [k for k in ("generator", "domains") if k not in doc]
        if missing:
            raise ModelFileError(f"{where}: metadata lacks {', '.join(repr(k) for k in missing)}")
        try:
            generator = GeneratorConfig.from_dict(dict(doc["generator"]))
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{where}: bad 'generator' config: {exc}") from None
        domains = doc["domains"]
        if not isinstance(domains, dict) or set(domains) != {"a", "b"}:
            raise ModelFileError(f"{where}: 'domains' must have exactly the keys 'a' and 'b'")
        parsed = []
        for key in ("a", "b"):
            try:
                d = dict(domains[key])
                d["scaling"] = ValueScaling(**d.get("scaling", {}))
                parsed.append(Domain(**d))
            except (TypeError, ValueError) as exc:
                raise ModelFileError(f"{where}: bad domain {key!r}: {exc}") from None
        meta = cls(
            generator=generator,
            domain_a=parsed[0],
            domain_b=parsed[1],
            source=dict(doc.get("source", {})),
            training=dict(doc.get("training", {})),
            format_version=version,
        )
        meta.check(where)
        return meta

    def check(self, where: str = "model") -> None:
        """Raise :class:`ModelFileError` if the domains and the generator disagree."""
        g = self.generator
        if self.domain_a.channels != g.input_nc or self.domain_b.channels != g.output_nc:
            raise ModelFileError(
                f"{where}: domain channels (a={self.domain_a.channels}, b={self.domain_b.channels}) "
                f"do not match the generator (input_nc={g.input_nc}, output_nc={g.output_nc})"
            )


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``.

    On any error the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes owner-only files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_model(
    path: str | os.PathLike[str],
    state_dicts: dict[str, dict[str, Tensor]],
    metadata: ModelMetadata,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a model file atomically.

    Args:
        path: destination ``.safetensors`` file.
        state_dicts: ``{"a2b": G_AB.state_dict(), "b2a": G_BA.state_dict()}``; either may be absent.
        metadata: the model's description.
        dtype: storage dtype, ``torch.float32``, ``torch.float16`` or ``torch.bfloat16``.

    Returns:
        The written path.
    """
    if dtype not in _STORED_DTYPES.values():
        raise ValueError(f"model files store float32, float16 or bfloat16, not {dtype}")
    unknown = sorted(set(state_dicts) - set(DIRECTIONS))
    if unknown or not state_dicts:
        raise ValueError(f"state_dicts keys must be among {DIRECTIONS}, got {sorted(state_dicts)}")
    metadata.check(str(path))
    tensors: dict[str, Tensor] = {}
    for direction, sd in state_dicts.items():
        expected = expected_shapes(metadata.generator_config(direction))
        got = {k: tuple(v.shape) for k, v in sd.items()}
        if got != expected:
            mismatch = describe_mismatch(expected, got)
            raise ValueError(f"{direction} weights do not match the generator config: {mismatch}")
        for k, v in sd.items():
            tensors[_PREFIX[direction] + k] = v.detach().to("cpu", dtype).contiguous()
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: metadata.to_json()})
    return Path(path)


def _read_header(path: Path) -> tuple[dict[str, Any], int]:
    """Parse the safetensors header by hand so that damage gets a precise message."""
    where = str(path)
    if not path.exists():
        raise FileNotFoundError(f"{where}: no such model file")
    if path.is_dir():
        raise ModelFileError(f"{where}: is a directory; use Translator.from_pretrained for model folders")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ModelFileError(f"{where}: not a safetensors file ({size} bytes, too short for a header)")
        (n,) = struct.unpack("<Q", head)
        if n > 100_000_000:
            raise ModelFileError(f"{where}: not a safetensors file (implausible header length {n})")
        raw = fh.read(n)
    if len(raw) < n:
        raise ModelFileError(f"{where}: truncated ({size} bytes, the header alone needs {8 + n})")
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError
    except (UnicodeDecodeError, ValueError):
        raise ModelFileError(f"{where}: not a safetensors file (header is not JSON)") from None
    data_size = size - 8 - n
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(info["data_offsets"][1]))
        except (KeyError, TypeError, IndexError, ValueError):
            raise ModelFileError(f"{where}: not a safetensors file (bad entry for tensor {name!r})") from None
    if end > data_size:
        raise ModelFileError(f"{where}: truncated ({data_size} bytes of tensor data, the header promises {end})")
    return header, n


def read_metadata(path: str | os.PathLike[str]) -> ModelMetadata:
    """Read and validate only the metadata of a model file (no tensors loaded)."""
    header, _ = _read_header(Path(path))
    return _metadata_from_header(header, str(path))


def describe_model_file(path: str | os.PathLike[str]) -> tuple[ModelMetadata, list[str], list[str]]:
    """Metadata, stored directions and storage dtypes of a model file, from its header alone."""
    header, _ = _read_header(Path(path))
    metadata = _metadata_from_header(header, str(path))
    names = [k for k in header if k != "__metadata__"]
    directions = [d for d, prefix in _PREFIX.items() if any(n.startswith(prefix) for n in names)]
    dtypes = sorted({str(_STORED_DTYPES.get(header[n].get("dtype"), header[n].get("dtype"))).removeprefix("torch.")
                     for n in names})
    return metadata, directions, dtypes


def _metadata_from_header(header: dict[str, Any], where: str) -> ModelMetadata:
    meta = header.get("__metadata__") or {}
    if METADATA_KEY not in meta:
        raise ModelFileError(
            f"{where}: not a cyclegan-sdk model file (no {METADATA_KEY!r} metadata); "
            "reference .pth checkpoints are imported with `cyclegan import-reference`"
        )
    return ModelMetadata.from_json(meta[METADATA_KEY], where)


def read_model(path: str | os.PathLike[str]) -> tuple[dict[str, dict[str, Tensor]], ModelMetadata]:
    """Read and validate a model file.

    Returns:
        ``(state_dicts, metadata)`` where ``state_dicts`` maps ``"a2b"``/``"b2a"``
        to float32 state dicts, holding the directions the file has.

    Raises:
        ModelFileError: naming the file and what is wrong with it.
    """
    path = Path(path)
    where = str(path)
    header, _ = _read_header(path)
    metadata = _metadata_from_header(header, where)
    names = [k for k in header if k != "__metadata__"]
    for name in names:
        dt = header[name].get("dtype")
        if dt not in _STORED_DTYPES:
            raise ModelFileError(f"{where}: tensor {name!r} has unsupported dtype {dt} (use F32, F16 or BF16)")
    by_direction: dict[str, dict[str, tuple[int, ...]]] = {}
    stray = []
    for name in names:
        for direction, prefix in _PREFIX.items():
            if name.startswith(prefix):
                by_direction.setdefault(direction, {})[name[len(prefix):]] = tuple(header[name]["shape"])
                break
        else:
            stray.append(name)
    if stray:
        raise ModelFileError(f"{where}: unexpected tensors {_short(stray)} (names must start with G_AB. or G_BA.)")
    if not by_direction:
        raise ModelFileError(f"{where}: holds no generator weights (no G_AB.* or G_BA.* tensors)")
    for direction, shapes in by_direction.items():
        expected = expected_shapes(metadata.generator_config(direction))
        if shapes != expected:
            raise ModelFileError(f"{where}: {_PREFIX[direction][:-1]} {describe_mismatch(expected, shapes)}")
    state_dicts: dict[str, dict[str, Tensor]] = {d: {} for d in by_direction}
    try:
        with safe_open(str(path), framework="pt") as fh:
            for name in names:
                direction = "a2b" if name.startswith("G_AB.") else "b2a"
                state_dicts[direction][name[5:]] = fh.get_tensor(name).float()
    except Exception as exc:  # safetensors raises its own error types
        raise ModelFileError(f"{where}: cannot read tensors ({exc})") from None
    return state_dicts, metadata


def expected_shapes(config: GeneratorConfig) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of the generator ``config`` describes (built on the meta device: no memory)."""
    with torch.device("meta"):
        net = build_generator(config)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _short(names: list[str], n: int = 4) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def describe_mismatch(expected: dict[str, tuple[int, ...]], got: dict[str, tuple[int, ...]]) -> str:
    """One line on how ``got`` tensor shapes differ from ``expected``: missing, extra, first wrong shape."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    wrong = [k for k in expected if k in got and expected[k] != got[k]]
    parts = []
    if missing:
        parts.append(f"missing tensors {_short(missing)}")
    if extra:
        parts.append(f"extra tensors {_short(extra)}")
    if wrong:
        k = wrong[0]
        parts.append(
            f"shape mismatch for {k}: file has {list(got[k])}, config expects {list(expected[k])}"
            + (f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else "")
        )
    return "; ".join(parts) or "weights match"
