"""Pure NumPy layer math: ``*_forward(...) -> (y, cache)`` and ``*_backward(dy, cache)``.

No state lives here; :mod:`cnnlab.nn` wraps these functions in Modules.
"""

from cnnlab.functional.activations import (
    leaky_relu,
    leaky_relu_backward,
    log_softmax,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    softmax,
    tanh,
    tanh_backward,
)
from cnnlab.functional.batchnorm import (
    BatchNormCache,
    batch_norm_backward,
    batch_norm_forward,
)
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
    receptive_fields,
    rot180,
    weight_correlation,
)
from cnnlab.functional.linear import LinearCache, linear_backward, linear_forward
from cnnlab.functional.losses import (
    cross_entropy_backward,
    cross_entropy_forward,
    mse_backward,
    mse_forward,
)
from cnnlab.functional.pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)

__all__: list[str] = [
    "BatchNormCache",
    "ConvCache",
    "LinearCache",
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "batch_norm_backward",
    "batch_norm_forward",
    "conv2d_backward",
    "conv2d_forward",
    "conv_padding",
    "correlate2d",
    "correlate2d_reference",
    "cross_entropy_backward",
    "cross_entropy_forward",
    "input_grad_padding",
    "insert_zeros",
    "leaky_relu",
    "leaky_relu_backward",
    "linear_backward",
    "linear_forward",
    "log_softmax",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "mse_backward",
    "mse_forward",
    "output_size",
    "pad2d",
    "receptive_fields",
    "relu",
    "relu_backward",
    "rot180",
    "sigmoid",
    "sigmoid_backward",
    "softmax",
    "tanh",
    "tanh_backward",
    "weight_correlation",
]
