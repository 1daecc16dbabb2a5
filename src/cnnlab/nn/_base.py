"""Helpers shared by the parameter-free layers."""

from __future__ import annotations

import numpy as np

from cnnlab._validate import float_array


def check_cached(cached: object, layer: str) -> None:
    """Refuse ``backward`` before ``forward``."""
    if cached is None:
        raise ValueError(f"{layer}.backward called before forward; call the layer first")


def check_dy(dy: object, shape: tuple[int, ...], layer: str) -> np.ndarray:
    """``dy`` must be a float array of the forward output's shape."""
    dy = float_array(dy, f"{layer} dy", var="dy")
    if dy.shape != shape:
        raise ValueError(f"{layer} dy must have the forward output's shape {shape}, got {dy.shape}")
    return dy
