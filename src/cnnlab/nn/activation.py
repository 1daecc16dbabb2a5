"""Activation layers: the lesson's ``a = f(net)`` and ``δ = dE/da ∘ f'(net)``."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.functional import activations as F
from cnnlab.nn._base import check_cached, check_dy
from cnnlab.nn.module import Module

__all__ = ["LeakyReLU", "ReLU", "Sigmoid", "Tanh"]


class _Elementwise(Module):
    """An activation whose derivative is a function of its output (or input)."""

    def __init__(self) -> None:
        super().__init__()
        self._saved: np.ndarray | None = None

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (JSON-able; none here)."""
        return {}

    def _dy(self, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        name = type(self).__name__
        check_cached(self._saved, name)
        assert self._saved is not None
        return check_dy(dy, self._saved.shape, name), self._saved


class ReLU(_Elementwise):
    """``max(net, 0)``; derivative 1 where ``net > 0``, else 0. Shapes: any → same."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._saved = y = F.relu(x)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return F.relu_backward(*self._dy(dy))


class LeakyReLU(_Elementwise):
    """``net`` if positive, else ``negative_slope·net``. Shapes: any → same."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._saved = x
        return F.leaky_relu(x, self.negative_slope)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return F.leaky_relu_backward(*self._dy(dy), self.negative_slope)

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (JSON-able)."""
        return {"negative_slope": self.negative_slope}

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(_Elementwise):
    """``σ(net) = 1/(1+e^{-net})`` (overflow-free); ``σ' = σ(1-σ)``. Shapes: any → same."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._saved = y = F.sigmoid(x)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return F.sigmoid_backward(*self._dy(dy))


class Tanh(_Elementwise):
    """``tanh(net)``; derivative ``1 - tanh²``. Shapes: any → same."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._saved = y = F.tanh(x)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return F.tanh_backward(*self._dy(dy))
