"""The ``cyclegan`` command: translate image files, inspect and import models.

Usage::

    cyclegan translate MODEL INPUT... -o OUT [--direction a2b|b2a] [--tile N] [--overlap N]
                       [--batch-size N] [--device DEV] [--precision auto|fp32|bf16|fp16]
                       [--compile] [--suffix TEXT]
    cyclegan info MODEL [--json]
    cyclegan import-reference G_A.pth [G_B.pth] -o model.safetensors [--blocks N] [--ngf N]
                       [--domains A B] [--fp16]
    cyclegan train DIR_A DIR_B -o model.safetensors [--steps N | --epochs N] ...
    cyclegan export-onnx MODEL -o OUT.onnx [--direction a2b|b2a]

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
from .files import IMAGE_SUFFIXES, ImageFileError, read_image, write_image
from .modelfile import ModelMetadata, atomic_write, describe_model_file
from .precision import PRECISIONS, resolve_device, resolve_precision
from .translator import Translator, resolve_model_path

__all__ = ["build_parser", "main"]

PROG = "cyclegan"


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
    # ModelFileError and ImageFileError are ValueErrors, FileNotFoundError is an OSError; RuntimeError is
    # what torch raises for an unknown device, running out of memory, a failed compilation.
    except (ValueError, OSError, RuntimeError) as exc:
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
        description="Translate image files (PNG, JPEG, TIFF, zarr) with a model. Outputs keep the input's "
        "size, dtype and file format; the channel count is the model's. Zarr stores and tiled or large TIFFs "
        "are read and written chunk by chunk, never whole.",
    )
    tr.add_argument("model", metavar="MODEL", help="model file, model folder, or Hub repo id 'owner/name' "
                    "(left out with --preset)")
    tr.add_argument("inputs", metavar="INPUT", nargs="*",
                    help="image files, folders (searched recursively) or glob patterns")
    tr.add_argument("--preset", default=None, metavar="NAME",
                    help="translate with a preset's weights and its direction, tile and overlap defaults")
    tr.add_argument("-o", "--output", required=True, metavar="OUT",
                    help="output file (for a single input, when OUT has an image suffix) or folder")
    tr.add_argument("--direction", choices=("a2b", "b2a"), default=None,
                    help="translation direction (default a2b, or the preset's)")
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
    tr.add_argument("--format", choices=("png", "jpg", "tif", "zarr"), default=None,
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

    _add_train_parser(commands)
    _add_presets_parser(commands)

    onx = commands.add_parser(
        "export-onnx", help="write a generator as an ONNX file",
        description="Write one generator of a model as ONNX: float32 NCHW in [-1, 1] in and out, dynamic batch, "
        "height and width (multiples of 4 for ResNet generators). Needs: pip install 'cyclegan-sdk[onnx]'.",
    )
    onx.add_argument("model", metavar="MODEL", help="model file, model folder, or Hub repo id 'owner/name'")
    onx.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    onx.add_argument("--direction", choices=("a2b", "b2a"), default="a2b", help="which generator (default a2b)")
    onx.set_defaults(run=_export_onnx)
    return parser


def _export_onnx(args: argparse.Namespace) -> int:
    translator = Translator.from_pretrained(args.model)
    path = translator.export_onnx(args.output, args.direction)
    a, b = translator.domains if args.direction == "a2b" else translator.domains[::-1]
    print(f"wrote {path} ({_human_size(path.stat().st_size)}): {a} -> {b}, float32 NCHW in [-1, 1]")
    return 0


def _add_train_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    tr = commands.add_parser(
        "train", help="train a model on two folders of unpaired images",
        description="Train a CycleGAN on two folders of unpaired images. Beside the model file it writes a "
        "loss log (.losses.jsonl), preview grids (.previews/), a loss plot (.losses.png) and, on Ctrl-C or "
        "with --checkpoint-every, a checkpoint (.checkpoint.safetensors) to --resume from.",
    )
    tr.add_argument("dir_a", metavar="DIR_A", help="folder of domain-A images (searched recursively)")
    tr.add_argument("dir_b", metavar="DIR_B", help="folder of domain-B images")
    tr.add_argument("-o", "--output", required=True, metavar="MODEL", help="model file to write (.safetensors)")
    length = tr.add_mutually_exclusive_group()
    length.add_argument("--steps", type=_positive, default=None, metavar="N", help="total training steps")
    length.add_argument("--epochs", type=_positive, default=None, metavar="N",
                        help="epochs of max(len A, len B) images (the reference trains 200)")
    length.add_argument("--minutes", type=_positive_float, default=None, metavar="M",
                        help="train for M minutes of wall-clock time, the learning-rate decay planned to end then")
    tr.add_argument("--preset", default=None, metavar="NAME",
                    help="start from a preset's recipe (a bundled or installed name, folder, .zip or Hub repo id); "
                    "flags given here override it, and without --steps/--epochs/--minutes its training length is used")
    tr.add_argument("--threads", type=_positive, default=None, metavar="N",
                    help="CPU threads for PyTorch (default: its own choice; 1 can be faster on a busy machine)")
    tr.add_argument("--crop", type=_positive, default=256, metavar="N", help="training crop size (default 256)")
    tr.add_argument("--load-size", type=_positive, default=286, metavar="N", help="resize before cropping (default 286)")
    tr.add_argument("--preprocess", choices=("resize_and_crop", "crop", "scale_width_and_crop", "none"),
                    default="resize_and_crop", help="how images become crops (default resize_and_crop)")
    tr.add_argument("--augment", choices=("flip", "dihedral", "none"), default="flip",
                    help="flip: horizontal flips (photos); dihedral: 8 rotations/flips (microscopy)")
    tr.add_argument("--ngf", type=_positive, default=64, metavar="N", help="generator filters (default 64)")
    tr.add_argument("--ndf", type=_positive, default=64, metavar="N", help="discriminator filters (default 64)")
    tr.add_argument("--blocks", type=_positive, default=9, metavar="N", help="residual blocks, 6 or 9 (default 9)")
    tr.add_argument("--batch-size", type=_positive, default=1, metavar="N", help="images per step (default 1)")
    tr.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (default 2e-4)")
    tr.add_argument("--gan-mode", choices=("lsgan", "vanilla", "hinge", "wgangp"), default="lsgan")
    tr.add_argument("--lambda-identity", type=float, default=0.5, metavar="W", help="identity loss weight (default 0.5)")
    tr.add_argument("--ema", type=float, default=None, metavar="DECAY", help="export an EMA of the generators")
    tr.add_argument("--value-scaling", choices=("dtype", "percentile"), default="dtype",
                    help="dtype: full range of the image dtype; percentile: measured bounds (16-bit microscopy)")
    # The run settings below default to None so that --resume can tell which ones were given.
    tr.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=None, help="default auto")
    tr.add_argument("--device", default=None, metavar="DEV", help="cpu, cuda, ... (default: CUDA when available)")
    tr.add_argument("--compile", choices=("auto", "yes", "no"), default=None,
                    help="torch.compile the networks; auto (default): only for runs of 2000 steps or more")
    tr.add_argument("--checkpoint-every", type=_non_negative, default=0, metavar="N", help="checkpoint every N steps")
    tr.add_argument("--preview-every", type=_non_negative, default=None, metavar="N",
                    help="write a preview grid every N steps (default 500, 0: never)")
    tr.add_argument("--log-every", type=_positive, default=None, metavar="N", help="log losses every N steps (default 10)")
    tr.add_argument("--resume", default=None, metavar="CKPT", help="continue from a checkpoint")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--domains", nargs=2, default=("A", "B"), metavar=("NAME_A", "NAME_B"),
                    help="names of the two domains, stored in the model")
    # Recipe flags default to None, so that a --preset's values apply where no flag was given
    # (without a preset, TrainConfig's defaults, which equal the documented ones, apply).
    for action in tr._actions:
        if action.dest in _RECIPE_FLAGS:
            action.default = None
    tr.set_defaults(run=_train)


#: ``cyclegan train`` flags that set TrainConfig fields, by argparse dest.
_RECIPE_FLAGS = {"ngf": "ngf", "ndf": "ndf", "blocks": "n_blocks", "crop": "crop_size", "load_size": "load_size",
                 "preprocess": "preprocess", "augment": "augment", "batch_size": "batch_size", "lr": "lr",
                 "gan_mode": "gan_mode", "lambda_identity": "lambda_identity", "ema": "ema_decay",
                 "value_scaling": "value_scaling", "seed": "seed", "domains": "domain_names"}


# ------------------------------------------------------------ presets, demo
def _add_presets_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    pr = commands.add_parser(
        "presets", help="list, show, install, remove and evaluate presets",
        description="Presets are domain pairs with a training recipe, inference defaults and, where shipped, "
        "weights with a model card. Installed presets live in the user's data directory "
        "($CYCLEGAN_PRESETS_DIR overrides it).",
    )
    sub = pr.add_subparsers(title="actions", dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="bundled and installed presets")
    ls.add_argument("--json", action="store_true", help="one JSON object per preset")
    ls.set_defaults(run=_presets_list)
    show = sub.add_parser("show", help="a preset's model card")
    show.add_argument("name", metavar="NAME", help="preset name, folder, .zip or Hub repo id")
    show.set_defaults(run=_presets_show)
    ins = sub.add_parser("install", help="validate and install a community preset")
    ins.add_argument("source", metavar="SOURCE", help="a preset folder, a .zip of one, or a Hub repo id 'owner/name'")
    ins.add_argument("--replace", action="store_true", help="replace an installed preset of the same name")
    ins.set_defaults(run=_presets_install)
    rm = sub.add_parser("remove", help="delete an installed preset")
    rm.add_argument("name", metavar="NAME")
    rm.set_defaults(run=_presets_remove)
    ev = sub.add_parser(
        "evaluate", help="re-measure a preset's held-out scores",
        description="Translate the held-out images of the data a preset's weights were trained on and score them "
        "(mean CIEDE2000, PSNR, SSIM, checkerboard) beside the identity and Reinhard baselines; the exit status is "
        "1 when the model card's numbers are not reproduced within tolerance. Needs scikit-image "
        "(pip install 'cyclegan-sdk[eval]').",
    )
    ev.add_argument("name", metavar="NAME", help="preset name, folder, .zip or Hub repo id")
    ev.add_argument("--model", default=None, metavar="MODEL",
                    help="score this model instead of the preset's weights (no comparison with the card)")
    ev.add_argument("--data", default=None, metavar="PAIR", help="the domain pair (default: the card's)")
    ev.add_argument("--json", action="store_true", help="print the scores as JSON")
    ev.set_defaults(run=_presets_evaluate)
    data = sub.add_parser(
        "data", help="write a bundled domain pair as PNG folders",
        description="Write one of the domain pairs with a known answer (built from scikit-image's sample images) "
        "as DIR/A, DIR/B (training), DIR/heldout_A and DIR/heldout_truth. Needs scikit-image.",
    )
    data.add_argument("pair", metavar="PAIR", help="skimage-ihc-restain, skimage-photos-retouch, ...")
    data.add_argument("-o", "--output", required=True, metavar="DIR")
    data.set_defaults(run=_presets_data)

    demo = commands.add_parser(
        "demo", help="translate a bundled sample with a bundled preset",
        description="Translate a sample image that ships with a preset, using the preset's weights, and write the "
        "result and a before/after panel (PNG). Works offline.",
    )
    demo.add_argument("-o", "--output", default="cyclegan-demo", metavar="DIR",
                      help="folder to write into (default ./cyclegan-demo)")
    demo.add_argument("--preset", default=None, metavar="NAME", help="a preset with weights and a sample "
                      "(default stain-transfer)")
    demo.set_defaults(run=_demo)


def _presets_list(args: argparse.Namespace) -> int:
    from .presets import list_presets

    presets = list_presets()
    for p in presets:
        if args.json:
            print(json.dumps({"name": p.name, "version": p.version, "title": p.title, "origin": p.origin,
                              "has_weights": p.has_weights, "domains": [d.name for d in p.domains],
                              "folder": str(p.folder)}))
        else:
            kind = "weights" if p.has_weights else "recipe "
            print(f"{p.name:<20} {p.version:<8} {kind}  {p.origin:<9}  {p.title}")
    return 0


def _presets_show(args: argparse.Namespace) -> int:
    from .presets import load_preset, render_card

    print(render_card(load_preset(args.name)), end="")
    return 0


def _presets_install(args: argparse.Namespace) -> int:
    from .presets import install_preset

    p = install_preset(args.source, replace=args.replace)
    print(f"installed {p.name} {p.version} ({'weights' if p.has_weights else 'recipe only'}) into {p.folder}")
    return 0


def _presets_remove(args: argparse.Namespace) -> int:
    from .presets import remove_preset

    print(f"removed {remove_preset(args.name)}")
    return 0


def _presets_evaluate(args: argparse.Namespace) -> int:
    from .preset_data import build_pair, card_differences, evaluate_translator
    from .presets import PresetError, load_preset

    preset = load_preset(args.name)
    if args.model is None and not preset.has_weights:
        raise PresetError(f"preset {preset.name} ships no weights to evaluate; give --model MODEL")
    card = (preset.weights or {}).get("metrics", {})
    pair_name = args.data or (preset.weights or {}).get("data", {}).get("name")
    if not pair_name:
        raise ValueError(f"preset {preset.name} names no domain pair to evaluate on; give --data PAIR")
    # The preset is loaded (and its weights verified) once, above; its weights file is read directly.
    translator = Translator.from_pretrained(args.model) if args.model else Translator.load(preset.weights_path)
    scores = evaluate_translator(translator, build_pair(pair_name), preset.inference.direction)
    if args.json:
        print(json.dumps(scores, indent=2))
    else:
        print(f"{preset.name} on {pair_name} (held out), {preset.inference.direction}:")
        print(f"  {'':<10} {'ΔE2000':>8} {'PSNR dB':>8} {'SSIM':>7} {'checker':>8} {'(flat)':>8}")
        for row in ("model", "reinhard", "identity", "truth"):
            s = scores[row]
            cells = [f"{s[k]:>{n}.{d}f}" if k in s else " " * n
                     for k, n, d in (("delta_e", 8, 2), ("psnr", 8, 2), ("ssim", 7, 3), ("checkerboard", 8, 3),
                                     ("checkerboard_flat", 8, 3))]
            print(f"  {row:<10} " + " ".join(cells))
    if args.model is not None or not card:
        return 0
    differences = card_differences(scores, card)
    if differences:
        for line in differences:
            print(f"{PROG}: not reproduced: {line}", file=sys.stderr)
        return 1
    print("the model card's scores are reproduced within tolerance", file=sys.stderr)
    return 0


def _presets_data(args: argparse.Namespace) -> int:
    from .preset_data import write_pair

    folders = write_pair(args.pair, args.output)
    print(" ".join(f"{k}={v}" for k, v in folders.items()))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import DEMO_PRESET, run_demo

    paths = run_demo(args.output, args.preset or DEMO_PRESET)
    print(f"translated: {paths['translated']}")
    print(f"before/after panel: {paths['panel']}")
    return 0


# --------------------------------------------------------------------- train
def _train(args: argparse.Namespace) -> int:
    import signal
    import time

    from tqdm import tqdm

    from .data import DomainImages
    from .report import loss_plot, preview_grid
    from .trainer import TrainConfig, TrainEvent, Trainer

    out = Path(args.output)
    if out.suffix != ".safetensors":
        raise ValueError(f"-o {out}: the model file must end in .safetensors")
    stem = out.with_suffix("")
    checkpoint = Path(f"{stem}.checkpoint.safetensors")
    log_path, plot_path, preview_dir = Path(f"{stem}.losses.jsonl"), Path(f"{stem}.losses.png"), Path(f"{stem}.previews")
    run = {"precision": args.precision, "device": args.device, "log_every": args.log_every,
           "preview_every": args.preview_every,
           "compile": None if args.compile is None else {"auto": "auto", "yes": True, "no": False}[args.compile]}
    given = {k: v for k, v in run.items() if v is not None}
    if args.threads:
        torch.set_num_threads(args.threads)
    max_seconds = args.minutes * 60 if args.minutes else None
    if args.resume:
        if args.preset:
            raise ValueError("--preset starts a new run; a resumed run keeps its checkpoint's settings")
        # Settings of the run (not of the model or optimiser) may change when resuming.
        trainer = Trainer.resume(args.resume, **given)
        steps = args.steps or (None if args.epochs or max_seconds else trainer.total_steps)
    else:
        run = {"precision": "auto", "device": None, "log_every": 10, "preview_every": 500, "compile": "auto", **given}
        recipe = {field: getattr(args, dest) for dest, field in _RECIPE_FLAGS.items() if getattr(args, dest) is not None}
        if "domain_names" in recipe:
            recipe["domain_names"] = tuple(recipe["domain_names"])
        if args.preset:
            trainer = Trainer.from_preset(args.preset, **recipe, **run)
            preset = trainer.preset
            if args.steps is None and args.epochs is None and max_seconds is None:
                if preset.minutes is None:
                    raise ValueError(f"preset {preset.name} suggests no training length: give --steps, --epochs "
                                     "or --minutes")
                max_seconds = preset.minutes * 60
            print(f"preset {preset.name}: {preset.title}", file=sys.stderr)
        else:
            trainer = Trainer(TrainConfig(**recipe, **run))
        steps = args.steps
        if steps is None and args.epochs is None and max_seconds is None:
            raise ValueError("give --steps N or --epochs N (or --minutes M)")
    main_process = trainer.is_main_process
    names = trainer.config.domain_names
    domain_a = DomainImages.from_folder(args.dir_a, names[0])
    domain_b = DomainImages.from_folder(args.dir_b, names[1])
    if main_process:
        print(f"domain {names[0]}: {len(domain_a)} images, {domain_a.channels} channels; "
              f"domain {names[1]}: {len(domain_b)} images, {domain_b.channels} channels; "
              f"{trainer.device}, {str(trainer.compute_dtype).removeprefix('torch.')}", file=sys.stderr)

    interrupted: list[float] = []

    def on_interrupt(signum: int, frame: object) -> None:
        # torchrun forwards the terminal's Ctrl-C as well: a repeat within 2 s is the same request.
        if interrupted and time.monotonic() - interrupted[0] > 2.0:  # a real second Ctrl-C: stop at once
            raise KeyboardInterrupt
        if interrupted:
            return
        interrupted.append(time.monotonic())
        trainer.request_stop()
        print(f"\n{PROG}: stopping after this step; saving a checkpoint and the model (Ctrl-C again to abort)",
              file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    bar = tqdm(total=None, unit="step", file=sys.stderr, disable=None if main_process else True, dynamic_ncols=True)
    if main_process:
        out.parent.mkdir(parents=True, exist_ok=True)
        if args.resume and log_path.exists():
            _truncate_log(log_path, trainer.step)
    log = open(log_path, "a") if main_process else None  # appends: a resumed run continues the log

    def on_event(event: TrainEvent) -> None:
        if event.kind == "step":
            bar.total = event.total_steps
            bar.n = event.step
            shown = {k: event.losses[k] for k in ("G", "D_A", "D_B", "cycle_A", "cycle_B") if k in event.losses}
            bar.set_postfix_str(", ".join(f"{k} {v:.3f}" for k, v in shown.items())
                                + f", {event.images_per_s:.2f} img/s", refresh=False)
            bar.refresh()
            if log is not None:
                log.write(json.dumps({"step": event.step, "epoch": event.epoch, "lr": event.lr,
                                      "images_per_s": round(event.images_per_s, 3), **event.losses}) + "\n")
                log.flush()
        elif event.kind == "preview":
            preview_grid(event.images, preview_dir / f"step_{event.step:07d}.png")

    try:
        trainer.fit(domain_a, domain_b, steps=steps, epochs=None if steps else args.epochs, callbacks=[on_event],
                    checkpoint_every=args.checkpoint_every, checkpoint_path=checkpoint, max_seconds=max_seconds)
    except Exception:
        # Whatever broke (a corrupt file mid-run, out of memory), keep the work done so far.
        if main_process and trainer.built and trainer.step > 0:
            trainer.save_checkpoint(checkpoint)
            print(f"{PROG}: saved {checkpoint} at step {trainer.step} (continue with --resume)", file=sys.stderr)
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
        if log is not None:
            log.close()
    if not main_process:
        trainer.finish()
        return 0
    trainer.export(out)  # the model first: it is what the user came for
    if interrupted or args.checkpoint_every:
        trainer.save_checkpoint(checkpoint)
        print(f"checkpoint: {checkpoint} (continue with --resume {checkpoint})", file=sys.stderr)
    if trainer.history:
        loss_plot(trainer.history, plot_path)
    print(f"wrote {out} after {trainer.step} steps; losses in {log_path}, plot {plot_path}", file=sys.stderr)
    trainer.finish()
    return 130 if interrupted else 0


# ----------------------------------------------------------------- translate
def _translate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.preset:
        # With --preset there is no MODEL: the first positional argument is an input.
        args.inputs = [args.model, *args.inputs]
        translator = Translator.from_preset(args.preset)
        inference = translator.preset.inference
        args.direction = args.direction or inference.direction
        args.tile = inference.tile_size if args.tile is None else args.tile
        args.overlap = inference.overlap if args.overlap is None else args.overlap
    else:
        if not args.inputs:
            raise ValueError("give MODEL and at least one INPUT (or --preset NAME INPUT...)")
        translator = Translator.from_pretrained(args.model)
    args.direction = args.direction or "a2b"
    if args.direction not in translator.directions:
        a, b = translator.domains
        have = ", ".join(translator.directions)
        raise ValueError(f"this {a}/{b} model has no {args.direction} generator (it has {have})")
    # Resolved here, once: an unusable device or precision is one error, not one per file.
    device = resolve_device(args.device)
    resolve_precision(args.precision, device)
    translator.to(device)

    from . import chunked

    jobs = _plan_outputs(chunked.find_inputs(args.inputs), Path(args.output), args.suffix, args.format)
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
                if chunked.is_lazy_input(src) or chunked.is_zarr_path(dst):
                    # Whole-slide images: read, translated and written chunk by chunk (see cyclegan_sdk.chunked).
                    chunked.translate_file(translator, src, dst, args.direction, tile_size=args.tile,
                                           overlap=args.overlap, precision=args.precision)
                else:
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
    # A .zarr output is a folder, but names one image like a file does.
    to_file = out.suffix.lower() == ".zarr" or (out.suffix.lower() in IMAGE_SUFFIXES and not out.is_dir())
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
    meta, directions, dtypes = describe_model_file(path)
    if args.json:
        print(json.dumps(json.loads(meta.to_json()), indent=2))
        return 0
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
    for unused in ("n_blocks",) if kind == "unet" else ("num_downs",):
        config.pop(unused, None)
    lines.append(f"generator:   {kind}, {_pairs(config)}")
    return lines


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


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines after ``step``: a run resumed from an older checkpoint logs those steps again."""
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    with atomic_write(path) as tmp:  # a kill while rewriting must not lose the log
        tmp.write_text("".join(f"{line}\n" for line in kept))


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


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


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


if __name__ == "__main__":  # ``python -m cyclegan_sdk.cli``, as torchrun and accelerate launch run modules
    sys.exit(main())
