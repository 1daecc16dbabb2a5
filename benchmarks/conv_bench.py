"""Convolution forward+backward, cnnlab vs PyTorch, on the shapes of the speed targets."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from common import side_by_side

#: (N, C, H, W, K, k, stride, pad)
SHAPES = [
    (64, 1, 28, 28, 6, 5, 1, 2),
    (64, 6, 14, 14, 16, 5, 1, 0),
    (32, 3, 32, 32, 32, 3, 1, 1),
    (32, 32, 32, 32, 64, 3, 2, 1),
    (8, 64, 56, 56, 64, 3, 1, 1),
]
QUICK_SHAPES = [(8, 1, 28, 28, 6, 5, 1, 2), (4, 6, 14, 14, 16, 5, 1, 0)]


def flops(shape: tuple[int, ...]) -> float:
    """Multiply-adds ×2 of forward + input gradient + weight gradient (3 equal GEMMs)."""
    n, c, h, w, k, ks, s, p = shape
    oh, ow = (h + 2 * p - ks) // s + 1, (w + 2 * p - ks) // s + 1
    return 3 * 2.0 * n * k * c * ks * ks * oh * ow


def torch_step(shape: tuple[int, ...], x: np.ndarray, dy: np.ndarray) -> Callable[[], None]:
    """PyTorch's forward + backward of the layer ``shape`` on ``x`` with error ``dy``."""
    _, c, _, _, k, ks, s, p = shape
    conv = torch.nn.Conv2d(c, k, ks, stride=s, padding=p).to(torch.from_numpy(x).dtype)
    tx, tdy = torch.tensor(x, requires_grad=True), torch.tensor(dy)

    def step() -> None:
        tx.grad = None
        conv.weight.grad = None
        conv.bias.grad = None
        conv(tx).backward(tdy)

    return step


def bench(shape: tuple[int, ...], dtype: str, repeats: int) -> dict[str, float]:
    from cnnlab import nn
    from cnnlab.functional import kernels

    n, c, h, w, k, ks, s, p = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    conv = nn.Conv2d(c, k, ks, stride=s, padding=p, dtype=dtype)
    dy = rng.standard_normal(conv(x).shape).astype(dtype)

    def ours() -> None:
        conv(x)
        conv.backward(dy)

    t_ours, t_theirs = side_by_side(ours, torch_step(shape, x, dy), repeats)
    with kernels.use("numpy"):  # switching engines sets BLAS's threads: once, outside
        t_reference, _ = side_by_side(ours, lambda: None, max(1, repeats // 2))
    return {
        "numpy": t_reference,
        "ours": t_ours,
        "torch": t_theirs,
        "gflops": flops(shape) / t_ours / 1e9,
        "torch_gflops": flops(shape) / t_theirs / 1e9,
    }


#: cnnlab time ÷ PyTorch time to stay under, per dtype
TARGETS = {"float32": 1.3, "float64": 0.9}


def run(quick: bool = False) -> list[str]:
    from cnnlab.functional import kernels

    shapes = QUICK_SHAPES if quick else SHAPES
    repeats = 3 if quick else 7
    rows = [
        f"| shape (N,C,H,W→K,k,s,p) | dtype | cnnlab ms ({kernels.backend()}) | torch ms "
        "| ratio (≤ target) | NumPy path ms | cnnlab GFLOP/s | torch GFLOP/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dtype, target in TARGETS.items():
        for shape in shapes:
            r = bench(shape, dtype, repeats)
            ratio = r["ours"] / r["torch"]
            n, c, h, w, k, ks, s, p = shape
            mark = "✓" if ratio <= target else "✗"
            rows.append(
                f"| ({n},{c},{h},{w}→{k},{ks},{s},{p}) | {dtype} | {r['ours'] * 1e3:.2f} | "
                f"{r['torch'] * 1e3:.2f} | {ratio:.2f} {mark} (≤ {target}) | "
                f"{r['numpy'] * 1e3:.2f} | {r['gflops']:.0f} | {r['torch_gflops']:.0f} |"
            )
            print(rows[-1], flush=True)
    return rows
