"""What the ONNX modules share: the lazy import of ``onnx`` and float32 attributes."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.errors import MissingDependencyError

#: the lowest opset :func:`export` writes (BatchNormalization, Softmax and the others
#: in their current form)
MIN_OPSET = 17


def require_onnx() -> Any:
    """The ``onnx`` package, or an error saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError(
            "ONNX support needs the onnx package: pip install 'cnnlab[onnx]'"
        ) from None
    return onnx


def f32(value: float) -> float:
    """A float32 attribute as the shortest decimal that rounds to it (1e-05, not
    9.99999974738e-06): ONNX stores float attributes in float32."""
    return float(str(np.float32(value)))
