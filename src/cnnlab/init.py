"""Weight initialisation, and the random generator layers draw from.

Every layer that draws random numbers (initial weights, dropout masks) takes an
optional ``rng``; without one it uses the package's default generator, which
:func:`manual_seed` resets, so ``manual_seed(0)`` followed by building a model gives the
same weights every time (like ``torch.manual_seed``).

Fan-in and fan-out follow PyTorch: for a weight of shape ``(out, in, *kernel)``,
``fan_in = in * prod(kernel)`` and ``fan_out = out * prod(kernel)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_default_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    """Reset the default generator to ``seed`` and return it."""
    global _default_generator
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    _default_generator = np.random.default_rng(int(seed))
    return _default_generator


def default_generator() -> np.random.Generator:
    """The generator layers use when they are not given one."""
    return _default_generator


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return _default_generator if rng is None else rng


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of ``shape`` ``(out, in, *kernel)``.

    Shapes
    ------
    ``shape`` has at least 2 entries: ``(out_features, in_features)`` for a linear
    layer, ``(out_channels, in_channels // groups, kh, kw)`` for a convolution.
    """
    if len(shape) < 2:
        raise ValueError(f"fan-in/fan-out need a weight of >= 2 dims, got shape {shape}")
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def uniform(
    shape: tuple[int, ...],
    bound: float,
    *,
    dtype: Any = np.float32,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Samples from U(-bound, bound) of ``shape`` in ``dtype``."""
    return _rng(rng).uniform(-bound, bound, size=shape).astype(dtype)


def torch_default(
    shape: tuple[int, ...],
    *,
    fan_in: int | None = None,
    dtype: Any = np.float32,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """PyTorch's default for Linear/Conv weights and biases: U(-1/√fan_in, 1/√fan_in).

    (PyTorch writes it as ``kaiming_uniform_(w, a=√5)``, whose bound simplifies to
    ``1/√fan_in``; biases use the same bound with the weight's fan-in, which is why a
    bias passes ``fan_in`` explicitly.)
    """
    if fan_in is None:
        fan_in = fans(shape)[0]
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return uniform(shape, bound, dtype=dtype, rng=rng)


def he_normal(
    shape: tuple[int, ...], *, dtype: Any = np.float32, rng: np.random.Generator | None = None
) -> np.ndarray:
    """He (Kaiming) normal for ReLU networks: N(0, 2/fan_in).

    Keeps the variance of activations constant through ReLU layers, as
    ``torch.nn.init.kaiming_normal_(w, nonlinearity='relu')``.
    """
    fan_in, _ = fans(shape)
    return (_rng(rng).standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)


def he_uniform(
    shape: tuple[int, ...], *, dtype: Any = np.float32, rng: np.random.Generator | None = None
) -> np.ndarray:
    """He (Kaiming) uniform for ReLU networks: U(-√(6/fan_in), √(6/fan_in))."""
    fan_in, _ = fans(shape)
    return uniform(shape, math.sqrt(6.0 / fan_in), dtype=dtype, rng=rng)


def xavier_uniform(
    shape: tuple[int, ...],
    *,
    gain: float = 1.0,
    dtype: Any = np.float32,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Glorot/Xavier uniform: U(-a, a) with ``a = gain·√(6/(fan_in+fan_out))``."""
    fan_in, fan_out = fans(shape)
    return uniform(shape, gain * math.sqrt(6.0 / (fan_in + fan_out)), dtype=dtype, rng=rng)


def xavier_normal(
    shape: tuple[int, ...],
    *,
    gain: float = 1.0,
    dtype: Any = np.float32,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Glorot/Xavier normal: N(0, gain²·2/(fan_in+fan_out))."""
    fan_in, fan_out = fans(shape)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return (_rng(rng).standard_normal(shape) * std).astype(dtype)


INITIALISERS = {
    "torch_default": torch_default,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
}
