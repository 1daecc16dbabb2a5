"""Convolution forward and backward, written as the derivation's steps.

Deep learning's "convolution" is a cross-correlation. Forward pass, error of the
previous layer and filter gradient are all one primitive, :func:`correlate2d`:

* forward: ``y = correlate2d(pad2d(x, P), W, stride) + b``
* (E2)–(E4) ``dE/dx = correlate2d(pad(insert_zeros(δ)), rot180(W) with in/out channels
  swapped)`` — the error map is restored to stride 1, padded so the rotated filter
  reaches every input position, and correlated;
* (E5) ``dE/dW = correlate2d(padded input, δ)`` — the error map is the kernel (when
  the forward pass kept the input's receptive fields, the same sum reads them:
  :func:`weight_correlation`);
* (E6) ``dE/db = Σ δ``.

**Dilation** ``r``: the dilated filter is the filter with ``r-1`` zeros between taps,
of size ``k_eff = r·(k-1)+1``. (E3) pads with ``k_eff``, and (E4) correlates with the
rotated filter at the same dilation (the rotated dilated filter is the dilated rotated
filter). In (E5) each weight tap samples the input at steps of ``r`` while the
zero-inserted error map is the error map dilated by the stride ``S``: the call passes
``stride=r, dilation=S`` — the roles swap. It is the same primitive, exact, and never
multiplies the inserted zeros. **Groups**: every rule applies per group.

Semantics are PyTorch's ``torch.nn.functional.conv2d`` (NCHW, weight
``(out, in/groups, kh, kw)``, ``padding='same'`` padding the extra row/column at the
bottom/right).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cnnlab._validate import array_shape, float_array, pair, positive_int, same_dtype
from cnnlab.functional import kernels
from cnnlab.functional.correlate import (
    CHUNK_BYTES,
    correlate2d,
    insert_zeros,
    output_size,
    pad2d,
    receptive_fields,
    rot180,
    scatter_input_error,
    weight_correlation,
)

__all__ = [
    "ConvCache",
    "conv2d_backward",
    "conv2d_forward",
    "conv_padding",
    "input_grad_padding",
]

Padding = tuple[tuple[int, int], tuple[int, int]]


class ConvCache(NamedTuple):
    """What :func:`conv2d_backward` needs from the forward pass."""

    #: the zero-padded input a^{l-1}, (N, C, H+pt+pb, W+pl+pr); or, when ``padded`` is
    #: False, the input itself (the compiled kernels read the padding without making it)
    x_padded: np.ndarray
    w: np.ndarray  #: the filters, (F, C/groups, kh, kw)
    has_bias: bool  #: whether a bias was added (db is None otherwise)
    x_shape: tuple[int, int, int, int]  #: the input's shape (N, C, H, W)
    stride: tuple[int, int]
    padding: Padding  #: ((top, bottom), (left, right))
    dilation: tuple[int, int]
    groups: int
    #: the padded input's receptive fields, as the forward product read them (or None)
    fields: np.ndarray | None = None
    #: whether ``x_padded`` holds the padding (False: the unpadded input)
    padded: bool = True


def conv_padding(
    padding: int | tuple[int, int] | str,
    kernel_size: tuple[int, int],
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
) -> Padding:
    """Resolve a ``padding`` argument as PyTorch does into ``((top, bottom), (left, right))``.

    ``'valid'`` is no padding. ``'same'`` (stride 1 only, like PyTorch) pads
    ``d·(k-1)`` in total per axis so the output has the input's size; an odd total puts
    the extra row/column at the bottom/right. An int or ``(ph, pw)`` pads both sides.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding != "same":
            raise ValueError(
                f"padding must be an int, a pair of ints, 'valid' or 'same', got {padding!r}"
            )
        if stride != (1, 1):
            raise ValueError(
                f"padding='same' needs stride 1 (as in PyTorch), got stride={stride}; "
                "give the padding as numbers instead"
            )
        totals = [dilation[a] * (kernel_size[a] - 1) for a in (0, 1)]
        return (totals[0] // 2, totals[0] - totals[0] // 2), (
            totals[1] // 2,
            totals[1] - totals[1] // 2,
        )
    ph, pw = pair(padding, "padding", minimum=0)
    return (ph, ph), (pw, pw)


