"""The compiled loops behind :mod:`cnnlab.functional.kernels` (imported only with numba).

Each function is the per-element formula of a NumPy function it replaces, written as
loops; numba compiles them (``cache=True``: once per machine, then loaded from
``__pycache__``). Two habits make the loops fast:

* **Unsigned indices.** Every size and index is a ``uint64``: with signed ones numba
  must allow for negative indices (Python's wrap-around) and the loops do not
  vectorise (measured: im2col 9.8 → 4.1 ms, col2im 15.9 → 3.4 ms). Differences that
  could go negative are never formed: the index ranges are clipped first.
* **Whole planes or samples per iteration of the parallel loop.** ``prange`` hands
  whole ``(sample, channel)`` planes, samples (the convolution's products) or blocks of
  a flat array to the threads. Every output element is written by one thread, in a
  fixed order, so results do not depend on the number of threads (no reductions
  across threads; each sample's weight gradient goes to its own slot, summed in order
  by the caller).

A ``*_plane`` / ``*_sample`` / ``*_block`` function does one unit of work; the
``*_parallel`` / ``*_serial`` pair runs it over all of them, across threads or on the
calling thread (for small arrays or a single sample, where waking the threads costs
more than the work). Inside a sample, the convolution kernels work on bands of output
rows so that a band's receptive fields, products and results stay in the L2 cache;
their matrix products are ``np.dot`` calls, which numba hands to SciPy's BLAS on the
calling thread.
"""

# numba compiles these bodies; type checking them is numba's job
# mypy: ignore-errors

from __future__ import annotations

import numpy as np
from numba import get_num_threads, njit, prange

__all__ = ["get_num_threads"]  # re-exported: the wrappers ask it before a parallel loop

_U = np.uint64
_JIT = {"cache": True, "nogil": True}
_PAR = {"cache": True, "nogil": True, "parallel": True}


# -- im2col: receptive fields copied into columns (copy_fields) ---------------------
@njit(**_JIT)
def im2col_plane(x, fields, p, sh, sw, dh, dw):
    """``fields[n, c, m, q, i, j] = x[n, c, i·sh + m·dh, j·sw + q·dw]`` for plane ``p``."""
    channels = _U(fields.shape[1])
    n, c = p // channels, p % channels
    kh, kw, oh, ow = (
        _U(fields.shape[2]),
        _U(fields.shape[3]),
        _U(fields.shape[4]),
        _U(fields.shape[5]),
    )
    for m in range(kh):
        for q in range(kw):
            for i in range(oh):
                row = i * sh + m * dh
                for j in range(ow):
                    fields[n, c, m, q, i, j] = x[n, c, row, j * sw + q * dw]


@njit(**_PAR)
def im2col_parallel(x, fields, sh, sw, dh, dw):
    for p in prange(_U(fields.shape[0]) * _U(fields.shape[1])):
        im2col_plane(x, fields, _U(p), sh, sw, dh, dw)


@njit(**_JIT)
def im2col_serial(x, fields, sh, sw, dh, dw):
    for p in range(_U(fields.shape[0]) * _U(fields.shape[1])):
        im2col_plane(x, fields, p, sh, sw, dh, dw)


# -- zero padding (pad2d with non-negative amounts) ----------------------------------
@njit(**_JIT)
def pad_plane(x, out, p, top, left):
    """``out[..., top + r, left + s] = x[..., r, s]``, zeros around, for plane ``p``."""
    channels = _U(x.shape[1])
    n, c = p // channels, p % channels
    height, width = _U(x.shape[2]), _U(x.shape[3])
    out_h, out_w = _U(out.shape[2]), _U(out.shape[3])
    for r in range(out_h):
        for s in range(out_w):
            out[n, c, r, s] = 0
    for r in range(height):
        for s in range(width):
            out[n, c, r + top, s + left] = x[n, c, r, s]


