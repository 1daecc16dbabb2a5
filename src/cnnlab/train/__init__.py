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
"""

from cnnlab.evaluate import EvalResult, evaluate
from cnnlab.train.config import TrainConfig, TrainResult
from cnnlab.train.loop import Callback, CancelFit, Trainer
from cnnlab.train.run import fit

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
