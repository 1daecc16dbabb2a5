"""Compiled kernels for the data movement around the matrix products, and their switch.

The NumPy functions of :mod:`cnnlab.functional` are the reference: they read like the
derivation. Around the BLAS products, though, NumPy moves memory in several passes on
one core — copying receptive fields (im2col), padding, zero insertion, scattering the
input gradient back (col2im), pooling, ReLU, the optimizer's element-wise update.
With `numba <https://numba.pydata.org>`_ installed (``pip install cnnlab[fast]``) those
loops run compiled, on every core, each as the per-element formula of the NumPy
function it replaces (in :mod:`cnnlab.functional._numba_kernels`). The results are the
same sums, equal to the NumPy path up to rounding.

**Threads.** A convolution's work is handed out a sample per task over numba's threads:
each task copies a band of its sample's receptive fields (about :data:`BAND_BYTES`, so
they stay in the core's L2 cache), multiplies them with BLAS on its own thread, and
scatters the input gradient back, all while the band is in cache. BLAS itself runs on
one thread per call while the kernels are in use: two thread pools that both spin while
waiting (OpenMP's and OpenBLAS's) took the cores from each other and made a LeNet-5 step
10× slower. Nothing is summed across threads (each sample's weight gradient is summed
over the samples in order afterwards), so results do not depend on the thread count.

Which engine runs:

* ``CNNLAB_KERNELS`` unset (or ``auto``): numba if it imports, else NumPy;
* ``CNNLAB_KERNELS=numpy``: the NumPy reference, always;
* ``CNNLAB_KERNELS=numba``: numba, and an error if it is missing.

:func:`backend` says which one is in use; :func:`use` switches for a ``with`` block
(tests run both), :func:`set_backend` for good. :func:`threads` sets how many threads the
kernels and BLAS use.

Compiled code is cached in ``__pycache__`` next to the module (or ``NUMBA_CACHE_DIR``):
the first call of each kernel on a machine compiles it (a second or two each, some
15–20 s for all), later processes load it (about 1 s for all).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from cnnlab.errors import MissingDependencyError

__all__ = [
    "BAND_BYTES",
    "ENV_VAR",
    "PARALLEL_MIN",
    "PHASE_MAX_WIDTH",
    "UNPADDED_MIN_BYTES",
    "KernelsUnavailable",
    "adam",
    "backend",
    "cache_is_warm",
    "correlate",
    "enabled",
    "fields_error_product",
    "fields_product",
    "im2col",
    "input_error",
    "max_pool",
    "max_unpool",
    "num_threads",
    "pad",
    "relu",
    "relu_backward",
    "set_backend",
    "threads",
    "use",
    "weight_error",
]

#: the environment variable that picks the engine: ``numba``, ``numpy`` or ``auto``
ENV_VAR = "CNNLAB_KERNELS"
#: bytes of one band of receptive fields (or products) a convolution kernel works on:
#: with its operands and result it stays in the per-core L2 cache (2 MB here)
BAND_BYTES = 2**20
#: inputs of at least this many bytes are convolved without a padded copy (the kernels
#: read the padding as zeros); smaller ones are padded first: their copy stays in cache,
#: and the clipped im2col rows cost more than it saves (LeNet conv1 float32: 0.90 against
#: 0.75 ms; the stride-2 layer's 4 MB input: 7.46 against 8.10 ms)
UNPADDED_MIN_BYTES = 1 << 20
#: output rows at most this wide get the input gradient as long runs over phase planes
#: (measured 1.2-2x faster up to 32 columns; on 56-column rows the short-run scatter
#: straight into dx was 5-9 % faster, its runs being long already)
PHASE_MAX_WIDTH = 32
#: arrays with fewer elements run on the calling thread (measured with OpenMP threads:
#: a 32k-element ReLU takes 4 µs on one thread, and handing out work costs about as much)
PARALLEL_MIN = 1 << 15

_CHOICES = ("auto", "numba", "numpy")
_compiled: ModuleType | None = None
_active: bool | None = None  # None: not decided yet (numba is imported lazily)


class KernelsUnavailable(MissingDependencyError):
    """``CNNLAB_KERNELS=numba`` (or ``use("numba")``) without numba installed."""


def _load() -> ModuleType | None:
    """The compiled module, or None when numba does not import."""
    global _compiled
    if _compiled is None:
        try:
            import numba
            import scipy.linalg.cython_blas  # noqa: F401  (numba's np.dot calls its BLAS)
        except ImportError:
            return None
        if "NUMBA_THREADING_LAYER" not in os.environ:
            # OpenMP first: its threads wake within microseconds (numba's own workqueue
            # pool measured no faster on 2 threads than on 1 for these kernels)
            config: Any = numba.config
            config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]
        from cnnlab.functional import _numba_kernels

        _compiled = _numba_kernels
    return _compiled


#: BLAS libraries set to one thread while the compiled kernels run, with their counts
_blas_saved: list[tuple[Any, int]] | None = None
_blas_libraries: list[Any] | None = None


def _set_active(active: bool) -> None:
    """Switch engines; with the kernels, BLAS runs on one thread per call.

    The kernels spread the samples over numba's threads, each calling BLAS for its own
    sample's products; BLAS's own threads would compete with them for the same cores
    (measured: spinning OpenMP and OpenBLAS pools side by side made LeNet-5 steps 10×
    slower). The NumPy path gets BLAS's thread counts back.
    """
    global _active, _blas_saved, _blas_libraries
    _active = active
    if active and _blas_saved is None:
        if _blas_libraries is None:  # found once: a scan of the loaded libraries is slow
            from threadpoolctl import ThreadpoolController

            _blas_libraries = ThreadpoolController().select(user_api="blas").lib_controllers
        _blas_saved = [(lib, lib.num_threads) for lib in _blas_libraries]
        for lib, _ in _blas_saved:
            lib.set_num_threads(1)
    elif not active and _blas_saved is not None:
        for lib, count in _blas_saved:
            lib.set_num_threads(count)
        _blas_saved = None


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


def _after_fork_in_child() -> None:
    """A forked child runs the NumPy path: GNU OpenMP's threads do not survive a fork
    (numba aborts the child at its first parallel loop)."""
    global _active
    if _active:
        _active = False


os.register_at_fork(after_in_child=_after_fork_in_child)


def enabled() -> bool:
    """Whether the compiled kernels run (decided on first use, from ``CNNLAB_KERNELS``)."""
    if _active is None:
        _set_active(_resolve(os.environ.get(ENV_VAR, "auto")))
    return bool(_active)


def backend() -> str:
    """The engine of the data-movement loops: ``"numba"`` or ``"numpy"``."""
    return "numba" if enabled() else "numpy"


def set_backend(name: str | None) -> str:
    """Choose the engine: ``"numba"``, ``"numpy"``, ``"auto"``, or None (``CNNLAB_KERNELS``).

    Returns the engine now in use. Raises :class:`KernelsUnavailable` for ``"numba"``
    without numba.
    """
    _set_active(_resolve(os.environ.get(ENV_VAR, "auto") if name is None else name))
    return backend()


@contextlib.contextmanager
def use(name: str) -> Iterator[str]:
    """``with use("numpy"): ...`` runs the block on that engine, then restores the old one."""
    before = enabled()
    try:
        yield set_backend(name)
    finally:
        _set_active(before)


def num_threads() -> int:
    """Threads of the compiled kernels (numba's), or 1 on the NumPy path."""
    if not enabled():
        return 1
    import numba

    return int(numba.get_num_threads())


@contextlib.contextmanager
def threads(n: int) -> Iterator[int]:
    """Run the block on ``n`` threads: numba's with the kernels, else BLAS's.

    With the compiled kernels the work is spread over numba's threads (at most
    ``NUMBA_NUM_THREADS``, the machine's cores by default) and BLAS stays on one thread
    per call; on the NumPy path BLAS gets the ``n`` threads. ``threads(1)`` makes the
    whole process single-threaded (for measurements, or for one process per core).
    """
    from threadpoolctl import threadpool_limits

    n = int(n)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    if not enabled():
        with threadpool_limits(limits=n, user_api="blas"):
            yield n
        return
    import numba

    saved = numba.get_num_threads()
    config: Any = numba.config
    numba.set_num_threads(min(n, config.NUMBA_NUM_THREADS))
    try:
        yield n
    finally:
        numba.set_num_threads(saved)


def _cache_dir() -> Path | None:
    """The folder numba caches the compiled kernels in (None if it cannot be told)."""
    try:
        return Path(_module().correlate_parallel._cache._cache_path)
    except (AttributeError, TypeError):  # numba's cache layout is not a public API
        return None


def cache_is_warm() -> bool:
    """Whether the compiled kernels will (likely) load from numba's cache, not compile.

    A heuristic: False when the kernels are in use and no entry of their cache is newer
    than their source — the first convolution then compiles them (about 45 s on 2
    cores, once per machine and cnnlab version). One up-to-date entry counts as warm,
    though the kernels of another dtype may still compile (a few seconds each). True on
    the NumPy path, or when the cache cannot be located or read.
    """
    if not enabled():
        return True
    folder = _cache_dir()
    if folder is None:
        return True
    source = Path(_module().__file__).stat().st_mtime
    try:
        entries = folder.glob("_numba_kernels.*.nbi") if folder.is_dir() else ()
        return any(entry.stat().st_mtime >= source for entry in entries)
    except OSError:  # an entry removed meanwhile by another process, a folder not readable
        return True


def _module() -> Any:
    module = _load()
    assert module is not None, "kernels called without numba: check enabled() first"
    return module


def _pick(name: str, size: int, tasks: int = 2) -> Any:
    """The parallel or the serial variant of kernel ``name`` for ``size`` elements.

    Serial for small arrays, for a single task (one sample), and whenever numba has one
    thread: waking the other threads would cost more than it saves.
    """
    module = _module()
    parallel = size >= PARALLEL_MIN and tasks > 1 and module.get_num_threads() > 1
    return getattr(module, f"{name}_{'parallel' if parallel else 'serial'}")


def _u(*values: int) -> tuple[np.uint64, ...]:
    return tuple(np.uint64(v) for v in values)


def _band(row_bytes: int) -> np.uint64:
    """Output rows per band, for bands of receptive fields of about :data:`BAND_BYTES`."""
    return np.uint64(max(1, BAND_BYTES // max(1, row_bytes)))


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
        lo = min(out, max(0, -((o - before) // step)))  # ceil((before - o) / step)
        hi = min(out, -((o - before - size) // step))  # ceil((before + size - o) / step)
        bounds[:, t] = (lo, max(lo, hi))
    return bounds


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


# -- the products of a convolution, with the scatter, one sample per thread ----------------
def fields_product(fields: np.ndarray, k: np.ndarray, groups: int, y: np.ndarray) -> None:
    """``y[n] = k @ fields[n]`` per sample and group, the samples spread over the threads.

    Shapes
    ------
    fields: ``(N, C, kh, kw, OH, OW)``; k: ``(F, C/G, kh, kw)``; y: ``(N, F, OH, OW)``.
    """
    n, channels, kh, kw, oh, ow = fields.shape
    filters = k.shape[0]
    fg, taps = filters // groups, channels // groups * kh * kw
    cols = np.ascontiguousarray(fields).reshape(n, groups, taps, oh * ow)
    k_mat = np.ascontiguousarray(k).reshape(groups, fg, taps)
    _module().fields_product(cols, k_mat, y.reshape(n, groups, fg, oh * ow))


def fields_error_product(
    fields: np.ndarray, delta: np.ndarray, groups: int, dw: np.ndarray
) -> None:
    """``dw = Σ_n delta[n] @ fields[n]ᵀ``: per-sample products on the threads, summed in order.

    Shapes
    ------
    fields: ``(N, C, kh, kw, OH, OW)``; delta: ``(N, F, OH, OW)``; dw: ``(F, C/G, kh, kw)``.
    """
    n, channels, kh, kw, oh, ow = fields.shape
    filters = delta.shape[1]
    fg, taps = filters // groups, channels // groups * kh * kw
    cols = np.ascontiguousarray(fields).reshape(n, groups, taps, oh * ow)
    errors = np.ascontiguousarray(delta).reshape(n, groups, fg, oh * ow)
    partial = np.empty((n, groups, fg, taps), dtype=dw.dtype)
    _module().fields_error_product(cols, errors, partial)
    np.sum(partial, axis=0, out=dw.reshape(groups, fg, taps))


def input_error(
    delta: np.ndarray,
    w: np.ndarray,
    groups: int,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    before: tuple[int, int],
    dx: np.ndarray,
) -> None:
    """``dx`` from the error map: per sample ``Wᵀ δ`` (BLAS), then the col2im scatter-add.

    Shapes
    ------
    delta: ``(N, F, OH, OW)``; w: ``(F, C/G, kh, kw)``; dx: ``(N, C, H, W)`` (overwritten).
    """
    n, filters, oh, ow = delta.shape
    _, cg, kh, kw = w.shape
    fg, taps = filters // groups, cg * kh * kw
    k_t = np.ascontiguousarray(w.reshape(groups, fg, taps).transpose(0, 2, 1))
    errors = np.ascontiguousarray(delta).reshape(n, groups, fg, oh * ow)
    if not dx.size:
        return
    size = delta.size * cg * kh * kw // max(1, fg)
    if ow <= PHASE_MAX_WIDTH:
        # each tap's products added as one long run over its phase plane (see the kernel)
        pitch = ow + dilation[1] * (kw - 1) // stride[1]
        plane = (oh + dilation[0] * (kh - 1) // stride[0]) * pitch
        band = _band(dx.shape[1] * kh * kw * pitch * dx.itemsize)
        _pick("input_error_phase", size, n)(
            errors,
            k_t,
            dx,
            *_u(plane),
            band,
            *_u(kh, kw, oh, ow, *stride, *dilation, *before, pitch),
        )
        return
    rows = _valid_range(
        range(0, dilation[0] * kh, dilation[0]), stride[0], oh, before[0], dx.shape[2]
    )
    columns = _valid_range(
        range(0, dilation[1] * kw, dilation[1]), stride[1], ow, before[1], dx.shape[3]
    )
    band = _band(dx.shape[1] * kh * kw * ow * dx.itemsize)
    _pick("input_error", size, n)(
        errors, k_t, dx, band, *_u(ow, *stride, *dilation, *before), *rows, *columns
    )


def correlate(
    x: np.ndarray,
    k: np.ndarray,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    y: np.ndarray,
    bias: np.ndarray | None = None,
    before: tuple[int, int] = (0, 0),
) -> None:
    """:func:`cnnlab.functional.correlate2d` per sample: im2col and product in cache.

    ``x`` padded with ``before = (top, left)`` rows and columns of zeros (and as many
    after as the output size ``y`` needs), without materialising them; with ``bias``,
    ``y[:, f] += bias[f]`` too, while each band is in cache.

    Shapes
    ------
    x: ``(N, C, H, W)``; k: ``(F, C/G, kh, kw)``; bias: ``(F,)``; y: ``(N, F, OH, OW)``
    (overwritten).
    """
    n, filters, oh, ow = y.shape
    _, cg, kh, kw = k.shape
    fg = filters // groups
    k_mat = np.ascontiguousarray(k).reshape(groups, fg, cg * kh * kw)
    b = np.empty(0, dtype=y.dtype) if bias is None else np.ascontiguousarray(bias)
    _pick("correlate", y.size * cg * kh * kw, n)(
        np.ascontiguousarray(x),
        k_mat,
        b,
        y.reshape(n, groups, fg, oh * ow),
        _band(x.shape[1] * kh * kw * ow * x.itemsize),
        *_u(kh, kw, oh, ow, *stride, *dilation, *before),
        *_columns(kw, stride[1], dilation[1], ow, before[1], x.shape[3]),
    )


def _columns(kw: int, sw: int, dw: int, ow: int, left: int, width: int) -> np.ndarray:
    """Per tap column ``q``: the output columns ``[lo, hi)`` whose reads fall inside ``x``."""
    return _valid_range(range(0, dw * kw, dw), sw, ow, left, width)


def weight_error(
    x: np.ndarray,
    delta: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    dw: np.ndarray,
    db: np.ndarray | None = None,
    before: tuple[int, int] = (0, 0),
) -> None:
    """``dw = Σ_n δ[n] · im2col(x[n])ᵀ`` (and ``db = Σ δ``): per sample on the threads,
    summed in order.

    Step (E5) without stored receptive fields: each sample's are copied again into
    cache and multiplied at once. ``x`` is padded with ``before = (top, left)`` zeros
    (and as many after as ``delta``'s size needs), never materialised. With ``db``,
    step (E6) too: each sample's error map summed while the thread has it in cache.

    Shapes
    ------
    x: ``(N, C, H, W)``; delta: ``(N, F, OH, OW)``; dw: ``(F, C/G, kh, kw)``; db: ``(F,)``.
    """
    n, filters, oh, ow = delta.shape
    fg, taps = filters // groups, x.shape[1] // groups * kernel[0] * kernel[1]
    errors = np.ascontiguousarray(delta).reshape(n, groups, fg, oh * ow)
    sums = np.empty((n, filters) if db is not None else (0, 0), dtype=dw.dtype)
    band = _band(x.shape[1] * kernel[0] * kernel[1] * ow * x.itemsize)
    geometry = (
        *_u(*kernel, oh, ow, *stride, *dilation, *before),
        *_columns(kernel[1], stride[1], dilation[1], ow, before[1], x.shape[3]),
    )
    if oh * ow < taps and band >= oh:
        # a whole plane with fewer positions than taps: fields @ δᵀ is the faster
        # orientation for BLAS (same sums; measured 1.4-1.7x on LeNet's second layer)
        partial_t = np.empty((n, groups, taps, fg), dtype=dw.dtype)
        _pick("weight_error_t", delta.size * taps, n)(
            np.ascontiguousarray(x), errors, partial_t, sums, *geometry
        )
        dw.reshape(groups, fg, taps)[...] = partial_t.sum(axis=0).transpose(0, 2, 1)
    else:
        partial = np.empty((n, groups, fg, taps), dtype=dw.dtype)
        _pick("weight_error", delta.size * taps, n)(
            np.ascontiguousarray(x), errors, partial, sums, band, *geometry
        )
        np.sum(partial, axis=0, out=dw.reshape(groups, fg, taps))
    if db is not None:
        np.sum(sums, axis=0, out=db)
