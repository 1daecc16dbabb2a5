"""Saving and loading models without pickle: safetensors files, written atomically.

A cnnlab file is a safetensors file (named arrays plus string metadata). The metadata
holds the format name and version, the model's recipe (so :func:`load` can rebuild
it), and a SHA-256 of the array bytes, so a file altered after saving is refused
instead of silently loading wrong weights. Files are written to a temporary file in
the same folder, flushed to disk and renamed over the target: a crash never leaves a
half-written model where a good one was.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab import models
from cnnlab.errors import CheckpointError
from cnnlab.nn.module import Module

__all__ = ["FORMAT", "FORMAT_VERSION", "load", "read_file", "save", "write_file"]

FORMAT = "cnnlab"
FORMAT_VERSION = "1"


def _digest(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        a = np.ascontiguousarray(tensors[key])
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
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    meta = {str(k): str(v) for k, v in metadata.items()}
    meta.update(format=FORMAT, format_version=FORMAT_VERSION, sha256=_digest(arrays))
    atomic_write_bytes(path, lambda tmp: save_file(arrays, tmp, metadata=meta))


def read_file(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a cnnlab safetensors file, checking its format, version and checksum.

    Raises
    ------
    CheckpointError
        Missing, truncated, altered or foreign file (the message names it).
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; give the path of a saved model")
    try:
        with safe_open(str(path), framework="np") as fh:
            metadata = dict(fh.metadata() or {})
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: not a readable safetensors file (truncated or corrupt?): {exc}"
        ) from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cnnlab file (no 'format: cnnlab' in its metadata)")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: file format version {metadata.get('format_version')!r} is not supported "
            f"by this cnnlab (reads version {FORMAT_VERSION}); upgrade cnnlab"
        )
    if metadata.get("sha256") != _digest(tensors):
        raise CheckpointError(
            f"{path}: checksum mismatch — the file was altered or damaged after saving"
        )
    return tensors, metadata


def save(model: Module, path: str | Path, *, metadata: dict[str, Any] | None = None) -> Path:
    """Save a model built by :mod:`cnnlab.models` (weights + recipe) to ``path``.

    ``metadata`` values (e.g. ``{"dataset": "mnist"}``) are stored as strings (JSON for
    non-strings). Returns the path.
    """
    import cnnlab

    recipe = models.spec(model)
    meta: dict[str, str] = {
        "kind": "model",
        "model": json.dumps(recipe),
        "dtype": str(model.dtype),
        "cnnlab_version": cnnlab.__version__,
    }
    for key, value in (metadata or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    path = Path(path)
    write_file(path, model.state_dict(), meta)
    return path


def model_from(
    tensors: dict[str, np.ndarray], metadata: dict[str, str], path: Path, prefix: str = ""
) -> Module:
    """Rebuild the model recorded in ``metadata`` and load its weights from ``tensors``."""
    try:
        recipe = json.loads(metadata["model"])
        name, kwargs = recipe["name"], dict(recipe.get("kwargs", {}))
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path}: the metadata has no valid model spec") from None
    dtype = metadata.get("dtype", "float32")
    try:
        model = models.build(name, dtype=np.dtype(dtype), **kwargs)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild model {name!r}: {exc}") from None
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        model.load_state_dict(state)
    except ValueError as exc:
        raise CheckpointError(f"{path}: the weights do not fit model {name!r}: {exc}") from None
    return model


def load(path: str | Path) -> Module:
    """Load a model saved by :func:`save` (or the weights of a training checkpoint)."""
    return load_with_metadata(path)[0]


def load_with_metadata(path: str | Path) -> tuple[Module, dict[str, str]]:
    """:func:`load`, also returning the file's metadata (read and verified once)."""
    path = Path(path)
    tensors, metadata = read_file(path)
    prefix = "model." if metadata.get("kind") == "checkpoint" else ""
    return model_from(tensors, metadata, path, prefix), metadata


def load_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a cnnlab file (validated like :func:`load`)."""
    return read_file(path)[1]
