"""Numerical gradient checking: analytic gradients against central differences.

For a function ``fn(*inputs) -> y`` (with its ``backward``) or a :class:`~cnnlab.nn.Module`,
the scalar ``E = <dy, y>`` with a random projection ``dy`` has the gradient the backward
pass computes from ``dy``. Each input (and, for a module, each parameter) entry ``t`` is
nudged by ``±eps`` and ``(E(t+eps) - E(t-eps)) / (2 eps)`` is compared with the analytic
value, everything in float64. An entry passes when
``|analytic - numeric| <= atol + rtol · max(|analytic|, |numeric|)``; the report gives,
per input or parameter, the worst error relative to that tolerance's scale.

The command ``cnnlab gradcheck`` is built from :func:`add_cli_arguments` and
:func:`run_cli`.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnlab._validate import float_array, pair, positive_int
from cnnlab.nn.module import Module

__all__ = ["GradcheckReport", "TensorCheck", "add_cli_arguments", "gradcheck", "run_cli"]


@dataclass(frozen=True)
class TensorCheck:
    """The comparison for one input or parameter.

    ``max_rel_error`` is ``max |a - n| / (atol/rtol + max(|a|, |n|))`` over the checked
    entries (a relative error that turns absolute for values below ``atol/rtol``);
    ``index`` is where it is largest, with the ``analytic`` and ``numeric`` values there.
    """

    name: str
    shape: tuple[int, ...]
    checked: int
    max_rel_error: float
    max_abs_error: float
    index: tuple[int, ...]
    analytic: float
    numeric: float
    passed: bool


@dataclass(frozen=True)
class GradcheckReport:
    """Result of :func:`gradcheck`; ``passed`` when every checked entry is within tolerance."""

    checks: list[TensorCheck]
    eps: float
    atol: float
    rtol: float
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "passed", all(c.passed for c in self.checks))

    def __getitem__(self, name: str) -> TensorCheck:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"no check named {name!r}; have {[c.name for c in self.checks]}")

    def __str__(self) -> str:
        lines = [
            f"gradient check (central differences, eps={self.eps:g}, "
            f"atol={self.atol:g}, rtol={self.rtol:g}): {'PASSED' if self.passed else 'FAILED'}",
            f"  {'name':<10} {'shape':<18} {'checked':>7} {'rel.err':>9} {'abs.err':>9}"
            "  worst at: analytic vs numeric",
        ]
        for c in self.checks:
            lines.append(
                f"  {c.name:<10} {c.shape!s:<18} {c.checked:>7} {c.max_rel_error:>9.2e} "
                f"{c.max_abs_error:>9.2e}  {c.index}: {c.analytic:.10g} vs {c.numeric:.10g}"
                f"  {'ok' if c.passed else 'WRONG'}"
            )
        return "\n".join(lines)


def gradcheck(
    fn_or_module: Module | Callable[..., np.ndarray],
    inputs: np.ndarray | Sequence[np.ndarray],
    *,
    backward: Callable[..., Sequence[np.ndarray | None]] | None = None,
    eps: float = 1e-6,
    atol: float = 1e-7,
    rtol: float = 1e-5,
    seed: int = 0,
    max_entries: int | None = None,
    progress: bool = False,
) -> GradcheckReport:
    """Compare analytic gradients with central differences in float64.

    Parameters
    ----------
    fn_or_module : Module or callable
        A module (one input; checked for its input and every parameter, its
        ``backward`` gives the analytic gradients) or a function ``fn(*inputs) -> y``.
    inputs : ndarray or sequence of ndarrays
        Float arrays; copied to float64 (the originals are not touched).
    backward : callable, optional
        For a function (required then): ``backward(dy, *inputs) -> grads``, one
        gradient (or None to skip it) per input.
    eps : float
        Step of the central difference.
    atol, rtol : float
        Tolerance: ``|a - n| <= atol + rtol · max(|a|, |n|)``.
    seed : int
        Seeds the projection ``dy`` (standard normal) and the choice of entries.
    max_entries : int, optional
        Check at most this many randomly chosen entries per array (default: all).
        Each entry checked costs two calls of the function or module.
    progress : bool
        Show a progress bar over the entries (tqdm, on stderr).

    Returns
    -------
    GradcheckReport
        Per name (``input``/``weight``/``bias`` for a module, ``input0``, ``input1``,
        ... for a function): error, worst entry and ``passed``.

    Raises
    ------
    ValueError
        For bad arguments. A module's parameters are converted to float64 for the check
        and restored afterwards (values, dtype and accumulated gradients); its buffers
        (e.g. BatchNorm's running statistics, which every training forward pass
        updates) are replaced by float64 copies during the check and restored too.
    """
    for value, name in ((eps, "eps"), (atol, "atol"), (rtol, "rtol")):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    if eps == 0:
        raise ValueError("eps must be > 0, got 0")
    seed = positive_int(seed, "seed", minimum=0)
    if max_entries is not None:
        max_entries = positive_int(max_entries, "max_entries")
    arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
    if not arrays:
        raise ValueError("inputs must hold at least one array, got none")
    arrays = [float_array(a, f"inputs[{i}]").astype(np.float64) for i, a in enumerate(arrays)]
    rng = np.random.default_rng(seed)

    if isinstance(fn_or_module, Module):
        if backward is not None:
            raise ValueError("backward= is for functions; a Module uses its own backward")
        if len(arrays) != 1:
            raise ValueError(f"a Module takes one input array, got {len(arrays)}")
        return _check_module(fn_or_module, arrays[0], rng, eps, atol, rtol, max_entries, progress)
    if not callable(fn_or_module):
        raise ValueError(
            f"fn_or_module must be a Module or a callable, got {type(fn_or_module).__name__}"
        )
    if backward is None or not callable(backward):
        raise ValueError("checking a function needs backward=callable(dy, *inputs) -> grads")
    fn = fn_or_module
    y = _output(fn(*arrays))
    dy = rng.standard_normal(y.shape)
    grads = list(backward(dy, *arrays))
    if len(grads) != len(arrays):
        raise ValueError(f"backward returned {len(grads)} gradients for {len(arrays)} inputs")

    def scalar() -> float:
        return float(np.vdot(dy, _output(fn(*arrays))))

    targets = [
        (f"input{i}", array, grad)
        for i, (array, grad) in enumerate(zip(arrays, grads, strict=True))
        if grad is not None
    ]
    checks = _compare_all(targets, scalar, rng, eps, atol, rtol, max_entries, progress)
    return GradcheckReport(checks, eps, atol, rtol)


def _output(y: object) -> np.ndarray:
    if not isinstance(y, np.ndarray):
        raise ValueError(f"the function must return an ndarray, got {type(y).__name__}")
    return y.astype(np.float64, copy=False)


def _check_module(
    module: Module,
    x: np.ndarray,
    rng: np.random.Generator,
    eps: float,
    atol: float,
    rtol: float,
    max_entries: int | None,
    progress: bool,
) -> GradcheckReport:
    params = list(module.named_parameters())
    saved = [(p, p.data, p.grad) for _, p in params]
    # buffers (BatchNorm's running statistics) change on every training forward pass,
    # and the check runs many: each module gets its own buffers back afterwards
    buffers = [
        (m, name, buf) for _, m in module.named_modules() for name, buf in m._buffers.items()
    ]
    try:
        for _, p in params:
            p.data = p.data.astype(np.float64)
            p.grad = np.zeros_like(p.data)
        for m, name, buf in buffers:  # copies: the originals are not touched
            setattr(m, name, buf.astype(np.float64) if buf.dtype.kind == "f" else buf.copy())
        y = _output(module(x))
        dy = rng.standard_normal(y.shape)
        dx = module.backward(dy)

        def scalar() -> float:
            return float(np.vdot(dy, _output(module(x))))

        targets = [] if dx is None else [("input", x, dx)]
        targets += [(name, p.data, p.grad) for name, p in params]
        checks = _compare_all(targets, scalar, rng, eps, atol, rtol, max_entries, progress)
    finally:
        for p, data, grad in saved:
            p.data, p.grad = data, grad
        for m, name, buf in buffers:
            setattr(m, name, buf)
    return GradcheckReport(checks, eps, atol, rtol)


def _compare_all(
    targets: list[tuple[str, np.ndarray, np.ndarray]],
    scalar: Callable[[], float],
    rng: np.random.Generator,
    eps: float,
    atol: float,
    rtol: float,
    max_entries: int | None,
    progress: bool,
) -> list[TensorCheck]:
    """:func:`_compare` for each ``(name, array, analytic)``, in order, with a bar if asked."""
    bar = None
    if progress:
        from tqdm import tqdm

        total = sum(
            a.size if max_entries is None else min(a.size, max_entries) for _, a, _ in targets
        )
        bar = tqdm(total=total, desc="gradcheck", unit="entry", leave=False, file=sys.stderr)
    try:
        return [
            _compare(name, array, analytic, scalar, rng, eps, atol, rtol, max_entries, bar)
            for name, array, analytic in targets
        ]
    finally:
        if bar is not None:
            bar.close()


def _compare(
    name: str,
    array: np.ndarray,
    analytic: np.ndarray,
    scalar: Callable[[], float],
    rng: np.random.Generator,
    eps: float,
    atol: float,
    rtol: float,
    max_entries: int | None,
    bar: Any = None,
) -> TensorCheck:
    """Central differences of ``scalar`` w.r.t. ``array`` (perturbed in place, restored)."""
    analytic = np.asarray(analytic, dtype=np.float64)
    if analytic.shape != array.shape:
        raise ValueError(
            f"the analytic gradient of {name} has shape {analytic.shape}, expected {array.shape}"
        )
    flat_indices = np.arange(array.size)
    if max_entries is not None and array.size > max_entries:
        flat_indices = np.sort(rng.choice(array.size, size=max_entries, replace=False))
    numeric = np.zeros(len(flat_indices))
    view = array.reshape(-1)  # float64 copies made by gradcheck: contiguous
    for k, flat in enumerate(flat_indices):
        original = view[flat]
        view[flat] = original + eps
        plus = scalar()
        view[flat] = original - eps
        minus = scalar()
        view[flat] = original
        numeric[k] = (plus - minus) / (2 * eps)
        if bar is not None:
            bar.update(1)
    chosen = analytic.reshape(-1)[flat_indices]
    abs_err = np.abs(chosen - numeric)
    floor = atol / rtol if rtol > 0 else np.inf
    rel_err = abs_err / (floor + np.maximum(np.abs(chosen), np.abs(numeric)))
    worst = int(np.argmax(rel_err)) if len(rel_err) else 0
    ok = bool(np.all(abs_err <= atol + rtol * np.maximum(np.abs(chosen), np.abs(numeric))))
    index = tuple(int(i) for i in np.unravel_index(int(flat_indices[worst]), array.shape))
    return TensorCheck(
        name=name,
        shape=tuple(array.shape),
        checked=len(flat_indices),
        max_rel_error=float(rel_err[worst]) if len(rel_err) else 0.0,
        max_abs_error=float(abs_err.max()) if len(abs_err) else 0.0,
        index=index,
        analytic=float(chosen[worst]) if len(chosen) else 0.0,
        numeric=float(numeric[worst]) if len(numeric) else 0.0,
        passed=ok,
    )


# -- command line ------------------------------------------------------------------------
LAYERS = {"conv": "Conv2d", "linear": "Linear", "maxpool": "MaxPool2d", "avgpool": "AvgPool2d"}
#: a check estimated to take longer is refused unless --max-entries is given
LIMIT_SECONDS = 60.0
#: a check estimated to take longer shows a progress bar
PROGRESS_SECONDS = 2.0


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``cnnlab gradcheck`` to ``parser``."""
    parser.add_argument("--layer", default="conv", choices=sorted(LAYERS), help="layer to check")
    parser.add_argument("--input", default="5x7", help="input size HxW (or one int)")
    parser.add_argument("--kernel", default="3x2", help="kernel size KHxKW (or one int)")
    parser.add_argument(
        "--stride", default=None, help="stride S or SHxSW (default: 1; pools: kernel)"
    )
    parser.add_argument("--padding", default="1", help="padding P, PHxPW, 'same' or 'valid'")
    parser.add_argument("--dilation", default="1", help="dilation R or RHxRW (conv)")
    parser.add_argument("--groups", type=int, default=1, help="groups (conv)")
    parser.add_argument(
        "--channels", default="2x3", help="in x out channels, e.g. 2x3 (one int: the same)"
    )
    parser.add_argument("--batch", type=int, default=2, help="batch size N")
    parser.add_argument("--no-bias", action="store_true", help="layer without a bias")
    parser.add_argument("--seed", type=int, default=0, help="seed of input, weights and dy")
    parser.add_argument("--eps", type=float, default=1e-6, help="central-difference step")
    parser.add_argument(
        "--max-entries",
        type=_max_entries,
        metavar="N|all",
        help="check at most N random entries (chosen by --seed) of the input and of each "
        "parameter, or 'all' (default: all, unless that would take more than about "
        f"{LIMIT_SECONDS:.0f} s: then the check is refused with a suggestion for N)",
    )