def input_grad_padding(
    size: int, kernel: int, stride: int, padding: tuple[int, int], dilation: int
) -> tuple[int, int]:
    """Step (E3)'s padding of the zero-inserted error map along one axis.

    With the effective kernel ``k_eff = d·(k-1) + 1`` and forward padding
    ``(P_before, P_after)``::

        before = k_eff - 1 - P_before
        after  = k_eff - 1 - P_after + leftover,   leftover = (H + P_before + P_after - k_eff) % S

    ``k_eff - 1`` zeros per side make the "full" correlation that reaches every input
    position; subtracting ``P`` drops the errors of the padding cells, which are not
    neurons (a negative amount is a crop, when ``P > k_eff - 1``); ``leftover`` are the
    last input rows no window reached when the stride does not divide
    ``H + 2P - k_eff``: their error is zero. Correlating the result with the
    ``k_eff``-sized filter gives exactly ``H`` rows:
    ``S·(OH-1) + 1 + before + after - k_eff + 1 = H``.

    Returns
    -------
    (before, after) : tuple of int
        Zeros to add on each side (negative: rows to crop).
    """
    k_eff = dilation * (kernel - 1) + 1
    leftover = (size + padding[0] + padding[1] - k_eff) % stride
    return k_eff - 1 - padding[0], k_eff - 1 - padding[1] + leftover


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    keep_fields: bool = True,
) -> tuple[np.ndarray, ConvCache]:
    """Forward pass of a 2-D convolution layer: ``net = correlate(pad(a), W) + b``.

    Parameters
    ----------
    x : ndarray, float32 or float64
        Input ``a^{l-1}``.
    w : ndarray, dtype of ``x``
        Filters.
    b : ndarray or None
        One bias per filter, or None for no bias.
    stride, dilation : int or (int, int)
        ``>= 1``.
    padding : int, (int, int), 'valid' or 'same'
        Zeros around the input (see :func:`conv_padding`).
    groups : int
        Must divide the input channels and the number of filters.
    keep_fields : bool
        Keep the copy of the input's receptive fields that the product reads, so that
        the backward pass's weight gradient reads it again instead of copying anew
        (faster; costs memory: ``kh·kw·C·OH·OW`` values per sample, kept only up to
        :data:`~cnnlab.functional.correlate.CHUNK_BYTES`). False for inference. The
        compiled kernels (:mod:`cnnlab.functional.kernels`) keep none: they copy each
        sample's fields again, in cache, in the backward pass.

    Returns
    -------
    y : ndarray
        ``net^l``, dtype of ``x``.
    cache : ConvCache
        For :func:`conv2d_backward`. Without padding, and with the compiled kernels for
        inputs of :data:`~cnnlab.functional.kernels.UNPADDED_MIN_BYTES` or more, it holds
        ``x`` itself (no copy): do not modify ``x`` in place before the backward pass.

    Shapes
    ------
    x: ``(N, C, H, W)``; w: ``(F, C/groups, kh, kw)``; b: ``(F,)``; y: ``(N, F, OH, OW)``
    with ``OH = (H + pt + pb - d·(kh-1) - 1) // s + 1`` (``pt = pb = P`` unless 'same').
    """
    x = float_array(x, "x", ndim=4)
    w = float_array(w, "w", ndim=4)
    same_dtype(x, w, "x", "w")
    if b is not None:
        b = array_shape(float_array(b, "b"), (w.shape[0],), "b")
        same_dtype(x, b, "x", "b")
    stride = pair(stride, "stride")
    dilation = pair(dilation, "dilation")
    groups = positive_int(groups, "groups")
    if x.shape[1] % groups or w.shape[0] % groups:
        raise ValueError(
            f"groups={groups} must divide both the input channels ({x.shape[1]}) and the "
            f"number of filters ({w.shape[0]})"
        )
    if w.shape[1] * groups != x.shape[1]:
        raise ValueError(
            f"channel mismatch: w {w.shape} expects x with {w.shape[1] * groups} channels "
            f"(w.shape[1]·groups = {w.shape[1]}·{groups}), got x with {x.shape[1]} "
            f"(shape {x.shape})"
        )
    pads = conv_padding(padding, (w.shape[2], w.shape[3]), stride, dilation)
    for a, name in ((0, "height"), (1, "width")):
        k_eff = dilation[a] * (w.shape[2 + a] - 1) + 1
        padded = x.shape[2 + a] + sum(pads[a])
        if k_eff > padded:
            raise ValueError(
                f"the kernel's effective {name} d·(k-1)+1 = {k_eff} is larger than the "
                f"padded input's {name} {padded} (input {x.shape[2 + a]} + padding "
                f"{pads[a][0]}+{pads[a][1]}); expected at most {padded}"
            )
    kernel = (w.shape[2], w.shape[3])
    oh, ow = (
        output_size(x.shape[2 + a] + sum(pads[a]), kernel[a], stride[a], dilation[a])
        for a in (0, 1)
    )
    shape = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    if kernels.enabled() and x.size and w.size:
        # compiled: the bias added to each band of products while it is in cache. Inputs
        # of UNPADDED_MIN_BYTES or more are read in place, the padding's zeros written by
        # the receptive-field copy; smaller ones are padded first (the copy stays in cache)
        unpadded = x.nbytes >= kernels.UNPADDED_MIN_BYTES
        source = x if unpadded else pad2d(x, pads)
        before = (pads[0][0], pads[1][0]) if unpadded else (0, 0)
        y = np.empty((x.shape[0], w.shape[0], oh, ow), dtype=x.dtype)
        kernels.correlate(source, w, stride, dilation, groups, y, bias=b, before=before)
        cache = ConvCache(
            source, w, b is not None, shape, stride, pads, dilation, groups, padded=not unpadded
        )
        return y, cache
    x_padded = pad2d(x, pads)
    fields = None
    # the compiled kernels keep no fields: copying a sample's again in the backward pass,
    # while it stays in cache, costs less than writing and reading them all back
    if keep_fields and oh * ow >= kernel[0] * kernel[1] and not kernels.enabled():
        if x.shape[1] * kernel[0] * kernel[1] * oh * ow * x.shape[0] * x.itemsize <= CHUNK_BYTES:
            fields = receptive_fields(x_padded, kernel, stride, dilation)
    y = correlate2d(x_padded, w, stride, dilation, groups, fields=fields)
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y, ConvCache(x_padded, w, b is not None, shape, stride, pads, dilation, groups, fields)


