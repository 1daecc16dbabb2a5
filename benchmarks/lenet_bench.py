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


def bench(batch: int, dtype: str, train: bool, repeats: int) -> tuple[float, float]:
    """Images per second of (cnnlab, torch) for one training step or one inference,
    each in one process (several processes: ``mpi_bench.py``)."""
    from cnnlab import models, nn, optim

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(dtype)
    y = rng.integers(0, 10, batch)
    model = models.lenet5(dtype=dtype)
    model[0].needs_input_grad = False  # as the training loop does
    runner = model
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=1e-3)
    twin = torch_lenet5().to(getattr(torch, dtype))
    topt = torch.optim.Adam(twin.parameters(), lr=1e-3)
    tx, ty = torch.tensor(x), torch.tensor(y)

    if train:

        def ours() -> None:
            model.zero_grad()
            loss_fn(runner(x), y)
            runner.backward(loss_fn.backward())
            opt.step()

        def theirs() -> None:
            topt.zero_grad()
            torch.nn.functional.cross_entropy(twin(tx), ty).backward()
            topt.step()
    else:
        model.eval()

        def ours() -> None:
            runner(x)

        def theirs() -> None:
            with torch.no_grad():
                twin(tx)

    t_ours, t_theirs = side_by_side(ours, theirs, repeats)
    return batch / t_ours, batch / t_theirs


def run(quick: bool = False) -> list[str]:
    cases = (
        [(64, True, 1), (256, False, 1)]
        if quick
        else [(1, True, 1), (64, True, 1), (256, True, 1), (256, False, 1)]
    )
    targets = {(64, True): 1.0, (256, True): 0.8}
    rows = [
        "| LeNet-5 | batch | cnnlab processes | dtype | cnnlab img/s | torch img/s "
        "| ratio (≥ target) |",
        "|---|---|---|---|---|---|---|",
    ]
    for dtype in ("float32",) if quick else ("float32", "float64"):
        for batch, train, workers in cases:
            ours, theirs = bench(batch, dtype, train, 3 if quick else 7)
            ratio = ours / theirs
            target = targets.get((batch, train)) if dtype == "float32" else None
            mark = "" if target is None else (" ✓" if ratio >= target else " ✗") + f" (≥ {target})"
            rows.append(
                f"| {'train' if train else 'infer'} | {batch} | {workers} | {dtype} | "
                f"{ours:,.0f} | {theirs:,.0f} | {ratio:.2f}{mark} |"
            )
            print(rows[-1], flush=True)
    return rows
