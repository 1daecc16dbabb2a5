"""The naive per-pixel loop vs cnnlab's vectorized convolution (one sample, float64)."""

from __future__ import annotations

import time

import numpy as np

from common import sample
from naive_conv import naive_backward, naive_forward

CASES = [("LeNet conv1", (1, 28, 28), 6, 5, 1, 2), ("LeNet conv2", (6, 14, 14), 16, 5, 1, 0)]


def run(quick: bool = False) -> list[str]:
    from cnnlab import nn

    rows = [
        "| naive loops vs cnnlab (batch 1, float64) | naive ms | cnnlab ms | speed-up |",
        "|---|---|---|---|",
    ]
    for name, (c, h, w), k, ks, s, p in CASES[:1] if quick else CASES:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((c, h, w))
        conv = nn.Conv2d(c, k, ks, stride=s, padding=p, dtype=np.float64)
        wt, b = conv.weight.data, conv.bias.data
        net = naive_forward(a, wt, b, s, p)
        delta = rng.standard_normal(net.shape)
        # the naive result must be right before its time means anything
        y = conv(a[None])
        dx = conv.backward(delta[None])
        ndx, ndw, _ = naive_backward(delta, a, wt, s, p)
        assert np.allclose(y[0], net) and np.allclose(dx[0], ndx)
        assert np.allclose(conv.weight.grad, ndw)
        start = time.perf_counter()
        naive_forward(a, wt, b, s, p)
        naive_backward(delta, a, wt, s, p)
        naive = time.perf_counter() - start

        def ours(conv=conv, a=a, delta=delta) -> None:
            conv(a[None])
            conv.backward(delta[None])

        vec = sample(ours)
        rows.append(f"| {name} | {naive * 1e3:.0f} | {vec * 1e3:.3f} | {naive / vec:,.0f}× |")
        print(rows[-1], flush=True)
    return rows
