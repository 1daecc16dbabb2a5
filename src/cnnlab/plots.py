"""Training plots (matplotlib, Agg backend): learning curves and the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.io import atomic_write_bytes

__all__ = ["plot_confusion", "plot_curves"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Loss and accuracy per epoch (train, and validation or test where the rows have
    them) and, if the rows have an ``lr``, the learning rate: a small PNG."""
    plt = _pyplot()
    epochs = [int(h["epoch"]) for h in history]
    splits = [
        (split, marker)
        for split, marker in (("train", "o-"), ("val", "s-"), ("test", "^-"))
        if any(h.get(f"{split}_loss") is not None for h in history)
    ]
    with_lr = any(h.get("lr") is not None for h in history)
    fig, axes = plt.subplots(1, 3 if with_lr else 2, figsize=(10 if with_lr else 7, 2.8), dpi=100)
    for ax, key, title in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy")):
        for split, marker in splits:
            values = [h.get(f"{split}_{key}") for h in history]
            ax.plot(epochs, [np.nan if v is None else v for v in values], marker, ms=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[1].legend(loc="lower right")
    if with_lr:
        lrs = [np.nan if h.get("lr") is None else h["lr"] for h in history]
        axes[2].plot(epochs, lrs, "o-", ms=3, color="tab:green")
        axes[2].set_xlabel("epoch")
        axes[2].set_title("learning rate (last step)")
        axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        axes[2].grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    atomic_write_bytes(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path


def plot_confusion(confusion: np.ndarray, classes: Sequence[str], path: str | Path) -> Path:
    """The confusion matrix (rows: true class, columns: predicted), counts annotated."""
    plt = _pyplot()
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * k, 1.0 + 0.45 * k), dpi=100)
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(
        range(k),
        classes,
        rotation=45 if max(map(len, classes)) > 2 else 0,
        ha="right" if max(map(len, classes)) > 2 else "center",
        fontsize=8,
    )
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = confusion.max() / 2 if confusion.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(int(confusion[i, j])),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if confusion[i, j] > threshold else "black",
            )
    fig.tight_layout()
    path = Path(path)
    atomic_write_bytes(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path