@njit(**_PAR)
def pad_parallel(x, out, top, left):
    for p in prange(_U(x.shape[0]) * _U(x.shape[1])):
        pad_plane(x, out, _U(p), top, left)


@njit(**_JIT)
def pad_serial(x, out, top, left):
    for p in range(_U(x.shape[0]) * _U(x.shape[1])):
        pad_plane(x, out, p, top, left)


# -- max pooling -----------------------------------------------------------------------
@njit(**_JIT)
def max_pool_plane(x, y, argmax, p, kh, kw, sh, sw, ph, pw):
    """Each window's maximum and its tap (row-major), over a ``-inf`` padded plane.

    A later tap takes over only when strictly larger, or NaN: ties keep the first
    maximum and a NaN counts as the maximum (PyTorch's rules, as the NumPy path).
    """
    channels = _U(x.shape[1])
    n, c = p // channels, p % channels
    height, width = _U(x.shape[2]), _U(x.shape[3])
    oh, ow = _U(y.shape[2]), _U(y.shape[3])
    if ph == 0 and pw == 0:  # every tap inside the plane: no bounds to check
        for i in range(oh):
            for j in range(ow):
                best = x[n, c, i * sh, j * sw]
                tap = _U(0)
                for m in range(kh):
                    for q in range(kw):
                        value = x[n, c, i * sh + m, j * sw + q]
                        if value > best or value != value:
                            best = value
                            tap = m * kw + q
                y[n, c, i, j] = best
                argmax[n, c, i, j] = tap
        return
    for i in range(oh):
        for j in range(ow):
            best = -np.inf
            tap = _U(0)
            for m in range(kh):
                row = i * sh + m  # in the padded plane: inside when ph <= row < ph + height
                for q in range(kw):
                    col = j * sw + q
                    if row >= ph and row - ph < height and col >= pw and col - pw < width:
                        value = x[n, c, row - ph, col - pw]
                    else:
                        value = -np.inf
                    t = m * kw + q
                    if t == 0 or value > best or value != value:
                        best = value
                        tap = t
            y[n, c, i, j] = best
            argmax[n, c, i, j] = tap


@njit(**_PAR)
def max_pool_parallel(x, y, argmax, kh, kw, sh, sw, ph, pw):
    for p in prange(_U(x.shape[0]) * _U(x.shape[1])):
        max_pool_plane(x, y, argmax, _U(p), kh, kw, sh, sw, ph, pw)


@njit(**_JIT)
def max_pool_serial(x, y, argmax, kh, kw, sh, sw, ph, pw):
    for p in range(_U(x.shape[0]) * _U(x.shape[1])):
        max_pool_plane(x, y, argmax, p, kh, kw, sh, sw, ph, pw)


@njit(**_JIT)
def max_unpool_plane(dy, argmax, dx, p, kw, sh, sw, ph, pw):
    """Each window's error added to the cell its maximum came from (plane ``p``)."""
    channels = _U(dx.shape[1])
    n, c = p // channels, p % channels
    height, width = _U(dx.shape[2]), _U(dx.shape[3])
    for r in range(height):
        for s in range(width):
            dx[n, c, r, s] = 0
    oh, ow = _U(dy.shape[2]), _U(dy.shape[3])
    for i in range(oh):
        for j in range(ow):
            t = _U(argmax[n, c, i, j])
            row = i * sh + t // kw
            col = j * sw + t % kw
            if row >= ph and row - ph < height and col >= pw and col - pw < width:
                dx[n, c, row - ph, col - pw] += dy[n, c, i, j]


@njit(**_PAR)
def max_unpool_parallel(dy, argmax, dx, kw, sh, sw, ph, pw):
    for p in prange(_U(dx.shape[0]) * _U(dx.shape[1])):
        max_unpool_plane(dy, argmax, dx, _U(p), kw, sh, sw, ph, pw)


@njit(**_JIT)
def max_unpool_serial(dy, argmax, dx, kw, sh, sw, ph, pw):
    for p in range(_U(dx.shape[0]) * _U(dx.shape[1])):
        max_unpool_plane(dy, argmax, dx, p, kw, sh, sw, ph, pw)


