"""cnnlab: convolutional neural networks from scratch on NumPy.

The convolution layer's backward pass is written to read like its derivation
(``cnnlab.functional.conv``), and every gradient is tested against PyTorch.
"""

from __future__ import annotations

from cnnlab import functional, gradcheck, nn

# ``cnnlab.gradcheck`` is both the module (with the CLI hooks) and, being callable,
# the function: ``cnnlab.gradcheck(fn_or_module, inputs, ...)``.

__version__ = "0.1.0"

__all__ = ["__version__", "functional", "gradcheck", "nn"]
