"""Activation functions ``a = f(net)`` and their backward passes ``δ = dE/da ∘ f'(net)``.

This is the lesson's "∘ f'(net)" step: a convolution's backward pass returns
``dE/da^{l-1}``; the activation in front of it multiplies by the derivative.
Every function keeps the input's dtype.
"""

from __future__ import annotations

import numpy as np

from cnnlab._validate import float_array
from cnnlab.functional import kernels

__all__ = [
    "leaky_relu",
    "leaky_relu_backward",
    "log_softmax",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "softmax",
    "tanh",
    "tanh_backward",
]


def relu(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)``.

    Shapes
    ------
    Any (element-wise); the output has the input's shape.
    """
    x = float_array(x, "relu input")
    if kernels.enabled():  # the same, compiled and on every core
        return kernels.relu(x)
    return np.maximum(x, 0)


def relu_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``dy ∘ [net > 0]`` from the forward *output* ``y`` (``y > 0`` iff ``net > 0``).

    The derivative at exactly 0 is taken as 0, as in PyTorch.

    Shapes
    ------
    ``dy`` and the saved array have the same shape; so has the result.
    """
    if kernels.enabled() and dy.shape == y.shape and dy.dtype == y.dtype:
        return kernels.relu_backward(dy, y)  # the same, compiled and on every core
    return dy * (y > 0)


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """``x`` where positive, ``negative_slope·x`` elsewhere.

    Shapes
    ------
    Any (element-wise); the output has the input's shape.
    """
    x = float_array(x, "leaky_relu input")
    return np.where(x > 0, x, x * x.dtype.type(negative_slope))


def leaky_relu_backward(dy: np.ndarray, x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """``dy ∘ f'(x)`` with ``f'`` = 1 for ``x > 0`` and ``negative_slope`` otherwise.

    Shapes
    ------
    ``dy`` and the saved array have the same shape; so has the result.
    """
    return np.where(x > 0, dy, dy * dy.dtype.type(negative_slope))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + e^{-x})`` without overflow.

    ``e^{-|x|}`` is at most 1, so neither branch overflows: for ``x ≥ 0`` it is
    ``1/(1+e^{-x})``, for ``x < 0`` the equal ``e^{x}/(1+e^{x})``.

    Shapes
    ------
    Any (element-wise); the output has the input's shape.
    """
    x = float_array(x, "sigmoid input")
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``dy ∘ σ(x)(1-σ(x))`` from the forward output ``y = σ(x)``.

    Shapes
    ------
    ``dy`` and the saved array have the same shape; so has the result.
    """
    return dy * y * (1 - y)


def tanh(x: np.ndarray) -> np.ndarray:
    """Hyperbolic tangent.

    Shapes
    ------
    Any (element-wise); the output has the input's shape.
    """
    return np.tanh(float_array(x, "tanh input"))


def tanh_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``dy ∘ (1 - tanh²(x))`` from the forward output ``y = tanh(x)``.

    Shapes
    ------
    ``dy`` and the saved array have the same shape; so has the result.
    """
    return dy * (1 - y * y)


def log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """``z - log Σ e^z`` along ``axis``, shifted by the maximum so nothing overflows.

    Shapes
    ------
    Any; normalised along ``axis``; the output has the input's shape.
    """
    z = float_array(z, "log_softmax input")
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """``e^z / Σ e^z`` along ``axis`` (computed stably).

    Shapes
    ------
    Any; normalised along ``axis``; the output has the input's shape.
    """
    z = float_array(z, "softmax input")
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)
