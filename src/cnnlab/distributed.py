"""Data-parallel training over MPI: ``mpiexec -n N cnnlab train ...``.

Every process (*rank*) holds a replica of the model and runs the same training loop
on the same batches (the loader's order and the augmentation's generators are
functions of ``(seed, epoch, step)``, so every rank draws the whole global batch
alike). Each rank runs the forward and backward passes on its own contiguous slice
(*shard*) of the batch; one ``Allreduce`` per bucket sums the gradients, and every
rank takes the same optimizer step. The global batch stays what ``--batch-size``
says, whatever N is.

Why the summed gradient is the one-process gradient
    The loss is the batch mean, ``E = (1/B) Σ_i e_i``. :class:`ShardedModel` gathers
    every shard's logits (``Allgatherv``, B×K numbers), so every rank computes the
    loss and its error map ``δ = dE/dlogits`` of the *whole* batch, exactly as one
    process does; ``δ`` already carries the ``1/B``. Each rank back-propagates its
    rows of ``δ`` (its shard holds ``b_r`` of the B samples: the gradient of
    ``(b_r/B)·mean of its shard``), and the sum over ranks is ``(1/B) Σ_i de_i/dw``.
    Uneven shards (B not a multiple of N) need no extra weighting, and float64
    weights end within rounding of a one-process run (measured: ~1e-16 after two
    epochs of the digits; the tests hold them to 1e-9).

Communication uses mpi4py's buffer API (``Allreduce``, ``Allgatherv``: no pickle):
the gradients are copied into flat buckets of at most :data:`BUCKET_BYTES`, in the
order of ``model.parameters()``, and summed in place.

Batch normalisation
    As PyTorch's ``DistributedDataParallel`` without ``SyncBatchNorm``: in training,
    each rank normalises its shard with the shard's own statistics (so a BatchNorm
    model trained on N ranks is not the one-process model; the equivalence above
    holds for models without BatchNorm). The running statistics are averaged over
    the ranks after every step (weighted by shard size), so every replica evaluates
    alike and the checkpoint holds one set.

Who does what
    Rank 0 alone writes checkpoints, the model file, metrics, plots, the progress
    bar and prints; it also validates and tests (the others wait at the next
    step's ``Allreduce``). A stop is agreed by a vote (:meth:`World.agree`, an
    ``Allreduce`` with MAX): the NaN guard and a SIGINT/SIGTERM received by any rank
    stop every rank after the same step, and rank 0 writes the resumable
    checkpoint. The checkpoint holds no per-rank state, so ``--resume`` may use
    another N (or one process).

Every rank augments the whole batch (the generator of a batch is shared, so the
result does not depend on N; the work is repeated on each rank). Random layers are
the exception: a :class:`~cnnlab.nn.Dropout` draws its mask for its own shard from
its rank's generator, so a model with Dropout trains differently for each N (the
models of :mod:`cnnlab.models` have none).

Each rank computes on its share of its host's cores (:func:`share_cores`): left to
itself every rank would start a thread per core, and the oversubscribed, spinning
threads make a step many times slower.

A rank that dies (killed, out of memory) cannot vote: ``mpiexec`` notices and ends
the whole job ("BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES"); the last
checkpoint, written atomically after every epoch, is intact and resumable.

mpi4py is imported only when the process was started by ``mpiexec`` with more than
one rank (:func:`world`); one-process runs do not need it (``pip install
'cnnlab[mpi]'`` installs it, and MPICH's ``mpiexec``).
"""

from __future__ import annotations

import os
from contextlib import contextmanager

# this module is imported on the command line's error path (which rank prints): nothing
# heavy at module level, not even typing
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    import numpy as np

    from cnnlab.nn.module import Module

__all__ = [
    "BUCKET_BYTES",
    "LOCAL",
    "ShardedModel",
    "World",
    "cores_per_rank",
    "env_rank",
    "env_world_size",
    "shard_bounds",
    "share_cores",
    "world",
]

#: largest gradient bucket summed by one Allreduce (LeNet-5's 61,706 float32: one)
BUCKET_BYTES = 4 << 20

#: environment variables in which MPI launchers announce the number of ranks
#: (MPICH/Hydra and Slurm's PMI, Open MPI)
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")
_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK")


def env_world_size() -> int:
    """Ranks the launcher started, read from the environment (1 when not under MPI).

    Needs no mpi4py: a one-process run never imports it.
    """
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def env_rank() -> int:
    """This process's rank, read from the environment (0 when not under MPI)."""
    if env_world_size() <= 1:
        return 0
    for name in _RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


