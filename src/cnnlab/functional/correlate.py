"""The one primitive, valid 2-D cross-correlation, and the array moves around it.

Forward pass, input gradient and weight gradient of a convolution are all calls of
:func:`correlate2d` (see :mod:`cnnlab.functional.conv`). Two implementations sit side by
side:

* :func:`correlate2d_reference` — per-pixel loops, written to be read next to the
  formula; tests and the explainer use it.
* :func:`correlate2d` — the same sum as large BLAS matrix products (receptive fields
  copied into columns — *im2col* — or rows, or per-tap products shifted and added;
  whichever moves the least memory for the shapes at hand, every group and sample in
  one ``np.matmul`` call). It computes in the input's dtype (float32 stays float32) and
  bounds its scratch memory by working on chunks of the batch.

A forward pass that will be followed by a backward pass can copy the receptive fields
once (:func:`receptive_fields`), hand them to :func:`correlate2d`, and let the weight
gradient read the same copy (:func:`weight_correlation`).

Also here: :func:`pad2d` (zero padding; negative padding crops), :func:`insert_zeros`
(the stride's zeros between entries), :func:`rot180`, and
:func:`scatter_input_error`, steps (E2)–(E4) as one sum for the compiled kernels.

With numba installed, these functions run compiled loops behind the same interface
(:mod:`cnnlab.functional.kernels`; ``CNNLAB_KERNELS=numpy`` keeps the NumPy code).
"""

from __future__ import annotations

import numpy as np

from cnnlab._validate import float_array, pair, positive_int, same_dtype
from cnnlab.functional import _correlate_algorithms as algorithms
from cnnlab.functional import kernels

__all__ = [
    "CHUNK_BYTES",
    "correlate2d",
    "correlate2d_reference",
    "insert_zeros",
    "output_size",
    "pad2d",
    "receptive_fields",
    "rot180",
    "scatter_input_error",
    "weight_correlation",
]

#: Upper bound (bytes) of the im2col scratch copy; larger batches are done in chunks.
CHUNK_BYTES = 256 * 2**20
#: Chunk size (bytes) for the per-sample formulations: small enough that the scratch
#: just written is still in cache when the product reads it.
CACHE_CHUNK_BYTES = 8 * 2**20


