"""Training faults: NaN/Inf diagnosis and SIGINT/SIGTERM turned into a clean stop."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.nn.module import Module

__all__ = ["SignalCatcher", "first_nonfinite", "first_nonfinite_state", "kept"]


def first_nonfinite(model: Module, x: np.ndarray) -> str:
    """Name the first layer whose output is NaN/Inf on ``x`` (a diagnostic forward).

    Runs the direct children in order, as :class:`~cnnlab.nn.Sequential` does. The
    model's buffers are restored afterwards: a diagnostic pass must not count as a
    training batch in BatchNorm's running statistics.
    """
    children = list(model.named_children())
    if not children:
        return type(model).__name__
    saved = {name: buf.copy() for name, buf in model.named_buffers()}
    try:
        for name, layer in children:
            with np.errstate(all="ignore"):
                x = layer(x)
            if not np.isfinite(x).all():
                return f"layer {name} ({type(layer).__name__})"
        return "the loss"
    finally:
        for name, buf in model.named_buffers():
            buf[...] = saved[name]


def first_nonfinite_state(model: Module, optimizer: Any) -> str | None:
    """Name the first parameter, or optimizer state array, holding NaN/Inf (else None).

    The optimizer's :meth:`~cnnlab.optim.Optimizer.nonfinite` looks (about one read of
    every number, well under 1 % of a step); this names what it found by the model's
    parameter names.
    """
    found = optimizer.nonfinite()
    if found is None:
        return None
    names = {id(p): name for name, p in model.named_parameters()}
    name = names.get(id(optimizer.params[found.param_index]))
    return str(found.describe(None if name is None else f"parameter {name}"))


class SignalCatcher:
    """Turn SIGINT/SIGTERM into a flag checked between steps (main thread only)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalCatcher:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def kept(ckpt_path: Path) -> str:
    if ckpt_path.exists():
        return f"the last good checkpoint {ckpt_path} is kept"
    return "no checkpoint had been written yet"
