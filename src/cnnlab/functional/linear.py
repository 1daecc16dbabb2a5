"""Fully connected (dense) layer: ``y = x Wᵀ + b``, and its backward pass.

Each output ``y[n, j] = Σ_i W[j, i]·x[n, i] + b[j]``, so by the chain rule
``dE/dx = δ W``, ``dE/dW = δᵀ x`` (summed over the batch) and ``dE/db = Σ_n δ``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cnnlab._validate import array_shape, float_array, same_dtype

__all__ = ["LinearCache", "linear_backward", "linear_forward"]


class LinearCache(NamedTuple):
    """What :func:`linear_backward` needs."""

    x: np.ndarray
    w: np.ndarray
    has_bias: bool


def linear_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None
) -> tuple[np.ndarray, LinearCache]:
    """``y = x Wᵀ + b`` (PyTorch's weight layout ``(out_features, in_features)``).

    Shapes
    ------
    x: ``(N, in_features)``; w: ``(out_features, in_features)``; b: ``(out_features,)``;
    y: ``(N, out_features)``.
    """
    x = float_array(x, "linear input", ndim=2)
    w = float_array(w, "w", ndim=2)
    same_dtype(x, w, "x", "w")
    if x.shape[1] != w.shape[1]:
        raise ValueError(
            f"linear input has {x.shape[1]} features (shape {x.shape}) but the weight "
            f"{w.shape} expects {w.shape[1]}"
        )
    if b is not None:
        b = array_shape(float_array(b, "b"), (w.shape[0],), "b")
        same_dtype(x, b, "x", "b")
    y = x @ w.T
    if b is not None:
        y += b
    return y, LinearCache(x, w, b is not None)


def linear_backward(
    dy: np.ndarray, cache: LinearCache, need_dx: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients of ``y = x Wᵀ + b`` from ``δ = dE/dy``.

    Returns
    -------
    dx : ``δ W`` (None if ``need_dx`` is False), dw : ``δᵀ x``, db : ``Σ_n δ`` (or None)

    Shapes
    ------
    dy: ``(N, out_features)``; dx: ``(N, in_features)``; dw like w; db: ``(out_features,)``.
    """
    x, w, has_bias = cache
    dy = float_array(dy, "dy", ndim=2)
    if dy.shape != (x.shape[0], w.shape[0]):
        raise ValueError(
            f"dy must have the linear output's shape {(x.shape[0], w.shape[0])}, got {dy.shape}"
        )
    dx = dy @ w if need_dx else None
    dw = dy.T @ x
    db = dy.sum(axis=0) if has_bias else None
    return dx, dw, db