def output_size(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> int:
    """Length of a valid correlation's output along one axis.

    ``out = (size - k_eff) // stride + 1`` with the effective (dilated) kernel
    ``k_eff = dilation·(kernel - 1) + 1``; below 1 means the kernel does not fit.
    """
    return (size - (dilation * (kernel - 1) + 1)) // stride + 1


def _check_operands(
    x: object, k: object, stride: object, dilation: object, groups: object
) -> tuple[np.ndarray, np.ndarray, tuple[int, int], tuple[int, int], int, tuple[int, int]]:
    """Validate the primitive's arguments; return them normalised plus ``(OH, OW)``."""
    x = float_array(x, "x", ndim=4)
    k = float_array(k, "k", ndim=4)
    same_dtype(x, k, "x", "k")
    stride = pair(stride, "stride")
    dilation = pair(dilation, "dilation")
    groups = positive_int(groups, "groups")
    channels, filters = x.shape[1], k.shape[0]
    if channels % groups or filters % groups:
        raise ValueError(
            f"groups={groups} must divide both the input channels ({channels}) and the "
            f"number of filters ({filters})"
        )
    if k.shape[1] * groups != channels:
        raise ValueError(
            f"k has {k.shape[1]} channels per group, so with groups={groups} it expects "
            f"x with {k.shape[1] * groups} channels, got {channels} (x shape {x.shape})"
        )
    out = tuple(output_size(x.shape[2 + a], k.shape[2 + a], stride[a], dilation[a]) for a in (0, 1))
    if min(out) < 1:
        k_eff = tuple(dilation[a] * (k.shape[2 + a] - 1) + 1 for a in (0, 1))
        raise ValueError(
            f"the (dilated) kernel {k_eff[0]}x{k_eff[1]} is larger than the input "
            f"{x.shape[2]}x{x.shape[3]}; expected an input of at least that size"
        )
    return x, k, stride, dilation, groups, (out[0], out[1])


def correlate2d(
    x: np.ndarray,
    k: np.ndarray,
    stride: int | tuple[int, int] = 1,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    *,
    fields: np.ndarray | None = None,
) -> np.ndarray:
    """Valid cross-correlation of a batch with a bank of filters (vectorized, BLAS).

    ``y[n, f, i, j] = sum_c sum_m sum_q k[f, c, m, q] · x[n, g·C/G + c, i·sh + m·dh, j·sw + q·dw]``
    where ``g = f // (F/G)`` is the filter's group. No padding: pad first with
    :func:`pad2d`. Exactly :func:`correlate2d_reference`, up to rounding.

    Parameters
    ----------
    x : ndarray, float32 or float64
        Input batch (any strides; transposed views are fine).
    k : ndarray, same dtype as ``x``
        Kernels.
    stride, dilation : int or (int, int)
        Step between output positions; step between kernel taps (``d-1`` zeros between
        taps make the dilated kernel of size ``k_eff = d·(k-1)+1``).
    groups : int
        ``G`` independent correlations over channel blocks of ``C/G``.
    fields : ndarray, optional
        ``receptive_fields(x, (kh, kw), stride, dilation)``, already copied: the product
        reads them instead of copying the receptive fields again.

    Returns
    -------
    ndarray, dtype of ``x``
        ``y``, C-contiguous.

    Shapes
    ------
    x: ``(N, C, H, W)``; k: ``(F, C/G, kh, kw)``; y: ``(N, F, OH, OW)`` with
    ``OH = (H - dh·(kh-1) - 1) // sh + 1`` and likewise ``OW``.

    Notes
    -----
    One of three BLAS formulations (see :mod:`cnnlab.functional._correlate_algorithms`),
    picked by an estimate of their memory traffic: receptive fields copied into columns
    (*im2col*; forward passes), into rows with the batch folded in (when the kernel is
    larger than the output: the weight gradient), or per-tap products of the whole input
    shifted and added (when the output has fewer channels than the input: the input
    gradient of a widening layer; there only the input's non-zero rows and columns are
    multiplied, so a zero-padded, zero-inserted error map costs no more than the dense
    one). Scratch memory is bounded by :data:`CHUNK_BYTES` per buffer, working on chunks
    of the batch. With the compiled kernels (:mod:`cnnlab.functional.kernels`) it is
    im2col per sample instead, in L2-sized bands of output rows, the samples spread over
    the threads (:func:`cnnlab.functional.kernels.correlate`).
    """
    x, k, stride, dilation, groups, (oh, ow) = _check_operands(x, k, stride, dilation, groups)
    n, channels = x.shape[:2]
    filters, _, kh, kw = k.shape
    y = np.empty((n, filters, oh, ow), dtype=x.dtype)
    if x.size == 0 or k.size == 0:  # an empty batch, or sums over nothing
        y[...] = 0
        return y
    if fields is not None:
        if fields.shape != (n, channels, kh, kw, oh, ow) or fields.dtype != x.dtype:
            raise ValueError(
                f"fields must be receptive_fields(x, ...) of shape "
                f"{(n, channels, kh, kw, oh, ow)} and dtype {x.dtype}, got "
                f"{fields.shape} {fields.dtype}"
            )
        algorithms.fields_product(fields, k, groups, y)
        return y
    if kernels.enabled():  # compiled: each sample's fields copied and multiplied in cache
        kernels.correlate(x, k, stride, dilation, groups, y)
        return y
    if oh * ow < kh * kw:
        per_sample = channels * kh * kw * oh * ow
        chunk = max(1, CHUNK_BYTES // (per_sample * x.itemsize))
        algorithms.im2col_rows(x, k, stride, dilation, groups, y, chunk)
        return y
    if filters < channels:  # shift-add may pay: find where the input is non-zero first
        rows, cols = algorithms.nonzero_lattice(x, (stride[0] > 1, stride[1] > 1))
        area = rows[2] * cols[2]
        lattice: algorithms.Lattice | None = (rows, cols)
        if area > x.shape[2] * x.shape[3] // 2:  # too few zeros to be worth skipping
            lattice, area = None, x.shape[2] * x.shape[3]
        if algorithms.shift_add_is_cheaper(channels, filters, kh * kw, area, oh * ow):
            per_sample = channels * area + filters * kh * kw * area + filters * oh * ow
            chunk = max(1, min(CHUNK_BYTES, CACHE_CHUNK_BYTES) // (per_sample * x.itemsize))
            algorithms.shift_add(x, k, stride, dilation, groups, y, chunk, lattice)
            return y
    per_sample = channels * kh * kw * oh * ow
    chunk = max(1, min(CHUNK_BYTES, CACHE_CHUNK_BYTES) // (per_sample * x.itemsize))
    algorithms.im2col_columns(x, k, stride, dilation, groups, y, chunk)
    return y


def receptive_fields(
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] = 1,
    dilation: int | tuple[int, int] = 1,
) -> np.ndarray:
    """Every receptive field of ``x`` copied out (*im2col*), for products that reuse them.

    ``fields[n, c, m, q, i, j] = x[n, c, i·sh + m·dh, j·sw + q·dw]``: the input value
    that tap ``(m, q)`` of a kernel sees at output position ``(i, j)``. A convolution's
    forward product (:func:`correlate2d` with ``fields=``) and its weight gradient
    (:func:`weight_correlation`) both read them, so they are copied once.

    Returns
    -------
    ndarray, dtype of ``x``
        A new C-contiguous array, ``kh·kw`` times the size of the output plane times
        ``C``: mind its size on large inputs.

    Shapes
    ------
    x: ``(N, C, H, W)``; returns ``(N, C, kh, kw, OH, OW)``, ``OH`` as :func:`correlate2d`.
    """
    x = float_array(x, "x", ndim=4)
    kernel = pair(kernel_size, "kernel_size")
    stride = pair(stride, "stride")
    dilation = pair(dilation, "dilation")
    out = tuple(output_size(x.shape[2 + a], kernel[a], stride[a], dilation[a]) for a in (0, 1))
    if min(out) < 1:
        raise ValueError(
            f"the (dilated) kernel does not fit in the {x.shape[2]}x{x.shape[3]} input"
        )
    fields = np.empty((*x.shape[:2], *kernel, *out), dtype=x.dtype)
    algorithms.copy_fields(x, kernel, stride, dilation, fields)
    return fields


def weight_correlation(fields: np.ndarray, delta: np.ndarray, groups: int = 1) -> np.ndarray:
    """Correlate an input with an error map, reading the input's stored receptive fields.

    ``dw[f, c, m, q] = Σ_n Σ_i Σ_j δ[n, f, i, j] · fields[n, c', m, q, i, j]`` with
    ``c'`` the ``c``-th channel of filter ``f``'s group: step (E5) of the derivation, the
    weight gradient, as a product of each sample's error map with its receptive fields,
    summed over the batch. Equal to ``correlate2d`` of the input with the error map
    (see :func:`cnnlab.functional.conv2d_backward`), without copying the fields again.

    Parameters
    ----------
    fields : ndarray
        :func:`receptive_fields` of the (padded) input, as the forward pass used them.
    delta : ndarray, dtype of ``fields``
        The error map of the layer's output.
    groups : int

    Returns
    -------
    ndarray
        ``dw``, C-contiguous.

    Shapes
    ------
    fields: ``(N, C, kh, kw, OH, OW)``; delta: ``(N, F, OH, OW)``; dw: ``(F, C/G, kh, kw)``.
    """
    n, channels, kh, kw, oh, ow = fields.shape
    filters = delta.shape[1]
    if delta.shape != (n, filters, oh, ow) or filters % groups or channels % groups:
        raise ValueError(
            f"delta of shape {delta.shape} and groups={groups} do not fit fields of shape "
            f"{fields.shape}: expected delta (N, F, OH, OW) = ({n}, F, {oh}, {ow}) with F "
            f"and C={channels} divisible by groups"
        )
    dw = np.empty((filters, channels // groups, kh, kw), dtype=fields.dtype)
    per_sample = filters * (channels // groups) * kh * kw * fields.itemsize
    algorithms.fields_error_product(
        fields, delta, groups, dw, max(1, CACHE_CHUNK_BYTES // per_sample)
    )
    return dw


def scatter_input_error(
    delta: np.ndarray,
    w: np.ndarray,
    x_shape: tuple[int, int, int, int],
    stride: tuple[int, int],
    padding: tuple[tuple[int, int], tuple[int, int]],
    dilation: tuple[int, int],
    groups: int,
) -> np.ndarray:
    """Steps (E2)–(E4) as one sum over the error map, without its zeros (compiled path).

    ``dx[n, c, i·S + m·r - P, j·S + q·r - P] += Σ_f W[f, c, m, q] · δ[n, f, i, j]``: each
    error term goes straight to the input cell that its window's tap ``(m, q)`` read —
    exactly the terms that correlating the zero-inserted, padded error map with the
    rotated filter adds up (every product with an inserted or padding zero is left
    out), and terms that land on the forward padding are dropped as (E3) crops them.
    Per sample, on numba's threads: one product ``Wᵀ δ`` per group (BLAS), then the
    scatter-add (:func:`cnnlab.functional.kernels.input_error`). Needs the compiled
    kernels.

    Shapes
    ------
    delta: ``(N, F, OH, OW)``; w: ``(F, C/G, kh, kw)``; returns dx: ``x_shape = (N, C, H, W)``.
    """
    dx = np.empty(x_shape, dtype=delta.dtype)
    before = (padding[0][0], padding[1][0])
    kernels.input_error(delta, w, groups, stride, dilation, before, dx)
    return dx


def correlate2d_reference(
    x: np.ndarray,
    k: np.ndarray,
    stride: int | tuple[int, int] = 1,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> np.ndarray:
    """:func:`correlate2d` as per-pixel loops: the formula, one output value at a time.

    Slow (Python loops over every output pixel); meant for reading and for checking the
    vectorized version. Arguments, result and shapes as :func:`correlate2d`.

    Shapes
    ------
    x: ``(N, C, H, W)``; k: ``(F, C/G, kh, kw)``; y: ``(N, F, OH, OW)``.
    """
    x, k, stride, dilation, groups, (oh, ow) = _check_operands(x, k, stride, dilation, groups)
    filters, cg, kh, kw = k.shape
    fg = filters // groups
    y = np.zeros((x.shape[0], filters, oh, ow), dtype=x.dtype)
    for n in range(x.shape[0]):
        for f in range(filters):
            g = f // fg  # filter f sees only its group's channels
            channels = x[n, g * cg : (g + 1) * cg]
            for i in range(oh):
                for j in range(ow):
                    top, left = i * stride[0], j * stride[1]
                    # the receptive field: kh x kw taps, dilation apart
                    field = channels[
                        :,
                        top : top + dilation[0] * (kh - 1) + 1 : dilation[0],
                        left : left + dilation[1] * (kw - 1) + 1 : dilation[1],
                    ]
                    y[n, f, i, j] = np.sum(field * k[f])
    return y


def pad2d(
    x: np.ndarray,
    padding: int | tuple[int, int] | tuple[tuple[int, int], tuple[int, int]],
) -> np.ndarray:
    """Zero-pad the last two axes; a negative amount crops that many rows/columns.

    Parameters
    ----------
    x : ndarray
        At least 2-D; the last two axes are padded.
    padding : int, (ph, pw) or ((top, bottom), (left, right))
        Zeros added on each side (negative: rows/columns removed).

    Returns
    -------
    ndarray
        A new array (``x`` itself when all amounts are 0), dtype of ``x``.

    Shapes
    ------
    ``(..., H, W)`` → ``(..., H + top + bottom, W + left + right)``.
    """
    (top, bottom), (left, right) = _padding_pairs(padding)
    if top == bottom == left == right == 0:
        return x
    if x.ndim == 4 and min(top, bottom, left, right) >= 0 and kernels.enabled():
        return kernels.pad(x, top, bottom, left, right)  # the same, compiled
    h, w = x.shape[-2:]
    out_h, out_w = h + top + bottom, w + left + right
    if out_h < 0 or out_w < 0:
        raise ValueError(f"padding {padding!r} crops more than the {h}x{w} input has")
    out = np.zeros((*x.shape[:-2], out_h, out_w), dtype=x.dtype)
    # the part of x that survives the crops, and where it lands in the output
    src = x[..., max(0, -top) : h - max(0, -bottom), max(0, -left) : w - max(0, -right)]
    out[
        ...,
        max(0, top) : max(0, top) + src.shape[-2],
        max(0, left) : max(0, left) + src.shape[-1],
    ] = src
    return out


def _padding_pairs(padding: object) -> tuple[tuple[int, int], tuple[int, int]]:
    if (
        isinstance(padding, (tuple, list))
        and len(padding) == 2
        and all(isinstance(p, (tuple, list)) for p in padding)
    ):
        (top, bottom), (left, right) = (pair(p, "padding", minimum=-(2**62)) for p in padding)
        return (top, bottom), (left, right)
    ph, pw = pair(padding, "padding", minimum=-(2**62))
    return (ph, ph), (pw, pw)


def insert_zeros(x: np.ndarray, stride: int | tuple[int, int]) -> np.ndarray:
    """Put ``stride-1`` zeros between neighbouring entries of the last two axes.

    This restores a stride-``S`` error map to the positions a stride-1 output would
    have had (the skipped positions get error 0). With stride 1, ``x`` is returned.

    Shapes
    ------
    ``(..., OH, OW)`` → ``(..., sh·(OH-1) + 1, sw·(OW-1) + 1)``.
    """
    sh, sw = pair(stride, "stride")
    if sh == sw == 1:
        return x
    oh, ow = x.shape[-2:]
    out = np.zeros((*x.shape[:-2], sh * (oh - 1) + 1, sw * (ow - 1) + 1), dtype=x.dtype)
    out[..., ::sh, ::sw] = x
    return out


def rot180(k: np.ndarray) -> np.ndarray:
    """The kernel rotated by 180 degrees (flipped along both spatial axes), a view.

    Shapes
    ------
    ``(..., kh, kw)`` → ``(..., kh, kw)``; ``rot180(k)[..., m, q] = k[..., kh-1-m, kw-1-q]``.
    """
    return k[..., ::-1, ::-1]
