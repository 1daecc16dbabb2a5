"""Max and average pooling, forward and backward.

Both work on every ``kh×kw`` window of a (padded) input taken at steps of the stride.
Windows may overlap (stride < kernel): then one input cell belongs to several windows
and its gradient is the *sum* over them.

Max pooling routes each window's error to the cell that held the maximum (the others
did not influence the output). **Ties** — several cells equal to the maximum — send the
whole error to the *first* of them in row-major order within the window, as PyTorch
does; padding cells hold ``-inf`` and never win. A NaN counts as the maximum (as in
PyTorch).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cnnlab._validate import float_array, pair
from cnnlab.functional import kernels
from cnnlab.functional.correlate import output_size

__all__ = [
    "AvgPoolCache",
    "MaxPoolCache",
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "pool_params",
]


def pool_params(
    x_shape: tuple[int, ...],
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None,
    padding: int | tuple[int, int],
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Validate pooling arguments; return ``(kernel, stride, padding, (OH, OW))``.

    ``stride=None`` means ``stride = kernel_size`` (non-overlapping windows). Padding
    may be at most half the kernel (PyTorch's rule: a window must never lie wholly in
    the padding).
    """
    kernel = pair(kernel_size, "kernel_size")
    step = kernel if stride is None else pair(stride, "stride")
    pad = pair(padding, "padding", minimum=0)
    for a, name in ((0, "height"), (1, "width")):
        if 2 * pad[a] > kernel[a]:
            raise ValueError(
                f"padding must be at most half the kernel size in {name}: got padding "
                f"{pad[a]} with kernel {kernel[a]}; expected padding <= {kernel[a] // 2}"
            )
    if len(x_shape) != 4:
        raise ValueError(f"pooling input must be 4-D (N, C, H, W), got shape {tuple(x_shape)}")
    out = []
    for a, name in ((0, "height"), (1, "width")):
        padded = x_shape[2 + a] + 2 * pad[a]
        if kernel[a] > padded:
            raise ValueError(
                f"pooling kernel {name} {kernel[a]} is larger than the padded input's "
                f"{name} {padded}; expected a kernel of at most {padded}"
            )
        out.append(output_size(padded, kernel[a], step[a]))
    return kernel, step, pad, (out[0], out[1])


def _pad(x: np.ndarray, pad: tuple[int, int], value: float) -> np.ndarray:
    """``x`` with ``pad`` cells of ``value`` around its last two axes."""
    if pad == (0, 0):
        return x
    width = ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1]))
    return np.pad(x, width, constant_values=value)


def _tap_slice(p: int, q: int, stride: tuple[int, int], out: tuple[int, int]) -> tuple:
    """Index of the cells that tap ``(p, q)`` of every window reads in the padded input."""
    return (
        slice(None),
        slice(None),
        slice(p, p + stride[0] * (out[0] - 1) + 1, stride[0]),
        slice(q, q + stride[1] * (out[1] - 1) + 1, stride[1]),
    )


