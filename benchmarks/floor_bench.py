"""The GEMM floor: what the three matrix products of a convolution cost alone, vs PyTorch.

A NumPy convolution's forward pass, input gradient and weight gradient each need one
matrix product of the same size (FLOPs as in ``conv_bench.flops``). Timing only those
products — operands already laid out, no im2col copy, no col2im scatter, no padding —
in the better of two layouts (one product per sample, or the batch folded into one
product) gives a lower bound for any implementation that uses this machine's BLAS.
Divided by PyTorch's whole forward+backward time it says which speed targets BLAS
alone leaves room for.
"""

from __future__ import annotations

import numpy as np

from common import side_by_side
from conv_bench import QUICK_SHAPES, SHAPES, torch_step


def bench(shape: tuple[int, ...], dtype: str, repeats: int) -> tuple[float, float]:
    """Seconds of (the three products, PyTorch's conv forward+backward)."""
    n, c, h, w, k, ks, s, p = shape
    oh, ow = (h + 2 * p - ks) // s + 1, (w + 2 * p - ks) // s + 1
    plane, taps = oh * ow, c * ks * ks
    rng = np.random.default_rng(0)

    def draw(*size: int) -> np.ndarray:
        return rng.standard_normal(size).astype(dtype)

    w_mat, w_t = draw(k, taps), draw(taps, k)
    cols, delta = draw(n, taps, plane), draw(n, k, plane)
    cols_folded, delta_folded = draw(taps, n * plane), draw(k, n * plane)

    def per_sample() -> None:
        np.matmul(w_mat, cols)  # forward
        np.matmul(w_t, delta)  # input gradient, before its col2im scatter
        np.matmul(cols, delta.transpose(0, 2, 1)).sum(axis=0)  # weight gradient

    def folded() -> None:
        np.matmul(w_mat, cols_folded)
        np.matmul(w_t, delta_folded)
        np.matmul(delta_folded, cols_folded.T)

    theirs = torch_step(shape, draw(n, c, h, w), draw(n, k, oh, ow))
    t_per_sample, t_torch = side_by_side(per_sample, theirs, repeats)
    t_folded, _ = side_by_side(folded, lambda: None, max(1, repeats // 2))
    return min(t_per_sample, t_folded), t_torch


def run(quick: bool = False) -> list[str]:
    shapes = QUICK_SHAPES if quick else SHAPES
    repeats = 3 if quick else 5
    rows = [
        "| shape (N,C,H,W→K,k,s,p) | dtype | 3 products alone ms | torch fwd+bwd ms "
        "| floor ratio |",
        "|---|---|---|---|---|",
    ]
    for dtype in ("float32",) if quick else ("float32", "float64"):
        for shape in shapes:
            gemm, whole = bench(shape, dtype, repeats)
            n, c, h, w, k, ks, s, p = shape
            rows.append(
                f"| ({n},{c},{h},{w}→{k},{ks},{s},{p}) | {dtype} | {gemm * 1e3:.2f} | "
                f"{whole * 1e3:.2f} | {gemm / whole:.2f} |"
            )
            print(rows[-1], flush=True)
    return rows
