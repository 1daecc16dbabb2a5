"""Training: a short loop (:mod:`~cnnlab.train.loop`) plus callbacks
(:mod:`~cnnlab.train.callbacks`), assembled from a :class:`TrainConfig` by :func:`fit`.

::

    from cnnlab.train import TrainConfig, fit
    result = fit(TrainConfig(dataset="mnist", data_dir="data/mnist", epochs=5))
    result.final.accuracy      # the kept model on the test split, evaluated once at the end

Faults: a NaN or Inf in the loss, a gradient, a parameter or the optimizer's state
stops the run with a :class:`~cnnlab.errors.TrainingError` naming the step and where,
leaving the last good checkpoint untouched. SIGINT/SIGTERM finish the current step,
write a checkpoint and raise :class:`~cnnlab.errors.TrainingInterrupted`.

Started by ``mpiexec -n N`` the same run is data-parallel over N processes
(:mod:`cnnlab.distributed`): the same weights as one process, rank 0 writing the files.

The names below are imported on first use (PEP 562), as in :mod:`cnnlab`, so that
:mod:`cnnlab.train.recipes` stays light for ``cnnlab train --help``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnnlab.evaluate import EvalResult, evaluate
    from cnnlab.train.config import TrainConfig, TrainResult
    from cnnlab.train.loop import Callback, CancelFit, Trainer
    from cnnlab.train.run import fit

_WHERE = {
    "EvalResult": "cnnlab.evaluate",
    "evaluate": "cnnlab.evaluate",
    "TrainConfig": "cnnlab.train.config",
    "TrainResult": "cnnlab.train.config",
    "Callback": "cnnlab.train.loop",
    "CancelFit": "cnnlab.train.loop",
    "Trainer": "cnnlab.train.loop",
    "fit": "cnnlab.train.run",
}


def __getattr__(name: str) -> object:
    if name in _WHERE:
        import importlib

        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cnnlab.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "Callback",
    "CancelFit",
    "EvalResult",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "evaluate",
    "fit",
]
