"""The BLAS algorithms behind :func:`cnnlab.functional.correlate2d` (same sum, three ways).

All three compute ``y[n, f, i, j] = Σ_c Σ_m Σ_q k[f, c, m, q] · x[n, c', i·sh + m·dh,
j·sw + q·dw]`` (``c'`` the channel of filter ``f``'s group) as large matrix products, in
the input's dtype, writing into a preallocated ``y``:

* :func:`im2col_columns` copies every receptive field into a column,
  ``(N, C·kh·kw, OH·OW)``, and multiplies ``(F, C·kh·kw)`` by it, sample by sample;
* :func:`im2col_rows` copies every receptive field into a row, ``(N·OH·OW, C·kh·kw)``,
  the batch folded into one product — for a kernel larger than the output (the weight
  gradient, whose "kernel" is the error map);
* :func:`shift_add` multiplies every tap of the kernel with the whole input at once,
  ``(kh·kw·F, C) @ (C, N·H·W)``, and adds the products shifted by each tap's offset —
  no copy of receptive fields; cheaper when the output has fewer channels than the input
  (the input gradient of a layer that widens, e.g. LeNet's first two).

Scratch arrays live in per-thread buffers reused from call to call (fresh multi-MB
temporaries cost page faults every time); the callers bound their size by chunking the
batch.
"""

from __future__ import annotations

import math
import threading

import numpy as np

_scratch_space = threading.local()


