"""The ``cyclegan`` command: translate image files, inspect and import models.

Usage::

    cyclegan translate MODEL INPUT... -o OUT [--direction a2b|b2a] [--tile N] [--overlap N]
                       [--batch-size N] [--device DEV] [--precision auto|fp32|bf16|fp16]
                       [--compile] [--suffix TEXT]
    cyclegan info MODEL [--json]
    cyclegan import-reference G_A.pth [G_B.pth] -o model.safetensors [--blocks N] [--ngf N]
                       [--domains A B] [--fp16]

Problems print one line, ``cyclegan: error: ...``, on stderr and exit with
status 2; in a batch, a file that fails is reported and the others are still
translated.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from . import __version__
from .files import IMAGE_SUFFIXES, ImageFileError, find_images, read_image, write_image
from .modelfile import ModelMetadata, read_metadata
from .precision import PRECISIONS, resolve_device, resolve_precision
from .translator import Translator, resolve_model_path

__all__ = ["build_parser", "main"]

PROG = "cyclegan"
_TENSOR_PREFIX = {"G_AB.": "a2b", "G_BA.": "b2a"}
_DTYPE_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``).

    Args:
        argv: the arguments after the program name.

    Returns:
        The exit status: 0 on success, 2 on errors (also when some files of a
        batch failed), 130 when interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors: report the status instead of exiting
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    # ModelFileError and ImageFileError are ValueErrors, FileNotFoundError is an OSError.
    except (ValueError, OSError) as exc:
        _error(_first_line(exc))
        return 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``cyclegan`` command."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Unpaired image-to-image translation (CycleGAN) from the command line."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")

    tr = commands.add_parser(
        "translate", help="translate image files",
        description="Translate image files (PNG, JPEG, TIFF) with a model. Outputs keep the input's "
        "size, dtype and file format; the channel count is the model's.",
    )
    tr.add_argument("model", metavar="MODEL", help="model file, model folder, or Hub repo id 'owner/name'")
    tr.add_argument("inputs", metavar="INPUT", nargs="+",
                    help="image files, folders (searched recursively) or glob patterns")
    tr.add_argument("-o", "--output", required=True, metavar="OUT",
                    help="output file (for a single input, when OUT has an image suffix) or folder")
    tr.add_argument("--direction", choices=("a2b", "b2a"), default="a2b", help="translation direction (default a2b)")
    tr.add_argument("--tile", type=_non_negative, default=None, metavar="N",
                    help="tile edge in pixels; 0 never tiles (default: tiles only for large images)")
    tr.add_argument("--overlap", type=_non_negative, default=None, metavar="N", help="overlap of neighbouring tiles")
    tr.add_argument("--batch-size", type=_positive, default=None, metavar="N", help="tiles or slices per forward pass")
    tr.add_argument("--device", default=None, metavar="DEV",
                    help="cpu, cuda, cuda:1, mps, ... (default: CUDA when available, else the CPU)")
    tr.add_argument("--precision", choices=PRECISIONS, default="auto", help="compute precision (default auto)")
    tr.add_argument("--compile", action="store_true", help="torch.compile the generator (pays off for many images)")
    tr.add_argument("--suffix", default="", metavar="TEXT",
                    help="appended to each output file name in an output folder, e.g. '_zebra'")
    tr.add_argument("--format", choices=("png", "jpg", "tif"), default=None,
                    help="file format of outputs in an output folder (default: each input's own)")
    tr.set_defaults(run=_translate)

    info = commands.add_parser("info", help="describe a model", description="Describe a model file.")
    info.add_argument("model", metavar="MODEL", help="model file, model folder, or Hub repo id 'owner/name'")
    info.add_argument("--json", action="store_true", help="print the model's metadata as JSON")
    info.set_defaults(run=_info)

    imp = commands.add_parser(
        "import-reference", help="convert reference .pth checkpoints into a model file",
        description="Convert generator checkpoints of the reference implementation "
        "(pytorch-CycleGAN-and-pix2pix) into a model file. The architecture is inferred from the weights.",
    )
    imp.add_argument("g_a", metavar="G_A.pth", help="the A -> B generator (latest_net_G_A.pth, horse2zebra.pth, ...)")
    imp.add_argument("g_b", metavar="G_B.pth", nargs="?", default=None, help="the B -> A generator, if there is one")
    imp.add_argument("-o", "--output", required=True, metavar="MODEL", help="the model file to write (.safetensors)")
    imp.add_argument("--blocks", type=_non_negative, default=None, metavar="N",
                     help="residual blocks (6 or 9 in the reference); checked against the weights")
    imp.add_argument("--ngf", type=_positive, default=None, metavar="N", help="filters of the first convolution")
    imp.add_argument("--domains", nargs=2, default=None, metavar=("A", "B"), help="names of domain A and domain B")
    imp.add_argument("--fp16", action="store_true", help="store float16 weights (half the size)")
    imp.set_defaults(run=_import_reference)
    return parser


# ----------------------------------------------------------------- translate
def _translate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    translator = Translator.from_pretrained(args.model)
    if args.direction not in translator.directions:
        a, b = translator.domains
        have = ", ".join(translator.directions)
        raise ValueError(f"this {a}/{b} model has no {args.direction} generator (it has {have})")
    # Resolved here, once: an unusable device or precision is one error, not one per file.
    device = resolve_device(args.device)
    resolve_precision(args.precision, device)
    translator.to(device)

    jobs = _plan_outputs(find_images(args.inputs), Path(args.output), args.suffix, args.format)
    single = len(jobs) == 1 and jobs[0][1] == Path(args.output)
    options = dict(tile_size=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                   precision=args.precision, compile=args.compile)
    # A per-image tile bar only where someone watches; it nests under the file bar.
    tile_progress = True if sys.stderr.isatty() else None
    done = 0
    with tqdm(jobs, unit="image", file=sys.stderr, disable=None, dynamic_ncols=True) as bar:
        for src, dst in bar:
            bar.set_postfix_str(src.name, refresh=False)
            try:
                image = read_image(src)
                result = translator.translate(image, args.direction, progress=tile_progress, **options)
                write_image(dst, result)
            except ImageFileError as exc:
                reason = exc.reason if Path(exc.path) == src else f"cannot write {exc.path}: {exc.reason}"
                bar.write(f"{PROG}: error: {src}: {reason}", file=sys.stderr)
            # Channel mismatches, unsupported dtypes, out of memory for one huge image, ...: the next file may be fine.
            except (ValueError, OSError, RuntimeError) as exc:
                bar.write(f"{PROG}: error: {src}: {_first_line(exc)}", file=sys.stderr)
            else:
                done += 1
    n = len(jobs)
    where = jobs[0][1] if single else args.output
    print(f"translated {done} of {n} image{'s' if n != 1 else ''} into {where}", file=sys.stderr)
    return 0 if done == n else 2


def _plan_outputs(
    images: list[tuple[Path, Path]], out: Path, suffix: str, fmt: str | None = None
) -> list[tuple[Path, Path]]:
    """Pair each input with its output path, refusing plans that would overwrite inputs or each other."""
    to_file = out.suffix.lower() in IMAGE_SUFFIXES and not out.is_dir()
    if to_file and len(images) == 1:
        jobs = [(images[0][0], out)]
    elif to_file:
        raise ValueError(f"-o {out} names an image file, but there are {len(images)} input images; give a folder")
    else:
        jobs = [(src, out / rel.with_name(rel.stem + suffix + (f".{fmt}" if fmt else rel.suffix))) for src, rel in images]
    inputs = {src.resolve(): src for src, _ in jobs}
    targets: dict[Path, Path] = {}
    for src, dst in jobs:
        key = dst.resolve()
        if key in inputs:
            raise ValueError(
                f"output {dst} would overwrite the input {inputs[key]}; choose another output or a --suffix"
            )
        if key in targets:
            raise ValueError(
                f"{targets[key]} and {src} would both be written to {dst}; give their folder as input "
                "to keep the sub-folders apart"
            )
        targets[key] = src
    return jobs


# ---------------------------------------------------------------------- info
def _info(args: argparse.Namespace) -> int:
    path = resolve_model_path(args.model)
    meta = read_metadata(path)
    if args.json:
        print(json.dumps(json.loads(meta.to_json()), indent=2))
        return 0
    directions, dtypes = _stored_tensors(path)
    print(f"model:       {path}")
    print(f"file:        {_human_size(path.stat().st_size)}, {' + '.join(dtypes)} weights, "
          f"format version {meta.format_version}")
    for line in _describe(meta, directions):
        print(line)
    source = dict(meta.source)
    kind = source.pop("kind", "unknown")
    print(f"source:      {kind}" + (f" ({_pairs(source)})" if source else ""))
    if meta.training:
        print("training:")
        for key, value in meta.training.items():
            print(f"  {key}: {_value(value)}")
    else:
        print("training:    (no summary)")
    return 0


def _describe(meta: ModelMetadata, directions: Sequence[str]) -> list[str]:
    """Lines on the domains, directions and generator; shared by ``info`` and ``import-reference``."""
    lines = []
    for label, domain in (("domain A", meta.domain_a), ("domain B", meta.domain_b)):
        s = domain.scaling
        scaling = "by dtype" if s.mode == "dtype" else f"{s.low:g}..{s.high:g} -> [-1, 1]"
        text = f"{label + ':':<12} {domain.name}"
        if domain.description:
            text += f" - {domain.description}"
        plural = "s" if domain.channels != 1 else ""
        lines.append(text + f" ({domain.channels} channel{plural}, values scaled {scaling})")
    names = {"a2b": (meta.domain_a.name, meta.domain_b.name), "b2a": (meta.domain_b.name, meta.domain_a.name)}
    lines.append("directions:  " + ", ".join(f"{d} ({names[d][0]} -> {names[d][1]})" for d in directions))
    config = meta.generator.to_dict()
    kind = config.pop("generator")
    # Show only the fields that shape this kind of generator.
    for unused in ("n_blocks", "upsample") if kind == "unet" else ("num_downs",):
        config.pop(unused, None)
    lines.append(f"generator:   {kind}, {_pairs(config)}")
    return lines


def _stored_tensors(path: Path) -> tuple[list[str], list[str]]:
    """The directions a model file holds and its storage dtypes, read from the header only."""
    from safetensors import safe_open

    directions, dtypes = set(), set()
    with safe_open(str(path), framework="pt") as fh:
        for name in fh.keys():
            directions.update(d for prefix, d in _TENSOR_PREFIX.items() if name.startswith(prefix))
            dtype = fh.get_slice(name).get_dtype()
            dtypes.add(_DTYPE_NAMES.get(dtype, dtype))
    return [d for d in ("a2b", "b2a") if d in directions], sorted(dtypes)


# ---------------------------------------------------------- import-reference
def _import_reference(args: argparse.Namespace) -> int:
    out = Path(args.output)
    for checkpoint in (args.g_a, args.g_b):
        if checkpoint is not None and Path(checkpoint).resolve() == out.resolve():
            raise ValueError(f"-o {out} would overwrite the checkpoint {checkpoint}")
    overrides: dict = {}
    if args.blocks is not None:
        overrides["n_blocks"] = args.blocks
    if args.ngf is not None:
        overrides["ngf"] = args.ngf
    if args.domains is not None:
        overrides["domains"] = tuple(args.domains)
    translator = Translator.from_reference_checkpoint(args.g_a, args.g_b, **overrides)
    dtype = torch.float16 if args.fp16 else torch.float32
    path = translator.save(out, dtype=dtype)
    print(f"wrote {path} ({_human_size(path.stat().st_size)}, {str(dtype).removeprefix('torch.')} weights)")
    for line in _describe(translator.metadata, translator.directions):
        print(line)
    return 0


# ------------------------------------------------------------------- helpers
def _integer(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def _non_negative(text: str) -> int:
    return _integer(text, 0)


def _positive(text: str) -> int:
    return _integer(text, 1)


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _human_size(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _pairs(mapping: dict) -> str:
    return ", ".join(f"{k}={_value(v)}" for k, v in mapping.items())