def _max_entries(text: str) -> int | str:
    if text.strip().lower() == "all":
        return "all"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--max-entries must be a positive integer or 'all', got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--max-entries must be >= 1, got {value}")
    return value


def _dims(text: str, name: str, minimum: int = 1) -> tuple[int, int]:
    parts = str(text).lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"--{name} must be N or AxB (ints), got {text!r}") from None
    if len(values) not in (1, 2):
        raise ValueError(f"--{name} must be N or AxB, got {text!r}")
    return pair(
        values[0] if len(values) == 1 else (values[0], values[1]), f"--{name}", minimum=minimum
    )


def _build(args: argparse.Namespace, rng: np.random.Generator) -> tuple[Module, np.ndarray]:
    import cnnlab.nn

    cls_name = LAYERS.get(args.layer)
    cls = getattr(cnnlab.nn, cls_name, None) if cls_name else None
    if cls is None:
        raise ValueError(
            f"--layer {args.layer!r} is not available; expected one of "
            f"{[k for k, v in LAYERS.items() if hasattr(cnnlab.nn, v)]}"
        )
    c_in, c_out = _dims(args.channels, "channels")
    h, w = _dims(args.input, "input")
    batch = positive_int(args.batch, "--batch")
    kernel = _dims(args.kernel, "kernel")
    kwargs: dict[str, Any] = {}
    accepted = inspect.signature(cls).parameters
    if "rng" in accepted:
        kwargs["rng"] = rng
    if args.layer == "linear":
        layer = cls(c_in * h * w, c_out, **kwargs)
        x = rng.standard_normal((batch, c_in * h * w))
    else:
        padding: Any = args.padding if args.padding in ("same", "valid") else None
        if padding is None:
            padding = _dims(args.padding, "padding", minimum=0)
        if args.layer == "conv":
            stride = _dims(args.stride, "stride") if args.stride is not None else 1
            layer = cls(
                c_in,
                c_out,
                kernel,
                stride=stride,
                padding=padding,
                dilation=_dims(args.dilation, "dilation"),
                groups=args.groups,
                bias=not args.no_bias,
                **kwargs,
            )
        else:
            pool_stride = _dims(args.stride, "stride") if args.stride is not None else None
            layer = cls(kernel, stride=pool_stride, padding=padding, **kwargs)
        x = rng.standard_normal((batch, c_in, h, w))
    layer.astype(np.float64)
    return layer, x