def conv2d_backward(
    dy: np.ndarray, cache: ConvCache, need_dx: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Backward pass: from the error map ``δ^l = dE/dnet^l`` to ``dE/da^{l-1}``, dE/dW, dE/db.

    ``dy`` is the error of this layer's *output* ``net^l`` (the convolution has no
    activation inside). The lesson's next step, ``δ^{l-1} = dE/da^{l-1} ∘ f'(net^{l-1})``,
    is the job of the activation layer in front of this one: its ``backward`` multiplies
    by ``f'``.

    Parameters
    ----------
    dy : ndarray
        ``δ^l``, the shape and dtype of the forward output.
    cache : ConvCache
        From :func:`conv2d_forward`.
    need_dx : bool
        False skips (E2)–(E4) and returns ``dx = None`` (a network's first layer never
        needs the error of its input).

    Returns
    -------
    dx : ndarray or None
        ``dE/dx``, shape of ``x`` (None when ``need_dx`` is False).
    dw : ndarray
        ``dE/dW``, summed over the batch.
    db : ndarray or None
        ``dE/db``, summed over the batch (None without a bias).

    Shapes
    ------
    dy: ``(N, F, OH, OW)``; dx: ``(N, C, H, W)``; dw: ``(F, C/groups, kh, kw)``; db: ``(F,)``.
    """
    x_padded, w, has_bias, x_shape, stride, padding, dilation, groups, fields, padded = cache
    n, channels, height, width = x_shape
    filters, cg, kh, kw = w.shape
    fg = filters // groups
    oh = output_size(height + sum(padding[0]), kh, stride[0], dilation[0])
    ow = output_size(width + sum(padding[1]), kw, stride[1], dilation[1])
    delta = float_array(dy, "dy", ndim=4)
    if delta.shape != (n, filters, oh, ow):
        raise ValueError(
            f"dy must have the forward output's shape {(n, filters, oh, ow)}, got {delta.shape}"
        )
    same_dtype(delta, w, "dy", "w")

    dx = None
    if need_dx and kernels.enabled():
        # (E2)–(E4) compiled: each error term scattered to the input cell it came from,
        # the inserted and padding zeros never materialised (same sums, see the helper)
        dx = scatter_input_error(delta, w, x_shape, stride, padding, dilation, groups)
    elif need_dx:
        # (E2) restore the stride-1 error map: insert stride-1 zeros between entries
        delta_full = insert_zeros(delta, stride)
        # (E3) pad with k_eff-1-P zeros (a crop when P > k_eff-1), plus the leftovers
        pads = (
            input_grad_padding(height, kh, stride[0], padding[0], dilation[0]),
            input_grad_padding(width, kw, stride[1], padding[1], dilation[1]),
        )
        delta_full = pad2d(delta_full, pads)
        # (E4) dx = correlate with rot180(W), in/out channels swapped per group: channel
        # d's error sums over the filters; the dilated filter keeps its dilation
        w_swapped = rot180(w).reshape(groups, fg, cg, kh, kw).swapaxes(1, 2)
        w_swapped = w_swapped.reshape(channels, fg, kh, kw)
        dx = correlate2d(delta_full, w_swapped, dilation=dilation, groups=groups)

    # (E5) dw = correlate the padded input with the error map: the error map is the
    # kernel, summed over the batch.
    if fields is not None:
        # the receptive fields the forward pass copied:
        # dw[f, c, m, q] = Σ_n Σ_ij δ[n, f, i, j] · a_prev[n, c, i·S + m·r, j·S + q·r]
        dw = weight_correlation(fields, delta, groups)
    elif kernels.enabled():
        # compiled: the same sum per sample, its receptive fields copied again into cache
        # and multiplied by its error map; the samples' products summed in order. (E6)
        # is summed there too, while each sample's error map is in cache.
        dw = np.empty(w.shape, dtype=delta.dtype)
        db = np.empty(filters, dtype=delta.dtype) if has_bias else None
        before = (padding[0][0], padding[1][0]) if not padded else (0, 0)
        kernels.weight_error(
            x_padded, delta, (kh, kw), stride, dilation, groups, dw, db, before=before
        )
        return dx, dw, db
    else:
        if not padded:  # a forward pass on the compiled kernels left the padding unmade
            x_padded = pad2d(x_padded, padding)
        # one 2-D correlation per (filter, channel) pair: samples play the channels,
        # channels the batch. The zero-inserted error map is the error map dilated by
        # the stride, so the roles swap: kernel dilation = forward stride, step over the
        # input = forward dilation. Input rows no window reached (leftovers) are cut.
        used_h = stride[0] * (oh - 1) + dilation[0] * (kh - 1) + 1
        used_w = stride[1] * (ow - 1) + dilation[1] * (kw - 1) + 1
        a_prev = x_padded[:, :, :used_h, :used_w].reshape(n, groups, cg, used_h, used_w)
        a_prev = a_prev.transpose(2, 1, 0, 3, 4).reshape(cg, groups * n, used_h, used_w)
        dw_t = correlate2d(
            a_prev, delta.transpose(1, 0, 2, 3), stride=dilation, dilation=stride, groups=groups
        )
        dw = np.ascontiguousarray(dw_t.transpose(1, 0, 2, 3))
    # (E6) db = sum of the error map (over positions and samples), per filter
    db = delta.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db
