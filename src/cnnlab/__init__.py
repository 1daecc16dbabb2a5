"""cnnlab: convolutional neural networks from scratch on NumPy.

The convolution layer's backward pass is written to read like its derivation
(``cnnlab.functional.conv``), and every gradient is tested against PyTorch.
"""

from __future__ import annotations

from cnnlab import (
    data,
    explain,
    functional,
    gradcheck,
    init,
    models,
    nn,
    onnx,  # imports the onnx package only when used
    optim,
    parallel,
)
from cnnlab._version import __version__
from cnnlab.io import load, save

# ``cnnlab.gradcheck`` is both the module (with the CLI hooks) and, being callable,
# the function: ``cnnlab.gradcheck(fn_or_module, inputs, ...)``.

__all__ = [
    "__version__",
    "data",
    "explain",
    "functional",
    "gradcheck",
    "init",
    "load",
    "models",
    "nn",
    "onnx",
    "optim",
    "parallel",
    "save",
]