def run_cli(args: argparse.Namespace) -> int:
    """Build the chosen layer in float64, check it, print the report; 0 if it passed, else 1.

    Every entry checked costs two forward passes. The time that takes is estimated from
    a timed forward pass: a check of every entry that would take longer than
    :data:`LIMIT_SECONDS` is refused (ValueError) unless ``--max-entries`` is given,
    with a message suggesting a value; a check that takes longer than
    :data:`PROGRESS_SECONDS` shows a progress bar on stderr.
    """
    rng = np.random.default_rng(positive_int(args.seed, "--seed", minimum=0))
    layer, x = _build(args, rng)
    print(f"{layer!r}, input {x.shape}")
    sizes = {"input": x.size, **{name: p.data.size for name, p in layer.named_parameters()}}
    forward = _forward_seconds(layer, x)

    def seconds(cap: int | None) -> float:
        return 2 * forward * sum(n if cap is None else min(n, cap) for n in sizes.values())

    choice = getattr(args, "max_entries", None)
    cap = choice if isinstance(choice, int) else None
    if choice is None and seconds(None) > LIMIT_SECONDS:
        raise ValueError(_too_long(sizes, seconds))
    if cap is not None and max(sizes.values()) > cap:
        print(
            f"checking at most {cap:,} random entries (chosen by --seed) of the input and "
            "of each parameter; --max-entries all checks every one"
        )
    report = gradcheck(
        layer,
        x,
        eps=args.eps,
        seed=args.seed,
        max_entries=cap,
        progress=seconds(cap) > PROGRESS_SECONDS,
    )
    print(report)
    return 0 if report.passed else 1


