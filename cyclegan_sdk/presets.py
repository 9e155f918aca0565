"""Presets: named domain pairs with a training recipe, inference defaults and, where shipped, weights.

A preset is a folder holding ``preset.toml`` and, optionally, a weights file
(a cyclegan-sdk ``.safetensors`` model file) and sample images. It is data
only: loading one reads TOML and hashes files, it never runs code. Presets
come bundled with the package, installed by the user (into the user's data
directory, or ``$CYCLEGAN_PRESETS_DIR``), or from a folder, a ``.zip`` or a
Hugging Face Hub repo id.

Example:
    >>> from cyclegan_sdk.presets import load_preset
    >>> preset = load_preset("stain-transfer")
    >>> preset.domains[0].name, preset.domains[1].name
    ('IHC', 'HE')
    >>> preset.train_config(crop_size=64).augment
    'dihedral'

The format (every field is checked; unknown ones are warned about):

.. code-block:: toml

    name = "stain-transfer"            # lower case, digits, '-', '_', '.'; the install folder's name
    version = "1.0.0"
    title = "Stain transfer: IHC <-> H&E-like"
    description = "..."
    licence = "BSD-3-Clause"
    authors = ["..."]
    notes = "..."                       # optional: limits, honest caveats

    [domains.a]                         # and [domains.b]
    name = "IHC"
    description = "..."
    channels = 3
    value_scaling = "dtype"             # or "percentile" (16-bit microscopy)

    [recipe]
    augment = "dihedral"                # "flip" (photos), "dihedral" (microscopy), "none"
    minutes = 10                        # optional: default training length of `cyclegan train --preset`
    [recipe.network]                    # GeneratorConfig / discriminator fields of TrainConfig
    ngf = 32
    upsample = "resize"
    [recipe.train]                      # any other TrainConfig field
    crop_size = 96

    [inference]
    direction = "a2b"
    tile_size = 512                     # 0: never tile
    overlap = 64

    [weights]                           # optional: only where weights ship
    file = "model.safetensors"
    sha256 = "..."
    [weights.data]
    name = "skimage-ihc-restain"        # a pair of cyclegan_sdk.preset_data, or any text
    description = "..."
    [weights.training]
    command = "cyclegan train ... --preset stain-transfer"
    [weights.metrics]
    command = "cyclegan presets evaluate stain-transfer"
    heldout = "..."
    model = { delta_e = 6.0, psnr = 22.6, ssim = 0.69 }
    reinhard = { ... }
    identity = { ... }

    [samples]
    files = ["sample.png"]
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import os
import re
import shutil
import stat
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "MAX_ZIP_BYTES",
    "PRESET_FILE",
    "Preset",
    "PresetDomain",
    "PresetError",
    "PresetInference",
    "PresetWarning",
    "bundled_presets_dir",
    "install_preset",
    "installed_presets_dir",
    "list_presets",
    "load_preset",
    "remove_preset",
    "render_card",
]

PRESET_FILE = "preset.toml"
#: Largest total uncompressed size of a preset zip (weights of a few MB, sample images).
MAX_ZIP_BYTES = 512 * 1024 * 1024
#: Most entries a preset zip may have.
MAX_ZIP_ENTRIES = 1000
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PresetError(ValueError):
    """A preset that cannot be used; the message names the file and the field."""


class PresetWarning(UserWarning):
    """Something in a preset that is ignored (an unknown field) or skipped (a broken installed preset)."""


# ------------------------------------------------------------------ the model
@dataclass(frozen=True)
class PresetDomain:
    """One side of a preset's translation."""

    name: str
    description: str
    channels: int
    value_scaling: str = "dtype"


