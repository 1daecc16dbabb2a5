"""Augmentation cost per batch of 1×28×28 digits: cnnlab's transforms beside PyTorch.

The affine row compares a whole ``RandomAffine`` call (drawing the per-sample
parameters, building the matrices, resampling) with PyTorch's ``affine_grid`` +
``grid_sample`` on matrices already made. Crop, flip and normalise have no batched
per-sample twin in PyTorch; their rows give cnnlab's time alone.
"""

from __future__ import annotations

import numpy as np

from common import sample, side_by_side

BACKGROUND = -0.1307 / 0.3081  # MNIST's normalised black


def run(quick: bool = False) -> list[str]:
    import torch
    import torch.nn.functional as TF

    from cnnlab.data import transforms as T

    affine = T.RandomAffine(15, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=10, fill=BACKGROUND)
    others = [
        ("RandomCrop(28, padding=2)", T.RandomCrop(28, padding=2, fill=BACKGROUND)),
        ("RandomHorizontalFlip()", T.RandomHorizontalFlip()),
        ("Normalize", T.Normalize(0.1307, 0.3081)),
    ]
    rows = [
        "| augmentation of (N,1,28,28) | N | dtype | cnnlab ms | torch ms | ratio |",
        "|---|---|---|---|---|---|",
    ]
    repeats = 3 if quick else 7
    for dtype in (np.float32, np.float64):
        for n in (8,) if quick else (64, 256):
            x = np.random.default_rng(0).random((n, 1, 28, 28)).astype(dtype)
            rng = np.random.default_rng(1)
            theta = torch.from_numpy(affine.sample_matrices(n, 28, 28, rng).astype(dtype))
            xt = torch.from_numpy(x)

            def ours(x=x, rng=rng) -> None:
                affine(x, rng)

            def theirs(xt=xt, theta=theta) -> None:
                grid = TF.affine_grid(theta, list(xt.shape), align_corners=False)
                TF.grid_sample(xt, grid, padding_mode="zeros", align_corners=False)

            a, b = side_by_side(ours, theirs, repeats=repeats)
            name = np.dtype(dtype).name
            rows.append(
                f"| RandomAffine | {n} | {name} | {a * 1e3:.3f} | {b * 1e3:.3f} | {a / b:.2f} |"
            )
            print(rows[-1], flush=True)
            for label, t in others:
                seconds = sample(lambda t=t, x=x, rng=rng: t(x, rng))
                rows.append(f"| {label} | {n} | {name} | {seconds * 1e3:.3f} | — | — |")
                print(rows[-1], flush=True)
    return rows