def scratch(slot: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised array of ``shape`` in the per-thread buffer named ``slot``."""
    nbytes = math.prod(shape) * dtype.itemsize
    buffer = getattr(_scratch_space, slot, None)
    if buffer is None or buffer.nbytes < nbytes:
        buffer = np.empty(nbytes, dtype=np.uint8)
        setattr(_scratch_space, slot, buffer)
    return buffer[:nbytes].view(dtype).reshape(shape)


def windows(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out: tuple[int, int],
) -> np.ndarray:
    """Read-only view ``(N, C, OH, OW, kh, kw)``: every receptive field, without copying."""
    sn, sc, sh, sw = x.strides
    return np.lib.stride_tricks.as_strided(
        x,
        shape=(x.shape[0], x.shape[1], out[0], out[1], kernel[0], kernel[1]),
        strides=(sn, sc, sh * stride[0], sw * stride[1], sh * dilation[0], sw * dilation[1]),
        writeable=False,
    )


def im2col_columns(
    x: np.ndarray,
    k: np.ndarray,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    y: np.ndarray,
    chunk: int,
) -> None:
    """``y = k @ columns``: a ``(F/G, C/G·kh·kw) @ (C/G·kh·kw, OH·OW)`` product per sample."""
    n, channels = x.shape[:2]
    filters, cg, kh, kw = k.shape
    oh, ow = y.shape[2:]
    fg, taps = filters // groups, cg * kh * kw
    k_mat = k.reshape(groups, fg, taps)
    fields = windows(x, (kh, kw), stride, dilation, (oh, ow))
    for start in range(0, n, chunk):
        part = fields[start : start + chunk]
        b = part.shape[0]
        cols = scratch("cols", (b, channels, kh, kw, oh, ow), x.dtype)
        np.copyto(cols, part.transpose(0, 1, 4, 5, 2, 3))
        out = y[start : start + b].reshape(b, groups, fg, oh * ow)
        np.matmul(k_mat, cols.reshape(b, groups, taps, oh * ow), out=out)


def im2col_rows(
    x: np.ndarray,
    k: np.ndarray,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    y: np.ndarray,
    chunk: int,
) -> None:
    """``y = rows @ k.T``: the batch's receptive fields as rows, one product per group."""
    n, channels = x.shape[:2]
    filters, cg, kh, kw = k.shape
    oh, ow = y.shape[2:]
    fg, taps = filters // groups, cg * kh * kw
    k_mat = k.reshape(groups, fg, taps)
    fields = windows(x, (kh, kw), stride, dilation, (oh, ow))
    for start in range(0, n, chunk):
        part = fields[start : start + chunk]
        b = part.shape[0]
        cols = scratch("cols", (b, oh, ow, channels, kh, kw), x.dtype)
        np.copyto(cols, part.transpose(0, 2, 3, 1, 4, 5))
        rows = cols.reshape(b * oh * ow, groups, taps).transpose(1, 0, 2)
        prod = np.matmul(rows, k_mat.transpose(0, 2, 1))  # (G, b·OH·OW, F/G)
        out = y[start : start + b].reshape(b, groups, fg, oh * ow)
        out[...] = prod.reshape(groups, b, oh * ow, fg).transpose(1, 0, 3, 2)


def nonzero_box(x: np.ndarray) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)``: the rows/columns outside which every plane is zero.

    A zero-padded input (the input gradient's error map is padded by ``k_eff-1-P`` per
    side) has an all-zero border; shift-add skips it. ``(0, 0, 0, 0)`` if all is zero.
    """
    # plane-wise max and min over samples and channels: no temporary of x's size
    high, low = x.max(axis=(0, 1)), x.min(axis=(0, 1))
    plane = (high != 0) | (low != 0) | np.isnan(high)
    rows = np.flatnonzero(plane.any(axis=1))
    cols = np.flatnonzero(plane.any(axis=0))
    if rows.size == 0:
        return 0, 0, 0, 0
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _reach(low: int, high: int, offset: int, step: int, n_out: int) -> tuple[int, int]:
    """Output positions ``i`` in ``[0, n_out)`` with ``low <= i·step + offset < high``."""
    first = max(0, -((offset - low) // step))  # ceil((low - offset) / step)
    stop = min(n_out, -((offset - high) // step))
    return first, max(first, stop)


def shift_add(
    x: np.ndarray,
    k: np.ndarray,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    y: np.ndarray,
    chunk: int,
    box: tuple[int, int, int, int] | None = None,
) -> None:
    """``y = Σ_taps shift(k[:, :, m, q] @ x)``: per-tap products over the input, shifted.

    Only the part of ``x`` inside ``box`` (see :func:`nonzero_box`; default: all of it)
    is multiplied: outside it ``x`` must be zero, and so are the products.
    """
    n = x.shape[0]
    filters, cg, kh, kw = k.shape
    oh, ow = y.shape[2:]
    fg = filters // groups
    top, bottom, left, right = box if box is not None else (0, x.shape[2], 0, x.shape[3])
    h, w = bottom - top, right - left
    # (G, kh·kw·F/G, C/G): every tap's (F/G, C/G) matrix stacked, for one product
    k_taps = k.reshape(groups, fg, cg, kh, kw).transpose(0, 3, 4, 1, 2)
    k_taps = k_taps.reshape(groups, kh * kw * fg, cg)
    for start in range(0, n, chunk):
        part = x[start : start + chunk, :, top:bottom, left:right]
        b = part.shape[0]
        planes = scratch("planes", (groups, cg, b, h, w), x.dtype)
        np.copyto(planes, part.reshape(b, groups, cg, h, w).transpose(1, 2, 0, 3, 4))
        z = scratch("taps", (groups, kh * kw * fg, b * h * w), x.dtype)
        np.matmul(k_taps, planes.reshape(groups, cg, b * h * w), out=z)
        z6 = z.reshape(groups, kh, kw, fg, b, h, w)
        acc = scratch("acc", (groups, fg, b, oh, ow), x.dtype)
        if box is not None:
            acc[...] = 0  # taps that reach only part of the output add into part of it
        for m in range(kh):
            i0, i1 = _reach(top, bottom, m * dilation[0], stride[0], oh)
            for q in range(kw):
                j0, j1 = _reach(left, right, q * dilation[1], stride[1], ow)
                if i0 == i1 or j0 == j1:
                    continue  # this tap only ever sees the zero border
                r0 = i0 * stride[0] + m * dilation[0] - top
                c0 = j0 * stride[1] + q * dilation[1] - left
                shifted = z6[
                    :,
                    m,
                    q,
                    :,
                    :,
                    r0 : r0 + stride[0] * (i1 - i0 - 1) + 1 : stride[0],
                    c0 : c0 + stride[1] * (j1 - j0 - 1) + 1 : stride[1],
                ]
                if box is None and m == q == 0:
                    np.copyto(acc, shifted)  # without a box every tap covers all of acc
                else:
                    acc[..., i0:i1, j0:j1] += shifted
        y[start : start + b] = acc.reshape(filters, b, oh, ow).transpose(1, 0, 2, 3)


def shift_add_is_cheaper(
    channels: int, filters: int, taps: int, in_plane: int, out_plane: int
) -> bool:
    """Memory traffic estimate (per sample): shift-add vs copying receptive fields.

    im2col reads, writes and re-reads ``C·taps·OH·OW`` values; shift-add writes and
    reads ``F·taps·H·W`` products and updates an ``F·OH·OW`` sum once per tap. Measured
    on LeNet's input gradients, shift-add wins by 2–5×; on layers with as many output as
    input channels it loses, hence the margin.
    """
    im2col = 3 * channels * taps * out_plane
    shift = 2 * filters * taps * in_plane + 2 * taps * filters * out_plane
    return shift < 0.7 * im2col
