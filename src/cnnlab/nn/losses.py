"""Loss layers: ``loss = loss_fn(prediction, target)``, then ``loss_fn.backward()``."""

from __future__ import annotations

import numpy as np

from cnnlab.functional.losses import (
    REDUCTIONS,
    CrossEntropyCache,
    check_label_smoothing,
    cross_entropy_backward,
    cross_entropy_forward,
    mse_backward,
    mse_forward,
)
from cnnlab.nn._base import check_cached

__all__ = ["CrossEntropyLoss", "MSELoss"]


class CrossEntropyLoss:
    """Softmax cross-entropy of logits against integer class targets (fused, stable).

    ``loss = loss_fn(logits, targets)`` returns a float; ``loss_fn.backward()`` returns
    ``dE/dlogits = (softmax(logits) - q) / N`` (mean reduction), where the target
    distribution ``q`` is ``onehot(targets)``, or with label smoothing ε
    ``(1-ε)·onehot(targets) + ε/K`` (PyTorch's ``label_smoothing``): the loss is then
    ``(1-ε)·NLL + ε·(mean over the K classes of -log softmax)``.

    Parameters
    ----------
    reduction : {'mean', 'sum'}
        Average or sum over the batch.
    label_smoothing : float
        ε in ``[0, 1]``, default 0 (no smoothing).

    Shapes
    ------
    logits ``(N, K)``; targets ``(N,)`` integers in ``[0, K)``; gradient ``(N, K)``.
    """

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self._cache: CrossEntropyCache | None = None

    def __call__(self, logits: np.ndarray, targets: np.ndarray) -> float:
        loss, self._cache = cross_entropy_forward(
            logits, targets, self.reduction, self.label_smoothing
        )
        return loss

    def backward(self) -> np.ndarray:
        check_cached(self._cache, "CrossEntropyLoss")
        assert self._cache is not None
        return cross_entropy_backward(self._cache)

    def __repr__(self) -> str:
        smoothing = f", label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return f"CrossEntropyLoss(reduction={self.reduction!r}{smoothing})"


class MSELoss:
    """Mean squared error; ``backward()`` returns ``2(pred - target)/numel``.

    Shapes
    ------
    pred and target: the same shape; gradient like pred.
    """

    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self._cache: tuple[np.ndarray, str] | None = None

    def __call__(self, pred: np.ndarray, target: np.ndarray) -> float:
        loss, self._cache = mse_forward(pred, target, self.reduction)
        return loss

    def backward(self) -> np.ndarray:
        check_cached(self._cache, "MSELoss")
        assert self._cache is not None
        return mse_backward(self._cache)

    def __repr__(self) -> str:
        return f"MSELoss(reduction={self.reduction!r})"
