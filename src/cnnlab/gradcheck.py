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
        return _check_module(fn_or_module, arrays[0], rng, eps, atol, rtol, max_entries)
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

    checks = []
    for i, (array, grad) in enumerate(zip(arrays, grads, strict=True)):
        if grad is None:
            continue
        checks.append(_compare(f"input{i}", array, grad, scalar, rng, eps, atol, rtol, max_entries))
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

        checks = []
        if dx is not None:
            checks.append(_compare("input", x, dx, scalar, rng, eps, atol, rtol, max_entries))
        for name, p in params:
            checks.append(_compare(name, p.data, p.grad, scalar, rng, eps, atol, rtol, max_entries))
    finally:
        for p, data, grad in saved:
            p.data, p.grad = data, grad
        for m, name, buf in buffers:
            setattr(m, name, buf)
    return GradcheckReport(checks, eps, atol, rtol)


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
    """Build the chosen layer in float64, check it, print the report; 0 if it passed, else 1."""
    rng = np.random.default_rng(positive_int(args.seed, "--seed", minimum=0))
    layer, x = _build(args, rng)
    print(f"{layer!r}, input {x.shape}")
    report = gradcheck(layer, x, eps=args.eps, seed=args.seed)
    print(report)
    return 0 if report.passed else 1


class _CallableModule(types.ModuleType):
    """Lets ``cnnlab.gradcheck(...)`` call :func:`gradcheck` while the module stays importable."""

    def __call__(
        self, fn_or_module: Module | Callable[..., np.ndarray], *args: Any, **kwargs: Any
    ) -> GradcheckReport:
        return gradcheck(fn_or_module, *args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