@dataclass(frozen=True)
class PresetInference:
    """Defaults for translating with a preset's weights."""

    direction: str = "a2b"
    tile_size: int | None = None
    overlap: int | None = None


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: it holds tables (dicts)
class Preset:
    """A validated preset.

    Attributes:
        name: the preset's name (its install folder).
        version, title, description, licence, authors, notes: as in ``preset.toml``.
        domains: ``(domain A, domain B)`` as :class:`PresetDomain`.
        recipe: TrainConfig overrides (network, augmentation, training fields), flat.
        minutes: default training length in minutes for ``cyclegan train --preset`` (or ``None``).
        inference: :class:`PresetInference`.
        weights: the ``[weights]`` table as read (file, sha256, data, training, metrics), or ``None``.
        weights_path: the verified weights file, or ``None`` when the preset ships none.
        samples: sample image files shipped with the preset.
        source: where it was loaded from (the folder, zip or Hub repo id as given).
        origin: ``"bundled"``, ``"installed"``, ``"folder"``, ``"zip"`` or ``"hub"``.
        folder: the folder holding ``preset.toml``.
    """

    name: str
    version: str
    title: str
    description: str
    domains: tuple[PresetDomain, PresetDomain]
    recipe: Mapping[str, Any]
    inference: PresetInference
    licence: str
    authors: tuple[str, ...]
    folder: Path
    source: str
    origin: str
    notes: str = ""
    minutes: float | None = None
    weights: Mapping[str, Any] | None = None
    weights_path: Path | None = None
    samples: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def has_weights(self) -> bool:
        """Whether the preset ships trained weights."""
        return self.weights_path is not None

    def train_config(self, **overrides: Any) -> Any:
        """The preset's :class:`~cyclegan_sdk.trainer.TrainConfig`, with ``overrides`` replacing its fields.

        Example:
            >>> load_preset("stain-transfer").train_config(ngf=8).ngf
            8
        """
        from .trainer import TrainConfig

        fields = {"domain_names": (self.domains[0].name, self.domains[1].name),
                  "value_scaling": self.domains[0].value_scaling, **self.recipe, **overrides}
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(TrainConfig)})
        if unknown:
            raise TypeError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        return TrainConfig(**fields)


# ------------------------------------------------------------------ the schema
# Each field: (type, required). Types are checked and named in errors.
_STR, _INT, _NUM, _BOOL, _STRS, _TABLE, _ANY = ("a string", "an integer", "a number", "true or false",
                                                "a list of strings", "a table", "a value")
_TOP = {"name": (_STR, True), "version": (_STR, True), "title": (_STR, True), "description": (_STR, True),
        "licence": (_STR, True), "authors": (_STRS, True), "notes": (_STR, False), "domains": (_TABLE, True),
        "recipe": (_TABLE, True), "inference": (_TABLE, True), "weights": (_TABLE, False),
        "samples": (_TABLE, False)}
_DOMAIN = {"name": (_STR, True), "description": (_STR, True), "channels": (_INT, True),
           "value_scaling": (_STR, False)}
_RECIPE = {"augment": (_STR, True), "minutes": (_NUM, False), "network": (_TABLE, False), "train": (_TABLE, False)}
_NETWORK = {"generator": (_STR, False), "ngf": (_INT, False), "ndf": (_INT, False), "n_blocks": (_INT, False),
            "num_downs": (_INT, False), "n_layers_d": (_INT, False), "norm": (_STR, False),
            "use_dropout": (_BOOL, False), "upsample": (_STR, False)}
_INFERENCE = {"direction": (_STR, True), "tile_size": (_INT, False), "overlap": (_INT, False)}
_WEIGHTS = {"file": (_STR, True), "sha256": (_STR, True), "data": (_TABLE, True), "training": (_TABLE, False),
            "metrics": (_TABLE, True)}
_WEIGHTS_DATA = {"name": (_STR, False), "description": (_STR, True)}
_WEIGHTS_TRAINING = {"command": (_STR, True), "minutes": (_NUM, False), "steps": (_INT, False),
                     "machine": (_STR, False)}
_METRICS = {"command": (_STR, True), "heldout": (_STR, True), "model": (_TABLE, True),
            "reinhard": (_TABLE, False), "identity": (_TABLE, False), "truth": (_TABLE, False),
            "tolerance": (_TABLE, False)}
_SAMPLES = {"files": (_STRS, True)}


