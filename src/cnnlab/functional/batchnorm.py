"""Batch normalisation forward and backward, written as the derivation's steps.

Per channel ``c``, over the ``m`` values that share it (every axis but the channel
axis: ``m = N`` for ``(N, C)``, ``m = N·H·W`` for ``(N, C, H, W)``)::

    (F1) μ  = (1/m) Σ x                 the batch mean
    (F2) σ² = (1/m) Σ (x - μ)²          the batch variance (biased: divided by m)
    (F3) x̂  = (x - μ) / σ,  σ = √(σ² + eps)     normalised: mean 0, variance ≈ 1
    (F4) y  = γ·x̂ + β                   scaled and shifted back (γ, β learned)

Sums run over the ``m`` values of one channel. In evaluation mode ``μ`` and ``σ²`` are
the *running* statistics instead, which are constants for the backward pass.

**Backward.** ``y`` depends on ``γ`` and ``β`` directly::

    (B1) dβ = Σ dy
    (B2) dγ = Σ dy·x̂
    (B3) dx̂ = dy·γ

``x`` reaches ``x̂`` three ways: directly, through ``μ`` and through ``σ``. With
``∂x̂_j/∂x_i = (1/σ)(δ_ij - 1/m) - (x̂_i x̂_j)/(m σ)`` (from ``∂μ/∂x_i = 1/m`` and
``∂σ/∂x_i = (x_i - μ)/(m σ) = x̂_i/m``), summing ``dx̂_j ∂x̂_j/∂x_i`` over ``j``::

    (B4) dx = (1/(m σ)) · (m·dx̂ - Σ dx̂ - x̂·Σ(dx̂·x̂))

The two sums are already known: ``Σ dx̂ = γ·dβ`` and ``Σ dx̂·x̂ = γ·dγ``. ``dx`` is
``dx̂/σ`` with its mean and its component along ``x̂`` removed: shifting every input of
a channel, or scaling them about their mean, does not change ``x̂``, so the gradient
has no component along those directions.

With fixed statistics (evaluation mode) ``μ`` and ``σ`` do not depend on ``x``::

    (B4') dx = dx̂ / σ

**Running statistics.** In training, with running statistics given, they are updated
in place with the factor ``f = momentum`` (or ``f = 1/num_batches_tracked`` when
``momentum`` is None, a cumulative average)::

    running_mean ← (1 - f)·running_mean + f·μ
    running_var  ← (1 - f)·running_var  + f·σ²·m/(m - 1)     (the unbiased variance)

Semantics are PyTorch's ``torch.nn.functional.batch_norm`` (and, with
``num_batches_tracked``, those of ``torch.nn.BatchNorm*d``).

Shapes
------
x, y, dy, dx, x̂: ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)``, channels on axis 1.
γ, β, μ, σ², σ, dγ, dβ, running_mean, running_var: ``(C,)``. ``m`` (values per channel):
``N``, ``N·L`` or ``N·H·W``. num_batches_tracked: ``()`` (an int64 scalar array).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cnnlab._validate import array_shape, float_array, same_dtype

__all__ = ["BatchNormCache", "batch_norm_backward", "batch_norm_forward"]


class BatchNormCache(NamedTuple):
    """What :func:`batch_norm_backward` needs from the forward pass."""

    x_hat: np.ndarray  #: the normalised input x̂ = (x - μ)/σ, shape of x
    inv_std: np.ndarray  #: 1/σ per channel, (C,)
    gamma: np.ndarray | None  #: the scale γ (None: no affine transform, γ = 1)
    has_beta: bool  #: whether a shift β was added (dβ is None otherwise)
    batch_stats: bool  #: normalised with the batch's statistics (False: fixed ones)


def _channel_axes(ndim: int) -> tuple[int, ...]:
    """Every axis but the channel axis 1: the axes the statistics are taken over."""
    return (0, *range(2, ndim))


def _per_channel(values: np.ndarray, ndim: int) -> np.ndarray:
    """A ``(C,)`` array shaped ``(1, C, 1, ...)`` to broadcast against the input."""
    return values.reshape((1, -1) + (1,) * (ndim - 2))


def batch_norm_forward(
    x: np.ndarray,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    *,
    training: bool,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
    num_batches_tracked: np.ndarray | None = None,
) -> tuple[np.ndarray, BatchNormCache]:
    """Forward pass of batch normalisation: ``y = γ·(x - μ)/√(σ² + eps) + β`` per channel.

    Parameters
    ----------
    x : ndarray, float32 or float64
        Input, channels on axis 1.
    gamma, beta : ndarray or None
        Scale and shift per channel, dtype of ``x`` (None: 1 and 0).
    running_mean, running_var : ndarray or None
        Running statistics per channel, dtype of ``x``; both or neither. In training
        they are updated in place (see the module docstring); in evaluation they
        normalise the input and are required.
    training : bool
        True: normalise with the batch's statistics (and update the running ones).
        False: normalise with the running statistics (``running_mean``/``running_var``
        must be given). ``torch.nn.BatchNorm*d`` passes
        ``training or track_running_stats is False``.
    momentum : float in [0, 1] or None
        Weight of the batch in the running statistics' update. None: a cumulative
        average, weight ``1/num_batches_tracked`` (which must then be given).
    eps : float
        Added to the variance before the square root, ``>= 0``.
    num_batches_tracked : ndarray or None
        An int64 scalar array counting the training batches; incremented in place
        when the running statistics are updated (as ``torch.nn.BatchNorm*d`` does).

    Returns
    -------
    y : ndarray
        Normalised, scaled and shifted, shape and dtype of ``x``.
    cache : BatchNormCache
        For :func:`batch_norm_backward`.

    Raises
    ------
    ValueError
        Bad shapes or dtypes; training with a single value per channel (its variance
        is 0 and the unbiased variance undefined: PyTorch refuses it too); evaluation
        without running statistics.

    Shapes
    ------
    x: ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)``; gamma, beta, running_mean,
    running_var: ``(C,)``; y: shape of x. Statistics are taken over every axis but C,
    ``m = N·L`` or ``N·H·W`` values per channel.
    """
    x = float_array(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must have a batch and a channel axis (N, C, ...), got shape {x.shape}")
    channels = x.shape[1]
    named = {"gamma": gamma, "beta": beta, "running_mean": running_mean, "running_var": running_var}
    for name, value in named.items():
        if value is not None:
            array_shape(float_array(value, name), (channels,), name)
            same_dtype(x, value, "x", name)
    if (running_mean is None) != (running_var is None):
        raise ValueError(
            "give both running_mean and running_var (track running statistics) or neither"
        )
    if momentum is not None and (
        not isinstance(momentum, (int, float))
        or isinstance(momentum, bool)
        or not 0 <= momentum <= 1
    ):
        raise ValueError(f"momentum must be a number in [0, 1] or None, got {momentum!r}")
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps >= 0:
        raise ValueError(f"eps must be a number >= 0, got {eps!r}")
    if num_batches_tracked is not None and (
        not isinstance(num_batches_tracked, np.ndarray)
        or num_batches_tracked.shape != ()
        or num_batches_tracked.dtype.kind not in "iu"
    ):
        raise ValueError(
            "num_batches_tracked must be an integer scalar array, e.g. np.array(0, np.int64); "
            f"got {num_batches_tracked!r}"
        )
    updating = training and running_mean is not None
    if updating and momentum is None and num_batches_tracked is None:
        raise ValueError("momentum=None (a cumulative average) needs num_batches_tracked")
    axes = _channel_axes(x.ndim)
    m = x.size // channels if channels else 0
    if training:
        if m <= 1:
            raise ValueError(
                f"batch normalisation in training needs more than 1 value per channel, got "
                f"input of shape {x.shape} (the variance of one value is 0); use a batch of "
                "at least 2 samples, or call .eval() to use the running statistics"
            )
        # (F1) μ = the mean of each channel's m values
        mean = x.mean(axis=axes)
        centered = x - _per_channel(mean, x.ndim)
        # (F2) σ² = the biased variance: it is what normalises this batch
        var = np.mean(centered * centered, axis=axes)
        if running_mean is not None and running_var is not None:
            if num_batches_tracked is not None:
                num_batches_tracked[...] += 1
            if momentum is None:
                assert num_batches_tracked is not None  # checked above
                factor = 1.0 / float(num_batches_tracked)
            else:
                factor = float(momentum)
            running_mean *= 1.0 - factor
            running_mean += factor * mean
            running_var *= 1.0 - factor
            # the unbiased variance: an estimate for the whole data, not this batch
            running_var += factor * var * (m / (m - 1))
    else:
        if running_mean is None or running_var is None:
            raise ValueError(
                "batch normalisation in evaluation (training=False) needs running_mean and "
                "running_var; pass training=True to normalise with the batch's statistics"
            )
        # (F1), (F2) replaced by the running statistics, constants here
        mean, var = running_mean, running_var
        centered = x - _per_channel(mean, x.ndim)
    # (F3) x̂ = (x - μ)/σ with σ = √(σ² + eps)
    inv_std = (1.0 / np.sqrt(var + x.dtype.type(eps))).astype(x.dtype, copy=False)
    x_hat = centered * _per_channel(inv_std, x.ndim)
    # (F4) y = γ·x̂ + β
    y = x_hat if gamma is None else x_hat * _per_channel(gamma, x.ndim)
    if beta is not None:
        y = y + _per_channel(beta, x.ndim)
    elif y is x_hat:
        y = x_hat.copy()  # the cache keeps x̂: the caller may modify y in place
    return y, BatchNormCache(x_hat, inv_std, gamma, beta is not None, bool(training))


def batch_norm_backward(
    dy: np.ndarray, cache: BatchNormCache
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Backward pass: from ``dE/dy`` to ``dE/dx``, ``dE/dγ`` and ``dE/dβ`` (steps B1–B4).

    Parameters
    ----------
    dy : ndarray
        ``dE/dy``, the shape and dtype of the forward output.
    cache : BatchNormCache
        From :func:`batch_norm_forward`.

    Returns
    -------
    dx : ndarray
        ``dE/dx``, shape of ``x``: (B4) with the batch's statistics, (B4') with fixed
        (running) ones.
    dgamma : ndarray or None
        ``dE/dγ`` summed over every axis but C (None without ``gamma``).
    dbeta : ndarray or None
        ``dE/dβ`` summed likewise (None without ``beta``).

    Shapes
    ------
    dy, dx: the input's ``(N, C, ...)``; dgamma, dbeta: ``(C,)``.
    """
    x_hat, inv_std, gamma, has_beta, batch_stats = cache
    dy = float_array(dy, "dy")
    if dy.shape != x_hat.shape:
        raise ValueError(f"dy must have the forward output's shape {x_hat.shape}, got {dy.shape}")
    same_dtype(dy, x_hat, "dy", "x")
    ndim = dy.ndim
    axes = _channel_axes(ndim)
    m = dy.size // dy.shape[1]
    # (B1) dβ = Σ dy, over every axis but C
    dbeta = dy.sum(axis=axes)
    # (B2) dγ = Σ dy·x̂
    dgamma = np.sum(dy * x_hat, axis=axes)
    # (B3) dx̂ = dy·γ
    dx_hat = dy if gamma is None else dy * _per_channel(gamma, ndim)
    if batch_stats:
        # (B4) dx = (1/(m σ)) (m·dx̂ - Σdx̂ - x̂·Σ(dx̂·x̂)), with Σdx̂ = γ·dβ, Σdx̂·x̂ = γ·dγ
        sum_dx_hat = dbeta if gamma is None else gamma * dbeta
        sum_dx_hat_x_hat = dgamma if gamma is None else gamma * dgamma
        dx = (
            m * dx_hat
            - _per_channel(sum_dx_hat, ndim)
            - x_hat * _per_channel(sum_dx_hat_x_hat, ndim)
        ) * _per_channel(inv_std / m, ndim)
    else:
        # (B4') the running statistics are constants: dx = dx̂/σ
        dx = dx_hat * _per_channel(inv_std, ndim)
    return dx, (dgamma if gamma is not None else None), (dbeta if has_beta else None)
