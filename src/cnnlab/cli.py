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

import sys

# Nothing else is imported at module level, not even argparse: the console script
# imports this module before main() runs, and a Ctrl-C during any import out here
# would end in a traceback. Everything else is imported inside main()'s try.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import Any

DATASET_CHOICES = ("digits", "mnist", "fashion-mnist")


def _int_at_least(minimum: int, what: str) -> Any:
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be >= {minimum}, got {value}")
        return value

    return parse


def _no_workers(text: str) -> int:
    """``--workers``: the worker pool is gone; N > 1 says what replaced it."""
    import argparse

    if text.strip() == "1":
        return 1
    raise argparse.ArgumentTypeError(
        f"--workers {text}: the worker pool was replaced by MPI; train on N processes "
        "with: mpiexec -n N cnnlab train ... (pip install 'cnnlab[mpi]')"
    )


def _positive_float(what: str, allow_zero: bool = False) -> Any:
    import argparse
    import math

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


def _fraction(what: str) -> Any:
    import argparse

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not 0 <= value < 1:
            raise argparse.ArgumentTypeError(f"{what} must be in [0, 1), got {text}")
        return value

    return parse


def _recipes_text() -> str:
    from cnnlab.train.recipes import RECIPES  # light: no NumPy for --help

    lines = ["recipes (what each data set's run does unless told otherwise):"]
    for name, r in RECIPES.items():
        extras = [f"schedule {r.schedule}"]
        if r.warmup:
            extras.append(f"warm-up {r.warmup:g} epochs")
        extras.append("augmentation" if r.augment else "no augmentation")
        if r.label_smoothing:
            extras.append(f"label smoothing {r.label_smoothing:g}")
        if r.weight_decay:
            extras.append(f"weight decay {r.weight_decay:g}")
        lines.append(
            f"  {name}: {r.epochs} epochs, batch {r.batch_size}, {r.optimizer} lr {r.lr:g}, "
            + ", ".join(extras)
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    import argparse

    import cnnlab

    parser = argparse.ArgumentParser(
        prog="cnnlab",
        description="Convolutional neural networks from scratch on NumPy: train, evaluate, "
        "predict, check gradients and explain the convolution's backward pass.",
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {cnnlab.__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_subcommand_parser_class()
    )
    sub.required = True

    p = sub.add_parser(
        "train",
        help="train a model (default: the bundled 8x8 digits)",
        description="Train a model. With no options: a small CNN on "
        "scikit-learn's bundled 8x8 digits, in well under a minute.",
        epilog=_recipes_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model", help="lenet5, lenet5_bn or digits_cnn (default: the data set's model)"
    )
    p.add_argument(
        "--dataset",
        choices=DATASET_CHOICES,
        help="data set (default: digits, bundled; with --data-dir it must be named)",
    )
    p.add_argument("--data-dir", help="folder with the IDX files (train-*/t10k-*)")
    p.add_argument(
        "--epochs",
        type=_int_at_least(1, "--epochs"),
        help="total epochs (default: the data set's recipe, below)",
    )
    p.add_argument(
        "--batch-size", type=_int_at_least(1, "--batch-size"), help="default: the recipe's"
    )
    p.add_argument(
        "--workers",
        type=_no_workers,
        default=1,
        help="gone: train on N processes with mpiexec -n N cnnlab train ... "
        "(pip install 'cnnlab[mpi]'); only 1 is accepted",
    )
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), help="default: the recipe's")
    p.add_argument(
        "--lr",
        type=_positive_float("--lr"),
        help="(peak) learning rate (default: the recipe's for its optimizer; else 1e-3 for "
        "adam/adamw, 0.05 for sgd)",
    )
    p.add_argument(
        "--weight-decay",
        type=_positive_float("--weight-decay", True),
        help="default: the recipe's",
    )
    p.add_argument(
        "--momentum",
        type=_positive_float("--momentum", True),
        default=0.9,
        help="SGD momentum (default 0.9)",
    )
    p.add_argument("--seed", type=_int_at_least(0, "--seed"), default=0)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument(
        "--val-fraction",
        type=_fraction("--val-fraction"),
        default=0.1,
        help="share of the training split held out to validate each epoch (stratified, "
        "the same for every seed; default 0.1; 0: no validation). The test split is "
        "evaluated once, at the end",
    )
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        help="random affine motions of each training batch, shown in augment.png "
        "(default: the recipe's)",
    )
    p.add_argument(
        "--schedule",
        choices=("none", "step", "cosine", "onecycle"),
        help="learning-rate schedule, stepped every batch (default: the recipe's)",
    )
    p.add_argument(
        "--warmup",
        type=_positive_float("--warmup", True),
        metavar="EPOCHS",
        help="epochs of linear warm-up before the schedule (not with onecycle, which "
        "warms up by itself; default: the recipe's)",
    )
    p.add_argument(
        "--label-smoothing",
        type=_fraction("--label-smoothing"),
        help="ε of the training loss's smoothed targets (default: the recipe's)",
    )
    p.add_argument(
        "--keep",
        choices=("last", "best"),
        default="last",
        help="model.safetensors holds the last epoch's model, or the one of best "
        "validation accuracy (default last)",
    )
    p.add_argument("--out", help="run directory (default: runs/<dataset>-<model>)")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out up to --epochs in total"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing run in --out instead of refusing",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (the one-line summary of each epoch stays)",
    )
    p.set_defaults(handler=_handler("cnnlab.cli_commands", "cmd_train"))

    p = sub.add_parser("eval", help="evaluate a saved model on its data set's test split")
    p.add_argument(
        "--checkpoint", required=True, help="model.safetensors (or a checkpoint, or .onnx)"
    )
    p.add_argument(
        "--dataset",
        choices=DATASET_CHOICES,
        help="data set (default: the one recorded in the model)",
    )
    p.add_argument(
        "--data-dir",
        help="folder with the t10k-* IDX files (default: the one the model was trained "
        "from, recorded in it)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.set_defaults(handler=_handler("cnnlab.cli_commands", "cmd_eval"))

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
    p.set_defaults(handler=_handler("cnnlab.cli_commands", "cmd_predict"))

    for name, module, help_text in (
        ("gradcheck", "cnnlab.gradcheck", "check a layer's gradients numerically"),
        ("explain", "cnnlab.explain.cli", "print the derivation of the backward pass"),
        ("download", "cnnlab.data.download", "download MNIST or Fashion-MNIST (checksummed)"),
        ("export", "cnnlab.onnx", "export a saved model to ONNX (needs cnnlab[onnx])"),
    ):
        p = sub.add_parser(name, help=help_text, options_from=module)
        p.set_defaults(handler=_handler(module, "run_cli"))
    for p in sub.choices.values():  # --debug also after the subcommand: cnnlab eval --debug
        p.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
        )
    return parser