def _type_ok(value: Any, kind: str) -> bool:
    if kind == _STR:
        return isinstance(value, str)
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _NUM:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _STRS:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == _ANY:
        return True
    return isinstance(value, dict)


def _kind_of_default(value: Any) -> str:
    """The type a TrainConfig field takes, from its default (mixed-type fields are checked by TrainConfig)."""
    if isinstance(value, bool):
        return _BOOL
    if isinstance(value, int):
        return _INT
    if isinstance(value, float):
        return _NUM
    if isinstance(value, str) and value != "auto":
        return _STR
    return _ANY


def _check_table(table: Any, schema: Mapping[str, tuple[str, bool]], where: str, prefix: str,
                 open_table: bool = False) -> dict[str, Any]:
    """Type-check ``table`` against ``schema``: missing required fields and wrong types raise, unknown warn."""
    label = prefix.rstrip(".") or "the top level"
    if not isinstance(table, dict):
        raise PresetError(f"{where}: field '{label}' must be a table")
    for key, (kind, required) in schema.items():
        if key not in table:
            if required:
                raise PresetError(f"{where}: missing required field '{prefix}{key}'")
            continue
        if not _type_ok(table[key], kind):
            raise PresetError(f"{where}: field '{prefix}{key}' must be {kind}, got {table[key]!r}")
    if not open_table:
        for key in table:
            if key not in schema:
                warnings.warn(f"{where}: unknown field '{prefix}{key}' ignored", PresetWarning, stacklevel=4)
    return table


