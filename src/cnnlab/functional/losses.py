"""Losses: fused softmax cross-entropy and mean squared error, with their gradients.

Cross-entropy of logits ``z`` (N, K) and integer targets ``t``::

    E = -(1/N) Σ_n log softmax(z_n)[t_n]
    dE/dz = (softmax(z) - onehot(t)) / N

Fusing log-softmax with the loss keeps it finite for any logits and makes the
gradient that simple difference.

Label smoothing ε (PyTorch's ``label_smoothing``) trains against the target
distribution ``q = (1-ε)·onehot(t) + ε/K`` instead of the one-hot vector. With
``p = softmax(z_n)``::

    E_n = -Σ_k q_k log p_k = (1-ε)·(-log p_t) + ε·(1/K) Σ_k (-log p_k)
    dE_n/dz_j = -Σ_k q_k (δ_kj - p_j) = p_j Σ_k q_k - q_j = p_j - q_j      (Σ_k q_k = 1)

so the loss is ``(1-ε)·NLL + ε·(mean over classes of -log p)`` and the gradient is
still ``softmax - target``, with the smoothed target ``(1-ε)·onehot + ε/K``. ``'mean'``
divides both by N. ε=0 is plain cross-entropy; ε=1 ignores the labels (uniform target).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from cnnlab._validate import float_array
from cnnlab.functional.activations import log_softmax

__all__ = [
    "CrossEntropyCache",
    "check_label_smoothing",
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
    label_smoothing: float = 0.0  #: ε in [0, 1]


def check_label_smoothing(value: object) -> float:
    """Validate ``label_smoothing``: a number in ``[0, 1]`` (PyTorch's range)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"label_smoothing must be a number in [0, 1], got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise ValueError(f"label_smoothing must be in [0, 1] (e.g. 0.1), got {value!r}")
    return v


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
    logits: np.ndarray,
    targets: np.ndarray,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> tuple[float, CrossEntropyCache]:
    """Softmax cross-entropy of ``logits`` against integer ``targets``.

    ``E = Σ_n [(1-ε)·(-log p_n[t_n]) + ε·(1/K) Σ_k (-log p_n[k])]``, divided by N for
    ``'mean'``; ε = ``label_smoothing`` (0: plain cross-entropy).

    Shapes
    ------
    logits: ``(N, K)``; targets: ``(N,)`` ints in ``[0, K)``; loss: scalar.
    """
    logits = float_array(logits, "logits", ndim=2)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    eps = check_label_smoothing(label_smoothing)
    n, k = logits.shape
    if n == 0:
        raise ValueError("cross-entropy needs at least one sample, got an empty batch")
    targets = check_targets(targets, n, k)
    log_probs = log_softmax(logits)
    total = -log_probs[np.arange(n), targets].sum()
    if eps:
        # (1-ε)·NLL + ε·(mean over classes of -log p), summed over the batch
        smooth = -log_probs.sum() / k
        total = (1 - eps) * total + eps * smooth
    loss = total / n if reduction == "mean" else total
    return float(loss), CrossEntropyCache(log_probs, targets, reduction, eps)


def cross_entropy_backward(cache: CrossEntropyCache, scale: float = 1.0) -> np.ndarray:
    """``dE/dlogits = (softmax - q) / N`` (without the ``/N`` for ``'sum'``).

    ``q = (1-ε)·onehot(t) + ε/K`` is the (smoothed) target distribution.

    Shapes
    ------
    returns ``(N, K)`` like the logits.
    """
    log_probs, targets, reduction, eps = cache
    n, k = log_probs.shape
    grad = np.exp(log_probs)
    grad[np.arange(n), targets] -= 1 - eps
    if eps:
        grad -= grad.dtype.type(eps / k)
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
