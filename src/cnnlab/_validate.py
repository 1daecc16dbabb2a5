"""Argument checks shared by the functional and nn layers.

Each check raises :class:`ValueError` naming the argument, what it got and what it
expected, so messages read the same everywhere.
"""

from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def pair(value: object, name: str, *, minimum: int = 1) -> tuple[int, int]:
    """Return ``value`` as an ``(h, w)`` pair of ints, each ``>= minimum``.

    Accepts an int or a length-2 sequence of ints (bools are refused).
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        out = (int(value), int(value))
    elif (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    ):
        out = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"{name} must be an int or a pair of ints (h, w), got {value!r}")
    if min(out) < minimum:
        raise ValueError(f"{name} must be >= {minimum} in each dimension, got {value!r}")
    return out


def float_array(
    x: object, name: str, ndim: int | None = None, *, var: str | None = None
) -> np.ndarray:
    """Check that ``x`` is a float32/float64 ndarray (of ``ndim`` dims) and return it.

    Integer, bool, complex and object arrays are refused rather than silently cast, so
    float32 work stays float32 and nothing is upcast behind the user's back. The advice
    names the variable ``var``: by default ``name`` when that is one (``w``,
    ``inputs[1]``), else ``x`` (for a ``name`` such as ``"Conv2d input"``).
    """
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a NumPy ndarray, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        if var is None:
            var = name if name.partition("[")[0].isidentifier() else "x"
        raise ValueError(
            f"{name} must have dtype float32 or float64, got {x.dtype}; "
            f"convert it with {var}.astype(np.float32)"
        )
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape} ({x.ndim}-D)")
    return x


def positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an int ``>= minimum`` (bools refused)."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def same_dtype(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Refuse two arrays of different float dtypes (nothing is cast behind the user's back)."""
    if a.dtype != b.dtype:
        raise ValueError(
            f"{name_a} has dtype {a.dtype} but {name_b} has dtype {b.dtype}; expected the "
            f"same dtype (convert one: {name_b}.astype(np.{a.dtype}) or "
            f"{name_a}.astype(np.{b.dtype}))"
        )


def array_shape(x: np.ndarray, expected: tuple[int, ...], name: str) -> np.ndarray:
    """Check that ``x`` has exactly the shape ``expected``."""
    if tuple(x.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {tuple(x.shape)}")
    return x
