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

from collections.abc import Callable, Iterator, Mapping
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
        The current values; optimizers update it in place. Assigning a new array of
        the same shape is allowed and may change the dtype (as PyTorch's ``.data``
        assignment does): the gradient follows, converted to the new dtype. An array
        of another shape is refused.
    grad : ndarray
        ``dE/d(data)``, same shape and dtype, zero until a ``backward`` adds into it.
        Assigning an array of another shape or dtype is refused.

    Shapes
    ------
    ``grad.shape == data.shape`` and ``grad.dtype == data.dtype`` always.
    """

    __slots__ = ("_data", "_grad")

    def __init__(self, data: np.ndarray) -> None:
        self._data = _float_param(data, "Parameter data")
        self._grad = np.zeros_like(self._data)

    @property
    def data(self) -> np.ndarray:
        return self._data

    @data.setter
    def data(self, value: np.ndarray) -> None:
        value = _float_param(value, "Parameter data")
        if value.shape != self._data.shape:
            raise ValueError(
                f"cannot assign an array of shape {value.shape} to a parameter of shape "
                f"{self._data.shape}; a parameter keeps its shape (build a new layer, or "
                "assign values of the same shape)"
            )
        self._data = value
        if self._grad.dtype != value.dtype:  # the gradient follows, as in PyTorch
            self._grad = self._grad.astype(value.dtype)

    @property
    def grad(self) -> np.ndarray:
        return self._grad

    @grad.setter
    def grad(self, value: np.ndarray) -> None:
        if not isinstance(value, np.ndarray):
            raise ValueError(f"Parameter grad must be an ndarray, got {type(value).__name__}")
        if value.shape != self._data.shape or value.dtype != self._data.dtype:
            raise ValueError(
                f"Parameter grad must have the shape and dtype of its data "
                f"({self._data.shape}, {self._data.dtype}), got ({value.shape}, {value.dtype})"
            )
        self._grad = value

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    def zero_grad(self) -> None:
        """Set the accumulated gradient to zero (in place)."""
        self._grad[...] = 0

    def astype(self, dtype: Any) -> None:
        """Convert values (and the gradient) to ``dtype`` in place of this Parameter."""
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise ValueError(f"parameters must be float32 or float64, got {dtype}")
        self.data = self._data.astype(dtype)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


def _float_param(value: object, what: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype not in FLOAT_DTYPES:
        got = getattr(value, "dtype", type(value).__name__)
        raise ValueError(
            f"{what} must be a float32 or float64 ndarray, got {got}; convert it with "
            "np.asarray(values, dtype=np.float32)"
        )
    return value


#: a ``key_map`` of :meth:`Module.load_state_dict`: ``{their_key: our_key}`` or a function
KeyMap = Mapping[str, str | None] | Callable[[str], str | None]


def _renamed(state: Mapping[str, Any], key_map: KeyMap | None) -> dict[str, Any]:
    """``state`` with its keys renamed by ``key_map`` (None drops an entry)."""
    if not isinstance(state, Mapping):
        raise ValueError(f"state must be a dict of arrays, got {type(state).__name__}")
    if key_map is None:
        return dict(state)
    rename: Callable[[str], str | None]
    if isinstance(key_map, Mapping):
        mapping = key_map

        def rename(key: str) -> str | None:
            return mapping.get(key, key)

    elif callable(key_map):
        rename = key_map
    else:
        raise ValueError(
            f"key_map must be a dict {{their_key: our_key}} or a function, got "
            f"{type(key_map).__name__}"
        )
    out: dict[str, Any] = {}
    source: dict[str, str] = {}
    for key, value in state.items():
        new = rename(key)
        if new is None:
            continue
        if not isinstance(new, str):
            raise ValueError(f"key_map gave {new!r} for {key!r}; expected a str or None")
        if new in out:
            raise ValueError(
                f"key_map maps both {source[new]!r} and {key!r} to {new!r}; each key of the "
                "model may receive one value"
            )
        out[new], source[new] = value, key
    return out


def _converted(value: Any, target: np.ndarray, name: str) -> np.ndarray:
    """``value`` as an array of ``target``'s shape and dtype (the documented conversion)."""
    try:
        array = np.asarray(value)
    except Exception as exc:  # e.g. a torch tensor that requires grad
        raise ValueError(
            f"state dict entry {name!r} cannot be read as an array ({exc}); pass NumPy "
            "arrays (for PyTorch: tensor.detach().cpu().numpy())"
        ) from None
    if array.dtype.kind not in "iuf" or (array.dtype.kind == "f" and target.dtype.kind != "f"):
        raise ValueError(
            f"state dict entry {name!r} has dtype {array.dtype}, which cannot be loaded into "
            f"the model's {target.dtype} {name!r}; pass real numbers"
            + (" (integers for an integer entry)" if target.dtype.kind != "f" else "")
        )
    if array.shape != target.shape:
        raise ValueError(
            f"state dict entry {name!r} has shape {array.shape}, the model expects {target.shape}"
        )
    return array.astype(target.dtype, copy=False)


