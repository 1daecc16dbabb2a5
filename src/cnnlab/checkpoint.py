"""Resumable training checkpoints.

One safetensors file (see :mod:`cnnlab.io`) holds everything a run needs to continue
exactly where it stopped: the weights (``model.*``), the optimizer state (``optim.*``),
and in the metadata the training configuration, the position (completed epochs and
steps into the current epoch), the random generator's state, the metrics history and
the state of the training callbacks (e.g. the running sums of the epoch in progress,
the best validation score so far, a learning-rate schedule's position). Resuming from
it reproduces the weights of an uninterrupted run bit for bit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab import io
from cnnlab._version import __version__
from cnnlab.errors import CheckpointError
from cnnlab.nn.module import Module
from cnnlab.optim import Optimizer

__all__ = ["Checkpoint", "load_checkpoint", "save_checkpoint"]


@dataclass
class Checkpoint:
    """The state of a run at a step boundary."""

    config: dict[str, Any]
    epoch: int  #: epochs completed
    step: int  #: steps completed within epoch ``epoch`` (0 at an epoch boundary)
    rng_state: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    callbacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_state: dict[str, np.ndarray] = field(default_factory=dict)
    optim_state: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


def save_checkpoint(
    path: str | Path,
    model: Module,
    optimizer: Optimizer,
    *,
    config: dict[str, Any],
    epoch: int,
    step: int,
    rng_state: dict[str, Any],
    history: list[dict[str, Any]],
    callbacks: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write a checkpoint atomically (the previous one stays intact until the rename).

    ``callbacks`` maps a callback's name to its JSON-able state.
    """
    from cnnlab.models import spec

    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"optim.{k}": v for k, v in optimizer.state_dict().items()})
    metadata = {
        "kind": "checkpoint",
        "model": json.dumps(spec(model)),
        "dtype": str(model.dtype),
        "dataset": str(config.get("dataset")),
        "cnnlab_version": __version__,
        "config": json.dumps(config),
        "optimizer": json.dumps(optimizer.hyperparameters()),
        "epoch": str(epoch),
        "step": str(step),
        "rng_state": json.dumps(rng_state),
        "history": json.dumps(history),
        "callbacks": json.dumps(callbacks or {}),
    }
    if config.get("data_dir"):  # where the data came from, for ``cnnlab eval``
        metadata["data_dir"] = str(config["data_dir"])
    path = Path(path)
    io.write_file(path, tensors, metadata)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        Missing, damaged or altered file, or a saved model rather than a checkpoint.
    """
    path = Path(path)
    tensors, metadata = io.read_file(path)
    if metadata.get("kind") != "checkpoint":
        raise CheckpointError(
            f"{path}: this is a saved model, not a training checkpoint; "
            "resume from the run directory's checkpoint.safetensors"
        )
    try:
        return Checkpoint(
            config=json.loads(metadata["config"]),
            epoch=int(metadata["epoch"]),
            step=int(metadata["step"]),
            rng_state=json.loads(metadata["rng_state"]),
            history=json.loads(metadata["history"]),
            callbacks=json.loads(metadata.get("callbacks", "{}")),
            model_state={k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
            optim_state={k[6:]: v for k, v in tensors.items() if k.startswith("optim.")},
            metadata=metadata,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: checkpoint metadata is incomplete ({exc})") from None
