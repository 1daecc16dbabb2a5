"""The compiled kernels' start-up cost: first compile on a machine, then the cached load.

Each figure is a fresh interpreter that imports cnnlab and runs one LeNet-5 training
step (batch 64, float32 and float64), which calls every kernel once: first with an
empty numba cache (``NUMBA_CACHE_DIR`` pointing at a new folder: everything compiles),
then again with that cache filled (the kernels are loaded), then on the NumPy path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

STEP = """
import numpy as np
from cnnlab import models, nn, optim
from cnnlab.functional import kernels
assert kernels.backend() == {engine!r}, kernels.backend()
for dtype in ("float32", "float64"):
    model = models.lenet5(dtype=dtype); model[0].needs_input_grad = False
    x = np.zeros((64, 1, 28, 28), dtype=dtype); y = np.zeros(64, dtype=np.int64)
    loss_fn = nn.CrossEntropyLoss(); opt = optim.Adam(model.parameters())
    loss_fn(model(x), y); model.backward(loss_fn.backward()); opt.step()
"""


def seconds(engine: str, cache: str) -> float:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, CNNLAB_KERNELS=engine)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", STEP.format(engine=engine)], check=True, env=env)
    return time.perf_counter() - start


def run(quick: bool = False) -> list[str]:
    try:
        import numba  # noqa: F401
    except ImportError:
        print("numba is not installed: no compiled kernels to time")
        return []
    with tempfile.TemporaryDirectory() as cache:
        cold = seconds("numba", cache)
        warm = min(seconds("numba", cache) for _ in range(3))
    reference = min(seconds("numpy", cache) for _ in range(3))
    rows = [
        "| fresh process: import + one LeNet-5 step in float32 and float64 | seconds |",
        "|---|---|",
        f"| numba kernels, empty cache (every kernel compiles) | {cold:.1f} |",
        f"| numba kernels, cache filled (loaded) | {warm:.1f} |",
        f"| NumPy path | {reference:.1f} |",
    ]
    for row in rows[2:]:
        print(row, flush=True)
    return rows
