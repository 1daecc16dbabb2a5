"""Inverted dropout."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab import init
from cnnlab._validate import float_array
from cnnlab.nn._base import check_cached, check_dy
from cnnlab.nn.module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """Zero each element with probability ``p`` in training, scaling the rest by 1/(1-p).

    The scaling keeps the expected activation unchanged, so evaluation (``model.eval()``)
    is the identity. Backward multiplies by the same mask.

    Parameters
    ----------
    p : float in [0, 1]
    rng : numpy Generator, optional
        Source of the masks (default: :func:`cnnlab.init.default_generator` at call time).

    Shapes
    ------
    Any → same.
    """

    def __init__(self, p: float = 0.5, *, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability p must be in [0, 1], got {p!r}")
        self.p = float(p)
        self.rng = rng
        self._mask: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = float_array(x, "Dropout input")
        if not self.training or self.p == 0.0:
            self._mask = np.ones((1,) * x.ndim, dtype=x.dtype)
            return x
        rng = self.rng if self.rng is not None else init.default_generator()
        keep = rng.random(x.shape, dtype=x.dtype) >= self.p
        scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        self._mask = keep * x.dtype.type(scale)
        return x * self._mask

    def backward(self, dy: np.ndarray) -> np.ndarray:
        check_cached(self._mask, "Dropout")
        assert self._mask is not None
        dy = float_array(dy, "Dropout dy", var="dy")
        if self._mask.size > 1:
            check_dy(dy, self._mask.shape, "Dropout")
        return dy * self._mask

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (JSON-able).

        ``rng`` is not part of it: a rebuilt layer draws its masks from the default
        generator unless given one.
        """
        return {"p": self.p}

    def extra_repr(self) -> str:
        return f"p={self.p}"
