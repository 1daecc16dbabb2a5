"""Optimizers (:mod:`cnnlab.optim.optimizers`) and learning-rate schedules
(:mod:`cnnlab.optim.lr_scheduler`), as ``torch.optim`` and ``torch.optim.lr_scheduler``."""

from cnnlab.optim import lr_scheduler
from cnnlab.optim.optimizers import (
    OPTIMIZERS,
    SGD,
    Adam,
    AdamW,
    NonFinite,
    Optimizer,
    build,
)

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adam",
    "AdamW",
    "NonFinite",
    "Optimizer",
    "build",
    "lr_scheduler",
]
