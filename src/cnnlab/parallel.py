"""Data parallelism: one model, the batch split over worker processes.

A training step spends much of its time in NumPy calls on medium-sized arrays (copies of
receptive fields, pooling, element-wise layers) that run on one core. Threads do not
help much: each call holds Python's interpreter lock while it is set up, and with
LeNet-sized layers that is a large share of the step (measured: two LeNet steps of 32
images in two threads take 1.6x one step; in two processes, 1.0x). So
:class:`DataParallel` runs ``workers - 1`` forked worker processes beside the calling
process; each runs its own copy (*replica*) of the model on its slice of the batch while
the caller runs the model itself on the first slice.

Per step, the parameter values go to the workers through shared memory, and so do the
input slices and the workers' gradients, which are added into the model's in a fixed
order: a run is reproducible for a given number of workers (it differs from a
one-worker run only by rounding, the batch sums being added in another order).
Outputs, error maps and input gradients travel through pipes. Each process runs BLAS
on one thread meanwhile, so the machine is not oversubscribed. Random layers stay
reproducible: before each forward pass every :class:`~cnnlab.nn.Dropout` of a replica
gets a generator seeded from the model's own, and the model's buffers (BatchNorm's
running statistics) are sent along with the parameters.

Batch normalisation in training mixes the samples of a batch (each is normalised with
the batch's statistics) and updates running statistics: split over processes, each slice
would be normalised with its own statistics and the updates would stay in the replicas.
:class:`DataParallel` refuses such a model (with ``workers=1`` it runs unchanged); in
evaluation mode, with running statistics, BatchNorm treats samples independently and
runs in parallel like any layer.

Workers are started with the ``fork`` start method (Linux); they ignore SIGINT (the
caller decides what an interrupt means) and end with the caller.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
import weakref
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from cnnlab import init
from cnnlab._validate import positive_int
from cnnlab.nn import BatchNorm1d, BatchNorm2d, Dropout, Module

__all__ = ["DataParallel"]

_blas: list[Any] | None = None


def _blas_libraries() -> list[Any]:
    """threadpoolctl's handles on the loaded BLAS libraries (found once)."""
    global _blas
    if _blas is None:
        _blas = list(ThreadpoolController().select(user_api="blas").lib_controllers)
    return _blas


class _OneBlasThread:
    """While active, BLAS runs on one thread in this process (set and restored directly:
    cheaper than a threadpoolctl limit per call, which matters twice a step)."""

    def __enter__(self) -> None:
        self.saved = [(lib, lib.num_threads) for lib in _blas_libraries()]
        for lib, _ in self.saved:
            lib.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        for lib, threads in self.saved:
            lib.set_num_threads(threads)


Layout = list[tuple[int, tuple[int, ...], str]]  # per parameter: (offset, shape, dtype)


def _layout(params: list[Any]) -> tuple[Layout, int]:
    """Where each parameter lives in a packed buffer, and the buffer's size in bytes."""
    layout, offset = [], 0
    for p in params:
        layout.append((offset, tuple(p.data.shape), p.data.dtype.str))
        offset += p.data.nbytes + (-p.data.nbytes) % 8
    return layout, max(offset, 8)


def _views(buffer: Any, layout: Layout) -> list[np.ndarray]:
    return [
        np.ndarray(shape, dtype=np.dtype(dt), buffer=buffer, offset=offset)
        for offset, shape, dt in layout
    ]


class _Shared:
    """A named shared-memory block, grown (re-created under a new name) on demand."""

    def __init__(self) -> None:
        self.block: SharedMemory | None = None

    def ensure(self, nbytes: int) -> SharedMemory:
        if self.block is None or self.block.size < nbytes:
            self.close()
            self.block = SharedMemory(create=True, size=max(nbytes, 8))
        return self.block

    def close(self) -> None:
        if self.block is not None:
            try:
                self.block.close()
            except BufferError:  # a view of it is still alive; the mapping goes with it
                pass
            try:
                self.block.unlink()
            except FileNotFoundError:  # already gone (e.g. the system cleaned up)
                pass
            self.block = None


