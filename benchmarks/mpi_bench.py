"""Data-parallel LeNet-5 training on N processes: cnnlab over MPI beside PyTorch's
``DistributedDataParallel`` (gloo backend, a localhost TCP rendezvous).

``python benchmarks/mpi_bench.py [--quick]`` launches, for each global batch and N,
``mpiexec -n N`` of this file in worker mode, once per library, alternating, and
prints images/s (the global batch, whatever N is) and their ratio. Both sides train
the same LeNet-5 (Adam) on the same random 28×28 batch; each rank computes its
contiguous shard (``cnnlab.distributed.shard_bounds``). Each process runs BLAS /
torch on one thread, so N processes use N cores: N = 2 uses the machine's 2 cores and
N = 4 oversubscribes them. (One thread each also keeps the comparison clear of the
machine's other load: a 2-thread OpenBLAS that shares its cores with other jobs is
several times slower than a 1-thread one.) The figure of a run is the median step time over
``steps`` timed steps after a warm-up, between two barriers.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
CORES = 2
#: threads per process: cnnlab's (the compiled kernels' or BLAS's) and torch's
THREADS = 1


def _rank_and_size() -> tuple[int, int]:
    return int(os.environ.get("PMI_RANK", "0")), int(os.environ.get("PMI_SIZE", "1"))


def _data(batch: int):  # type: ignore[no-untyped-def]
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    return x, rng.integers(0, 10, batch)


def _time_steps(step, barrier, steps: int) -> float:  # type: ignore[no-untyped-def]
    """Seconds per step: the median of ``steps`` steps, each between barriers."""
    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        barrier()
        start = time.perf_counter()
        step()
        barrier()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def worker_cnnlab(batch: int, steps: int) -> float:
    from cnnlab.distributed import world
    from cnnlab.functional import kernels

    w = world()
    # THREADS threads: numba's with the compiled kernels (BLAS then on one), else BLAS's
    with kernels.threads(THREADS):
        return _run_cnnlab(w, batch, steps)


def _run_cnnlab(w: Any, batch: int, steps: int) -> float:
    from cnnlab import models, nn, optim
    from cnnlab.distributed import ShardedModel

    x, y = _data(batch)
    model = models.lenet5()
    model[0].needs_input_grad = False  # as the training loop does
    runner = ShardedModel(model, w)
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad()
        loss_fn(runner(x), y)
        runner.backward(loss_fn.backward())
        opt.step()

    return _time_steps(step, w.barrier, steps)


def worker_torch(batch: int, steps: int, port: int) -> float:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    sys.path.insert(0, str(HERE.parent))
    from cnnlab.distributed import shard_bounds
    from lenet_bench import torch_lenet5

    rank, size = _rank_and_size()
    torch.set_num_threads(THREADS)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size
    )
    x, y = _data(batch)
    lo, hi = shard_bounds(batch, size, rank)
    tx, ty = torch.from_numpy(x[lo:hi]), torch.from_numpy(y[lo:hi])
    torch.manual_seed(0)
    model = DistributedDataParallel(torch_lenet5())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(tx), ty).backward()
        opt.step()

    seconds = _time_steps(step, dist.barrier, steps)
    dist.destroy_process_group()
    return seconds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def images_per_s(library: str, ranks: int, batch: int, steps: int) -> float:
    """Launch one ``mpiexec -n ranks`` job of ``library``; its images/s."""
    mpiexec = Path(sys.executable).parent / "mpiexec"
    if not mpiexec.is_file():
        raise SystemExit(f"no mpiexec at {mpiexec}: pip install 'cnnlab[mpi]'")
    command = [str(mpiexec), "-n", str(ranks), sys.executable, str(HERE), "--worker", library]
    command += ["--batch", str(batch), "--steps", str(steps), "--port", str(_free_port())]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    seconds = float(next(ln.split()[1] for ln in out.splitlines() if ln.startswith("SECONDS")))
    return batch / seconds


def run(quick: bool = False) -> list[str]:
    cases = [(64, 1), (64, 2)] if quick else [(b, n) for b in (64, 256) for n in (1, 2, 4)]
    repeats, steps = (1, 10) if quick else (3, 30)
    rows = [
        "| LeNet-5 training, global batch | ranks | cnnlab img/s | torch DDP img/s "
        "| ratio | cnnlab vs its 1 rank |",
        "|---|---|---|---|---|---|",
    ]
    print("\n".join(rows), flush=True)
    single: dict[int, float] = {}
    for batch, ranks in cases:
        ours, theirs = [], []
        for _ in range(repeats):  # alternating, so that a change of load hits both
            ours.append(images_per_s("cnnlab", ranks, batch, steps))
            theirs.append(images_per_s("torch", ranks, batch, steps))
        a, b = statistics.median(ours), statistics.median(theirs)
        single.setdefault(batch, a)
        rows.append(
            f"| {batch} | {ranks}{' (oversubscribed)' if ranks > CORES else ''} | {a:,.0f} "
            f"| {b:,.0f} | {a / b:.2f} | {a / single[batch]:.2f} |"
        )
        print(rows[-1], flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="two cases, a smoke run")
    parser.add_argument("--worker", choices=("cnnlab", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=30, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "cnnlab":
        seconds = worker_cnnlab(args.batch, args.steps)
    elif args.worker == "torch":
        seconds = worker_torch(args.batch, args.steps, args.port)
    else:
        print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout}")
        run(args.quick)
        return 0
    if _rank_and_size()[0] == 0:
        print(f"SECONDS {seconds}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
