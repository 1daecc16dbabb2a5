"""Losses: fused softmax cross-entropy and mean squared error, with their gradients.

Cross-entropy of logits ``z`` (N, K) and integer targets ``t``::

    E = -(1/N) Σ_n log softmax(z_n)[t_n]
    dE/dz = (softmax(z) - onehot(t)) / N

Fusing log-softmax with the loss keeps it finite for any logits and makes the
gradient that simple difference.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cnnlab._validate import float_array
from cnnlab.functional.activations import log_softmax

__all__ = [
    "CrossEntropyCache",
    "check_targets",
    "cross_entropy_backward",
    "cross_entropy_forward",
    "mse_backward",
    "mse_forward",
]

REDUCTIONS = ("mean", "sum")


class CrossEntropyCache(NamedTuple):
    log_probs: np.ndarray  #: log softmax of the logits, (N, K)
    targets: np.ndarray  #: (N,) int
    reduction: str


def check_targets(targets: object, n: int, num_classes: int) -> np.ndarray:
    """Validate class-index targets: an int array of shape ``(n,)`` in ``[0, num_classes)``."""
    if not isinstance(targets, np.ndarray) or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(
            "targets must be an integer ndarray of class indices, got "
            f"{getattr(targets, 'dtype', type(targets).__name__)}"
        )
    if targets.shape != (n,):
        raise ValueError(f"targets must have shape ({n},) to match the logits, got {targets.shape}")
    if n and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(
            f"targets must be class indices in [0, {num_classes}), got values from "
            f"{targets.min()} to {targets.max()}"
        )
    return targets


def cross_entropy_forward(
    logits: np.ndarray, targets: np.ndarray, reduction: str = "mean"
) -> tuple[float, CrossEntropyCache]:
    """Softmax cross-entropy of ``logits`` against integer ``targets``.

    Shapes
    ------
    logits: ``(N, K)``; targets: ``(N,)`` ints in ``[0, K)``; loss: scalar.
    """
    logits = float_array(logits, "logits", ndim=2)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    n, k = logits.shape
    if n == 0:
        raise ValueError("cross-entropy needs at least one sample, got an empty batch")
    targets = check_targets(targets, n, k)
    log_probs = log_softmax(logits)
    total = -log_probs[np.arange(n), targets].sum()
    loss = total / n if reduction == "mean" else total
    return float(loss), CrossEntropyCache(log_probs, targets, reduction)


def cross_entropy_backward(cache: CrossEntropyCache, scale: float = 1.0) -> np.ndarray:
    """``dE/dlogits = (softmax - onehot) / N`` (without the ``/N`` for ``'sum'``).

    Shapes
    ------
    returns ``(N, K)`` like the logits.
    """
    log_probs, targets, reduction = cache
    n = log_probs.shape[0]
    grad = np.exp(log_probs)
    grad[np.arange(n), targets] -= 1
    factor = scale / n if reduction == "mean" else scale
    if factor != 1.0:
        grad *= grad.dtype.type(factor)
    return grad


def mse_forward(
    pred: np.ndarray, target: np.ndarray, reduction: str = "mean"
) -> tuple[float, tuple[np.ndarray, str]]:
    """Mean (or sum) of squared differences.

    Shapes
    ------
    pred and target: the same shape, any; loss: scalar.
    """
    pred = float_array(pred, "pred")
    target = float_array(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} must have the same shape")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    diff = pred - target.astype(pred.dtype, copy=False)
    total = float(np.sum(diff * diff))
    return (total / max(diff.size, 1) if reduction == "mean" else total), (diff, reduction)


def mse_backward(cache: tuple[np.ndarray, str]) -> np.ndarray:
    """``dE/dpred = 2 (pred - target) / numel`` (without ``/numel`` for ``'sum'``)."""
    diff, reduction = cache
    scale = 2.0 / max(diff.size, 1) if reduction == "mean" else 2.0
    return diff * diff.dtype.type(scale)