def _attach(cache: dict[str, SharedMemory], name: str) -> SharedMemory:
    if name not in cache:  # the caller replaced the block: let go of the old ones
        for key, old in list(cache.items()):
            try:
                old.close()
                del cache[key]
            except BufferError:  # the replica still holds views of it: retried later
                pass
        # the creator owns (and unlinks) the block; forked workers share its resource
        # tracker, so attaching here registers nothing new
        cache[name] = SharedMemory(name=name)
    return cache[name]


#: how long a waiting side polls before it blocks: waking a process blocked on a pipe
#: costs tens of microseconds here, several times a step
SPIN_SECONDS = 0.002


def _recv(conn: Connection) -> Any:
    """``conn.recv()``, polling for a moment first (a short wait is the common case)."""
    deadline = time.perf_counter() + SPIN_SECONDS
    while not conn.poll(0) and time.perf_counter() < deadline:
        pass
    return conn.recv()


def _worker(conn: Connection, replica: Module) -> None:
    """A worker process: run the replica on what the caller sends, until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for lib in _blas_libraries():
        lib.set_num_threads(1)
    # attached shared blocks, by role
    params: dict[str, SharedMemory] = {}
    grads: dict[str, SharedMemory] = {}
    inputs: dict[str, SharedMemory] = {}
    modules = dict(replica.named_modules())
    while True:
        try:
            message = _recv(conn)
        except EOFError:  # the caller is gone
            return
        kind = message[0]
        if kind == "stop":
            return
        try:
            if kind == "forward":
                _, param_name, layout, (x_name, x_shape, x_dtype, a, b), flags, buffers = message
                # the replica's values ARE the shared block (the caller writes them
                # between steps): no copy
                values = _views(_attach(params, param_name).buf, layout)
                for p, v in zip(replica.parameters(), values, strict=True):
                    p.data = v
                for name, (training, needs_dx, seed) in flags.items():
                    module = modules[name]
                    object.__setattr__(module, "training", training)
                    if needs_dx is not None:
                        module.needs_input_grad = needs_dx
                    if seed is not None and isinstance(module, Dropout):
                        module.rng = np.random.default_rng(seed)
                for name, attribute, value in buffers:  # the model's, as of this step
                    setattr(modules[name], attribute, value)
                # a view: the caller rewrites the block only for the next forward pass
                x = np.ndarray(x_shape, np.dtype(x_dtype), buffer=_attach(inputs, x_name).buf)
                conn.send(("ok", replica(x[a:b])))
            elif kind == "backward":
                _, grad_name, layout, dy = message
                # gradients accumulate straight into the shared block the caller reads
                out = _views(_attach(grads, grad_name).buf, layout)
                for p, g in zip(replica.parameters(), out, strict=True):
                    p.grad = g
                replica.zero_grad()
                conn.send(("ok", replica.backward(dy)))
        except BaseException as error:  # report it; the caller raises it
            try:
                conn.send(("error", error))
            except Exception:
                conn.send(("error", RuntimeError(f"{type(error).__name__}: {error}")))


def _shutdown(connections: list[Connection], processes: list[Any], blocks: list[_Shared]) -> None:
    for conn in connections:
        try:
            conn.send(("stop",))
        except (OSError, ValueError):
            pass
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.terminate()
    for block in blocks:
        block.close()


class DataParallel:
    """Run ``model`` on ``workers`` slices of each batch at once, one process per slice.

    Use it in place of the model for the forward and backward passes of a training
    step; the optimizer keeps working on ``model.parameters()``::

        runner = DataParallel(model, workers=2)
        model.zero_grad()
        loss = loss_fn(runner(x), y)
        runner.backward(loss_fn.backward())  # adds into the model's .grad
        opt.step()

    The caller's process runs the model itself on the first slice; ``workers - 1``
    forked processes run replicas on the others. Call :meth:`close` (or use it as a
    context manager) to end the workers early; they also end with the caller.

    Parameters
    ----------
    model : Module
        Any module whose forward and backward treat samples independently. Every
        cnnlab layer does, except BatchNorm in training mode (or without running
        statistics), which normalises each sample with the whole batch's statistics:
        such a model is refused with more than one worker.
    workers : int
        Slices, each run by its own process. 1 runs the model itself, unchanged.

    Shapes
    ------
    As ``model``: the batch axis (0) is split, the results are joined along it.
    """

    def __init__(self, model: Module, workers: int = 2) -> None:
        if not isinstance(model, Module):
            raise ValueError(f"DataParallel needs a cnnlab Module, got {type(model).__name__}")
        self.model = model
        self.workers = positive_int(workers, "workers")
        if self.workers > 1 and "fork" not in mp.get_all_start_methods():
            raise ValueError(
                "workers > 1 needs the 'fork' start method (Linux); use workers=1 here"
            )
        if self.workers > 1:
            self._refuse_batch_statistics()
        self._connections: list[Connection] = []
        self._processes: list[Any] = []
        self._params, self._inputs = _Shared(), _Shared()
        self._grads: list[_Shared] = []
        self._sizes: list[int] = []  # samples per slice in the last forward pass
        self._layout: tuple[Layout, int] = ([], 0)  # of the parameters, in that pass
        self._modules: list[tuple[str, Module]] = []  # as the workers' replicas have them
        self._finalizer: weakref.finalize | None = None

    def _refuse_batch_statistics(self) -> None:
        """Raise if a BatchNorm layer would normalise with the batch's statistics."""
        mixing = [
            (f"layer {name}" if name else "the model") + f" ({type(module).__name__})"
            for name, module in self.model.named_modules()
            if isinstance(module, (BatchNorm1d, BatchNorm2d))
            and (module.training or module.running_mean is None)
        ]
        if mixing:
            raise ValueError(
                f"DataParallel cannot split batches over {self.workers} workers for a model "
                "whose BatchNorm layers normalise with the batch's statistics (training mode, "
                f"or no running statistics): {', '.join(mixing)}. Each worker would normalise "
                "its slice with the slice's own statistics and update the running statistics "
                "in its copy only; train such a model with --workers 1 (workers=1), or call "
                "model.eval() first to run it for inference"
            )

    # -- worker management -------------------------------------------------------
    def _start(self, count: int) -> None:
        """Make sure ``count`` worker processes are running."""
        context = mp.get_context("fork")
        # one resource tracker for all: started before the fork, the workers inherit it,
        # and blocks they attach stay registered once, to be unlinked by this process
        resource_tracker.ensure_running()
        if not self._processes:
            self._modules = list(self.model.named_modules())
        while len(self._processes) < count:
            parent, child = context.Pipe()
            process = context.Process(
                target=_worker, args=(child, self.model), daemon=True, name="cnnlab-worker"
            )
            process.start()
            child.close()
            self._connections.append(parent)
            self._processes.append(process)
            self._grads.append(_Shared())
        if self._finalizer is not None:  # re-made so that it knows every block
            self._finalizer.detach()
        blocks = [self._params, self._inputs, *self._grads]
        self._finalizer = weakref.finalize(
            self, _shutdown, self._connections, self._processes, blocks
        )

    def close(self) -> None:
        """Stop the worker processes and free the shared memory (idempotent)."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._connections, self._processes, self._grads = [], [], []

    def __enter__(self) -> DataParallel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _lost(self, error: BaseException) -> RuntimeError:
        self.close()
        return RuntimeError(
            "a DataParallel worker process ended unexpectedly; run with workers=1 to see "
            f"the error in this process ({type(error).__name__})"
        )

    def _send(self, index: int, message: tuple) -> None:
        try:
            self._connections[index].send(message)
        except OSError as error:
            raise self._lost(error) from error

    def _gather(self, local: Any, count: int) -> list[Any]:
        """Run ``local()`` here while ``count`` workers work; every reply, in order.

        Every worker's reply is read even when something failed, so that the next step
        starts in step; then the first error is raised.
        """
        results: list[Any] = []
        failure: BaseException | None = None
        try:
            with _OneBlasThread():
                results.append(local())
        except BaseException as error:
            failure = error
        for index in range(count):
            try:
                status, payload = _recv(self._connections[index])
            except (EOFError, OSError) as error:
                raise self._lost(error) from error
            if status == "error" and failure is None:
                failure = payload
            results.append(payload)
        if failure is not None:
            raise failure
        return results

    # -- the two passes ----------------------------------------------------------
    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The model's output for the whole batch, computed slice by slice in parallel."""
        x = np.asarray(x)
        if self.workers == 1 or x.ndim == 0 or x.shape[0] < 2:
            self._sizes = []
            return self.model(x)
        self._refuse_batch_statistics()
        count = min(self.workers, x.shape[0])  # slices as np.array_split cuts them
        self._sizes = [x.shape[0] // count + (i < x.shape[0] % count) for i in range(count)]
        if len(self._processes) < count - 1:
            self._start(count - 1)
        params = self.model.parameters()
        self._layout = layout, nbytes = _layout(params)
        block = self._params.ensure(nbytes)
        for value, view in zip(params, _views(block.buf, layout), strict=True):
            view[...] = value.data
        # the other slices, one after the other, in a shared block: worker i reads its own
        rest = x[self._sizes[0] :]
        inputs = self._inputs.ensure(rest.nbytes)
        np.ndarray(rest.shape, rest.dtype, buffer=inputs.buf)[...] = rest
        buffers = [
            (name, attribute, value)
            for name, module in self._modules
            for attribute, value in module._buffers.items()
        ]
        start = 0
        for index, size in enumerate(self._sizes[1:]):
            where = (inputs.name, rest.shape, rest.dtype.str, start, start + size)
            message = ("forward", block.name, layout, where, self._flags(), buffers)
            self._send(index, message)
            start += size
        first = x[: self._sizes[0]]
        outputs = self._gather(lambda: self.model(first), count - 1)
        return np.concatenate(outputs)

    def _flags(self) -> dict[str, tuple[bool, bool | None, int | None]]:
        """For one worker: each module's mode, input-gradient switch and Dropout seed."""
        flags = {}
        for name, module in self._modules:
            needs_dx = getattr(module, "needs_input_grad", None)
            seed = None
            if isinstance(module, Dropout) and module.training:
                source = module.rng if module.rng is not None else init.default_generator()
                seed = int(source.integers(2**63))
            flags[name] = (module.training, needs_dx, seed)
        return flags

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        """Backward through every slice; the gradients are ADDED into the model's.

        Returns ``dE/dx`` for the whole batch (None where the model returns None).
        """
        if not self._sizes:
            return self.model.backward(dy)
        dy = np.asarray(dy)
        if dy.ndim == 0 or dy.shape[0] != sum(self._sizes):
            raise ValueError(
                f"dy must have the batch size of the last forward pass ({sum(self._sizes)}), "
                f"got shape {dy.shape}"
            )
        parts = np.split(dy, np.cumsum(self._sizes)[:-1])
        layout, nbytes = self._layout
        for index, part in enumerate(parts[1:]):
            block = self._grads[index].ensure(nbytes)
            self._send(index, ("backward", block.name, layout, part))
        dxs = self._gather(lambda: self.model.backward(parts[0]), len(parts) - 1)
        params = self.model.parameters()
        for index in range(len(parts) - 1):
            written = self._grads[index].block
            assert written is not None
            for p, g in zip(params, _views(written.buf, layout), strict=True):
                p.grad += g
        if any(d is None for d in dxs):
            return None
        return np.concatenate(dxs)
