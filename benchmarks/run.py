"""Run every benchmark: ``python benchmarks/run.py [--quick] [--only conv|floor|lenet|...]``.

Each cnnlab figure is measured beside PyTorch's in the same process and run (same
thread count, alternating, after a warm-up, median of 7), and printed as a ratio.
The process re-executes itself once to set the allocator thresholds for both sides and
to unset OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE for itself only (both are said in the
output).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import ALLOCATOR, OPENBLAS_VARS, THREADS, environment  # noqa: E402


def _reexec() -> None:
    if os.environ.get("CNNLAB_BENCH_CHILD"):
        return
    env = dict(os.environ, CNNLAB_BENCH_CHILD="1", **ALLOCATOR)
    removed = [v for v in OPENBLAS_VARS if env.pop(v, None) is not None]
    env["CNNLAB_BENCH_UNSET"] = ",".join(removed)
    env["OPENBLAS_NUM_THREADS"] = env["NUMBA_NUM_THREADS"] = str(THREADS)
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run")
    parser.add_argument(
        "--only",
        choices=("compile", "conv", "floor", "lenet", "rss", "naive", "augment"),
        action="append",
    )
    args = parser.parse_args()
    _reexec()
    import torch

    torch.set_num_threads(THREADS)
    print(f"cnnlab benchmarks, {datetime.date.today()}")
    for line in environment():
        print(line)
    sections = args.only or ["compile", "conv", "floor", "lenet", "rss", "naive", "augment"]
    for name in sections:
        module = __import__(f"{name}_bench")
        print()
        module.run(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
