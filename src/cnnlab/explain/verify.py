"""A numeric check of the generated derivation, three ways.

For the seeded, non-degenerate ``a``, ``W``, ``w_b`` and ``δ`` of :mod:`.instance`:

1. **the sums** — evaluate every generated ``net``, ``dE/da``, ``dE/dw`` and ``dE/dw_b``
   term list;
2. **the matrix form** — the forward correlation and steps (E2)–(E6) with the
   loop-based reference primitive :func:`~cnnlab.functional.correlate2d_reference`;
3. **the layer** — :class:`cnnlab.nn.Conv2d`'s forward and ``backward``, which training
   uses.

All three must agree; the largest difference is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnlab.explain.config import ExplainConfig
from cnnlab.explain.instance import Instance, make_instance
from cnnlab.explain.terms import Terms
from cnnlab.functional.conv import input_grad_padding
from cnnlab.functional.correlate import correlate2d_reference, insert_zeros, pad2d, rot180

__all__ = ["Instance", "Verification", "make_instance", "verify"]


@dataclass
class Verification:
    net: dict[str, np.ndarray]  #: "sums" / "matrix" / "layer" → (N, OH, OW)
    dx: dict[str, np.ndarray]  #: "sums" / "matrix" / "layer" → (D, H, W)
    dw: dict[str, np.ndarray]
    db: dict[str, np.ndarray]
    max_difference: float

    @property
    def passed(self) -> bool:
        return self.max_difference < 1e-12


Results = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # net, dx, dw, db


def _by_sums(terms: Terms, x: Instance) -> Results:
    net = np.zeros_like(x.delta)
    for out, fwd in terms.forward.items():
        net[out] = sum((x.w[wi] * x.a[ai] for wi, ai in fwd), 0.0) + x.b[out[0]]
    dx = np.zeros_like(x.a)
    for cell, by_w in terms.input_grad.items():
        dx[cell] = sum((x.delta[dl] * x.w[wi] for dl, wi in by_w), 0.0)
    dw = np.zeros_like(x.w)
    for tap, by_a in terms.weight_grad.items():
        dw[tap] = sum((x.delta[dl] * x.a[ai] for dl, ai in by_a), 0.0)
    db = np.array([sum((x.delta[i] for i in terms.bias_grad[n]), 0.0) for n in range(len(x.b))])
    return net, dx, dw, db


def _by_matrices(cfg: ExplainConfig, x: Instance) -> Results:
    a_padded = pad2d(x.a[None], cfg.padding)
    net = correlate2d_reference(a_padded, x.w, stride=cfg.stride, dilation=cfg.dilation)[0]
    net += x.b[:, None, None]
    delta = x.delta[None]  # a batch of one
    # (E2) zero-insert, (E3) pad k_eff-1-P (crop if negative) plus leftovers
    pads = (
        input_grad_padding(
            cfg.input[0], cfg.kernel[0], cfg.stride[0], (cfg.padding[0],) * 2, cfg.dilation[0]
        ),
        input_grad_padding(
            cfg.input[1], cfg.kernel[1], cfg.stride[1], (cfg.padding[1],) * 2, cfg.dilation[1]
        ),
    )
    padded = pad2d(insert_zeros(delta, cfg.stride), pads)
    # (E4) correlate with rot180(W), in/out channels swapped: channel d sums over filters
    dx = correlate2d_reference(padded, rot180(x.w).swapaxes(0, 1), dilation=cfg.dilation)[0]
    # (E5) the error map as kernel over the padded input (stride and dilation swap roles)
    oh, ow = cfg.output
    used = (cfg.stride[0] * (oh - 1) + cfg.k_eff[0], cfg.stride[1] * (ow - 1) + cfg.k_eff[1])
    a_used = a_padded[:, :, : used[0], : used[1]].swapaxes(0, 1)  # (D, 1, H', W')
    dw = correlate2d_reference(
        a_used, x.delta[:, None], stride=cfg.dilation, dilation=cfg.stride
    ).swapaxes(0, 1)
    # (E6) the bias gradient is the sum of each error map
    return net, dx, dw, x.delta.sum(axis=(1, 2))


def _by_layer(cfg: ExplainConfig, x: Instance) -> Results:
    from cnnlab.nn import Conv2d

    conv = Conv2d(
        cfg.depth, cfg.filters, cfg.kernel, cfg.stride, cfg.padding, cfg.dilation, dtype=np.float64
    )
    conv.weight.data[...] = x.w
    assert conv.bias is not None
    conv.bias.data[...] = x.b
    net = conv(x.a[None])
    dx = conv.backward(x.delta[None])
    assert dx is not None
    return net[0], dx[0], conv.weight.grad, conv.bias.grad


def verify(cfg: ExplainConfig, terms: Terms, x: Instance) -> Verification:
    results = {
        "sums": _by_sums(terms, x),
        "matrix": _by_matrices(cfg, x),
        "layer": _by_layer(cfg, x),
    }
    ref = results["layer"]
    worst = 0.0
    for values in results.values():
        for got, want in zip(values, ref, strict=True):
            worst = max(worst, float(np.abs(got - want).max(initial=0.0)))
    return Verification(
        net={k: v[0] for k, v in results.items()},
        dx={k: v[1] for k, v in results.items()},
        dw={k: v[2] for k, v in results.items()},
        db={k: v[3] for k, v in results.items()},
        max_difference=worst,
    )
