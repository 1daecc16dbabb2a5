"""Data parallelism: one model, the batch split over threads.

NumPy releases the interpreter lock inside its array loops and BLAS products, so
threads that each run the model on a slice of the batch keep several cores busy through
the parts a single thread runs alone: the copies of receptive fields, pooling,
element-wise layers. Each thread runs a *replica*: a copy of the model's modules that
shares the parameter values but keeps its own caches and gradients. After the backward
pass the replicas' gradients are added into the model's in a fixed order, so a run is
reproducible for a given number of workers (it differs from a one-worker run only by
rounding: the batch sums are added in another order). While the workers run, BLAS is
limited to one thread each, so that the machine is not oversubscribed.

Random layers stay reproducible: before each forward pass every replica's
:class:`~cnnlab.nn.Dropout` gets a generator seeded from the model's own.
"""

from __future__ import annotations

import contextvars
import copy
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import ThreadpoolController

from cnnlab import init
from cnnlab._validate import positive_int
from cnnlab.nn import Dropout, Module

__all__ = ["DataParallel"]

_controller: ThreadpoolController | None = None
_controller_lock = threading.Lock()


def _blas_controller() -> ThreadpoolController:
    global _controller
    with _controller_lock:
        if _controller is None:
            _controller = ThreadpoolController()
        return _controller


class DataParallel:
    """Run ``model`` on ``workers`` slices of each batch at once, one thread per slice.

    Use it in place of the model for the forward and backward passes of a training
    step; the optimizer keeps working on ``model.parameters()``::

        runner = DataParallel(model, workers=2)
        model.zero_grad()
        loss = loss_fn(runner(x), y)
        runner.backward(loss_fn.backward())  # adds into the model's .grad
        opt.step()

    Parameters
    ----------
    model : Module
        Any module whose forward and backward treat samples independently (every
        cnnlab layer does: nothing mixes samples before the loss).
    workers : int
        Threads, each running the model on ``N / workers`` samples. 1 runs the model
        itself, unchanged.

    Shapes
    ------
    As ``model``: the batch axis (0) is split, the results are joined along it.
    """

    def __init__(self, model: Module, workers: int = 2) -> None:
        if not isinstance(model, Module):
            raise ValueError(f"DataParallel needs a cnnlab Module, got {type(model).__name__}")
        self.model = model
        self.workers = positive_int(workers, "workers")
        self._replicas: list[Module] = []
        self._active: list[Module] = []  # the replicas the last forward pass used
        self._sizes: list[int] = []  # and the samples each one got
        self._pool: ThreadPoolExecutor | None = None

    def _sync(self, count: int) -> list[Module]:
        """``count`` replicas sharing the model's current parameters, mode and flags."""
        while len(self._replicas) < count:
            self._replicas.append(copy.deepcopy(self.model))
        own = self.model.parameters()
        mine = dict(self.model.named_modules())
        for replica in self._replicas[:count]:
            for master, param in zip(own, replica.parameters(), strict=True):
                param.data = master.data  # shared values: the optimizer updates them
                if param.grad.shape == master.data.shape and param.grad.dtype == master.dtype:
                    param.grad[...] = 0
                else:
                    param.grad = np.zeros_like(master.data)
            for name, module in replica.named_modules():
                source = mine[name]
                object.__setattr__(module, "training", source.training)
                if hasattr(source, "needs_input_grad"):
                    module.needs_input_grad = source.needs_input_grad
                if isinstance(module, Dropout) and isinstance(source, Dropout):
                    seeds = source.rng if source.rng is not None else init.default_generator()
                    module.rng = np.random.default_rng(int(seeds.integers(2**63)))
        return self._replicas[:count]

    def _run(self, calls: list) -> list:
        if len(calls) == 1:
            return [calls[0]()]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="cnnlab-worker")
        with _blas_controller().limit(limits=1, user_api="blas"):
            # each call in a copy of this thread's context: np.errstate and the like hold
            futures = [self._pool.submit(contextvars.copy_context().run, c) for c in calls]
            return [f.result() for f in futures]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The model's output for the whole batch, computed slice by slice in parallel."""
        x = np.asarray(x)
        if self.workers == 1 or x.ndim == 0 or x.shape[0] < 2:
            self._active = [self.model]
            return self.model(x)
        parts = np.array_split(x, min(self.workers, x.shape[0]))
        self._active = self._sync(len(parts))
        self._sizes = [len(p) for p in parts]
        outputs = self._run(
            [lambda r=r, p=p: r(p) for r, p in zip(self._active, parts, strict=True)]
        )
        return np.concatenate(outputs)

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        """Backward through every slice; the gradients are ADDED into the model's.

        Returns ``dE/dx`` for the whole batch (None where the model returns None).
        """
        if not self._active:
            raise ValueError("DataParallel.backward called before forward; call it first")
        if self._active == [self.model]:
            return self.model.backward(dy)
        dy = np.asarray(dy)
        if dy.ndim == 0 or dy.shape[0] != sum(self._sizes):
            raise ValueError(
                f"dy must have the batch size of the last forward pass ({sum(self._sizes)}), "
                f"got shape {dy.shape}"
            )
        parts = np.split(dy, np.cumsum(self._sizes)[:-1])
        grads = self._run(
            [lambda r=r, p=p: r.backward(p) for r, p in zip(self._active, parts, strict=True)]
        )
        for master, *copies in zip(
            self.model.parameters(), *(r.parameters() for r in self._active), strict=True
        ):
            for param in copies:
                master.grad += param.grad
        if any(g is None for g in grads):
            return None
        return np.concatenate(grads)
