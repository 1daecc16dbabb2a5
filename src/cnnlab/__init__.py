"""cnnlab: convolutional neural networks from scratch on NumPy.

The convolution layer's backward pass is written to read like its derivation
(``cnnlab.functional.conv``), and every gradient is tested against PyTorch.

The submodules (``cnnlab.nn``, ``cnnlab.models``, ...) and ``cnnlab.save``/``cnnlab.load``
are imported on first use (PEP 562), so ``import cnnlab`` is instant and the ``cnnlab``
command can answer Ctrl-C cleanly from its first moment.
"""

from __future__ import annotations

from cnnlab._version import __version__

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing would cost startup time
if TYPE_CHECKING:  # what type checkers see; at run time __getattr__ imports on demand
    from cnnlab import data, distributed, explain, functional, init, models, nn, onnx, optim
    from cnnlab.gradcheck import gradcheck
    from cnnlab.io import load, save

# ``cnnlab.gradcheck`` is both the module (with the CLI hooks) and, being callable,
# the function: ``cnnlab.gradcheck(fn_or_module, inputs, ...)``. Type checkers are
# shown the function, which is what that call needs.
_SUBMODULES = frozenset(
    {"data", "explain", "functional", "gradcheck", "init", "models", "nn", "onnx", "optim"}
    | {"distributed"}
    | {"errors", "io"}  # bound by the eager imports of old, so still at hand
)
_FROM_IO = frozenset({"load", "save"})


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"cnnlab.{name}")  # also binds cnnlab.<name>
    if name in _FROM_IO:
        from cnnlab import io

        value = getattr(io, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "__version__",
    "data",
    "distributed",
    "explain",
    "functional",
    "gradcheck",
    "init",
    "load",
    "models",
    "nn",
    "onnx",
    "optim",
    "save",
]