def _parse(doc: dict[str, Any], folder: Path, where: str, source: str, origin: str, verify: bool = True) -> Preset:
    from .trainer import TrainConfig

    _check_table(doc, _TOP, where, "")
    name = doc["name"]
    if not _NAME.match(name):
        raise PresetError(f"{where}: field 'name' must be lower-case letters, digits, '-', '_' or '.' (at most 64, "
                          f"starting with a letter or digit), got {name!r}")
    domains_doc = _check_table(doc["domains"], {"a": (_TABLE, True), "b": (_TABLE, True)}, where, "domains.")
    domains = []
    for key in ("a", "b"):
        d = _check_table(domains_doc[key], _DOMAIN, where, f"domains.{key}.")
        if d["channels"] < 1:
            raise PresetError(f"{where}: field 'domains.{key}.channels' must be >= 1, got {d['channels']}")
        scaling = d.get("value_scaling", "dtype")
        if scaling not in ("dtype", "percentile"):
            raise PresetError(f"{where}: field 'domains.{key}.value_scaling' must be 'dtype' or 'percentile', "
                              f"got {scaling!r}")
        domains.append(PresetDomain(d["name"], d["description"], d["channels"], scaling))
    if domains[0].value_scaling != domains[1].value_scaling:
        raise PresetError(f"{where}: fields 'domains.a.value_scaling' and 'domains.b.value_scaling' differ; "
                          "training uses one value scaling for both")

    recipe_doc = _check_table(doc["recipe"], _RECIPE, where, "recipe.")
    if recipe_doc["augment"] not in ("flip", "dihedral", "none"):
        raise PresetError(f"{where}: field 'recipe.augment' must be 'flip', 'dihedral' or 'none', "
                          f"got {recipe_doc['augment']!r}")
    minutes = recipe_doc.get("minutes")
    if minutes is not None and not minutes > 0:
        raise PresetError(f"{where}: field 'recipe.minutes' must be > 0, got {minutes}")
    network = _check_table(recipe_doc.get("network", {}), _NETWORK, where, "recipe.network.")
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    train_fields = set(defaults) - set(_NETWORK) - {"augment", "domain_names", "value_scaling", "input_nc",
                                                    "output_nc"}
    train = _check_table(recipe_doc.get("train", {}), {k: (_kind_of_default(defaults[k]), False) for k in train_fields},
                         where, "recipe.train.", open_table=True)
    for key in train:
        if key not in train_fields:
            raise PresetError(f"{where}: field 'recipe.train.{key}' is not a training setting "
                              f"(known: {', '.join(sorted(train_fields))})")
    recipe = {"augment": recipe_doc["augment"], **network, **train}
    try:  # every value checked by the config itself, channel counts from the domains
        TrainConfig(**recipe, domain_names=(domains[0].name, domains[1].name),
                    value_scaling=domains[0].value_scaling)
    except (TypeError, ValueError) as exc:
        raise PresetError(f"{where}: field 'recipe' is not a valid training config: {exc}") from None

    inf = _check_table(doc["inference"], _INFERENCE, where, "inference.")
    if inf["direction"] not in ("a2b", "b2a"):
        raise PresetError(f"{where}: field 'inference.direction' must be 'a2b' or 'b2a', got {inf['direction']!r}")
    for key in ("tile_size", "overlap"):
        if inf.get(key) is not None and inf[key] < 0:
            raise PresetError(f"{where}: field 'inference.{key}' must be >= 0, got {inf[key]}")
    inference = PresetInference(inf["direction"], inf.get("tile_size"), inf.get("overlap"))

    weights, weights_path = None, None
    if "weights" in doc:
        weights = _check_table(doc["weights"], _WEIGHTS, where, "weights.")
        _check_table(weights["data"], _WEIGHTS_DATA, where, "weights.data.")
        if "training" in weights:
            _check_table(weights["training"], _WEIGHTS_TRAINING, where, "weights.training.")
        metrics = _check_table(weights["metrics"], _METRICS, where, "weights.metrics.")
        for key in ("model", "reinhard", "identity", "truth", "tolerance"):
            for metric, value in metrics.get(key, {}).items():
                if not _type_ok(value, _NUM):
                    raise PresetError(f"{where}: field 'weights.metrics.{key}.{metric}' must be a number, "
                                      f"got {value!r}")
        weights_path = _member(folder, weights["file"], where, "weights.file", origin)
        if not _SHA256.match(weights["sha256"]):
            raise PresetError(f"{where}: field 'weights.sha256' must be 64 lower-case hex digits")
        if verify:
            digest = sha256_file(weights_path)
            if digest != weights["sha256"]:
                raise PresetError(f"{where}: field 'weights.sha256' does not match {weights['file']} "
                                  f"(file has {digest}): the weights are damaged or were replaced")
    samples: tuple[Path, ...] = ()
    if "samples" in doc:
        s = _check_table(doc["samples"], _SAMPLES, where, "samples.")
        samples = tuple(_member(folder, f, where, "samples.files", origin) for f in s["files"])
    return Preset(
        name=name, version=doc["version"], title=doc["title"], description=doc["description"],
        domains=(domains[0], domains[1]), recipe=recipe, inference=inference, licence=doc["licence"],
        authors=tuple(doc["authors"]), folder=folder, source=source, origin=origin, notes=doc.get("notes", ""),
        minutes=minutes, weights=weights, weights_path=weights_path, samples=samples,
    )


def _member(folder: Path, relative: str, where: str, field_name: str, origin: str) -> Path:
    """A file named by a preset, which must lie inside the preset's folder and exist."""
    path = Path(relative)
    if path.is_absolute() or ".." in path.parts or not relative:
        raise PresetError(f"{where}: field '{field_name}' must be a path inside the preset folder, got {relative!r}")
    full = folder / path
    # A Hub snapshot's files are links into the cache's blob store; anywhere else a link could reach out.
    if origin != "hub" and (full.is_symlink() or not full.resolve().is_relative_to(folder.resolve())):
        raise PresetError(f"{where}: field '{field_name}': {relative} is a link; preset files must be plain files")
    if not full.is_file():
        raise PresetError(f"{where}: field '{field_name}': {relative} does not exist")
    return full


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------ locations
def bundled_presets_dir() -> Path:
    """Where the bundled presets are: inside the package in a wheel, else the checkout's ``presets/``."""
    inside = Path(__file__).with_name("_presets")
    if inside.is_dir():
        return inside
    return Path(__file__).resolve().parent.parent / "presets"


