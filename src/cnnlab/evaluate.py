"""Evaluation: accuracy, loss, per-class accuracy and the confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnlab.nn.losses import CrossEntropyLoss
from cnnlab.nn.module import Module

__all__ = ["EvalResult", "evaluate"]


@dataclass
class EvalResult:
    """Accuracy, mean loss, per-class accuracy and confusion matrix on a data set."""

    accuracy: float
    n: int
    loss: float
    per_class_accuracy: dict[str, float]
    confusion: np.ndarray  #: (K, K) counts, rows true class, columns predicted
    classes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "n": self.n,
            "loss": self.loss,
            "per_class_accuracy": self.per_class_accuracy,
            "confusion": self.confusion.tolist(),
            "classes": list(self.classes),
        }


def evaluate(model: Module, dataset: Any, batch_size: int = 512) -> EvalResult:
    """Accuracy and loss of ``model`` on a :class:`cnnlab.data.Dataset` (eval mode).

    Shapes
    ------
    ``dataset.images``: ``(N, C, H, W)``; ``dataset.labels``: ``(N,)``.
    """
    was_training = model.training
    model.eval()
    k = len(dataset.classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    loss_sum = 0.0
    loss_fn = CrossEntropyLoss(reduction="sum")
    try:
        for start in range(0, len(dataset), batch_size):
            x = dataset.images[start : start + batch_size].astype(model.dtype, copy=False)
            y = dataset.labels[start : start + batch_size]
            logits = model(x)
            loss_sum += loss_fn(logits, y)
            np.add.at(confusion, (y, logits.argmax(axis=1)), 1)
    finally:
        model.train(was_training)
    n = int(confusion.sum())
    totals = confusion.sum(axis=1)
    per_class = {
        name: (float(confusion[i, i] / totals[i]) if totals[i] else float("nan"))
        for i, name in enumerate(dataset.classes)
    }
    return EvalResult(
        accuracy=float(np.trace(confusion) / max(n, 1)),
        n=n,
        loss=loss_sum / max(n, 1),
        per_class_accuracy=per_class,
        confusion=confusion,
        classes=tuple(dataset.classes),
    )
