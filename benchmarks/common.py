"""Shared helpers: timing side by side, the environment report, the allocator setting."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

#: glibc settings used for both sides (set before the interpreter starts, by run.py):
#: keep freed multi-MB buffers instead of returning them to the kernel every step
ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "1073741824"}
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
#: threads of each side; CNNLAB_BENCH_THREADS=1 compares one core each (far less
#: disturbed by other jobs on a shared machine than two threads that wait for each other)
THREADS = int(os.environ.get("CNNLAB_BENCH_THREADS", "2"))


def sample(fn: Callable[[], object], min_time: float = 0.05) -> float:
    """Seconds per call of ``fn``, timed over enough calls to last ``min_time``."""
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time or calls >= 1 << 16:
            return elapsed / calls
        calls *= 2


#: pause before switching sides: OpenBLAS's and PyTorch's OpenMP worker threads spin
#: for a while after their last job, and on 2 cores the spinning pool of one side would
#: steal the CPU from the other side's threads
SETTLE = 0.3


def side_by_side(
    ours: Callable[[], object], theirs: Callable[[], object], repeats: int = 7
) -> tuple[float, float]:
    """Median seconds per call of each, alternating (after a pause and an untimed call)."""
    a, b = [], []
    for _ in range(repeats):
        for fn, times in ((ours, a), (theirs, b)):
            time.sleep(SETTLE)
            fn()
            times.append(sample(fn))
    return statistics.median(a), statistics.median(b)


def _kernels_line() -> str:
    from cnnlab.functional import kernels

    if kernels.backend() == "numpy":
        return "cnnlab kernels: numpy (the reference path)"
    import numba

    kernels.relu(np.zeros(1 << 19, dtype=np.float32))  # starts numba's thread pool
    return (
        f"cnnlab kernels: numba {numba.__version__}, {numba.get_num_threads()} threads, "
        f"{numba.threading_layer()} threading layer"
    )


def environment() -> list[str]:
    import numpy as np
    import torch

    lines = [
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus; "
        f"python {sys.version.split()[0]}; numpy {np.__version__}; torch {torch.__version__}",
        f"threads: {THREADS} for both (torch.set_num_threads; cnnlab: OpenBLAS and, "
        "for its kernels, numba)",
        _kernels_line(),
        "allocator (both sides): " + ", ".join(f"{k}={v}" for k, v in ALLOCATOR.items()),
    ]
    removed = os.environ.get("CNNLAB_BENCH_UNSET", "")
    lines.append(
        f"unset for this process only: {removed}" if removed else "OPENBLAS_* left as found"
    )
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            lines.append(
                f"BLAS: {pool.get('internal_api')} {pool.get('version')} "
                f"core {pool.get('architecture')}, {pool.get('num_threads')} threads"
            )
    except ImportError:
        lines.append("BLAS: (install threadpoolctl to see which kernel runs)")
    return lines