class World:
    """The processes of a run: ``rank`` (0 … size-1) and ``size``, and the few
    collective operations the training loop needs. ``World()`` is one process.
    """

    def __init__(self, comm: Any = None) -> None:
        self.comm = comm
        self.rank = 0 if comm is None else int(comm.Get_rank())
        self.size = 1 if comm is None else int(comm.Get_size())

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size})"

    def agree(self, value: int) -> int:
        """The largest ``value`` over all ranks (a vote: every rank gets the same).

        Every rank must call it at the same point of the loop.
        """
        if self.comm is None:
            return int(value)
        import numpy as np
        from mpi4py import MPI

        send = np.array([value], dtype=np.int64)
        out = np.empty(1, dtype=np.int64)
        self.comm.Allreduce(send, out, op=MPI.MAX)
        return int(out[0])

    def barrier(self) -> None:
        """Wait until every rank got here."""
        if self.comm is not None:
            self.comm.Barrier()

    def abort(self, code: int) -> None:
        """End every rank of the job now (for an error that only this rank met)."""
        if self.comm is not None:
            self.comm.Abort(code)


#: the one-process world
LOCAL = World()
_world: World | None = None


def world() -> World:
    """This process's :class:`World`: MPI's ``COMM_WORLD`` when started by ``mpiexec``
    with more than one rank, else :data:`LOCAL` (mpi4py is not imported).

    Raises
    ------
    MissingDependencyError
        Started with several ranks but mpi4py is not installed.
    """
    global _world
    if _world is None:
        if env_world_size() <= 1:
            _world = LOCAL
        else:
            try:
                from mpi4py import MPI
            except ImportError:
                from cnnlab.errors import MissingDependencyError

                raise MissingDependencyError(
                    f"this process was started as one of {env_world_size()} MPI ranks, "
                    "which needs mpi4py: pip install 'cnnlab[mpi]'"
                ) from None
            comm = MPI.COMM_WORLD
            _world = World(comm) if comm.Get_size() > 1 else LOCAL
    return _world


def shard_bounds(batch: int, size: int, rank: int) -> tuple[int, int]:
    """The rows ``[lo, hi)`` of a batch of ``batch`` samples that ``rank`` of ``size``
    ranks computes: contiguous, in rank order, the first ``batch % size`` shards one
    sample longer (as :func:`numpy.array_split`); a shard is empty when
    ``batch < size``.

    Shapes
    ------
    Scalars.
    """
    base, extra = divmod(batch, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


#: thread settings a user may give; when one is set, :func:`share_cores` leaves the threads be
_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)


