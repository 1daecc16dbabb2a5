"""The ``cnnlab`` command line (also ``python -m cnnlab``).

Errors never show a traceback (unless ``--debug``): they are printed as one line,
``cnnlab: error: <what is wrong and how to fix it>``. Exit codes:

* 0 — success;
* 1 — a runtime problem: unreadable or corrupt data, a bad checkpoint, a failed
  download, NaN during training, a file that cannot be written;
* 2 — a usage problem: an unknown option or a bad value (argparse's convention);
* 130 / 143 — interrupted by SIGINT / SIGTERM (training first writes a checkpoint and
  prints how to resume);
* 141 — standard output was closed early (``cnnlab explain --json | head``): the rest
  of the output is dropped silently and the status is the one a tool killed by SIGPIPE
  has (128 + 13), as ``yes | head`` shows, so ``set -o pipefail`` scripts see it as
  they see any other tool's.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from collections.abc import Sequence
from typing import Any

from cnnlab.cli_commands import cmd_eval, cmd_predict, cmd_train

DATASET_CHOICES = ("digits", "mnist", "fashion-mnist")


def _int_at_least(minimum: int, what: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be >= {minimum}, got {value}")
        return value

    return parse


def _positive_float(what: str, allow_zero: bool = False) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{what} must be finite, got {text}")
        if value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(
                f"{what} must be {'>= 0' if allow_zero else '> 0'}, got {text}"
            )
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    import cnnlab

    parser = argparse.ArgumentParser(
        prog="cnnlab",
        description="Convolutional neural networks from scratch on NumPy: train, evaluate, "
        "predict, check gradients and explain the convolution's backward pass.",
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {cnnlab.__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "train",
        help="train a model (default: the bundled 8x8 digits)",
        description="Train a model. With no options: a small CNN on "
        "scikit-learn's bundled 8x8 digits, in well under a minute.",
    )
    p.add_argument("--model", help="lenet5 or digits_cnn (default: the data set's model)")
    p.add_argument("--dataset", default="digits", choices=DATASET_CHOICES)
    p.add_argument("--data-dir", help="folder with the IDX files (train-*/t10k-*)")
    p.add_argument(
        "--epochs",
        type=_int_at_least(1, "--epochs"),
        help="total epochs (default: 30 for digits, 10 otherwise)",
    )
    p.add_argument("--batch-size", type=_int_at_least(1, "--batch-size"), default=64)
    p.add_argument(
        "--workers",
        type=_int_at_least(1, "--workers"),
        default=1,
        help="processes, each running the model on a slice of every batch (default 1; "
        "2 uses two cores: about 1.45x the images/s of 1 at batch 64)",
    )
    p.add_argument("--optimizer", default="adam", choices=("sgd", "adam", "adamw"))
    p.add_argument(
        "--lr",
        type=_positive_float("--lr"),
        help="learning rate (default: 1e-3 for adam/adamw, 0.05 for sgd)",
    )
    p.add_argument("--weight-decay", type=_positive_float("--weight-decay", True), default=0.0)
    p.add_argument(
        "--momentum",
        type=_positive_float("--momentum", True),
        default=0.9,
        help="SGD momentum (default 0.9)",
    )
    p.add_argument("--seed", type=_int_at_least(0, "--seed"), default=0)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--out", help="run directory (default: runs/<dataset>-<model>)")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out up to --epochs in total"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing run in --out instead of refusing",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("eval", help="evaluate a saved model on its data set's test split")
    p.add_argument(
        "--checkpoint", required=True, help="model.safetensors (or a checkpoint, or .onnx)"
    )
    p.add_argument(
        "--dataset",
        choices=DATASET_CHOICES,
        help="data set (default: the one recorded in the model)",
    )
    p.add_argument("--data-dir", help="folder with the t10k-* IDX files")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.set_defaults(handler=cmd_eval)

    p = sub.add_parser("predict", help="classify image files (PNG/JPG, any size)")
    p.add_argument("--checkpoint", required=True, help="model.safetensors (or .onnx)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument(
        "--top",
        type=_int_at_least(1, "--top"),
        default=3,
        help="how many classes to show per image",
    )
    p.add_argument("--json", action="store_true", help="print one JSON line per image")
    p.set_defaults(handler=cmd_predict)

    for name, module, help_text in (
        ("gradcheck", "cnnlab.gradcheck", "check a layer's gradients numerically"),
        ("explain", "cnnlab.explain.cli", "print the derivation of the backward pass"),
        ("download", "cnnlab.data.download", "download MNIST or Fashion-MNIST (checksummed)"),
        ("export", "cnnlab.onnx", "export a saved model to ONNX (needs cnnlab[onnx])"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(handler=_delegate(module))
        _add_delegate_arguments(p, module)
    return parser


def _add_delegate_arguments(parser: argparse.ArgumentParser, module: str) -> None:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError:  # pragma: no cover - only while a part is missing
        parser.description = f"(unavailable: {module} is not installed)"
        return
    mod.add_cli_arguments(parser)


def _delegate(module: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        import importlib

        return int(importlib.import_module(module).run_cli(args))

    return run


def _stdout_reader_gone() -> bool:
    """Whether standard output is a pipe or socket whose reader has gone away."""
    import select

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
    except (AttributeError, OSError, ValueError):
        return False  # no real stdout, or no poll (Windows): cannot tell, so not silenced
    poller.register(fd, select.POLLOUT)
    gone = select.POLLERR | select.POLLHUP
    return any(events & gone for _, events in poller.poll(0))


def _call(args: argparse.Namespace) -> int:
    """Run the command; a reader that closes standard output early ends it silently."""
    import os

    try:
        code = int(args.handler(args))
        sys.stdout.flush()  # inside the try: buffered output may meet the closed pipe here
        return code
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise  # another pipe broke (a worker process): a real error
        # what is still buffered would fail again at exit: send it nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _error(message: str, code: int) -> int:
    print(f"cnnlab: error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    from cnnlab.errors import (
        CheckpointError,
        DataError,
        DownloadError,
        MissingDependencyError,
        TrainingError,
        TrainingInterrupted,
    )

    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 with a usage message on bad options
    if args.debug:
        return _call(args)
    try:
        return _call(args)
    except TrainingInterrupted as exc:
        print(f"cnnlab: {exc}", file=sys.stderr)
        resume = " ".join(["cnnlab", *(sys.argv[1:] if argv is None else argv)])
        if "--resume" not in resume:
            resume += " --resume"
        print(f"cnnlab: resume with: {resume}", file=sys.stderr)
        return 128 + int(exc.signal_number)
    except (
        DataError,
        CheckpointError,
        DownloadError,
        MissingDependencyError,
        TrainingError,
    ) as exc:
        return _error(str(exc), 1)
    except ValueError as exc:
        return _error(str(exc), 2)
    except FileNotFoundError as exc:
        return _error(f"{exc.filename}: no such file or directory", 1)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _error(f"{where}{exc.strerror or exc}", 1)
    except KeyboardInterrupt:
        print("cnnlab: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


__all__ = ["build_parser", "main"]