class Module:
    """Base class of every layer and model.

    Subclasses implement ``forward(x)`` and ``backward(dy)``; assigning a
    :class:`Parameter` or a :class:`Module` to an attribute registers it.
    ``module(x)`` calls ``forward``. State that is not trained but belongs in the state
    dict (BatchNorm's running statistics) is a *buffer*: :meth:`register_buffer`.
    """

    training: bool
    _parameters: dict[str, Parameter]
    _buffers: dict[str, np.ndarray]
    _modules: dict[str, Module]

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
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
        buffers = self.__dict__["_buffers"]
        if name in buffers:  # a registered buffer stays one: replace its array
            if not isinstance(value, np.ndarray):
                raise ValueError(
                    f"{type(self).__name__}.{name} is a buffer and must stay an ndarray, "
                    f"got {type(value).__name__}"
                )
            buffers[name] = value
            object.__setattr__(self, name, value)
            return
        params.pop(name, None)
        modules.pop(name, None)
        if isinstance(value, Parameter):
            params[name] = value
        elif isinstance(value, Module):
            modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._parameters.pop(name, None)
        self._buffers.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """Register ``value`` as state that is saved and loaded but not trained.

        Buffers appear in :meth:`state_dict` after the module's own parameters, under
        the same dotted names as in PyTorch (``1.running_mean``); :meth:`astype`
        converts the floating-point ones.
        """
        if not isinstance(value, np.ndarray):
            raise ValueError(f"buffer {name!r} must be an ndarray, got {type(value).__name__}")
        if name in self._parameters or name in self._modules:
            raise ValueError(f"{name!r} is already a parameter or child module")
        self._buffers[name] = value
        object.__setattr__(self, name, value)

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

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        """Yield ``(dotted_name, array)`` for every buffer, as PyTorch names them."""
        for name, buf in self._buffers.items():
            yield (f"{prefix}.{name}" if prefix else name), buf
        for name, child in self._modules.items():
            yield from child.named_buffers(f"{prefix}.{name}" if prefix else name)

    def _named_state(self, prefix: str = "") -> Iterator[tuple[str, Parameter | np.ndarray]]:
        """Parameters and buffers in PyTorch's state-dict order (own, then children)."""
        for name, param in self._parameters.items():
            yield (f"{prefix}.{name}" if prefix else name), param
        for name, buf in self._buffers.items():
            yield (f"{prefix}.{name}" if prefix else name), buf
        for name, child in self._modules.items():
            yield from child._named_state(f"{prefix}.{name}" if prefix else name)

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
        """Switch to evaluation mode (Dropout off; BatchNorm uses its running statistics)."""
        return self.train(False)

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the parameters (float32 for a module without any)."""
        params = self.parameters()
        return params[0].dtype if params else np.dtype(np.float32)

    def astype(self, dtype: Any) -> Module:
        """Convert all parameters and floating-point buffers to ``dtype``; returns ``self``."""
        for p in self.parameters():
            p.astype(dtype)
        for _, m in self.named_modules():
            for name, buf in list(m._buffers.items()):
                if buf.dtype in FLOAT_DTYPES:
                    setattr(m, name, buf.astype(dtype))
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter's and buffer's values, keyed by dotted name.

        The keys and their order are PyTorch's: a module's own parameters, then its own
        buffers, then each child's in registration order (``0.weight``, ``0.bias``,
        ``1.weight``, ..., ``conv1.weight`` for a child assigned as ``self.conv1``), so
        a state dict passes to and from ``torch.nn.Module.load_state_dict`` unchanged
        when the two models are built alike (for named PyTorch layers against a
        :class:`Sequential`, see :func:`cnnlab.io.map_state_dict_keys`).

        Returns
        -------
        dict of str to ndarray
            New arrays (copies): changing them does not change the model. Each keeps its
            parameter's or buffer's dtype.

        Shapes
        ------
        Each value has its parameter's shape: ``Conv2d.weight`` ``(F, C/groups, kh,
        kw)``, ``Linear.weight`` ``(out, in)``, biases ``(F,)``.

        Examples
        --------
        >>> import numpy as np, torch
        >>> sd = model.state_dict()
        >>> torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
        """
        return {
            name: (v.data if isinstance(v, Parameter) else v).copy()
            for name, v in self._named_state()
        }

    def load_state_dict(
        self,
        state: Mapping[str, Any],
        strict: bool = True,
        key_map: KeyMap | None = None,
    ) -> None:
        """Copy values from ``state`` into this module's parameters and buffers.

        Values are copied (the model never holds the caller's arrays) and **converted to
        the dtype of the parameter or buffer they go into**, as PyTorch's
        ``load_state_dict`` does: float64 weights loaded into a float32 model are
        rounded to float32, float32 into float64 are widened exactly. To keep float64
        values, convert the model first (``model.astype(np.float64)``). Integer values
        may go into integer or floating-point entries; floating-point values into an
        integer entry (e.g. a counter buffer) are refused. Nothing is written unless
        every entry fits.

        Parameters
        ----------
        state : mapping of str to array-like
            Values by key, e.g. another model's :meth:`state_dict`, a file read with
            ``safetensors.numpy.load_file``, or a PyTorch state dict (CPU tensors are
            read through ``np.asarray``; ``{k: v.numpy() for k, v in sd.items()}`` works
            too).
        strict : bool, default True
            Require the (mapped) keys to be exactly this module's keys. With False,
            missing keys keep their current values and unexpected keys are ignored.
        key_map : dict or callable, optional
            Renames ``state``'s keys to this module's before matching: a dict
            ``{their_key: our_key}`` (keys it does not name are kept as they are), or a
            function ``their_key -> our_key``. A key mapped to None is dropped (e.g.
            PyTorch's ``num_batches_tracked`` for a model that does not count batches).
            :func:`cnnlab.io.map_state_dict_keys` builds such a dict for a PyTorch model
            with named layers (``conv1.weight``) and a :class:`Sequential`
            (``0.weight``).

        Raises
        ------
        ValueError
            Keys missing or unexpected (with ``strict``), two keys mapped to the same
            name, a value whose shape differs from the model's, or a value that is not
            a real number array; the message names the keys.

        Shapes
        ------
        Every value must have exactly the shape of the entry it loads into (see
        :meth:`state_dict`).

        Examples
        --------
        >>> sd = {k: v.numpy() for k, v in torch_lenet.state_dict().items()}
        >>> model.load_state_dict(sd, key_map=cnnlab.io.map_state_dict_keys(sd, model))
        >>> model.load_state_dict(sd, key_map=lambda k: k.removeprefix("module."))
        """
        state = _renamed(state, key_map)
        own = dict(self._named_state())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise ValueError(
                f"state dict does not fit {type(self).__name__}: "
                f"missing keys {missing}, unexpected keys {unexpected}"
                + (
                    "; rename their keys with key_map= (cnnlab.io.map_state_dict_keys "
                    "matches named layers to a Sequential's by order and shape)"
                    if missing and unexpected
                    else ""
                )
            )
        updates: list[tuple[np.ndarray, np.ndarray]] = []
        for name, entry in own.items():
            if name not in state:
                continue
            target = entry.data if isinstance(entry, Parameter) else entry
            updates.append((target, _converted(state[name], target, name)))
        for target, value in updates:  # only once every entry is known to fit
            target[...] = value

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

    A layer after the first that refuses its input raises a ValueError saying which
    layer (index and type) and what it was given; the first layer's own messages are
    about the caller's input and stand as they are.

    Attributes
    ----------
    input_shape : tuple of int or None
        The shape of one sample, channels first, e.g. ``(1, 28, 28)``. When set (the
        models of :mod:`cnnlab.models` set it), an input with the right number of
        dimensions and channels but another size is refused up front with a message
        naming the shape expected (anything else wrong with the input gets the first
        layer's message). None (default): not checked.

    Shapes
    ------
    Input: whatever the first layer takes (``(N, *input_shape)`` when that is set).
    Output: whatever the last layer returns.
    """

    input_shape: tuple[int, ...] | None

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        self.input_shape = None
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
        expected = self.input_shape
        if (
            expected is not None
            and isinstance(x, np.ndarray)
            and x.ndim == len(expected) + 1
            and x.shape[1] == expected[0]
            and x.shape[2:] != expected[1:]
        ):
            spec = getattr(self, "spec", None)  # the recipe of a cnnlab.models model
            name = spec.get("name", "this model") if isinstance(spec, dict) else "this model"
            what = ""
            if len(expected) == 3:  # (C, H, W)
                c, h, w = expected
                what = f" ({h}×{w} images, {c} channel{'s' if c != 1 else ''})"
            raise ValueError(
                f"{name} expects input of shape (N, {', '.join(map(str, expected))}){what}, "
                f"got {x.shape}"
            )
        for i, layer in enumerate(self._modules.values()):
            if i == 0:
                x = layer(x)
                continue
            try:
                x = layer(x)
            except ValueError as exc:
                raise ValueError(
                    f"layer {i} ({type(layer).__name__}) of the Sequential cannot take the "
                    f"output of layer {i - 1}, of shape {getattr(x, 'shape', '?')}: {exc}"
                ) from exc
        return x

    def backward(self, dy: np.ndarray) -> np.ndarray:
        for layer in reversed(self._modules.values()):
            dy = layer.backward(dy)
        return dy