def _subcommand_parser_class() -> type[argparse.ArgumentParser]:
    import argparse

    class SubcommandParser(argparse.ArgumentParser):
        """A subcommand's parser; ``options_from`` names a module whose
        ``add_cli_arguments`` adds the options, imported only when this subcommand is
        parsed or its help shown (``cnnlab --help`` need not import NumPy)."""

        def __init__(self, *args: Any, options_from: str | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._options_from = options_from

        def _add_options(self) -> None:
            if self._options_from is not None:
                module, self._options_from = self._options_from, None
                _add_delegate_arguments(self, module)

        def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
            self._add_options()
            return super().parse_known_args(args, namespace)

        def format_usage(self) -> str:
            self._add_options()
            return super().format_usage()

        def format_help(self) -> str:
            self._add_options()
            return super().format_help()

    return SubcommandParser


def _add_delegate_arguments(parser: argparse.ArgumentParser, module: str) -> None:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError:  # pragma: no cover - only while a part is missing
        parser.description = f"(unavailable: {module} is not installed)"
        return
    mod.add_cli_arguments(parser)


def _handler(module: str, function: str) -> Any:
    """``function(args)`` of ``module``, imported when the command runs."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        return int(getattr(importlib.import_module(module), function)(args))

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
    import signal

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
    _say(f"cnnlab: error: {message}")
    return code


def _say(message: str) -> None:
    """Print a closing message on stderr; under MPI on rank 0 only (every rank meets
    the same error, and one message is enough)."""
    from cnnlab.distributed import env_rank

    if env_rank() == 0:
        print(message, file=sys.stderr)


class _CtrlC:
    """SIGINT while :func:`main` runs: a KeyboardInterrupt that does not get lost.

    While ``armed``, the handler raises KeyboardInterrupt, as Python's own does, and
    ``pressed`` records that it came. Where Python cannot raise it — in a weakref
    callback or a ``__del__``, where it would print "Exception ignored" and a traceback
    and run on — that print is left out and the interrupt is raised again as soon as
    the main thread is back in ordinary code (a helper thread interrupts it). Where a
    C extension turns it into another exception (NumPy's start-up: an ImportError),
    ``pressed`` tells :func:`main` what it was. :func:`main` clears ``armed`` first
    (a plain assignment: nothing can interrupt it) and then calls :meth:`restore`.
    Training installs its own handler meanwhile, and puts this one back.
    """

    def __init__(self) -> None:
        self.pressed = False
        self.armed = False
        self.debug = False  # --debug: the interrupt's traceback is wanted
        self._installed = False

    def install(self) -> None:
        import _thread
        import signal

        self._raising = _thread.allocate_lock()  # held while a re-raise is on its way
        self.armed = True
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: signals are not ours to handle
            self.armed = False
            return
        self._installed = True
        self._unraisable_hook = sys.unraisablehook
        sys.unraisablehook = self._unraisable

    def _handle(self, signum: int, frame: Any) -> None:
        self.pressed = True
        if self.armed:
            raise KeyboardInterrupt

    def _unraisable(self, unraisable: Any) -> None:
        if not (self.armed and isinstance(unraisable.exc_value, KeyboardInterrupt)):
            self._unraisable_hook(unraisable)
        elif self._raising.acquire(blocking=False):
            import _thread

            _thread.start_new_thread(self._raise_again, ())

    def _raise_again(self) -> None:  # in a helper thread
        import _thread

        try:
            if self.armed:
                _thread.interrupt_main()  # the main thread calls _handle at its next step
        finally:
            self._raising.release()

    def restore(self) -> None:
        """Put the previous handler back (after ``armed`` was cleared)."""
        if self._installed:
            import signal

            self._installed = False
            with self._raising:  # a re-raise on its way has arrived
                pass
            previous = self._previous if self._previous is not None else signal.SIG_DFL
            signal.signal(signal.SIGINT, previous)  # first runs a pending (now idle) call
            sys.unraisablehook = self._unraisable_hook


def _run(argv: Sequence[str] | None, ctrl_c: _CtrlC) -> int:
    """Parse ``argv`` and run the command; errors become one line and an exit code."""
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
    ctrl_c.debug = bool(args.debug)
    if args.debug:
        return _call(args)
    try:
        return _call(args)
    except TrainingInterrupted as exc:
        _say(f"cnnlab: {exc}")
        resume = " ".join(["cnnlab", *(sys.argv[1:] if argv is None else argv)])
        from cnnlab.distributed import env_world_size

        if env_world_size() > 1:  # any number of ranks may continue it, 1 too
            resume = f"mpiexec -n {env_world_size()} {resume}"
        if "--resume" not in resume:
            resume += " --resume"
        _say(f"cnnlab: resume with: {resume}")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring).

    Ctrl-C is answered with one line and exit code 130 from the first moment, also
    while the parser is built and NumPy & co. are imported (with ``--debug``: the
    traceback).
    """
    ctrl_c = _CtrlC()
    try:
        ctrl_c.install()
        return _run(argv, ctrl_c)
    except Exception:
        ctrl_c.armed = False  # first: no call (where an interrupt could land) before it
        if ctrl_c.debug or not ctrl_c.pressed:
            raise
    except KeyboardInterrupt:
        ctrl_c.armed = False
        if ctrl_c.debug:
            raise
    finally:
        ctrl_c.armed = False
        ctrl_c.restore()
    # only an interruption gets here: every other way out of the try returns or raises
    _say("cnnlab: interrupted")
    # CPython remembers a KeyboardInterrupt that escaped an eval() of a string (as one
    # inside collections.namedtuple may) and then ends ``python -m cnnlab`` by SIGINT
    # instead of with this exit code; the next eval() of a string forgets it.
    eval("None")
    return 130  # 128 + SIGINT, the shell's convention


__all__ = ["build_parser", "main"]
