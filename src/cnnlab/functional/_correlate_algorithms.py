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
  (the input gradient of a layer that widens, e.g. LeNet's first two). It multiplies only
  the rows/columns where the input is non-zero (:func:`nonzero_lattice`): the input
  gradient's error map is zero-padded and, with a stride, zero-inserted, so the product
  costs what the forward pass costs instead of ``stride²`` times more. With a unit
  stride and a box of non-zeros (a zero-padded map), the products are laid out so that
  every tap's shifted add is one contiguous block (:func:`_shift_add_flat`).

Skipping zeros is exact for finite kernels (a non-finite kernel entry times a skipped zero
would have been NaN). Scratch arrays live in per-thread buffers reused from call to call
(fresh multi-MB temporaries cost page faults every time) and stay allocated; the callers
bound their size by chunking the batch.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from cnnlab.functional import kernels

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


def copy_fields(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    fields: np.ndarray,
) -> None:
    """Copy every receptive field of ``x`` into ``fields``, ``(N, C, kh, kw, OH, OW)``."""
    if kernels.enabled():  # the same copy, compiled (kernels.im2col)
        kernels.im2col(x, stride, dilation, fields)
        return
    oh, ow = fields.shape[4:]
    view = windows(x, kernel, stride, dilation, (oh, ow))
    np.copyto(fields, view.transpose(0, 1, 4, 5, 2, 3))


def fields_product(fields: np.ndarray, k: np.ndarray, groups: int, y: np.ndarray) -> None:
    """``y[n] = k @ fields[n]``: a ``(F/G, C/G·kh·kw) @ (C/G·kh·kw, OH·OW)`` product per sample."""
    if kernels.enabled():  # the same products, a sample per thread
        kernels.fields_product(fields, k, groups, y)
        return
    b = fields.shape[0]
    filters, cg, kh, kw = k.shape
    fg, taps = filters // groups, cg * kh * kw
    plane = fields.shape[4] * fields.shape[5]
    out = y.reshape(b, groups, fg, plane)
    np.matmul(k.reshape(groups, fg, taps), fields.reshape(b, groups, taps, plane), out=out)


def fields_error_product(
    fields: np.ndarray, delta: np.ndarray, groups: int, dw: np.ndarray, chunk: int
) -> None:
    """``dw = Σ_n delta[n] @ fields[n]ᵀ``: per-sample products summed over the batch.

    ``dw[f, c, m, q] = Σ_n Σ_ij delta[n, f, i, j] · fields[n, c', m, q, i, j]`` (``c'``
    the channel ``c`` of filter ``f``'s group); ``chunk`` samples at a time bound the
    per-sample products kept before summing.
    """
    if kernels.enabled():  # the same products, a sample per thread, summed in order
        kernels.fields_error_product(fields, delta, groups, dw)
        return
    n, channels, kh, kw, oh, ow = fields.shape
    filters = delta.shape[1]
    fg, taps = filters // groups, channels // groups * kh * kw
    cols = fields.reshape(n, groups, taps, oh * ow)
    errors = delta.reshape(n, groups, fg, oh * ow)
    # products as (taps, F/G) = fields @ δᵀ: measured up to 1.7x faster than δ @ fieldsᵀ
    total = np.zeros((groups, taps, fg), dtype=dw.dtype)
    for start in range(0, n, chunk):
        part = cols[start : start + chunk] @ errors[start : start + chunk].transpose(0, 1, 3, 2)
        total += part.sum(axis=0)
    dw.reshape(groups, fg, taps)[...] = total.transpose(0, 2, 1)


def im2col_columns(
    x: np.ndarray,
    k: np.ndarray,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    y: np.ndarray,
    chunk: int,
) -> None:
    """Receptive fields copied into columns, ``chunk`` samples at a time, then products."""
    n, channels = x.shape[:2]
    _, _, kh, kw = k.shape
    oh, ow = y.shape[2:]
    for start in range(0, n, chunk):
        part = x[start : start + chunk]
        b = part.shape[0]
        fields = scratch("cols", (b, channels, kh, kw, oh, ow), x.dtype)
        copy_fields(part, (kh, kw), stride, dilation, fields)
        fields_product(fields, k, groups, y[start : start + b])


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


Lattice = tuple[tuple[int, int, int], tuple[int, int, int]]


def nonzero_lattice(x: np.ndarray, strided: tuple[bool, bool] = (False, False)) -> Lattice:
    """Per axis ``(first, step, count)``: the rows/columns where some plane is non-zero.

    Every non-zero entry of ``x`` lies on rows ``first + step·u`` (``u < count``), and
    likewise columns. The input gradient's error map has an all-zero border (the
    padding by ``k_eff-1-P``) and, with a stride, ``stride-1`` zero rows/columns between
    its entries: shift-add multiplies only the lattice. ``strided[a]`` forces step 1 on
    axis ``a`` (lattices are only used with unit steps of the correlation there).
    ``((0, 1, 0), (0, 1, 0))`` if all is zero.
    """
    # OR of the bit patterns over samples and channels: one pass, no temporary of x's
    # size; non-zero wherever some entry is (NaN too; -0.0 counts as non-zero: safe)
    bits = np.ascontiguousarray(x).view(np.dtype(f"u{x.itemsize}"))
    plane = np.bitwise_or.reduce(bits.reshape(-1, x.shape[2] * x.shape[3]), axis=0) != 0
    plane = plane.reshape(x.shape[2], x.shape[3])
    axes = []
    for axis, flags in enumerate((plane.any(axis=1), plane.any(axis=0))):
        where = np.flatnonzero(flags)
        if where.size == 0:
            return (0, 1, 0), (0, 1, 0)
        step = 1 if strided[axis] else int(np.gcd.reduce(np.diff(where), initial=0)) or 1
        axes.append((int(where[0]), step, int(where[-1] - where[0]) // step + 1))
    return axes[0], axes[1]


def _tap_slices(
    lattice: tuple[int, int, int], offset: int, stride: int, n_out: int
) -> tuple[slice, slice] | None:
    """Where one tap's products land: ``(output slice, lattice slice)``, or None.

    Output ``i`` reads input ``i·stride + offset``, non-zero only at lattice positions
    ``first + step·u``.
    """
    first, step, count = lattice
    if step == 1:  # outputs i with first <= i·stride + offset < first + count
        i0 = max(0, -((offset - first) // stride))
        i1 = min(n_out, -((offset - first - count) // stride))
        if i1 <= i0:
            return None
        u0 = i0 * stride + offset - first
        return slice(i0, i1), slice(u0, u0 + stride * (i1 - i0 - 1) + 1, stride)
    # stride 1: lattice points u with 0 <= first + step·u - offset < n_out
    u0 = max(0, -((first - offset) // step))
    u1 = min(count, (n_out - 1 - first + offset) // step + 1)
    if u1 <= u0:
        return None
    i0 = first + step * u0 - offset
    return slice(i0, i0 + step * (u1 - u0 - 1) + 1, step), slice(u0, u1)


def shift_add(
    x: np.ndarray,
    k: np.ndarray,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    y: np.ndarray,
    chunk: int,
    lattice: Lattice | None = None,
) -> None:
    """``y = Σ_taps shift(k[:, :, m, q] @ x)``: per-tap products over the input, shifted.

    Only the entries of ``x`` on ``lattice`` (see :func:`nonzero_lattice`; default:
    all) are multiplied: off it ``x`` must be zero, and so are the products.
    """
    n = x.shape[0]
    filters, cg, kh, kw = k.shape
    oh, ow = y.shape[2:]
    fg = filters // groups
    full = lattice is None
    rows, cols = lattice or ((0, 1, x.shape[2]), (0, 1, x.shape[3]))
    h, w = rows[2], cols[2]
    if not full and stride == (1, 1) and rows[1] == cols[1] == 1:
        width = max(ow - 1, cols[0] + w - 1) - min(0, cols[0] - (kw - 1) * dilation[1]) + 1
        if width <= 2 * max(w, 1):  # few extra zero columns to multiply: the flat form
            _shift_add_flat(x, k, dilation, groups, y, max(1, chunk * w // width), rows, cols)
            return
    on_lattice = (
        slice(rows[0], rows[0] + rows[1] * (h - 1) + 1, rows[1]),
        slice(cols[0], cols[0] + cols[1] * (w - 1) + 1, cols[1]),
    )
    # (G, kh·kw·F/G, C/G): every tap's (F/G, C/G) matrix stacked, for one product
    k_taps = k.reshape(groups, fg, cg, kh, kw).transpose(0, 3, 4, 1, 2)
    k_taps = k_taps.reshape(groups, kh * kw * fg, cg)
    # With a lattice the shifted slices are short; samples innermost in memory then
    # keeps every add running over long contiguous rows. Indexing below is logical:
    # planes (G, C/G, b, h, w), products (G, kh, kw, F/G, b, h, w), sum (G, F/G, b, OH, OW).
    samples_inner = not full
    for start in range(0, n, chunk):
        part = x[start : start + chunk, :, on_lattice[0], on_lattice[1]]
        b = part.shape[0]
        order = (h, w, b) if samples_inner else (b, h, w)
        planes = scratch("planes", (groups, cg, *order), x.dtype)
        np.copyto(
            planes.transpose(0, 1, 4, 2, 3) if samples_inner else planes,
            part.reshape(b, groups, cg, h, w).transpose(1, 2, 0, 3, 4),
        )
        z = scratch("taps", (groups, kh * kw * fg, h * w * b), x.dtype)
        np.matmul(k_taps, planes.reshape(groups, cg, h * w * b), out=z)
        z6 = z.reshape(groups, kh, kw, fg, *order)
        acc = scratch(
            "acc", (groups, fg, *((oh, ow, b) if samples_inner else (b, oh, ow))), x.dtype
        )
        if samples_inner:
            z6, acc = z6.transpose(0, 1, 2, 3, 6, 4, 5), acc.transpose(0, 1, 4, 2, 3)
        if not full:
            acc[...] = 0  # taps that reach only part of the output add into part of it
        for m in range(kh):
            along_h = _tap_slices(rows, m * dilation[0], stride[0], oh)
            for q in range(kw):
                along_w = _tap_slices(cols, q * dilation[1], stride[1], ow)
                if along_h is None or along_w is None:
                    continue  # this tap only ever sees zeros
                shifted = z6[:, m, q, :, :, along_h[1], along_w[1]]
                if full and m == q == 0:
                    np.copyto(acc, shifted)  # on the full input every tap covers all of acc
                else:
                    acc[..., along_h[0], along_w[0]] += shifted
        y[start : start + b].reshape(b, groups, fg, oh, ow)[...] = acc.transpose(2, 0, 1, 3, 4)


def _shift_add_flat(
    x: np.ndarray,
    k: np.ndarray,
    dilation: tuple[int, int],
    groups: int,
    y: np.ndarray,
    chunk: int,
    rows: tuple[int, int, int],
    cols: tuple[int, int, int],
) -> None:
    """:func:`shift_add` for a unit stride and a box of non-zeros, every add contiguous.

    The box's rows are widened with zero columns to the width ``Wa`` of an accumulator
    that spans every output column any tap reaches; samples are innermost. In that
    layout a tap's shift is one offset in the flattened accumulator, so its products
    are added as one contiguous block per filter (NumPy adds contiguous blocks several
    times faster than strided ones). The zero columns' products are zeros, wherever
    they land.
    """
    n = x.shape[0]
    filters, cg, kh, kw = k.shape
    oh, ow = y.shape[2:]
    fg = filters // groups
    (r0, _, h), (c0, _, w) = rows, cols
    top = min(0, r0 - (kh - 1) * dilation[0])  # first accumulator row (an output index)
    left = min(0, c0 - (kw - 1) * dilation[1])
    height = max(oh - 1, r0 + h - 1) - top + 1
    width = max(ow - 1, c0 + w - 1) - left + 1
    k_taps = k.reshape(groups, fg, cg, kh, kw).transpose(0, 3, 4, 1, 2)
    k_taps = k_taps.reshape(groups, kh * kw * fg, cg)
    for start in range(0, n, chunk):
        part = x[start : start + chunk, :, r0 : r0 + h, c0 : c0 + w]
        b = part.shape[0]
        span = h * width * b  # one tap's products, flattened
        planes = scratch("planes", (groups, cg, h, width, b), x.dtype)
        planes[:, :, :, w:] = 0
        np.copyto(planes[:, :, :, :w], part.reshape(b, groups, cg, h, w).transpose(1, 2, 3, 4, 0))
        products = scratch("taps", (groups, kh * kw * fg, span), x.dtype)
        np.matmul(k_taps, planes.reshape(groups, cg, span), out=products)
        z = products.reshape(groups, kh, kw, fg, span)
        # one spare row: the last taps' zero columns run past the last row
        acc = scratch("acc", (groups, fg, (height + 1) * width * b), x.dtype)
        acc[...] = 0
        for m in range(kh):
            for q in range(kw):
                # input (r0 + u, c0 + v) reaches output (r0 + u - m·dh, c0 + v - q·dw)
                row, col = r0 - m * dilation[0] - top, c0 - q * dilation[1] - left
                offset = (row * width + col) * b
                acc[:, :, offset : offset + span] += z[:, m, q]
        sums = acc[:, :, : height * width * b].reshape(groups, fg, height, width, b)
        sums = sums[:, :, -top : -top + oh, -left : -left + ow]
        y[start : start + b].reshape(b, groups, fg, oh, ow)[...] = sums.transpose(4, 0, 1, 2, 3)


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
