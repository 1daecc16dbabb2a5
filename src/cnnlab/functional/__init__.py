"""Pure NumPy layer math: ``*_forward(...) -> (y, cache)`` and ``*_backward(dy, cache)``.

No state lives here; :mod:`cnnlab.nn` wraps these functions in Modules.
"""

from cnnlab.functional.conv import (
    ConvCache,
    conv2d_backward,
    conv2d_forward,
    conv_padding,
    input_grad_padding,
)
from cnnlab.functional.correlate import (
    correlate2d,
    correlate2d_reference,
    insert_zeros,
    output_size,
    pad2d,
    rot180,
)

__all__: list[str] = [
    "ConvCache",
    "conv2d_backward",
    "conv2d_forward",
    "conv_padding",
    "correlate2d",
    "correlate2d_reference",
    "input_grad_padding",
    "insert_zeros",
    "output_size",
    "pad2d",
    "rot180",
]
