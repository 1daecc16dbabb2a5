"""Turning an image file of any size into a model input, MNIST-style.

MNIST digits are white on black, their bounding box scaled to fit 20×20 and centred by
centre of mass in a 28×28 frame. A photo or drawing of a digit is brought to the same
form: greyscale, inverted when its background is light, cropped to the ink, scaled,
centred and normalised with the data set's constants.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.data.datasets import dataset_info, normalise
from cnnlab.errors import DataError

__all__ = ["load_image", "to_model_input"]


def _read(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise DataError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            img.load()
            grey = img.convert("L")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image (PNG or JPG expected): {exc}") from None
    return np.asarray(grey, dtype=np.float32) / 255.0


def to_model_input(pixels: np.ndarray, dataset_name: str) -> np.ndarray:
    """Greyscale pixels in [0, 1] (any size) → normalised ``(1, 1, H, W)`` float32."""
    from PIL import Image

    info = dataset_info(dataset_name)
    h, w = info.image_shape[1:]
    a = np.asarray(pixels, dtype=np.float32)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    if border.mean() > 0.5:  # dark ink on light paper: invert to MNIST's light on dark
        a = 1.0 - a
    ink = np.argwhere(a > 0.1 * a.max()) if a.max() > 0 else np.empty((0, 2))
    if len(ink):
        (top, left), (bottom, right) = ink.min(axis=0), ink.max(axis=0) + 1
        a = a[top:bottom, left:right]
    box = max(1, round(h * 20 / 28)) if h >= 20 else h
    scale = box / max(a.shape)
    size = (max(1, round(a.shape[1] * scale)), max(1, round(a.shape[0] * scale)))
    small = (
        np.asarray(
            Image.fromarray((a * 255).astype(np.uint8)).resize(size, Image.Resampling.LANCZOS),
            dtype=np.float32,
        )
        / 255.0
    )
    frame = np.zeros((h, w), dtype=np.float32)
    total = small.sum()
    if total > 0 and h >= 20:  # centre by centre of mass, as MNIST
        rows, cols = np.indices(small.shape)
        cy, cx = (rows * small).sum() / total, (cols * small).sum() / total
        top, left = round(h / 2 - cy), round(w / 2 - cx)
    else:
        top, left = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    top = min(max(top, 0), h - small.shape[0])
    left = min(max(left, 0), w - small.shape[1])
    frame[top : top + small.shape[0], left : left + small.shape[1]] = small
    return normalise(frame, info)[None, None]


def load_image(path: str | Path, dataset_name: str) -> np.ndarray:
    """Read a PNG/JPG of any size as a model input for ``dataset_name``.

    Raises
    ------
    DataError
        Missing, unreadable or non-image file (named in the message).

    Shapes
    ------
    Returns ``(1, 1, H, W)`` float32 with ``(H, W)`` the data set's image size.
    """
    return to_model_input(_read(Path(path)), dataset_name)
