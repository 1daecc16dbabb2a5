"""A training run in which one rank alone meets an error, run under ``mpiexec`` by
``test_distributed.py``: while setting up (its data cannot be read) or during
training (a callback raises). The job must end, not wait for that rank forever.

Usage: ``mpiexec -n 2 python mpi_fail.py setup|step OUT``
"""

from __future__ import annotations

import sys

import cnnlab.train.run as run
from cnnlab.distributed import world
from cnnlab.errors import DataError
from cnnlab.train import Callback, TrainConfig, fit

mode, out = sys.argv[1], sys.argv[2]
rank = world().rank


def missing(cfg):
    raise DataError("the data cannot be read on this host")


if mode == "setup" and rank == 1:
    run._load_data = missing


class FailOnRankOne(Callback):
    def after_step(self, trainer):
        if mode == "step" and rank == 1 and trainer.step == 3:
            raise RuntimeError("a bug met by this rank only")


fit(TrainConfig(epochs=1, out=out, progress=False), callbacks=[FailOnRankOne()])
