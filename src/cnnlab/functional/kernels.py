"""Compiled kernels for the data movement around the matrix products, and their switch.

The NumPy functions of :mod:`cnnlab.functional` are the reference: they read like the
derivation. Around the BLAS products, though, NumPy moves memory in several passes on
one core — copying receptive fields (im2col), padding, zero insertion, scattering the
input gradient back (col2im), pooling, ReLU, the optimizer's element-wise update.
With `numba <https://numba.pydata.org>`_ installed (``pip install cnnlab[fast]``) those
loops run compiled, on every core, each as the per-element formula of the NumPy
function it replaces (in :mod:`cnnlab.functional._numba_kernels`). The products stay
NumPy's (BLAS); the results are the same sums, equal to the NumPy path up to rounding.

Which engine runs:

* ``CNNLAB_KERNELS`` unset (or ``auto``): numba if it imports, else NumPy;
* ``CNNLAB_KERNELS=numpy``: the NumPy reference, always;
* ``CNNLAB_KERNELS=numba``: numba, and an error if it is missing.

:func:`backend` says which one is in use; :func:`use` switches for a ``with`` block
(tests run both), :func:`set_backend` for good. :func:`threads` sets how many threads the
kernels and BLAS use.

Compiled code is cached in ``__pycache__`` next to the module: the first call of each
kernel on a machine compiles it (about a second each), later processes load it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "ENV_VAR",
    "backend",
    "col2im",
    "enabled",
    "im2col",
    "max_pool",
    "max_unpool",
    "num_threads",
    "pad",
    "relu",
    "relu_backward",
    "set_backend",
    "threads",
    "use",
]

#: the environment variable that picks the engine: ``numba``, ``numpy`` or ``auto``
ENV_VAR = "CNNLAB_KERNELS"
#: arrays with fewer elements run on the calling thread: waking numba's sleeping worker
#: threads costs some 30–60 µs idle and more on a busy machine (measured: a 512k-element
#: ReLU gains nothing from 2 threads under load, a 2M-element one 1.7×)
PARALLEL_MIN = 1 << 18

_CHOICES = ("auto", "numba", "numpy")
_compiled: ModuleType | None = None
_active: bool | None = None  # None: not decided yet (numba is imported lazily)


class KernelsUnavailable(RuntimeError):
    """``CNNLAB_KERNELS=numba`` (or ``use("numba")``) without numba installed."""


def _load() -> ModuleType | None:
    """The compiled module, or None when numba does not import."""
    global _compiled
    if _compiled is None:
        try:
            import numba
        except ImportError:
            return None
        if "NUMBA_THREADING_LAYER" not in os.environ:
            # numba's own pool: its threads sleep between kernels. The OpenMP layer's
            # threads spin after each kernel and, on a machine with few cores, take the
            # CPU from the BLAS threads of the product that follows (measured: LeNet-5
            # steps several times slower)
            config: Any = numba.config
            config.THREADING_LAYER = "workqueue"
        from cnnlab.functional import _numba_kernels

        _compiled = _numba_kernels
    return _compiled


def _resolve(choice: str) -> bool:
    choice = (choice or "auto").strip().lower()
    if choice not in _CHOICES:
        raise ValueError(f"{ENV_VAR} must be one of {', '.join(_CHOICES)}, got {choice!r}")
    if choice == "numpy":
        return False
    if _load() is not None:
        return True
    if choice == "numba":
        raise KernelsUnavailable(
            f"{ENV_VAR}=numba but numba does not import; install it with "
            "`pip install 'cnnlab[fast]'` (or `pip install numba`), or unset "
            f"{ENV_VAR} to use the NumPy kernels"
        )
    return False


def enabled() -> bool:
    """Whether the compiled kernels run (decided on first use, from ``CNNLAB_KERNELS``)."""
    global _active
    if _active is None:
        _active = _resolve(os.environ.get(ENV_VAR, "auto"))
    return _active


def backend() -> str:
    """The engine of the data-movement loops: ``"numba"`` or ``"numpy"``."""
    return "numba" if enabled() else "numpy"


def set_backend(name: str | None) -> str:
    """Choose the engine: ``"numba"``, ``"numpy"``, ``"auto"``, or None (``CNNLAB_KERNELS``).

    Returns the engine now in use. Raises :class:`KernelsUnavailable` for ``"numba"``
    without numba.
    """
    global _active
    _active = _resolve(os.environ.get(ENV_VAR, "auto") if name is None else name)
    return backend()


@contextlib.contextmanager
def use(name: str) -> Iterator[str]:
    """``with use("numpy"): ...`` runs the block on that engine, then restores the old one."""
    global _active
    before = enabled()
    try:
        yield set_backend(name)
    finally:
        _active = before


def num_threads() -> int:
    """Threads of the compiled kernels (numba's), or 1 on the NumPy path."""
    if not enabled():
        return 1
    import numba

    return int(numba.get_num_threads())


@contextlib.contextmanager
def threads(n: int) -> Iterator[int]:
    """Run the block with ``n`` threads for the kernels (numba) and the products (BLAS).

    Kernels and products run one after the other, never at once, so both may use every
    core; ``threads(1)`` makes the whole process single-threaded (for measurements, or
    for one process per core).
    """
    from threadpoolctl import threadpool_limits

    n = int(n)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    saved = None
    if enabled():
        import numba

        saved = numba.get_num_threads()
        config: Any = numba.config
        numba.set_num_threads(min(n, config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=n, user_api="blas"):
            yield n
    finally:
        if saved is not None:
            import numba

            numba.set_num_threads(saved)


def _module() -> Any:
    module = _load()
    assert module is not None, "kernels called without numba: check enabled() first"
    return module


def _pick(name: str, size: int) -> Any:
    """The parallel or the serial variant of kernel ``name`` for ``size`` elements.

    Serial for small arrays and whenever numba has one thread: its parallel loops would
    still hand the work to a worker thread and wait for it.
    """
    module = _module()
    parallel = size >= PARALLEL_MIN and module.get_num_threads() > 1
    return getattr(module, f"{name}_{'parallel' if parallel else 'serial'}")


def _u(*values: int) -> tuple[np.uint64, ...]:
    return tuple(np.uint64(v) for v in values)


# -- the wrappers: shapes checked by the NumPy callers; here only the calls ------------
def im2col(
    x: np.ndarray, stride: tuple[int, int], dilation: tuple[int, int], fields: np.ndarray
) -> None:
    """Fill ``fields`` with the receptive fields of ``x``: the compiled ``copy_fields``.

    ``fields[n, c, m, q, i, j] = x[n, c, i·sh + m·dh, j·sw + q·dw]``.

    Shapes
    ------
    x: ``(N, C, H, W)`` (any strides); fields: ``(N, C, kh, kw, OH, OW)``, C-contiguous.
    """
    if fields.size:
        _pick("im2col", fields.size)(x, fields, *_u(*stride, *dilation))


def _valid_range(offsets: range, step: int, out: int, before: int, size: int) -> np.ndarray:
    """Per tap offset ``o``: ``[lo, hi)`` of the ``i < out`` with ``0 <= i·step + o - before``
    and ``i·step + o - before < size``."""
    bounds = np.empty((2, len(offsets)), dtype=np.uint64)
    for t, o in enumerate(offsets):
        lo = max(0, -((o - before) // step))  # ceil((before - o) / step)
        hi = min(out, -((o - before - size) // step))  # ceil((before + size - o) / step)
        bounds[:, t] = (lo, max(lo, hi))
    return bounds


def col2im(
    cols: np.ndarray,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    before: tuple[int, int],
    dx: np.ndarray,
) -> None:
    """``dx[n, c, i·sh + m·dh - top, j·sw + q·dw - left] = Σ cols[n, c, m, q, i, j]``.

    The scatter-add of an input gradient: every term ``W·δ`` of the products goes to the
    input cell its receptive field read; terms that fall on the forward pass's padding
    (``before = (top, left)``, and whatever lies past the input) are dropped. ``dx`` is
    overwritten.

    Shapes
    ------
    cols: ``(N, C, kh, kw, OH, OW)``; dx: ``(N, C, H, W)``.
    """
    _, _, kh, kw, oh, ow = cols.shape
    rows = _valid_range(
        range(0, dilation[0] * kh, dilation[0]), stride[0], oh, before[0], dx.shape[2]
    )
    columns = _valid_range(
        range(0, dilation[1] * kw, dilation[1]), stride[1], ow, before[1], dx.shape[3]
    )
    if dx.size:
        _pick("col2im", cols.size + dx.size)(
            cols, dx, *_u(*stride, *dilation, *before), rows[0], rows[1], columns[0], columns[1]
        )


def pad(x: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """``x`` with that many zeros around its planes (all amounts ``>= 0``), a new array.

    Shapes
    ------
    x: ``(N, C, H, W)``; returns ``(N, C, H + top + bottom, W + left + right)``.
    """
    n, c, h, w = x.shape
    out = np.empty((n, c, h + top + bottom, w + left + right), dtype=x.dtype)
    if out.size:
        _pick("pad", out.size)(x, out, *_u(top, left))
    return out


def max_pool(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    out: tuple[int, int],
    argmax_dtype: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Each window's maximum and its tap in the window (row-major), ``-inf`` padding.

    Ties keep the first maximum; a NaN counts as the maximum (as the NumPy path).

    Shapes
    ------
    x: ``(N, C, H, W)``; y and argmax: ``(N, C, OH, OW)`` with ``(OH, OW) = out``.
    """
    n, c = x.shape[:2]
    y = np.empty((n, c, *out), dtype=x.dtype)
    argmax = np.empty((n, c, *out), dtype=argmax_dtype)
    if y.size:
        _pick("max_pool", x.size)(x, y, argmax, *_u(*kernel, *stride, *padding))
    return y, argmax


def max_unpool(
    dy: np.ndarray,
    argmax: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    x_shape: tuple[int, int, int, int],
) -> np.ndarray:
    """Each window's error added to the cell its maximum came from (overlaps add up).

    Shapes
    ------
    dy, argmax: ``(N, C, OH, OW)``; returns dx: ``x_shape = (N, C, H, W)``.
    """
    dx = np.empty(x_shape, dtype=dy.dtype)
    if dx.size:
        _pick("max_unpool", dx.size)(dy, argmax, dx, *_u(kernel[1], *stride, *padding))
    return dx


def relu(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)`` (NaN kept), a new array.

    Shapes
    ------
    Any; the result has ``x``'s shape.
    """
    flat = np.ascontiguousarray(x).reshape(-1)
    y = np.empty(flat.shape, dtype=x.dtype)
    if y.size:
        _pick("relu", y.size)(flat, y)
    return y.reshape(x.shape)


def relu_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``dy · (y > 0)``, a new array.

    Shapes
    ------
    ``dy`` and ``y`` of one shape; so has the result.
    """
    flat_dy = np.ascontiguousarray(dy).reshape(-1)
    flat_y = np.ascontiguousarray(y).reshape(-1)
    dx = np.empty(flat_dy.shape, dtype=dy.dtype)
    if dx.size:
        _pick("relu_backward", dx.size)(flat_dy, flat_y, dx)
    return dx.reshape(dy.shape)


def adam(
    p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, coefs: tuple[float, ...]
) -> None:
    """One Adam update of ``p`` and its moments ``m``, ``v`` in place (all C-contiguous).

    ``coefs = (β1, 1-β1, β2, 1-β2, weight decay, √(1-β2^t), eps, lr/(1-β1^t))``, each
    rounded to the arrays' dtype as NumPy rounds a Python float in the same operation.

    Shapes
    ------
    ``p``, ``g``, ``m``, ``v``: one shape, any.
    """
    arrays = [a.reshape(-1) for a in (p, g, m, v)]
    _pick("adam", p.size)(*arrays, np.array(coefs, dtype=p.dtype))
