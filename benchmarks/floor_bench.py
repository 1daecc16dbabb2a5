"""The GEMM floor: what the three matrix products of a convolution cost alone, vs PyTorch.

A NumPy convolution's forward pass, input gradient and weight gradient each need one
matrix product of the same size (FLOPs as in ``conv_bench.flops``). Timing only those
products — operands already laid out, no im2col copy, no col2im scatter, no padding —
in the best of three layouts (one product per sample; the batch folded into one
product; L2-sized blocks: one sample and a band of output positions whose operands
take about 1 MB, the weight gradient accumulated in place by ``sgemm``/``dgemm`` with
``beta=1``) gives a lower bound for any implementation that uses this machine's BLAS.
Divided by PyTorch's whole forward+backward time it says which speed targets BLAS
alone leaves room for.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import blas

from common import side_by_side
from conv_bench import QUICK_SHAPES, SHAPES, torch_step

#: operand bytes of one block: what stays in this machine's 2 MB L2 beside its result
BLOCK_BYTES = 2**20


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

    # L2-sized blocks: a band of output positions of one sample, ~1 MB of operands,
    # each block's operands contiguous (laid out beforehand, as the other layouts)
    band = max(1, min(plane, BLOCK_BYTES // ((taps + k) * cols.itemsize)))
    blocks = [
        (
            np.ascontiguousarray(cols[i, :, j : j + band]),
            np.ascontiguousarray(delta[i, :, j : j + band]),
        )
        for i in range(n)
        for j in range(0, plane, band)
    ]
    gemm = blas.sgemm if dtype == "float32" else blas.dgemm
    dw_t = np.zeros((taps, k), dtype=dtype, order="F")

    def blocked() -> None:
        for cols_b, delta_b in blocks:
            np.matmul(w_mat, cols_b)  # forward
            np.matmul(w_t, delta_b)  # input gradient, before its col2im scatter
            # weight gradient accumulated in place: dwᵀ += cols_b · delta_bᵀ (beta=1)
            gemm(1.0, cols_b.T, delta_b.T, 1.0, dw_t, trans_a=1, overwrite_c=1)

    theirs = torch_step(shape, draw(n, c, h, w), draw(n, k, oh, ow))
    t_per_sample, t_torch = side_by_side(per_sample, theirs, repeats)
    t_folded, _ = side_by_side(folded, lambda: None, max(1, repeats // 2))
    t_blocked, _ = side_by_side(blocked, lambda: None, max(1, repeats // 2))
    return min(t_per_sample, t_folded, t_blocked), t_torch


def run(quick: bool = False) -> list[str]:
    from cnnlab.functional import kernels

    # BLAS with its own threads: cnnlab's compiled kernels set it to one per call
    with kernels.use("numpy"):
        return _rows(quick)


def _rows(quick: bool) -> list[str]:
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