def cores_per_rank(world: World) -> int:
    """The CPU cores this process may use, divided among the ranks on its host (>= 1).

    Ranks on one host are found with ``MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)``.
    """
    if world.comm is None:
        return len(os.sched_getaffinity(0))
    from mpi4py import MPI

    host = world.comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        ranks_here = host.Get_size()
    finally:
        host.Free()
    return max(1, len(os.sched_getaffinity(0)) // ranks_here)


@contextmanager
def share_cores(world: World) -> Iterator[None]:
    """While active, each rank computes on :func:`cores_per_rank` threads (the compiled
    kernels' threads, or BLAS's on the NumPy path: :func:`cnnlab.functional.kernels.threads`),
    unless the user set ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``
    or ``NUMBA_NUM_THREADS``.

    Each thread pool starts as many threads as the host has cores; two ranks on two
    cores would run four spinning threads, and a LeNet-5 step then takes about 13x
    as long (measured here: 130 ms instead of 10 ms at batch 64).
    """
    if world.size == 1:
        yield
        return
    cores = cores_per_rank(world)  # a collective call: every rank makes it
    if any(os.environ.get(v) for v in _THREAD_VARIABLES):
        yield
        return
    from cnnlab.functional import kernels

    with kernels.threads(cores):  # numba's threads with the compiled kernels, else BLAS's
        yield


def _mpi_type(dtype: np.dtype) -> Any:
    import numpy as np
    from mpi4py import MPI

    return {np.dtype(np.float32): MPI.FLOAT, np.dtype(np.float64): MPI.DOUBLE}[np.dtype(dtype)]


class ShardedModel:
    """``model`` run data-parallel over the ranks of ``world``: use it in place of the
    model for the forward and backward passes of a training step (the optimizer keeps
    working on ``model.parameters()``).

    ``self(x)`` takes the *global* batch, runs the model on this rank's shard and
    returns the logits of the whole batch (gathered); ``self.backward(delta)`` takes
    the error map of the whole batch, back-propagates this rank's rows and leaves in
    every parameter's ``.grad`` the sum over all ranks (the one-process gradient), and
    averages BatchNorm's running statistics over the ranks.

    Parameters
    ----------
    model : Module
    world : World
        With ``size == 1`` the model runs unchanged.

    Shapes
    ------
    x: ``(B, ...)``; returns ``(B, K)`` as the model; ``delta``: ``(B, K)``.
    """

    def __init__(self, model: Module, world: World) -> None:
        import numpy as np

        self.model, self.world = model, world
        self._lo = self._hi = self._batch = 0
        self._out_tail: tuple[int, ...] | None = None  # the output's shape after the batch
        params = model.parameters()
        self._buckets: list[tuple[list[Any], np.ndarray]] = []  # (parameters, flat buffer)
        bucket: list[Any] = []
        size = 0
        for p in params:  # the fixed order of model.parameters()
            if bucket and (size + p.data.nbytes > BUCKET_BYTES or p.dtype != bucket[0].dtype):
                self._buckets.append(self._flat(bucket))
                bucket, size = [], 0
            bucket.append(p)
            size += p.data.nbytes
        if bucket:
            self._buckets.append(self._flat(bucket))
        self._stats = [
            (module, name)
            for _, module in model.named_modules()
            for name, value in module._buffers.items()
            if value is not None and np.issubdtype(value.dtype, np.floating)
        ]

    @staticmethod
    def _flat(params: list[Any]) -> tuple[list[Any], np.ndarray]:
        import numpy as np

        return params, np.empty(sum(p.data.size for p in params), dtype=params[0].dtype)

    @property
    def buckets(self) -> int:
        """Allreduce calls per step for the gradients."""
        return len(self._buckets)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The logits of the whole batch; this rank computes its shard's rows."""
        import numpy as np

        if self.world.size == 1:
            return self.model(x)
        self._batch = len(x)
        self._lo, self._hi = shard_bounds(self._batch, self.world.size, self.world.rank)
        if self._hi > self._lo:
            mine = self.model(x[self._lo : self._hi])
            self._out_tail = mine.shape[1:]
        elif self._out_tail is None:  # an empty shard on the first step: learn the shape
            self._out_tail = self.model(x[:1]).shape[1:]
            mine = np.empty((0, *self._out_tail), dtype=x.dtype)
        else:
            mine = np.empty((0, *self._out_tail), dtype=x.dtype)
        mine = np.ascontiguousarray(mine)
        row = int(np.prod(self._out_tail, dtype=np.int64))
        bounds = [shard_bounds(self._batch, self.world.size, r) for r in range(self.world.size)]
        counts = [(hi - lo) * row for lo, hi in bounds]
        displacements = [lo * row for lo, _ in bounds]
        out = np.empty((self._batch, *self._out_tail), dtype=mine.dtype)
        mpi_type = _mpi_type(mine.dtype)
        self.world.comm.Allgatherv(
            [mine, counts[self.world.rank], mpi_type], [out, counts, displacements, mpi_type]
        )
        return out

    def backward(self, delta: np.ndarray) -> np.ndarray | None:
        """Back-propagate this rank's rows of ``delta``; sum the gradients over ranks.

        Returns None with several ranks (the input gradient is not gathered), else
        the model's ``dE/dx``.
        """
        import numpy as np

        if self.world.size == 1:
            return self.model.backward(delta)
        if len(delta) != self._batch:
            raise ValueError(
                f"delta must have the batch size of the last forward pass ({self._batch}), "
                f"got shape {np.shape(delta)}"
            )
        if self._hi > self._lo:  # an empty shard adds nothing (its .grad stay zero)
            self.model.backward(np.ascontiguousarray(delta[self._lo : self._hi]))
        self.sum_gradients()
        self.average_statistics()
        return None

    def sum_gradients(self) -> None:
        """``p.grad`` ← the sum of ``p.grad`` over all ranks, bucket by bucket."""
        from mpi4py import MPI

        for params, flat in self._buckets:
            start = 0
            for p in params:
                flat[start : start + p.grad.size] = p.grad.ravel()
                start += p.grad.size
            self.world.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
            start = 0
            for p in params:
                p.grad[...] = flat[start : start + p.grad.size].reshape(p.grad.shape)
                start += p.grad.size

    def average_statistics(self) -> None:
        """Running statistics (BatchNorm's) ← their mean over ranks, weighted by shard."""
        if not self._stats:
            return
        import numpy as np
        from mpi4py import MPI

        values = [getattr(module, name) for module, name in self._stats]
        flat = np.concatenate([v.ravel().astype(np.float64) for v in values])
        flat *= (self._hi - self._lo) / self._batch
        self.world.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
        start = 0
        for (module, name), v in zip(self._stats, values, strict=True):
            setattr(module, name, flat[start : start + v.size].reshape(v.shape).astype(v.dtype))
            start += v.size
