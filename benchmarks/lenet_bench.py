"""LeNet-5 training and inference throughput, cnnlab vs a PyTorch twin."""

from __future__ import annotations

import numpy as np
import torch

from common import side_by_side


def torch_lenet5() -> torch.nn.Sequential:
    T = torch.nn
    return T.Sequential(
        T.Conv2d(1, 6, 5, padding=2),
        T.ReLU(),
        T.MaxPool2d(2),
        T.Conv2d(6, 16, 5),
        T.ReLU(),
        T.MaxPool2d(2),
        T.Flatten(),
        T.Linear(400, 120),
        T.ReLU(),
        T.Linear(120, 84),
        T.ReLU(),
        T.Linear(84, 10),
    )


def bench(batch: int, dtype: str, train: bool, repeats: int, engine: str) -> tuple[float, float]:
    """Images per second of (cnnlab, torch) for one training step or one inference.

    cnnlab runs in this one process on the kernels ``engine`` ("numba" or "numpy", see
    :mod:`cnnlab.functional.kernels`) with its default threads (every core, for the
    kernels and for BLAS); PyTorch with its 2 intra-op threads.
    """
    from cnnlab import models, nn, optim
    from cnnlab.functional import kernels

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(dtype)
    y = rng.integers(0, 10, batch)
    model = models.lenet5(dtype=dtype)
    model[0].needs_input_grad = False  # as the training loop does
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=1e-3)
    twin = torch_lenet5().to(getattr(torch, dtype))
    topt = torch.optim.Adam(twin.parameters(), lr=1e-3)
    tx, ty = torch.tensor(x), torch.tensor(y)

    if train:

        def step() -> None:
            model.zero_grad()
            loss_fn(model(x), y)
            model.backward(loss_fn.backward())
            opt.step()

        def theirs() -> None:
            topt.zero_grad()
            torch.nn.functional.cross_entropy(twin(tx), ty).backward()
            topt.step()
    else:
        model.eval()

        def step() -> None:
            model(x)

        def theirs() -> None:
            with torch.no_grad():
                twin(tx)

    with kernels.use(engine):  # for the whole comparison: switching sets BLAS threads
        t_ours, t_theirs = side_by_side(step, theirs, repeats)
    return batch / t_ours, batch / t_theirs


#: (batch, train, dtype) -> the images/s ratio to reach (cnnlab ÷ PyTorch)
TARGETS = {
    (1, True, "float32"): 1.5,
    (64, True, "float32"): 1.1,
    (256, True, "float32"): 1.0,
    (64, True, "float64"): 1.5,
}


def run(quick: bool = False) -> list[str]:
    from cnnlab.functional import kernels

    cases = (
        [(64, True, "float32"), (256, False, "float32")]
        if quick
        else [
            (1, True, "float32"),
            (64, True, "float32"),
            (256, True, "float32"),
            (256, False, "float32"),
            (1, True, "float64"),
            (64, True, "float64"),
            (256, True, "float64"),
        ]
    )
    engine = kernels.backend()
    rows = [
        f"| LeNet-5 | batch | dtype | cnnlab img/s ({engine}) | torch img/s "
        "| ratio (≥ target) | NumPy path img/s | its ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for batch, train, dtype in cases:
        repeats = 3 if quick else 7
        ours, theirs = bench(batch, dtype, train, repeats, engine)
        reference, theirs_again = bench(batch, dtype, train, max(3, repeats // 2), "numpy")
        ratio = ours / theirs
        target = TARGETS.get((batch, train, dtype))
        mark = "" if target is None else (" ✓" if ratio >= target else " ✗") + f" (≥ {target})"
        rows.append(
            f"| {'train' if train else 'infer'} | {batch} | {dtype} | {ours:,.0f} | "
            f"{theirs:,.0f} | {ratio:.2f}{mark} | {reference:,.0f} | "
            f"{reference / theirs_again:.2f} |"
        )
        print(rows[-1], flush=True)
    return rows
