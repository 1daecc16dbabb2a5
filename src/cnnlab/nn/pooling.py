"""Pooling layers around :mod:`cnnlab.functional.pool`."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.functional.pool import (
    AvgPoolCache,
    MaxPoolCache,
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
    pool_params,
)
from cnnlab.nn._base import check_cached
from cnnlab.nn.module import Module

__all__ = ["AvgPool2d", "MaxPool2d"]


class _Pool2d(Module):
    """Window geometry shared by the pooling layers, validated at construction."""

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None,
        padding: int | tuple[int, int],
    ) -> None:
        super().__init__()
        # validate now, on a shape any window fits
        self.kernel_size, self.stride, self.padding, _ = pool_params(
            (1, 1, 10**6, 10**6), kernel_size, stride, padding
        )

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (JSON-able)."""
        return {"kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding}

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Maximum over ``kernel_size`` windows, as ``torch.nn.MaxPool2d``.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int, (int, int) or None
        None (default) = ``kernel_size``: windows do not overlap.
    padding : int or (int, int)
        ``-inf`` padding on each side, at most half the kernel.

    Notes
    -----
    Backward sends each window's error to the cell that held the maximum; overlapping
    windows add up; ties go to the first maximum in row-major order (PyTorch's rule).

    Shapes
    ------
    Input ``(N, C, H, W)``; output ``(N, C, OH, OW)``, ``OH = (H + 2p - k) // s + 1``.
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__(kernel_size, stride, padding)
        self._cache: MaxPoolCache | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        y, self._cache = max_pool2d_forward(x, self.kernel_size, self.stride, self.padding)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        check_cached(self._cache, "MaxPool2d")
        assert self._cache is not None
        return max_pool2d_backward(dy, self._cache)


class AvgPool2d(_Pool2d):
    """Mean over ``kernel_size`` windows, as ``torch.nn.AvgPool2d``.

    Parameters
    ----------
    kernel_size, stride, padding
        As :class:`MaxPool2d` (zero padding).
    count_include_pad : bool
        Divide by the whole window (True, PyTorch's default) or only its non-padding
        cells.

    Shapes
    ------
    Input ``(N, C, H, W)``; output ``(N, C, OH, OW)``, ``OH = (H + 2p - k) // s + 1``.
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__(kernel_size, stride, padding)
        self.count_include_pad = bool(count_include_pad)
        self._cache: AvgPoolCache | None = None

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (JSON-able)."""
        return {**super().config(), "count_include_pad": self.count_include_pad}

    def forward(self, x: np.ndarray) -> np.ndarray:
        y, self._cache = avg_pool2d_forward(
            x, self.kernel_size, self.stride, self.padding, self.count_include_pad
        )
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        check_cached(self._cache, "AvgPool2d")
        assert self._cache is not None
        return avg_pool2d_backward(dy, self._cache)