class MaxPoolCache(NamedTuple):
    """What :func:`max_pool2d_backward` needs."""

    argmax: np.ndarray  #: flat tap index (row-major in the window) of each maximum
    x_shape: tuple[int, int, int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


def max_pool2d_forward(
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
) -> tuple[np.ndarray, MaxPoolCache]:
    """Maximum of each window.

    Parameters
    ----------
    x : ndarray, float32 or float64
    kernel_size : int or (int, int)
    stride : int, (int, int) or None
        None: equal to the kernel (non-overlapping windows).
    padding : int or (int, int)
        ``-inf`` cells added on each side; at most half the kernel.

    Returns
    -------
    y : ndarray
    cache : MaxPoolCache

    Shapes
    ------
    x: ``(N, C, H, W)``; y: ``(N, C, OH, OW)``, ``OH = (H + 2p - k) // s + 1``.
    """
    x = float_array(x, "max_pool2d input", ndim=4)
    kernel, step, pad, out = pool_params(x.shape, kernel_size, stride, padding)
    shape = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    argmax_dtype = np.uint8 if kernel[0] * kernel[1] < 256 else np.intp
    if kernels.enabled():  # the same rules per window, compiled
        y, argmax = kernels.max_pool(x, kernel, step, pad, out, argmax_dtype)
        return y, MaxPoolCache(argmax, shape, kernel, step, pad)
    x_padded = _pad(x, pad, -np.inf)
    if kernel == step == (2, 2):
        pooled = _max_pool_2x2(x_padded, out)
        if pooled is not None:
            return pooled[0], MaxPoolCache(pooled[1], shape, kernel, step, pad)
    # One pass per tap over all windows at once: a later tap takes over only when it is
    # strictly larger (so ties keep the first maximum) or NaN (PyTorch's rule).
    y = x_padded[_tap_slice(0, 0, step, out)].copy()
    argmax = np.zeros(y.shape, dtype=argmax_dtype)
    for tap in range(1, kernel[0] * kernel[1]):
        cells = x_padded[_tap_slice(*divmod(tap, kernel[1]), step, out)]
        larger = cells > y
        larger |= np.isnan(cells)
        np.maximum(y, cells, out=y)  # NaN-propagating, as the rule above
        # argmax = tap where larger, as arithmetic (faster here than np.where/copyto)
        flag = larger.view(np.uint8).astype(argmax.dtype, copy=False)
        argmax -= flag * argmax
        argmax += flag * argmax.dtype.type(tap)
    return y, MaxPoolCache(argmax, shape, kernel, step, pad)


def _max_pool_2x2(
    x_padded: np.ndarray, out: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray] | None:
    """The common 2×2, stride-2 case as a tournament: two pairs, then their winners.

    Three maxima and three comparisons instead of a pass per tap; a strict ``>`` keeps
    the first of equal values at each round, so the winner is the first maximum in
    row-major order. None when a window holds a NaN (the general passes apply the NaN
    rule).
    """
    a, b = x_padded[_tap_slice(0, 0, (2, 2), out)], x_padded[_tap_slice(0, 1, (2, 2), out)]
    c, d = x_padded[_tap_slice(1, 0, (2, 2), out)], x_padded[_tap_slice(1, 1, (2, 2), out)]
    top, right_top = np.maximum(a, b), (b > a).view(np.uint8)
    bottom, right_bottom = np.maximum(c, d), (d > c).view(np.uint8)
    lower = (bottom > top).view(np.uint8)
    y = np.maximum(top, bottom, out=top)
    if np.isnan(y).any():
        return None
    # tap = 2·lower + (right_bottom if lower else right_top), in uint8 bit arithmetic
    argmax = right_top ^ ((right_top ^ right_bottom) & lower)
    argmax |= lower << 1
    return y, argmax


def max_pool2d_backward(dy: np.ndarray, cache: MaxPoolCache) -> np.ndarray:
    """Route each window's error to the cell that held its maximum.

    Overlapping windows add their errors into shared cells. Each of the ``kh·kw`` taps
    is one vectorized pass over all windows.

    Shapes
    ------
    dy: ``(N, C, OH, OW)``; returns dx: ``(N, C, H, W)``.
    """
    argmax, x_shape, kernel, step, pad = cache
    dy = float_array(dy, "dy", ndim=4)
    if dy.shape != argmax.shape:
        raise ValueError(f"dy must have the pooled output's shape {argmax.shape}, got {dy.shape}")
    n, c, h, w = x_shape
    if kernels.enabled():  # the same routing, compiled
        return kernels.max_unpool(dy, argmax, kernel, step, pad, x_shape)
    out = (argmax.shape[2], argmax.shape[3])
    overlap = step[0] < kernel[0] or step[1] < kernel[1]
    # windows that tile the input exactly write every cell once: no zeroing needed
    tiled = step == kernel and pad == (0, 0) and h == out[0] * kernel[0] and w == out[1] * kernel[1]
    shape = (n, c, h + 2 * pad[0], w + 2 * pad[1])
    dx_padded = np.empty(shape, dtype=dy.dtype) if tiled else np.zeros(shape, dtype=dy.dtype)
    for tap in range(kernel[0] * kernel[1]):
        p, q = divmod(tap, kernel[1])
        cells = dx_padded[_tap_slice(p, q, step, out)]
        if overlap:
            cells += (argmax == tap) * dy
        else:  # each cell is in at most one window: write the product in place
            np.multiply(argmax == tap, dy, out=cells)
    return dx_padded[:, :, pad[0] : pad[0] + h, pad[1] : pad[1] + w]


class AvgPoolCache(NamedTuple):
    """What :func:`avg_pool2d_backward` needs."""

    divisor: np.ndarray  #: cells counted per window, (OH, OW)
    x_shape: tuple[int, int, int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


def _avg_divisor(
    x_shape: tuple[int, ...],
    kernel: tuple[int, int],
    step: tuple[int, int],
    pad: tuple[int, int],
    out: tuple[int, int],
    count_include_pad: bool,
    dtype: np.dtype,
) -> np.ndarray:
    if count_include_pad:
        return np.full(out, kernel[0] * kernel[1], dtype=dtype)
    inside = np.zeros((x_shape[2] + 2 * pad[0], x_shape[3] + 2 * pad[1]), dtype=dtype)
    inside[pad[0] : pad[0] + x_shape[2], pad[1] : pad[1] + x_shape[3]] = 1
    view = np.lib.stride_tricks.sliding_window_view(inside, kernel)
    return view[:: step[0], :: step[1]][: out[0], : out[1]].sum(axis=(2, 3))


def avg_pool2d_forward(
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    count_include_pad: bool = True,
) -> tuple[np.ndarray, AvgPoolCache]:
    """Mean of each window (zero padding; ``count_include_pad`` as in PyTorch).

    Shapes
    ------
    x: ``(N, C, H, W)``; y: ``(N, C, OH, OW)``, ``OH = (H + 2p - k) // s + 1``.
    """
    x = float_array(x, "avg_pool2d input", ndim=4)
    kernel, step, pad, out = pool_params(x.shape, kernel_size, stride, padding)
    x_padded = _pad(x, pad, 0.0)
    total = np.zeros((x.shape[0], x.shape[1], out[0], out[1]), dtype=x.dtype)
    for tap in range(kernel[0] * kernel[1]):
        total += x_padded[_tap_slice(*divmod(tap, kernel[1]), step, out)]
    divisor = _avg_divisor(x.shape, kernel, step, pad, out, count_include_pad, x.dtype)
    total /= divisor
    shape = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    return total, AvgPoolCache(divisor, shape, kernel, step, pad)


def avg_pool2d_backward(dy: np.ndarray, cache: AvgPoolCache) -> np.ndarray:
    """Spread each window's error evenly over the cells it averaged.

    Shapes
    ------
    dy: ``(N, C, OH, OW)``; returns dx: ``(N, C, H, W)``.
    """
    divisor, x_shape, kernel, step, pad = cache
    dy = float_array(dy, "dy", ndim=4)
    n, c, h, w = x_shape
    if dy.shape != (n, c, *divisor.shape):
        raise ValueError(
            f"dy must have the pooled output's shape {(n, c, *divisor.shape)}, got {dy.shape}"
        )
    share = dy / divisor
    dx_padded = np.zeros((n, c, h + 2 * pad[0], w + 2 * pad[1]), dtype=dy.dtype)
    for tap in range(kernel[0] * kernel[1]):
        dx_padded[_tap_slice(*divmod(tap, kernel[1]), step, divisor.shape)] += share
    return dx_padded[:, :, pad[0] : pad[0] + h, pad[1] : pad[1] + w]