def _forward_seconds(layer: Module, x: np.ndarray) -> float:
    """The time of one forward pass (the faster of two)."""
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        layer(x)
        best = min(best, time.perf_counter() - start)
    return best


def _too_long(sizes: dict[str, int], seconds: Callable[[int | None], float]) -> str:
    total = sum(sizes.values())
    parts = ", ".join(f"{name} {n:,}" for name, n in sizes.items())
    # the largest round N that keeps the check within about half a minute here
    suggestion = next(
        (n for n in (5000, 2000, 1000, 500, 200, 100, 50, 20) if seconds(n) <= 30), 10
    )
    return (
        f"checking all {total:,} entries ({parts}) takes two forward passes each, about "
        f"{_duration(seconds(None))} here; check a random subset with --max-entries N per "
        f"array (--max-entries {suggestion}: about {_duration(seconds(suggestion))}), or "
        "every entry anyway with --max-entries all"
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:,.0f} h"


class _CallableModule(types.ModuleType):
    """Lets ``cnnlab.gradcheck(...)`` call :func:`gradcheck` while the module stays importable."""

    def __call__(
        self, fn_or_module: Module | Callable[..., np.ndarray], *args: Any, **kwargs: Any
    ) -> GradcheckReport:
        return gradcheck(fn_or_module, *args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