def installed_presets_dir() -> Path:
    """Where ``install_preset`` puts presets: ``$CYCLEGAN_PRESETS_DIR``, else the user's data directory."""
    env = os.environ.get("CYCLEGAN_PRESETS_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("cyclegan-sdk", appauthor=False)) / "presets"


def _named_folders(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and (p / PRESET_FILE).is_file()}


# -------------------------------------------------------------------- loading
def _load_folder(folder: Path, source: str, origin: str, verify: bool = True) -> Preset:
    toml_path = folder / PRESET_FILE
    where = str(toml_path)
    if not toml_path.is_file():
        raise PresetError(f"{folder}: no {PRESET_FILE} in this folder")
    try:
        doc = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise PresetError(f"{where}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(f"{where}: not valid TOML ({exc})") from None
    preset = _parse(doc, folder, where, source, origin, verify)
    if origin in ("bundled", "installed") and preset.name != folder.name:
        raise PresetError(f"{where}: field 'name' is {preset.name!r} but the folder is {folder.name!r}")
    return preset


def _extract_zip(path: Path, destination: Path) -> Path:
    """Extract a preset zip safely into ``destination``; return the folder holding ``preset.toml``."""
    where = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PresetError(f"{where}: not a readable zip file ({exc})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ZIP_ENTRIES:
            raise PresetError(f"{where}: {len(infos)} entries, more than the limit of {MAX_ZIP_ENTRIES}")
        total = 0
        for info in infos:
            name = info.filename
            parts = Path(name.replace("\\", "/")).parts
            if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
                raise PresetError(f"{where}: entry {name!r} has an absolute path")
            if ".." in parts:
                raise PresetError(f"{where}: entry {name!r} leaves the preset folder ('..')")
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise PresetError(f"{where}: entry {name!r} is a symbolic link; presets hold plain files only")
            total += info.file_size
            if total > MAX_ZIP_BYTES:
                raise PresetError(f"{where}: unpacks to more than the limit of {MAX_ZIP_BYTES // 2**20} MiB")
        written = 0
        for info in infos:
            target = destination / info.filename
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            # The sizes in the header may lie: count what is really written.
            with archive.open(info) as src, open(target, "wb") as dst:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    written += len(chunk)
                    if written > MAX_ZIP_BYTES:
                        raise PresetError(f"{where}: unpacks to more than the limit of {MAX_ZIP_BYTES // 2**20} MiB")
                    dst.write(chunk)
    if (destination / PRESET_FILE).is_file():
        return destination
    tops = [p for p in destination.iterdir()]
    if len(tops) == 1 and tops[0].is_dir() and (tops[0] / PRESET_FILE).is_file():
        return tops[0]
    raise PresetError(f"{where}: no {PRESET_FILE} at the top of the zip or in its single top-level folder")


_TEMP_DIRS: list[str] = []


def _temporary_dir() -> Path:
    if not _TEMP_DIRS:
        atexit.register(lambda: [shutil.rmtree(d, ignore_errors=True) for d in _TEMP_DIRS])
    path = tempfile.mkdtemp(prefix="cyclegan-preset-")
    _TEMP_DIRS.append(path)
    return Path(path)


def _hub_folder(repo_id: str, revision: str | None, cache_dir: str | os.PathLike[str] | None) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - a declared dependency
        raise PresetError("huggingface_hub is needed to load presets from the Hub") from None
    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir))
    except LocalEntryNotFoundError:
        raise PresetError(f"{repo_id}: not a bundled or installed preset, folder or zip; as a Hub repo id it is not "
                          "in the local Hub cache and the Hub cannot be reached (offline, HF_HUB_OFFLINE=1)") from None
    except HfHubHTTPError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PresetError(f"{repo_id}: cannot fetch the preset from the Hub ({first})") from None


def load_preset(source: str | os.PathLike[str], *, revision: str | None = None,
                cache_dir: str | os.PathLike[str] | None = None) -> Preset:
    """Load and validate a preset.

    Args:
        source: a bundled or installed preset's name (an existing path of
            that name wins; installed presets cannot take a bundled name),
            a folder holding ``preset.toml``, a ``.zip`` of one,
            or a Hugging Face Hub repo id ``"owner/name"`` (honours
            ``HF_HUB_OFFLINE=1`` and the Hub cache).
        revision: for a Hub repo id: a branch, tag or commit.
        cache_dir: for a Hub repo id: the Hub cache to use (default: huggingface_hub's).

    Returns:
        The :class:`Preset`; weights, when it ships them, are checked against their SHA-256.

    Raises:
        PresetError: one line naming the file and the field at fault.

    Example:
        >>> load_preset("jewelry-retouch").recipe["augment"]
        'flip'
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    if _NAME.match(text) and not path.exists():
        for origin, root in (("bundled", bundled_presets_dir()), ("installed", installed_presets_dir())):
            folder = _named_folders(root).get(text)
            if folder is not None:
                return _load_folder(folder, text, origin)
    if path.is_dir():
        return _load_folder(path, text, "folder")
    if path.is_file():
        if path.suffix.lower() != ".zip" and not zipfile.is_zipfile(path):
            if path.name == PRESET_FILE:
                return _load_folder(path.parent, text, "folder")
            raise PresetError(f"{path}: not a preset folder, {PRESET_FILE} or .zip")
        return _load_folder(_extract_zip(path, _temporary_dir()), text, "zip")
    if text.count("/") == 1 and not text.startswith((".", "/", "~")) and not text.endswith(".zip"):
        return _load_folder(_hub_folder(text, revision, cache_dir), text, "hub")
    known = ", ".join(p.name for p in list_presets()) or "none"
    raise PresetError(f"{text}: no such preset, folder or zip (known presets: {known})")


def list_presets() -> list[Preset]:
    """Bundled and installed presets, sorted by name.

    A broken installed preset is skipped with a :class:`PresetWarning`, never
    raised: one bad download must not hide the others.
    """
    found: dict[str, Preset] = {}
    for origin, root in (("bundled", bundled_presets_dir()), ("installed", installed_presets_dir())):
        for name, folder in _named_folders(root).items():
            if name in found:
                continue
            try:
                found[name] = _load_folder(folder, name, origin)
            except (PresetError, OSError) as exc:
                if origin == "bundled":
                    raise
                warnings.warn(f"skipping installed preset {name}: {exc}", PresetWarning, stacklevel=2)
    return [found[k] for k in sorted(found)]


# ----------------------------------------------------------- install, remove
def _install_target(name: str) -> Path:
    if not _NAME.match(name) or name in (".", ".."):
        raise PresetError(f"{name!r} is not a valid preset name")
    root = installed_presets_dir().resolve()
    target = (root / name).resolve()
    if target.parent != root:  # belt and braces: the pattern already forbids separators
        raise PresetError(f"preset name {name!r} would leave the install directory {root}")
    return target


def install_preset(source: str | os.PathLike[str], *, replace: bool = False, revision: str | None = None,
                   cache_dir: str | os.PathLike[str] | None = None) -> Preset:
    """Validate a preset from a folder, zip or Hub repo id and copy it into the install directory.

    Args:
        source: as for :func:`load_preset` (but not a bundled name).
        replace: overwrite an installed preset of the same name.
        revision, cache_dir: for a Hub repo id, as for :func:`load_preset`.

    Returns:
        The installed preset, loaded from its new place.
    """
    preset = load_preset(source, revision=revision, cache_dir=cache_dir)
    if preset.origin == "bundled":
        raise PresetError(f"{preset.name} is a bundled preset; it needs no installing")
    if preset.name in _named_folders(bundled_presets_dir()):
        raise PresetError(f"{preset.source}: field 'name' is {preset.name!r}, the name of a bundled preset; "
                          "rename the community preset")
    target = _install_target(preset.name)
    if target.exists() and not replace:
        raise PresetError(f"preset {preset.name} is already installed at {target}; remove it first or replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{preset.name}.", dir=target.parent))
    try:
        for item in preset.folder.rglob("*"):
            rel = item.relative_to(preset.folder)
            if item.is_symlink() and preset.origin != "hub":
                raise PresetError(f"{preset.folder}: {rel} is a symbolic link; presets hold plain files only")
            if any(part.startswith(".") for part in rel.parts):  # .git, .cache of Hub snapshots
                continue
            if item.is_dir():
                (staging / rel).mkdir(parents=True, exist_ok=True)
            else:
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(item, staging / rel)
        _load_folder(staging, str(staging), "folder")  # the copy validates too (hashes included)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # The files were verified in staging and moved, not rewritten: no need to hash them a third time.
    return _load_folder(target, preset.name, "installed", verify=False)


def remove_preset(name: str) -> Path:
    """Delete an installed preset; returns the folder removed. Bundled presets cannot be removed."""
    target = _install_target(name)
    if not (target / PRESET_FILE).is_file():
        if name in _named_folders(bundled_presets_dir()):
            raise PresetError(f"{name} is a bundled preset; only installed presets can be removed")
        raise PresetError(f"no installed preset {name!r} in {target.parent}")
    shutil.rmtree(target)
    return target


# ------------------------------------------------------------------ the card
def render_card(preset: Preset) -> str:
    """The preset as a model card in Markdown: domains, recipe, inference defaults, weights and their scores."""
    a, b = preset.domains
    lines = [f"# {preset.title}", "", f"`{preset.name}` {preset.version} · licence {preset.licence} · "
             f"by {', '.join(preset.authors)} · from {preset.origin} ({preset.source})", "", preset.description.strip(),
             "", "## Domains", "",
             f"- A, **{a.name}** ({a.channels} channel{'s' if a.channels != 1 else ''}, values by {a.value_scaling}): "
             f"{a.description.strip()}",
             f"- B, **{b.name}** ({b.channels} channel{'s' if b.channels != 1 else ''}, values by {b.value_scaling}): "
             f"{b.description.strip()}",
             "", "## Recipe", "",
             "- " + ", ".join(f"{k}={v}" for k, v in preset.recipe.items())]
    if preset.minutes:
        lines.append(f"- default training length: {preset.minutes:g} minutes")
    inf = preset.inference
    lines += ["", "## Inference", "",
              f"- direction {inf.direction}, tile {inf.tile_size if inf.tile_size is not None else 'auto'}, "
              f"overlap {inf.overlap if inf.overlap is not None else 'default'}", "", "## Weights", ""]
    if preset.weights is None:
        lines.append("None shipped: this preset is a recipe. Train with "
                     f"`cyclegan train DIR_A DIR_B --preset {preset.name} -o model.safetensors`.")
    else:
        w = preset.weights
        size = preset.weights_path.stat().st_size if preset.weights_path else 0
        lines += [f"- file: `{w['file']}` ({size / 1e6:.1f} MB), sha256 `{w['sha256']}`",
                  f"- trained on: {w['data']['description'].strip()}"]
        training = w.get("training", {})
        if training:
            lines.append(f"- trained with: `{training['command']}`" + "".join(
                f"; {k} {training[k]}" for k in ("minutes", "steps", "machine") if k in training))
        m = w["metrics"]
        lines += ["", f"Held-out scores ({m['heldout'].strip()}), reproduced by `{m['command']}`:", "",
                  "| | ΔE2000 ↓ | PSNR dB ↑ | SSIM ↑ | checkerboard ↓ | checkerboard, flat regions ↓ |",
                  "|---|---|---|---|---|---|"]
        for row in ("model", "reinhard", "identity", "truth"):
            scores = m.get(row)
            if scores:
                cells = [f"{scores[k]:.3g}" if k in scores else ""
                         for k in ("delta_e", "psnr", "ssim", "checkerboard", "checkerboard_flat")]
                lines.append(f"| {row} | " + " | ".join(cells) + " |")
    if preset.notes:
        lines += ["", "## Notes", "", preset.notes.strip()]
    if preset.samples:
        lines += ["", "Samples: " + ", ".join(p.name for p in preset.samples)]
    return "\n".join(lines) + "\n"
