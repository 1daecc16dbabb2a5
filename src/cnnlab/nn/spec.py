"""Architecture specs: a model of cnnlab layers as JSON-able data, and back.

A spec names layer types and their constructor arguments, nothing else (no weights, no
code), so :func:`cnnlab.save` can store it in a file's metadata and :func:`cnnlab.load`
can rebuild the model before loading its weights. The format::

    {"type": "Sequential", "layers": [<spec>, <spec>, ...]}     # a Sequential: its children
    {"type": "Conv2d", "config": {"in_channels": 1, ...}}       # any other layer

A layer is buildable when its class is one of :mod:`cnnlab.nn`'s own (looked up there by
name, so a layer added to ``cnnlab.nn`` later joins in) and has a ``config()`` method
returning its constructor arguments as JSON-able values: ``type(layer)(**config)``
rebuilds it. Subclasses defined elsewhere (a user's ``class MyNet(nn.Module)``, even a
subclass of ``nn.Sequential``) are not buildable: their code is not in the file.
"""

from __future__ import annotations

import json
from typing import Any

from cnnlab.nn.module import Module, Sequential

__all__ = ["NotBuildableError", "build_module", "is_buildable", "module_spec"]


class NotBuildableError(ValueError):
    """The module (or one below it) cannot be described by a spec; the message says which."""


def _layer_class(name: object) -> type[Module] | None:
    """The :mod:`cnnlab.nn` layer class called ``name``, if it has ``config()``."""
    from cnnlab import nn  # the package, complete by the time any spec is built or read

    if not isinstance(name, str) or name.startswith("_"):
        return None
    cls = getattr(nn, name, None)
    if (
        isinstance(cls, type)
        and issubclass(cls, Module)
        and cls is not Sequential
        and callable(getattr(cls, "config", None))
    ):
        return cls
    return None


def module_spec(module: Module) -> dict[str, Any]:
    """The architecture of ``module`` as JSON-able data (see the module docstring).

    Raises
    ------
    NotBuildableError
        If ``module`` or a module inside it is not a :mod:`cnnlab.nn` layer with
        ``config()`` (a custom ``Module`` subclass), naming the first such module.
    """
    return _spec(module, "")


def _where(path: str) -> str:
    return f"layer {path!r}" if path else "the model"


def _child(path: str, name: str | int) -> str:
    return f"{path}.{name}" if path else str(name)


def _spec(module: Module, path: str) -> dict[str, Any]:
    cls = type(module)
    if cls is Sequential:
        names = [name for name, _ in module.named_children()]
        if names != [str(i) for i in range(len(names))]:
            raise NotBuildableError(
                f"{_where(path)} is a Sequential whose children are named {names}, not "
                "0, 1, ...; a rebuilt Sequential would name them by position"
            )
        return {
            "type": "Sequential",
            "layers": [_spec(child, _child(path, name)) for name, child in module.named_children()],
        }
    if _layer_class(cls.__name__) is not cls:
        raise NotBuildableError(
            f"{_where(path)} is a {cls.__module__}.{cls.__qualname__}, not one of "
            "cnnlab.nn's layers, so its architecture cannot be written as a spec"
        )
    if next(module.named_children(), None) is not None:
        raise NotBuildableError(f"{_where(path)} ({cls.__name__}) has child modules added to it")
    config = module.config()  # type: ignore[attr-defined]
    try:
        json.dumps(config)
    except (TypeError, ValueError) as exc:
        raise NotBuildableError(
            f"{_where(path)} ({cls.__name__}): config() is not JSON-able: {exc}"
        ) from None
    return {"type": cls.__name__, "config": config}


def is_buildable(module: Module) -> bool:
    """Whether :func:`module_spec` can describe ``module``."""
    try:
        module_spec(module)
    except NotBuildableError:
        return False
    return True


def build_module(spec: Any) -> Module:
    """Build the module a spec describes (fresh weights, initialised as usual).

    Raises
    ------
    ValueError
        If the spec is malformed, names a layer type :mod:`cnnlab.nn` does not have, or
        gives arguments the layer refuses (the message names the layer's position).
    """
    return _build(spec, "")


def _build(spec: Any, path: str) -> Module:
    where = _where(path)
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise ValueError(f"{where}: a spec must be a dict with a 'type', got {spec!r}")
    kind = spec["type"]
    if kind == "Sequential":
        layers = spec.get("layers")
        if not isinstance(layers, list):
            raise ValueError(f"{where}: a Sequential spec needs a list of 'layers'")
        return Sequential(*(_build(s, _child(path, i)) for i, s in enumerate(layers)))
    cls = _layer_class(kind)
    if cls is None:
        raise ValueError(
            f"{where}: unknown layer type {kind!r}; this cnnlab's cnnlab.nn has no such "
            "layer (a file from a newer cnnlab? upgrade cnnlab)"
        )
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise ValueError(f"{where}: the 'config' of {kind} must be a dict, got {config!r}")
    try:
        return cls(**config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: cannot build {kind}({config}): {exc}") from None
