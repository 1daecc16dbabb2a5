"""The convolution layer: parameters and state around :mod:`cnnlab.functional.conv`."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab import init
from cnnlab._validate import FLOAT_DTYPES, float_array, pair, positive_int
from cnnlab.functional.conv import ConvCache, conv2d_backward, conv2d_forward, conv_padding
from cnnlab.nn.module import Module, Parameter

__all__ = ["Conv2d"]


class Conv2d(Module):
    """2-D convolution (cross-correlation) over a batch, as ``torch.nn.Conv2d``.

    Parameters
    ----------
    in_channels, out_channels : int
        ``C`` and ``F``; both must be divisible by ``groups``.
    kernel_size : int or (int, int)
    stride, dilation : int or (int, int), optional
    padding : int, (int, int), 'valid' or 'same', optional
        'same' needs stride 1 (as in PyTorch).
    groups : int, optional
    bias : bool, optional
        Add a learned bias per filter.
    dtype : float32 (default) or float64
        Parameter dtype; inputs must have the same dtype.
    rng : numpy Generator, optional
        Source of the initial weights (default: :func:`cnnlab.init.default_generator`).

    Attributes
    ----------
    weight : Parameter
        ``(out_channels, in_channels // groups, kh, kw)``, initialised as PyTorch does:
        ``U(-1/√fan_in, 1/√fan_in)`` with ``fan_in = in_channels/groups · kh · kw``.
    bias : Parameter or None
        ``(out_channels,)``, same bound (the weight's fan-in).
    needs_input_grad : bool
        When False, :meth:`backward` only accumulates the parameter gradients and
        returns None instead of ``dE/dx``. The first layer of a network never needs the
        error of its input (the image), and this skips a third of its backward work
        (PyTorch skips it too, since the input does not require grad).

    Shapes
    ------
    Input ``(N, C, H, W)``; output ``(N, F, OH, OW)`` with
    ``OH = floor((H + 2p - d·(k-1) - 1) / s) + 1`` (per axis).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        dtype: Any = np.float32,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.dilation = pair(dilation, "dilation")
        self.groups = positive_int(groups, "groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide in_channels ({in_channels}) and "
                f"out_channels ({out_channels})"
            )
        conv_padding(padding, self.kernel_size, self.stride, self.dilation)  # validate now
        self.padding: tuple[int, int] | str = (
            padding if isinstance(padding, str) else pair(padding, "padding", minimum=0)
        )
        if np.dtype(dtype) not in FLOAT_DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        fan_in = init.fans(shape)[0]
        self.weight = Parameter(init.torch_default(shape, dtype=dtype, rng=rng))
        self.bias: Parameter | None = (
            Parameter(init.torch_default((out_channels,), fan_in=fan_in, dtype=dtype, rng=rng))
            if bias
            else None
        )
        self.needs_input_grad = True
        self._cache: ConvCache | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``y = correlate(pad(x), weight) + bias``; remembers what backward needs."""
        x = float_array(x, "Conv2d input", ndim=4)
        if x.dtype != self.weight.data.dtype:
            raise ValueError(
                f"Conv2d input has dtype {x.dtype} but the layer's parameters are "
                f"{self.weight.data.dtype}; convert one of them, e.g. "
                f"model.astype(np.{x.dtype}) or x.astype(np.{self.weight.data.dtype})"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2d expects input with {self.in_channels} channels (N, "
                f"{self.in_channels}, H, W), got shape {x.shape}"
            )
        bias = None if self.bias is None else self.bias.data
        y, self._cache = conv2d_forward(
            x,
            self.weight.data,
            bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            keep_fields=self.training,  # only training runs the backward pass that reads them
        )
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray | None:  # type: ignore[override]
        # None only when needs_input_grad is False: the first layer, whose dx nobody reads
        """Return ``dE/dx`` (None if ``needs_input_grad`` is False); ADD into the grads."""
        if self._cache is None:
            raise ValueError("Conv2d.backward called before forward; call the layer first")
        dx, dw, db = conv2d_backward(dy, self._cache, need_dx=self.needs_input_grad)
        self.weight.grad += dw
        if self.bias is not None and db is not None:
            self.bias.grad += db
        return dx

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (JSON-able; no weights).

        ``type(layer)(**layer.config())`` makes a layer of the same architecture and
        dtype; :func:`cnnlab.save` stores it so :func:`cnnlab.load` can rebuild the model.
        """
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
            "bias": self.bias is not None,
            "dtype": self.weight.dtype.name,
        }

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s
