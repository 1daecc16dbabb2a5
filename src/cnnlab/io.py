"""Saving and loading models without pickle: safetensors files, written atomically.

A cnnlab file is a safetensors file (named arrays plus string metadata). The metadata
holds the format name and version, the model's architecture as a JSON spec of layer
types and their constructor arguments (:mod:`cnnlab.nn.spec`; no code, no pickle), and
a SHA-256 of the array bytes, so a file altered after saving is refused instead of
silently loading wrong weights. Files are written to a temporary file in the same
folder, flushed to disk and renamed over the target: a crash never leaves a
half-written model where a good one was.

Metadata of a saved model (format version 2; all values are strings, JSON where noted):

``format``, ``format_version``, ``sha256``
    ``"cnnlab"``, ``"2"``, the checksum of the arrays.
``kind``
    ``"model"`` (a training checkpoint is ``"checkpoint"``, its weights under ``model.``).
``architecture`` (JSON)
    The spec :func:`cnnlab.load` rebuilds the model from; absent for a custom
    ``Module`` subclass, which is loaded with ``cnnlab.load(path, model=...)``.
``model`` (JSON)
    ``{"name", "kwargs"}`` for a model built by name in :mod:`cnnlab.models`.
``class``, ``dtype``, ``cnnlab_version``
    The saved object's class, its parameters' dtype, the version that wrote it.
``input_shape`` (JSON)
    The input the model takes without the batch axis, e.g. ``[1, 28, 28]``, when known.

Version 1 files (cnnlab 0.2.0: models by name only, no ``architecture``) are still read.
PyTorch's safetensors files (``safetensors.torch.save_file(model.state_dict(), path)``)
hold weights only: :func:`load` reads them into a model you give it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab import models
from cnnlab._version import __version__
from cnnlab.errors import CheckpointError
from cnnlab.nn.module import KeyMap, Module, Sequential
from cnnlab.nn.spec import NotBuildableError, build_module, module_spec

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "input_shape",
    "load",
    "load_metadata",
    "load_with_metadata",
    "map_state_dict_keys",
    "read_file",
    "save",
    "write_file",
]

FORMAT = "cnnlab"
FORMAT_VERSION = "2"
#: the format versions this cnnlab reads (1: cnnlab 0.2.0, models by name only)
READABLE_VERSIONS = ("1", "2")
#: metadata keys :func:`save` writes itself (a caller's ``metadata`` may not use them)
RESERVED_KEYS = frozenset(
    {"format", "format_version", "sha256", "kind", "architecture", "model", "class", "dtype"}
    | {"cnnlab_version", "input_shape"}
)


def _contiguous(array: np.ndarray) -> np.ndarray:
    """C-contiguous, keeping 0-d arrays 0-d (``np.ascontiguousarray`` makes them 1-d, and
    BatchNorm's ``num_batches_tracked`` must come back with the shape it had)."""
    return np.require(array, requirements="C")


def _digest(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        a = _contiguous(tensors[key])
        h.update(f"{key}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then fsync and rename ``tmp_path`` over ``path``.

    The file gets the permissions a plain ``open(path, "w")`` would give it.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # after writing: ``write`` may have replaced mkstemp's 0600 file with a new one
        # (safetensors' save_file does), and the mode belongs to what is there now
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def write_file(path: str | Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Write arrays and metadata as a cnnlab safetensors file, atomically.

    ``format``, ``format_version`` and the ``sha256`` of the arrays are added to the
    metadata.
    """
    from safetensors.numpy import save_file

    path = Path(path)
    arrays = {k: _contiguous(v) for k, v in tensors.items()}
    meta = {str(k): str(v) for k, v in metadata.items()}
    meta.update(format=FORMAT, format_version=FORMAT_VERSION, sha256=_digest(arrays))
    atomic_write_bytes(path, lambda tmp: save_file(arrays, tmp, metadata=meta))


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Arrays and metadata of any safetensors file (no cnnlab checks)."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; give the path of a saved model")
    try:
        with safe_open(str(path), framework="np") as fh:
            metadata = dict(fh.metadata() or {})
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise CheckpointError(
            f"{path}: not a readable safetensors file (truncated or corrupt?): {exc}"
        ) from None
    return tensors, metadata


def _verify(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Refuse a cnnlab file of an unknown version or whose arrays fail the checksum."""
    if metadata.get("format_version") not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{path}: file format version {metadata.get('format_version')!r} is not supported "
            f"by this cnnlab (reads versions {', '.join(READABLE_VERSIONS)}); upgrade cnnlab"
        )
    if metadata.get("sha256") != _digest(tensors):
        raise CheckpointError(
            f"{path}: checksum mismatch — the file was altered or damaged after saving"
        )


def read_file(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a cnnlab safetensors file, checking its format, version and checksum.

    Raises
    ------
    CheckpointError
        Missing, truncated, altered or foreign file (the message names it).
    """
    path = Path(path)
    tensors, metadata = _read_safetensors(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cnnlab file (no 'format: cnnlab' in its metadata)")
    _verify(path, tensors, metadata)
    return tensors, metadata


def _shape(value: Any, what: str) -> tuple[int, ...]:
    if value is None:
        raise ValueError(f"{what} is not known")
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or not value
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
        or min(value) < 1
    ):
        raise ValueError(
            f"{what} must be a non-empty sequence of positive ints without the batch axis, "
            f"e.g. (1, 28, 28); got {value!r}"
        )
    return tuple(int(v) for v in value)


def save(
    model: Module,
    path: str | Path,
    *,
    metadata: Mapping[str, Any] | None = None,
    input_shape: Sequence[int] | None = None,
) -> Path:
    """Save a model: its weights and buffers, and what rebuilds it, atomically.

    A model made of :mod:`cnnlab.nn` layers (nested :class:`~cnnlab.nn.Sequential` s
    included) is stored with its architecture, so ``cnnlab.load(path)`` rebuilds it. A
    custom ``Module`` subclass is stored as its state dict (with its class name); load
    it into a new instance: ``cnnlab.load(path, model=MyNet())``. Nothing is pickled.

    Parameters
    ----------
    model : Module
        Any cnnlab module.
    path : str or Path
        The file to write (conventionally ``*.safetensors``); replaced atomically.
    metadata : mapping, optional
        Extra entries, e.g. ``{"dataset": "mnist"}``: strings are stored as they are,
        other values as JSON. The keys :data:`RESERVED_KEYS` are cnnlab's own.
    input_shape : sequence of int, optional
        The input the model takes, without the batch axis (e.g. ``(1, 28, 28)``);
        ``cnnlab eval``/``predict`` check data against it. Known already for models
        built by name in :mod:`cnnlab.models`.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        Bad ``input_shape`` or a reserved ``metadata`` key.

    Shapes
    ------
    ``input_shape`` is ``(C, H, W)`` for a network taking ``(N, C, H, W)`` images.
    """
    if not isinstance(model, Module):
        raise ValueError(f"save takes a cnnlab Module, got {type(model).__name__}")
    meta = model_metadata(model, input_shape=input_shape)
    meta["kind"] = "model"
    for key, value in (metadata or {}).items():
        if key in RESERVED_KEYS:
            raise ValueError(
                f"metadata key {key!r} is written by cnnlab.save itself; choose another name"
                + (" (or pass input_shape=...)" if key == "input_shape" else "")
            )
        meta[str(key)] = value if isinstance(value, str) else json.dumps(value)
    path = Path(path)
    write_file(path, model.state_dict(), meta)
    return path


def model_metadata(model: Module, *, input_shape: Sequence[int] | None = None) -> dict[str, str]:
    """The metadata entries that describe ``model`` (architecture, name, dtype, shape)."""
    cls = type(model)
    meta: dict[str, str] = {
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "dtype": str(model.dtype),
        "cnnlab_version": __version__,
    }
    try:
        meta["architecture"] = json.dumps(module_spec(model))
    except NotBuildableError:
        pass  # a custom Module: its state dict only; load needs an instance
    try:
        recipe: dict[str, Any] | None = models.spec(model)
    except ValueError:
        recipe = None
    if recipe is not None:
        meta["model"] = json.dumps(recipe)
        if input_shape is None:
            input_shape = models.INPUT_SHAPES.get(recipe["name"])
    if input_shape is None:  # a Sequential that knows what it takes
        input_shape = getattr(model, "input_shape", None)
    if input_shape is not None:
        meta["input_shape"] = json.dumps(list(_shape(input_shape, "input_shape")))
    return meta


def input_shape(metadata: Mapping[str, str]) -> tuple[int, ...] | None:
    """The input shape (without batch axis) a file's metadata records, or None.

    Read from ``input_shape``, else from the name of a model built by
    :mod:`cnnlab.models` (files written by cnnlab 0.2.0 record only the name).
    """
    try:
        if "input_shape" in metadata:
            return _shape(json.loads(metadata["input_shape"]), "input_shape")
        if "model" in metadata:
            name = json.loads(metadata["model"])["name"]
            return models.INPUT_SHAPES.get(name)
    except (ValueError, TypeError, KeyError):
        return None
    return None


def _into(model: Module, state: dict[str, np.ndarray], path: Path, key_map: KeyMap | None) -> None:
    try:
        model.load_state_dict(state, key_map=key_map)
    except ValueError as exc:
        raise CheckpointError(
            f"{path}: the weights do not fit the {type(model).__name__} given: {exc}"
        ) from None


def model_from(
    tensors: dict[str, np.ndarray], metadata: Mapping[str, str], path: Path, prefix: str = ""
) -> Module:
    """Rebuild the model recorded in ``metadata`` and load its weights from ``tensors``."""
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    recipe: dict[str, Any] | None = None
    if "model" in metadata:
        try:
            recipe = json.loads(metadata["model"])
            recipe = {"name": recipe["name"], "kwargs": dict(recipe.get("kwargs", {}))}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise CheckpointError(f"{path}: the metadata has no valid model spec") from None
    if "architecture" in metadata:
        try:
            model = build_module(json.loads(metadata["architecture"]))
        except ValueError as exc:
            raise CheckpointError(f"{path}: cannot rebuild the model: {exc}") from None
        what = "the model's architecture"
        if recipe is not None:
            model.spec = recipe  # as models.build gives it
    elif recipe is not None:  # a version-1 file, or a checkpoint: a model by name
        name = recipe["name"]
        try:
            model = models.build(
                name, dtype=np.dtype(metadata.get("dtype", "float32")), **recipe["kwargs"]
            )
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: cannot rebuild model {name!r}: {exc}") from None
        what = f"model {name!r}"
    else:
        cls = metadata.get("class", "a custom Module subclass")
        short = cls.rsplit(".", 1)[-1]
        raise CheckpointError(
            f"{path}: holds the weights of {cls}, a custom Module whose code is not in the "
            f"file; build the model and pass it: cnnlab.load(path, model={short}(...))"
        )
    try:
        model.load_state_dict(state)
    except ValueError as exc:
        raise CheckpointError(f"{path}: the weights do not fit {what}: {exc}") from None
    shape = input_shape(metadata)
    if shape is not None and isinstance(model, Sequential):
        model.input_shape = shape  # forward names it when a batch does not fit
    return model


def load(path: str | Path, model: Module | None = None, *, key_map: KeyMap | None = None) -> Module:
    """Load a saved model, or load a file's weights into ``model``.

    Parameters
    ----------
    path : str or Path
        A file written by :func:`save` (or a training checkpoint: its weights), or a
        plain safetensors state dict such as PyTorch's
        ``safetensors.torch.save_file(torch_model.state_dict(), path)``.
    model : Module, optional
        Load the weights into this model and return it. Required for a custom
        ``Module`` subclass and for plain state dicts (they do not say how to build the
        model); without it the model is rebuilt from the file's architecture.
    key_map : dict or callable, optional
        Renames the file's keys (only with ``model``), as in
        :meth:`Module.load_state_dict`; e.g. ``cnnlab.io.map_state_dict_keys(...)``
        for PyTorch layers named ``conv1``, ``fc1``.

    Returns
    -------
    Module
        The rebuilt model (in training mode, as a new one), or ``model``.

    Raises
    ------
    CheckpointError
        Missing, truncated or altered file (a cnnlab file's checksum does not match), a
        file from a newer cnnlab, weights that do not fit, or a model that cannot be
        rebuilt without ``model=`` (the message says what to pass).

    Notes
    -----
    Values are converted to the dtype of the parameters they load into, as in
    :meth:`Module.load_state_dict`: a float32 file loaded into a float64 model is
    widened exactly; a float64 file into a float32 model is rounded. A rebuilt model
    has the dtype it was saved with. A plain state dict carries no checksum.
    """
    return load_with_metadata(path, model, key_map=key_map)[0]


def load_with_metadata(
    path: str | Path, model: Module | None = None, *, key_map: KeyMap | None = None
) -> tuple[Module, dict[str, str]]:
    """:func:`load`, also returning the file's metadata (read and verified once)."""
    path = Path(path)
    if model is not None and not isinstance(model, Module):
        raise ValueError(f"model must be a cnnlab Module, got {type(model).__name__}")
    if key_map is not None and model is None:
        raise ValueError("key_map renames a file's keys for the model= given; pass model= too")
    tensors, metadata = _read_safetensors(path)
    if metadata.get("format") != FORMAT:  # a plain state dict (e.g. written by PyTorch)
        if model is None:
            raise CheckpointError(
                f"{path}: not a cnnlab file (no 'format: cnnlab' in its metadata), so it "
                "does not say how to build the model; if it holds a state dict (e.g. "
                "written by safetensors.torch.save_file), load it into a model of the same "
                "architecture: cnnlab.load(path, model=...)"
            )
        _into(model, tensors, path, key_map)
        return model, metadata
    _verify(path, tensors, metadata)
    prefix = "model." if metadata.get("kind") == "checkpoint" else ""
    if model is None:
        return model_from(tensors, metadata, path, prefix), metadata
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    _into(model, state, path, key_map)
    return model, metadata


def load_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a cnnlab file (validated like :func:`load`)."""
    return read_file(path)[1]


def map_state_dict_keys(state: Mapping[str, Any], model: Module) -> dict[str, str | None]:
    """Match another model's state-dict keys to ``model``'s, layer by layer, in order.

    For a PyTorch model whose layers have names (``conv1.weight``, ``fc1.bias``,
    ``bn1.running_mean``) and a cnnlab :class:`~cnnlab.nn.Sequential` of the same
    layers (``0.weight``, ``7.bias``, ...). Keys are grouped by layer (the part before
    the last dot); the layers that hold state are paired in the order they appear, and
    each pair must have the same entries (``weight``, ``bias``, ...) with the same
    shapes. PyTorch's ``num_batches_tracked`` is dropped (mapped to None) where the
    cnnlab layer has no such entry.

    Parameters
    ----------
    state : mapping of str to array-like
        Their state dict **in their model's order**: ``torch_model.state_dict()`` (or
        ``{k: v.numpy() ...}`` of it). A dict read back from a safetensors file comes
        back sorted by name, which is not layer order once names sort differently
        (``layer10`` before ``layer2``).
    model : Module
        The cnnlab model to load into.

    Returns
    -------
    dict of str to str or None
        ``{their_key: our_key}`` (None: drop), for ``key_map=`` of
        :meth:`Module.load_state_dict` or :func:`load`. Read the other way round, it
        names the PyTorch key for each of ``model.state_dict()``'s entries.

    Raises
    ------
    ValueError
        If the layers cannot be paired: a different number of layers with state, or a
        pair whose entries or shapes differ (the message names both layers).

    Shapes
    ------
    Values need only a ``.shape`` (NumPy arrays and PyTorch tensors both have one).

    Examples
    --------
    >>> sd = {k: v.numpy() for k, v in torch_lenet.state_dict().items()}
    >>> model.load_state_dict(sd, key_map=cnnlab.io.map_state_dict_keys(sd, model))
    """
    if not isinstance(state, Mapping):
        raise ValueError(f"state must be a dict of arrays, got {type(state).__name__}")
    theirs = _layer_groups({k: tuple(getattr(v, "shape", np.shape(v))) for k, v in state.items()})
    ours = _layer_groups({k: v.shape for k, v in model.state_dict().items()})
    if len(theirs) != len(ours):
        raise ValueError(
            f"cannot match the state dict's keys to {type(model).__name__}'s by order: it has "
            f"{len(theirs)} layers with weights or buffers ({_summary(theirs)}), the model has "
            f"{len(ours)} ({_summary(ours)})"
        )
    mapping: dict[str, str | None] = {}
    for (their_layer, their_entries), (our_layer, our_entries) in zip(theirs, ours):
        entries = dict(their_entries)
        if "num_batches_tracked" in entries and "num_batches_tracked" not in our_entries:
            del entries["num_batches_tracked"]
            mapping[_key(their_layer, "num_batches_tracked")] = None
        if entries != our_entries:
            raise ValueError(
                f"cannot match layer {their_layer!r} of the state dict "
                f"({_entries(their_entries)}) with the model's layer {our_layer!r} "
                f"({_entries(our_entries)}): layers are paired in order and must have the same "
                "entries and shapes; check both models have the same layers in the same order"
            )
        for leaf in entries:
            mapping[_key(their_layer, leaf)] = _key(our_layer, leaf)
    return mapping


def _key(layer: str, leaf: str) -> str:
    return f"{layer}.{leaf}" if layer else leaf


def _layer_groups(
    shapes: Mapping[str, tuple[int, ...]],
) -> list[tuple[str, dict[str, tuple[int, ...]]]]:
    """``[(layer, {leaf: shape})]`` in order of each layer's first key."""
    groups: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        layer, _, leaf = key.rpartition(".")
        groups.setdefault(layer, {})[leaf] = tuple(int(n) for n in shape)
    return list(groups.items())


def _entries(entries: Mapping[str, tuple[int, ...]]) -> str:
    return ", ".join(f"{leaf} {shape}" for leaf, shape in entries.items())


def _summary(groups: list[tuple[str, dict[str, tuple[int, ...]]]]) -> str:
    return ", ".join(repr(layer) for layer, _ in groups) or "none"