# -- element-wise: ReLU and Adam, on flat arrays in blocks ---------------------------
BLOCK = 1 << 14  #: elements per parallel task of the element-wise kernels


@njit(**_JIT)
def relu_block(x, y, start, stop):
    """``y = max(x, 0)``, NaN kept (as ``np.maximum``)."""
    for k in range(start, stop):
        v = x[k]
        y[k] = 0 if v < 0 else v


@njit(**_PAR)
def relu_parallel(x, y):
    size = _U(x.size)
    for b in prange((size + _U(BLOCK) - _U(1)) // _U(BLOCK)):
        start = _U(b) * _U(BLOCK)
        relu_block(x, y, start, min(start + _U(BLOCK), size))


@njit(**_JIT)
def relu_serial(x, y):
    relu_block(x, y, _U(0), _U(x.size))


@njit(**_JIT)
def relu_backward_block(dy, y, dx, start, stop):
    """``dx = dy · (y > 0)``."""
    for k in range(start, stop):
        dx[k] = dy[k] * (y[k] > 0)


@njit(**_PAR)
def relu_backward_parallel(dy, y, dx):
    size = _U(dy.size)
    for b in prange((size + _U(BLOCK) - _U(1)) // _U(BLOCK)):
        start = _U(b) * _U(BLOCK)
        relu_backward_block(dy, y, dx, start, min(start + _U(BLOCK), size))


@njit(**_JIT)
def relu_backward_serial(dy, y, dx):
    relu_backward_block(dy, y, dx, _U(0), _U(dy.size))


@njit(**_JIT)
def adam_block(p, g, m, v, coefs, start, stop):
    """One Adam step on ``[start, stop)``, the operations of the NumPy path in its order.

    ``coefs = (β1, 1-β1, β2, 1-β2, decay, scale, eps, step)`` in the arrays' dtype:
    ``g' = g + decay·p``; ``m = β1·m + (1-β1)·g'``; ``v = β2·v + (1-β2)·g'²``;
    ``p -= m / (√v / scale + eps) · step`` with ``scale = √(1-β2^t)`` and
    ``step = lr/(1-β1^t)``.
    """
    beta1, rest1, beta2, rest2 = coefs[0], coefs[1], coefs[2], coefs[3]
    decay, scale, eps, step = coefs[4], coefs[5], coefs[6], coefs[7]
    for k in range(start, stop):
        grad = g[k]
        if decay != 0:
            grad = grad + decay * p[k]
        mk = m[k] * beta1 + rest1 * grad
        vk = v[k] * beta2 + rest2 * (grad * grad)
        m[k] = mk
        v[k] = vk
        p[k] = p[k] - (mk / (np.sqrt(vk) / scale + eps)) * step


@njit(**_PAR)
def adam_parallel(p, g, m, v, coefs):
    size = _U(p.size)
    for b in prange((size + _U(BLOCK) - _U(1)) // _U(BLOCK)):
        start = _U(b) * _U(BLOCK)
        adam_block(p, g, m, v, coefs, start, min(start + _U(BLOCK), size))


@njit(**_JIT)
def adam_serial(p, g, m, v, coefs):
    adam_block(p, g, m, v, coefs, _U(0), _U(p.size))


# -- the products of a convolution, one sample per task (BLAS on the calling thread) ----
@njit(**_PAR)
def fields_product(fields, k, y):
    """``y[n, g] = k[g] @ fields[n, g]`` for every sample ``n`` and group ``g``.

    fields: ``(N, G, taps, P)``; k: ``(G, F/G, taps)``; y: ``(N, G, F/G, P)``, all
    C-contiguous. Each sample's products run on one thread (BLAS single-threaded).
    """
    for n in prange(fields.shape[0]):
        for g in range(k.shape[0]):
            np.dot(k[g], fields[n, g], y[n, g])


@njit(**_PAR)
def fields_error_product(fields, delta, partial):
    """``partial[n, g] = delta[n, g] @ fields[n, g]ᵀ``: each sample's weight gradient.

    fields: ``(N, G, taps, P)``; delta: ``(N, G, F/G, P)``; partial: ``(N, G, F/G, taps)``.
    The caller sums ``partial`` over ``n`` in order (deterministic).
    """
    for n in prange(fields.shape[0]):
        for g in range(delta.shape[1]):
            np.dot(delta[n, g], fields[n, g].T, partial[n, g])


@njit(**_JIT)
def scatter_band(cols, dx, n, c, i0, rows, ow, sh, sw, dh, dw, top, left, rl, rh, cl, ch):
    """``dx[n, c, i·sh + m·dh - top, j·sw + q·dw - left] += cols[(c, m, q), (i - i0, j)]``.

    The col2im scatter of output rows ``[i0, i0 + rows)`` of plane ``c``; ``cols (C·kh·kw,
    rows·OW)`` holds one sample's products for those rows. Only the terms that land inside
    ``dx`` are added (rows ``rl[m] <= i < rh[m]``, columns ``cl[q] <= j < ch[q]``): the
    others fall on the forward pass's padding, whose errors are dropped.
    """
    kh, kw = _U(rl.size), _U(cl.size)
    for m in range(kh):
        for i in range(max(rl[m], i0), min(rh[m], i0 + rows)):
            row = i * sh + m * dh - top
            for q in range(kw):
                tap = (c * kh + m) * kw + q
                at = (i - i0) * ow
                for j in range(cl[q], ch[q]):
                    dx[n, c, row, j * sw + q * dw - left] += cols[tap, at + j]


@njit(**_JIT)
def input_error_sample(delta, k_t, dx, n, band, ow, sh, sw, dh, dw, top, left, rl, rh, cl, ch):
    """``k_t[g] @ delta[n, g]`` (BLAS) for one sample, scattered into ``dx[n]``.

    ``band`` output rows at a time, so that the products stay in cache until scattered.
    delta: ``(N, G, F/G, OH·OW)``; k_t: ``(G, taps, F/G)`` with ``taps = C/G·kh·kw``;
    dx: ``(N, C, H, W)``, overwritten. See :func:`scatter_band` for the index ranges
    ``rl, rh, cl, ch``.
    """
    groups, taps, fg = k_t.shape[0], k_t.shape[1], k_t.shape[2]
    channels = _U(dx.shape[1])
    height, width = _U(dx.shape[2]), _U(dx.shape[3])
    for c in range(channels):
        for r in range(height):
            for s in range(width):
                dx[n, c, r, s] = 0
    oh = _U(delta.shape[3]) // ow
    for i0 in range(_U(0), oh, band):
        rows = min(band, oh - i0)
        errors = np.empty((groups, fg, rows * ow), dtype=delta.dtype)
        errors[...] = delta[n, :, :, i0 * ow : (i0 + rows) * ow]
        products = np.empty((groups, taps, rows * ow), dtype=delta.dtype)
        for g in range(groups):
            np.dot(k_t[g], errors[g], products[g])
        cols = products.reshape(groups * taps, rows * ow)
        for c in range(channels):
            scatter_band(cols, dx, n, c, i0, rows, ow, sh, sw, dh, dw, top, left, rl, rh, cl, ch)


@njit(**_PAR)
def input_error_parallel(delta, k_t, dx, band, ow, sh, sw, dh, dw, top, left, rl, rh, cl, ch):
    for n in prange(delta.shape[0]):
        input_error_sample(
            delta, k_t, dx, _U(n), band, ow, sh, sw, dh, dw, top, left, rl, rh, cl, ch
        )


@njit(**_JIT)
def input_error_serial(delta, k_t, dx, band, ow, sh, sw, dh, dw, top, left, rl, rh, cl, ch):
    for n in range(_U(delta.shape[0])):
        input_error_sample(delta, k_t, dx, n, band, ow, sh, sw, dh, dw, top, left, rl, rh, cl, ch)


@njit(**_JIT)
def input_error_phase_sample(
    delta, k_t, dx, pad, n, band, kh, kw, oh, ow, sh, sw, dh, dw, top, left, pitch
):
    """:func:`input_error_sample` as long runs of additions, over the stride's phases.

    Tap ``(m, q)`` at output position ``(i, j)`` reaches padded-input row ``i·sh + m·dh``
    ``= sh·(i + (m·dh) // sh) + (m·dh) % sh``: row ``i + (m·dh) // sh`` of the *phase*
    ``(m·dh) % sh`` — the padded rows ``≡ phase (mod sh)`` (likewise for columns). Each
    of the ``sh·sw`` phase planes has rows ``pitch = OW + (dw·(kw-1)) // sw`` wide; laid
    out with that row pitch too (zeros in the extra columns), the error map's products
    for one tap land on one contiguous run of its phase plane, ``rows·pitch`` long:
    one long, vectorised addition per tap instead of a short one per output row (the
    zero columns add nothing, also where a run wraps past a row's end — unless a weight
    is infinite or NaN: ``0·inf`` is NaN, so a cell the direct scatter leaves at ``inf``
    may read NaN here; training stops at the first non-finite value either way). The
    phases are
    then interleaved back into ``dx[n]``: padded cell ``(r + top, s + left)``; cells of
    the forward pass's padding are dropped as (E3) crops them, and input rows or
    columns no window reached get zero.

    delta: ``(N, G, F/G, OH·OW)``; k_t: ``(G, taps, F/G)``; dx: ``(N, C, H, W)``
    (overwritten); pad: this thread's scratch, ``(C, sh·sw, rows·pitch)`` with
    ``rows = OH + (dh·(kh-1)) // sh``.
    """
    groups, taps, fg = k_t.shape[0], k_t.shape[1], k_t.shape[2]
    channels, phases, plane = _U(pad.shape[0]), _U(pad.shape[1]), _U(pad.shape[2])
    height, width = _U(dx.shape[2]), _U(dx.shape[3])
    for c in range(channels):
        for p in range(phases):
            for t in range(plane):
                pad[c, p, t] = 0
    for i0 in range(_U(0), oh, band):
        rows = min(band, oh - i0)
        errors = np.zeros((groups, fg, rows * pitch), dtype=delta.dtype)
        for g in range(groups):
            for f in range(fg):
                for i in range(rows):
                    for j in range(ow):
                        errors[g, f, i * pitch + j] = delta[n, g, f, (i0 + i) * ow + j]
        products = np.empty((groups, taps, rows * pitch), dtype=delta.dtype)
        for g in range(groups):
            np.dot(k_t[g], errors[g], products[g])
        cols = products.reshape(groups * taps, rows * pitch)
        for c in range(channels):
            for m in range(kh):
                phase_row, shift_row = (m * dh) % sh, (m * dh) // sh
                for q in range(kw):
                    phase = phase_row * sw + (q * dw) % sw
                    tap = (c * kh + m) * kw + q
                    start = (i0 + shift_row) * pitch + (q * dw) // sw
                    for t in range(min(rows * pitch, plane - start)):
                        pad[c, phase, start + t] += cols[tap, t]
    lines = plane // pitch
    for c in range(channels):
        for r in range(height):
            row = r + top
            if row // sh >= lines:  # a row no window reached
                for s in range(width):
                    dx[n, c, r, s] = 0
                continue
            phase_row, at_row = (row % sh) * sw, (row // sh) * pitch
            for pc in range(sw):  # the columns s with (s + left) % sw == pc
                s0 = (pc + sw - left % sw) % sw
                first = (s0 + left) // sw
                count = (width - s0 + sw - _U(1)) // sw if s0 < width else _U(0)
                inside = min(count, pitch - first) if first < pitch else _U(0)
                source = pad[c, phase_row + pc]
                for k in range(inside):
                    dx[n, c, r, s0 + k * sw] = source[at_row + first + k]
                for k in range(inside, count):  # columns no window reached
                    dx[n, c, r, s0 + k * sw] = 0


@njit(**_PAR)
def input_error_phase_parallel(
    delta, k_t, dx, plane, band, kh, kw, oh, ow, sh, sw, dh, dw, top, left, pitch
):
    for n in prange(delta.shape[0]):
        pad = np.empty((dx.shape[1], sh * sw, plane), dtype=dx.dtype)
        input_error_phase_sample(
            delta, k_t, dx, pad, _U(n), band, kh, kw, oh, ow, sh, sw, dh, dw, top, left, pitch
        )


@njit(**_JIT)
def input_error_phase_serial(
    delta, k_t, dx, plane, band, kh, kw, oh, ow, sh, sw, dh, dw, top, left, pitch
):
    pad = np.empty((dx.shape[1], sh * sw, plane), dtype=dx.dtype)
    for n in range(_U(delta.shape[0])):
        input_error_phase_sample(
            delta, k_t, dx, pad, n, band, kh, kw, oh, ow, sh, sw, dh, dw, top, left, pitch
        )


# -- fused: each sample's receptive fields copied and multiplied while in cache ---------
@njit(**_JIT)
def sample_fields(x, n, cols, i0, sh, sw, dh, dw, top, left, cl, ch):
    """``cols[c, m, q, i, j] = x_padded[n, c, (i0 + i)·sh + m·dh, j·sw + q·dw]``: a band's
    im2col, read from the unpadded ``x`` (``top`` rows and ``left`` columns of zeros
    before it; the padding is never materialised).

    Tap column ``q`` reads inside ``x`` for the output columns ``cl[q] <= j < ch[q]``
    (zeros either side); a row outside ``x`` gives a row of zeros.
    """
    channels, kh, kw = _U(cols.shape[0]), _U(cols.shape[1]), _U(cols.shape[2])
    rows, ow = _U(cols.shape[3]), _U(cols.shape[4])
    height = _U(x.shape[2])
    plain = top == 0 and left == 0 and (i0 + rows - _U(1)) * sh + (kh - _U(1)) * dh < height
    for q in range(kw):
        plain = plain and cl[q] == 0 and ch[q] == ow
    if plain:  # every read inside x: the plain copy, which the compiler vectorises best
        for c in range(channels):
            for m in range(kh):
                for q in range(kw):
                    for i in range(rows):
                        row = (i0 + i) * sh + m * dh
                        for j in range(ow):
                            cols[c, m, q, i, j] = x[n, c, row, j * sw + q * dw]
        return
    for c in range(channels):
        for m in range(kh):
            for q in range(kw):
                lo, hi = cl[q], ch[q]
                inside = lo == 0 and hi == ow  # every column of this tap reads inside x
                shift = q * dw - left  # column j reads j·sw + shift (wraps, never negative)
                for i in range(rows):
                    row = (i0 + i) * sh + m * dh
                    if row < top or row - top >= height:
                        for j in range(ow):
                            cols[c, m, q, i, j] = 0
                        continue
                    r = row - top
                    if inside:  # the plain copy: the loop the compiler vectorises best
                        for j in range(ow):
                            cols[c, m, q, i, j] = x[n, c, r, j * sw + shift]
                        continue
                    for j in range(lo):
                        cols[c, m, q, i, j] = 0
                    for j in range(lo, hi):
                        cols[c, m, q, i, j] = x[n, c, r, j * sw + shift]
                    for j in range(hi, ow):
                        cols[c, m, q, i, j] = 0


@njit(**_JIT)
def add_bias(out, bias, first):
    """``out[f, :] += bias[first + f]`` (nothing when ``bias`` is empty: no bias)."""
    if bias.size == 0:
        return
    rows, cols = _U(out.shape[0]), _U(out.shape[1])
    for f in range(rows):
        b = bias[_U(first) + f]
        for j in range(cols):
            out[f, j] += b


@njit(**_JIT)
def correlate_sample(x, k, bias, y, n, band, kh, kw, oh, ow, sh, sw, dh, dw, top, left, cl, ch):
    """``y[n, g] = k[g] @ im2col(x[n])_g + b``, ``band`` output rows at a time (in cache).

    x: ``(N, C, H, W)``; k: ``(G, F/G, taps)``; bias: ``(F,)``, or empty for none;
    y: ``(N, G, F/G, OH·OW)``. The bias is added to each band's product while it is in
    cache (a separate ``y += b`` reads and writes all of ``y`` once more).
    """
    groups, fg, taps = k.shape[0], k.shape[1], k.shape[2]
    for i0 in range(_U(0), oh, band):
        rows = min(band, oh - i0)
        cols = np.empty((x.shape[1], kh, kw, rows, ow), dtype=x.dtype)
        sample_fields(x, n, cols, i0, sh, sw, dh, dw, top, left, cl, ch)
        flat = cols.reshape(groups, taps, rows * ow)
        if rows == oh:  # the whole plane: straight into y
            for g in range(groups):
                np.dot(k[g], flat[g], y[n, g])
                add_bias(y[n, g], bias, g * fg)
        else:
            out = np.empty((fg, rows * ow), dtype=x.dtype)
            for g in range(groups):
                np.dot(k[g], flat[g], out)
                add_bias(out, bias, g * fg)
                y[n, g, :, i0 * ow : (i0 + rows) * ow] = out


@njit(**_PAR)
def correlate_parallel(x, k, bias, y, band, kh, kw, oh, ow, sh, sw, dh, dw, top, left, cl, ch):
    for n in prange(x.shape[0]):
        correlate_sample(
            x, k, bias, y, _U(n), band, kh, kw, oh, ow, sh, sw, dh, dw, top, left, cl, ch
        )


@njit(**_JIT)
def correlate_serial(x, k, bias, y, band, kh, kw, oh, ow, sh, sw, dh, dw, top, left, cl, ch):
    for n in range(_U(x.shape[0])):
        correlate_sample(x, k, bias, y, n, band, kh, kw, oh, ow, sh, sw, dh, dw, top, left, cl, ch)


@njit(**_JIT)
def error_sums(delta, sums, n):
    """``sums[n, g·F/G + f] = Σ_p delta[n, g, f, p]``: one sample's bias gradient (E6).

    A product with a column of ones (BLAS's matrix-vector product on this thread), so
    the sum is vectorised; nothing when ``sums`` is empty (no bias).
    """
    if sums.size == 0:
        return
    groups, fg, positions = delta.shape[1], delta.shape[2], delta.shape[3]
    ones = np.ones(positions, dtype=delta.dtype)
    out = np.empty(fg, dtype=delta.dtype)
    for g in range(groups):
        np.dot(delta[n, g], ones, out)
        sums[n, g * fg : (g + 1) * fg] = out


@njit(**_JIT)
def weight_error_sample(
    x, delta, partial, sums, n, band, kh, kw, oh, ow, sh, sw, dh, dw, top, left, cl, ch
):
    """``partial[n, g] = delta[n, g] @ im2col(x[n])_gᵀ``, ``band`` output rows at a time,
    and the sample's bias gradient into ``sums[n]`` (see :func:`error_sums`).

    x: ``(N, C, H, W)``; delta: ``(N, G, F/G, OH·OW)``; partial: ``(N, G, F/G, taps)``;
    sums: ``(N, F)`` or empty; the caller sums both over the samples in order.
    """
    error_sums(delta, sums, n)
    groups, fg, taps = partial.shape[1], partial.shape[2], partial.shape[3]
    for i0 in range(_U(0), oh, band):
        rows = min(band, oh - i0)
        cols = np.empty((x.shape[1], kh, kw, rows, ow), dtype=x.dtype)
        sample_fields(x, n, cols, i0, sh, sw, dh, dw, top, left, cl, ch)
        flat = cols.reshape(groups, taps, rows * ow)
        if rows == oh:
            for g in range(groups):
                np.dot(delta[n, g], flat[g].T, partial[n, g])
        else:
            errors = np.empty((fg, rows * ow), dtype=x.dtype)
            out = np.empty((fg, taps), dtype=x.dtype)
            for g in range(groups):
                errors[...] = delta[n, g, :, i0 * ow : (i0 + rows) * ow]
                np.dot(errors, flat[g].T, out)
                if i0 == 0:
                    partial[n, g] = out
                else:
                    partial[n, g] += out


@njit(**_JIT)
def weight_error_t_sample(
    x, delta, partial_t, sums, n, kh, kw, oh, ow, sh, sw, dh, dw, top, left, cl, ch
):
    """``partial_t[n, g] = im2col(x[n])_g @ delta[n, g]ᵀ``: the transposed product, for a
    whole output plane with fewer positions than taps.

    There ``δ (F/G × P) @ fieldsᵀ (P × taps)`` is the skinny, slow orientation for BLAS
    (measured 45 against 85 GFLOP/s float32, 20 against 50 float64, on LeNet's second
    layer); ``fields (taps × P) @ δᵀ (P × F/G)`` gives the same sums transposed.

    x: ``(N, C, H, W)``; delta: ``(N, G, F/G, OH·OW)``; partial_t: ``(N, G, taps, F/G)``;
    sums: ``(N, F)`` or empty (:func:`error_sums`); the caller sums both over the samples.
    """
    error_sums(delta, sums, n)
    groups, taps, fg = partial_t.shape[1], partial_t.shape[2], partial_t.shape[3]
    cols = np.empty((x.shape[1], kh, kw, oh, ow), dtype=x.dtype)
    sample_fields(x, n, cols, _U(0), sh, sw, dh, dw, top, left, cl, ch)
    flat = cols.reshape(groups, taps, oh * ow)
    errors_t = np.empty((oh * ow, fg), dtype=x.dtype)
    for g in range(groups):
        errors_t[...] = delta[n, g].T
        np.dot(flat[g], errors_t, partial_t[n, g])


@njit(**_PAR)
def weight_error_t_parallel(
    x, delta, partial_t, sums, kh, kw, oh, ow, sh, sw, dh, dw, top, left, cl, ch
):
    for n in prange(x.shape[0]):
        weight_error_t_sample(
            x, delta, partial_t, sums, _U(n), kh, kw, oh, ow, sh, sw, dh, dw, top, left, cl, ch
        )


@njit(**_JIT)
def weight_error_t_serial(
    x, delta, partial_t, sums, kh, kw, oh, ow, sh, sw, dh, dw, top, left, cl, ch
):
    for n in range(_U(x.shape[0])):
        weight_error_t_sample(
            x, delta, partial_t, sums, n, kh, kw, oh, ow, sh, sw, dh, dw, top, left, cl, ch
        )


@njit(**_PAR)
def weight_error_parallel(
    x, delta, partial, sums, band, kh, kw, oh, ow, sh, sw, dh, dw, top, left, cl, ch
):
    for n in prange(x.shape[0]):
        weight_error_sample(
            x, delta, partial, sums, _U(n), band, kh, kw, oh, ow, sh, sw, dh, dw, top, left, cl, ch
        )


@njit(**_JIT)
def weight_error_serial(
    x, delta, partial, sums, band, kh, kw, oh, ow, sh, sw, dh, dw, top, left, cl, ch
):
    for n in range(_U(x.shape[0])):
        weight_error_sample(
            x, delta, partial, sums, n, band, kh, kw, oh, ow, sh, sw, dh, dw, top, left, cl, ch
        )
