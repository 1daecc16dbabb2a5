"""Training plots (matplotlib, Agg backend): learning curves, the confusion matrix and
augmented samples."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.io import atomic_write_bytes

__all__ = ["plot_confusion", "plot_curves", "save_augment_grid"]


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
        finite = [v for v in lrs if np.isfinite(v)]
        axes[2].set_ylim(0, 1.08 * max(finite) if finite else 1.0)  # a constant rate too
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


def save_augment_grid(
    images: np.ndarray,
    path: str | Path,
    transform: Callable[[np.ndarray, np.random.Generator], np.ndarray],
    *,
    rng: np.random.Generator | int = 0,
    rows: int = 3,
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """A PNG grid of images as given (top row) and as ``transform`` makes them (below).

    Each lower row is one call ``transform(images, rng)`` with the same generator, so
    every column shows one image and ``rows`` of its augmentations: what the model sees.
    All panels share one grey (or colour) scale, taken from the lowest and highest
    value shown, so a normalised background and a ``fill`` that does not match it are
    visible as they are.

    Parameters
    ----------
    images : ndarray
        At most 32 images, float32 or float64, 1 (grey) or 3 (RGB) channels.
    path : str or Path
        Where to write the PNG (written atomically), e.g. ``RUN_DIR / "augment.png"``.
    transform : callable
        ``transform(x, rng) -> ndarray``, e.g. a :class:`cnnlab.data.transforms.Compose`.
    rng : numpy.random.Generator or int
        The generator for the augmentations, or a seed for one.
    rows : int
        Number of augmented rows (>= 1).
    labels : sequence of str, optional
        One caption per column (e.g. the class names).
    title : str, optional
        The figure title; by default it names the transforms.

    Returns
    -------
    Path
        ``path``.

    Shapes
    ------
    images: ``(N, C, H, W)`` with ``N <= 32`` and ``C`` in {1, 3}; the transform's
    output may have another ``H, W`` (a crop).
    """
    from cnnlab._validate import float_array, positive_int

    images = float_array(images, "images", ndim=4)
    n, channels = images.shape[:2]
    if not 1 <= n <= 32:
        raise ValueError(f"images must hold 1 to 32 images, got {n}; pass a slice")
    if channels not in (1, 3):
        raise ValueError(f"images must have 1 (grey) or 3 (RGB) channels, got {channels}")
    rows = positive_int(rows, "rows")
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels must have one entry per image ({n}), got {len(labels)}")
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    panels = [images] + [np.asarray(transform(images, generator)) for _ in range(rows)]
    for out in panels[1:]:
        if out.ndim != 4 or out.shape[:2] != (n, channels):
            raise ValueError(
                f"transform must return (N, C, H, W) = ({n}, {channels}, ...), got {out.shape}"
            )
    low = min(float(p.min()) for p in panels)
    high = max(float(p.max()) for p in panels)
    span = high - low if high > low else 1.0
    if title is None:
        steps = getattr(transform, "transforms", [transform])
        names = " → ".join(type(t).__name__ for t in steps) or "identity"
        title = f"What the model sees: originals (top), {names} (below)"

    plt = _pyplot()
    fig, axes = plt.subplots(
        rows + 1,
        n,
        figsize=(0.4 + 0.75 * max(n, 4), 0.6 + 0.75 * (rows + 1)),
        dpi=100,
        squeeze=False,
    )
    for r, batch in enumerate(panels):
        for k in range(n):
            ax = axes[r][k]
            if channels == 1:
                ax.imshow(batch[k, 0], cmap="gray", vmin=low, vmax=high)
            else:
                ax.imshow(np.clip((batch[k].transpose(1, 2, 0) - low) / span, 0.0, 1.0))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and labels is not None:
                ax.set_title(str(labels[k]), fontsize=7)
        axes[r][0].set_ylabel("original" if r == 0 else f"aug. {r}", fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    atomic_write_bytes(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path
