"""Module, Parameter and Sequential: the containers every layer is built from.

A :class:`Module` holds :class:`Parameter` s (an array ``.data`` and its gradient
``.grad``) and child modules, registered in the order they are assigned, so names read
like PyTorch's (``conv1.weight``, ``0.bias``) and state dicts can be exchanged with it
one-to-one. There is no autograd: every layer writes its own ``backward``, which

* takes ``dy = dE/dy`` of the layer's last forward call and returns ``dx = dE/dx``;
* **adds** the parameter gradients into ``param.grad`` (``+=``, as micrograd does), so
  gradients of several backward calls accumulate until :meth:`Module.zero_grad`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from cnnlab._validate import FLOAT_DTYPES


class Parameter:
    """A trainable array and the gradient accumulated for it.

    Parameters
    ----------
    data : ndarray
        The values (float32 or float64). Stored as given (not copied).

    Attributes
    ----------
    data : ndarray
        The current values; optimizers update it in place.
    grad : ndarray
        ``dE/d(data)``, same shape and dtype, zero until a ``backward`` adds into it.

    Shapes
    ------
    ``grad.shape == data.shape`` always.
    """

    __slots__ = ("data", "grad")

    def __init__(self, data: np.ndarray) -> None:
        if not isinstance(data, np.ndarray) or data.dtype not in FLOAT_DTYPES:
            raise ValueError(
                "Parameter data must be a float32 or float64 ndarray, "
                f"got {getattr(data, 'dtype', type(data).__name__)}"
            )
        self.data = data
        self.grad = np.zeros_like(data)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def zero_grad(self) -> None:
        """Set the accumulated gradient to zero (in place)."""
        self.grad[...] = 0

    def astype(self, dtype: Any) -> None:
        """Convert values (and the gradient) to ``dtype`` in place of this Parameter."""
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise ValueError(f"parameters must be float32 or float64, got {dtype}")
        self.data = self.data.astype(dtype)
        self.grad = self.grad.astype(dtype)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class Module:
    """Base class of every layer and model.

    Subclasses implement ``forward(x)`` and ``backward(dy)``; assigning a
    :class:`Parameter` or a :class:`Module` to an attribute registers it.
    ``module(x)`` calls ``forward``.
    """

    training: bool
    _parameters: dict[str, Parameter]
    _modules: dict[str, Module]

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    # -- registration ------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        params = self.__dict__.get("_parameters")
        if params is None:
            raise AttributeError(
                f"{type(self).__name__}.__init__ must call super().__init__() "
                "before assigning attributes"
            )
        modules = self.__dict__["_modules"]
        params.pop(name, None)
        modules.pop(name, None)
        if isinstance(value, Parameter):
            params[name] = value
        elif isinstance(value, Module):
            modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    # -- the two passes ----------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    # -- traversal ---------------------------------------------------------------
    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Yield ``(name, module)`` for the direct children, in registration order."""
        yield from self._modules.items()

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Yield ``(name, module)`` for this module and all below it, depth first."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Yield ``(dotted_name, parameter)`` in registration order, as PyTorch names them."""
        for name, param in self._parameters.items():
            yield (f"{prefix}.{name}" if prefix else name), param
        for name, child in self._modules.items():
            yield from child.named_parameters(f"{prefix}.{name}" if prefix else name)

    def parameters(self) -> list[Parameter]:
        """All parameters of this module and its children, in registration order."""
        return [p for _, p in self.named_parameters()]

    # -- state -------------------------------------------------------------------
    def zero_grad(self) -> None:
        """Reset every parameter's accumulated gradient to zero."""
        for p in self.parameters():
            p.zero_grad()

    def train(self, mode: bool = True) -> Module:
        """Switch this module and its children to training mode (or eval if False)."""
        for _, m in self.named_modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Switch to evaluation mode (Dropout off)."""
        return self.train(False)

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the parameters (float32 for a module without any)."""
        params = self.parameters()
        return params[0].dtype if params else np.dtype(np.float32)

    def astype(self, dtype: Any) -> Module:
        """Convert all parameters to ``dtype`` (float32 or float64); returns ``self``."""
        for p in self.parameters():
            p.astype(dtype)
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter's values, keyed by dotted name (PyTorch's keys)."""
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        """Copy values from ``state`` into the parameters (keeping each one's dtype).

        Raises
        ------
        ValueError
            If keys are missing or unexpected (with ``strict``) or a shape differs.
        """
        own = dict(self.named_parameters())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise ValueError(
                f"state dict does not fit {type(self).__name__}: "
                f"missing keys {missing}, unexpected keys {unexpected}"
            )
        for name, param in own.items():
            if name not in state:
                continue
            value = np.asarray(state[name])
            if value.shape != param.data.shape:
                raise ValueError(
                    f"state dict entry {name!r} has shape {value.shape}, "
                    f"the model expects {param.data.shape}"
                )
            param.data[...] = value

    # -- printing ----------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        children = list(self._modules.items())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in children:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(")")
        return "\n".join(lines)


class Sequential(Module):
    """Layers applied in order; ``backward`` runs their backward passes in reverse.

    Children are named ``"0"``, ``"1"``, ... so parameter names match
    ``torch.nn.Sequential`` (``0.weight``, ``3.bias``, ...).

    Shapes
    ------
    Input: whatever the first layer takes. Output: whatever the last layer returns.
    """

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise ValueError(
                    f"Sequential takes Modules, argument {i} is {type(layer).__name__}"
                )
            setattr(self, str(i), layer)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int) -> Module:
        layers = list(self._modules.values())
        return layers[index]

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self._modules.values():
            x = layer(x)
        return x

    def backward(self, dy: np.ndarray) -> np.ndarray:
        for layer in reversed(self._modules.values()):
            dy = layer.backward(dy)
        return dy
