"""A per-pixel-loop convolution, the way the course's demo programs compute it.

One sample, float64, plain Python loops over output positions, filters and taps — the
baseline that shows what vectorizing buys.
"""

from __future__ import annotations

import numpy as np


def naive_forward(a: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """a (C, H, W), w (F, C, k, k) → net (F, OH, OW)."""
    c, h, wd = a.shape
    f, _, k, _ = w.shape
    ap = np.pad(a, ((0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    net = np.zeros((f, oh, ow))
    for n in range(f):
        for i in range(oh):
            for j in range(ow):
                total = b[n]
                for d in range(c):
                    for p in range(k):
                        for q in range(k):
                            total += w[n, d, p, q] * ap[d, i * stride + p, j * stride + q]
                net[n, i, j] = total
    return net


def naive_backward(
    delta: np.ndarray, a: np.ndarray, w: np.ndarray, stride: int, pad: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scatter each output's error back through every tap: dE/da, dE/dw, dE/db."""
    c, h, wd = a.shape
    f, _, k, _ = w.shape
    ap = np.pad(a, ((0, 0), (pad, pad), (pad, pad)))
    dap = np.zeros_like(ap)
    dw = np.zeros_like(w)
    db = np.zeros(f)
    for n in range(f):
        for i in range(delta.shape[1]):
            for j in range(delta.shape[2]):
                e = delta[n, i, j]
                db[n] += e
                for d in range(c):
                    for p in range(k):
                        for q in range(k):
                            dap[d, i * stride + p, j * stride + q] += e * w[n, d, p, q]
                            dw[n, d, p, q] += e * ap[d, i * stride + p, j * stride + q]
    return dap[:, pad : pad + h, pad : pad + wd], dw, db
