"""Fully connected layer and Flatten."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab import init
from cnnlab._validate import FLOAT_DTYPES, float_array, positive_int
from cnnlab.functional.linear import LinearCache, linear_backward, linear_forward
from cnnlab.nn._base import check_cached, check_dy
from cnnlab.nn.module import Module, Parameter

__all__ = ["Flatten", "Linear"]


class Linear(Module):
    """``y = x Wᵀ + b``, as ``torch.nn.Linear``.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    dtype : float32 (default) or float64
    rng : numpy Generator, optional
        Source of the initial weights (default: :func:`cnnlab.init.default_generator`).

    Attributes
    ----------
    weight : Parameter
        ``(out_features, in_features)``, ``U(-1/√in_features, 1/√in_features)`` as PyTorch.
    bias : Parameter or None
        ``(out_features,)``, same bound.

    Shapes
    ------
    Input ``(N, in_features)``; output ``(N, out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        dtype: Any = np.float32,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        if np.dtype(dtype) not in FLOAT_DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
        shape = (self.out_features, self.in_features)
        self.weight = Parameter(init.torch_default(shape, dtype=dtype, rng=rng))
        self.bias: Parameter | None = (
            Parameter(init.torch_default((out_features,), fan_in=in_features, dtype=dtype, rng=rng))
            if bias
            else None
        )
        self.needs_input_grad = True
        self._cache: LinearCache | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = float_array(x, "Linear input", ndim=2)
        if x.dtype != self.weight.data.dtype:
            raise ValueError(
                f"Linear input has dtype {x.dtype} but the layer's parameters are "
                f"{self.weight.data.dtype}; convert one of them, e.g. model.astype(np.{x.dtype})"
            )
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"Linear expects input of shape (N, {self.in_features}), got {x.shape}"
            )
        y, self._cache = linear_forward(
            x, self.weight.data, None if self.bias is None else self.bias.data
        )
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray | None:  # type: ignore[override]
        """Return ``dE/dx``; ADD ``δᵀx`` into ``weight.grad`` and ``Σδ`` into ``bias.grad``."""
        check_cached(self._cache, "Linear")
        assert self._cache is not None
        dx, dw, db = linear_backward(dy, self._cache, need_dx=self.needs_input_grad)
        self.weight.grad += dw
        if self.bias is not None and db is not None:
            self.bias.grad += db
        return dx

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (JSON-able; no weights)."""
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            "dtype": self.weight.dtype.name,
        }

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class Flatten(Module):
    """Collapse the axes from ``start_dim`` on into one (a view, no copy).

    Shapes
    ------
    ``(N, C, H, W)`` → ``(N, C·H·W)`` with the default ``start_dim=1``.
    """

    def __init__(self, start_dim: int = 1) -> None:
        super().__init__()
        self.start_dim = positive_int(start_dim, "start_dim", minimum=0)
        self._shape: tuple[int, ...] | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = float_array(x, "Flatten input")
        if x.ndim < self.start_dim:
            raise ValueError(f"Flatten(start_dim={self.start_dim}) got a {x.ndim}-D input")
        self._shape = x.shape
        return x.reshape(*x.shape[: self.start_dim], -1)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        check_cached(self._shape, "Flatten")
        assert self._shape is not None
        expected = (*self._shape[: self.start_dim], int(np.prod(self._shape[self.start_dim :])))
        return check_dy(dy, expected, "Flatten").reshape(self._shape)

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (JSON-able)."""
        return {"start_dim": self.start_dim}

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}"
