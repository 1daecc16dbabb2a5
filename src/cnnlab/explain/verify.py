"""A numeric check of the generated derivation, three ways.

For random ``a``, ``W`` and ``δ`` (float64, seeded):

1. **the sums** — evaluate every generated ``dE/da``, ``dE/dw`` and ``dE/dw_b`` term list;
2. **the matrix form** — steps (E2)–(E6) with the loop-based reference primitive
   :func:`~cnnlab.functional.correlate2d_reference`;
3. **the layer** — :meth:`cnnlab.nn.Conv2d.backward`, which training uses.

All three must agree; the largest difference is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnlab.explain.config import ExplainConfig
from cnnlab.explain.terms import Terms
from cnnlab.functional.conv import input_grad_padding
from cnnlab.functional.correlate import correlate2d_reference, insert_zeros, pad2d, rot180

__all__ = ["Instance", "Verification", "make_instance", "verify"]


@dataclass
class Instance:
    """A random numeric case: input, filters, bias, error map, and the three results."""

    a: np.ndarray  #: (D, H, W)
    w: np.ndarray  #: (N, D, kh, kw)
    b: np.ndarray  #: (N,)
    delta: np.ndarray  #: (N, OH, OW)


@dataclass
class Verification:
    dx: dict[str, np.ndarray]  #: "sums" / "matrix" / "layer" → (D, H, W)
    dw: dict[str, np.ndarray]
    db: dict[str, np.ndarray]
    max_difference: float

    @property
    def passed(self) -> bool:
        return self.max_difference < 1e-12


def make_instance(cfg: ExplainConfig, seed: int = 0) -> Instance:
    rng = np.random.default_rng(seed)
    # small integers keep printed matrices readable; float64 keeps the check exact
    return Instance(
        a=rng.integers(-4, 5, size=(cfg.depth, *cfg.input)).astype(np.float64),
        w=rng.integers(-3, 4, size=(cfg.filters, cfg.depth, *cfg.kernel)).astype(np.float64),
        b=rng.integers(-2, 3, size=cfg.filters).astype(np.float64),
        delta=rng.integers(-3, 4, size=(cfg.filters, *cfg.output)).astype(np.float64),
    )


def _by_sums(terms: Terms, x: Instance) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dx = np.zeros_like(x.a)
    for cell, by_w in terms.input_grad.items():
        dx[cell] = sum((x.delta[dl] * x.w[wi] for dl, wi in by_w), 0.0)
    dw = np.zeros_like(x.w)
    for tap, by_a in terms.weight_grad.items():
        dw[tap] = sum((x.delta[dl] * x.a[ai] for dl, ai in by_a), 0.0)
    db = np.array([sum((x.delta[i] for i in terms.bias_grad[n]), 0.0) for n in range(len(x.b))])
    return dx, dw, db


def _by_matrices(cfg: ExplainConfig, x: Instance) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    a_padded = pad2d(x.a[None], cfg.padding)
    oh, ow = cfg.output
    used = (cfg.stride[0] * (oh - 1) + cfg.k_eff[0], cfg.stride[1] * (ow - 1) + cfg.k_eff[1])
    a_used = a_padded[:, :, : used[0], : used[1]].swapaxes(0, 1)  # (D, 1, H', W')
    dw = correlate2d_reference(
        a_used, x.delta[:, None], stride=cfg.dilation, dilation=cfg.stride
    ).swapaxes(0, 1)
    # (E6) the bias gradient is the sum of each error map
    return dx, dw, x.delta.sum(axis=(1, 2))


def _by_layer(cfg: ExplainConfig, x: Instance) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from cnnlab.nn import Conv2d

    conv = Conv2d(
        cfg.depth, cfg.filters, cfg.kernel, cfg.stride, cfg.padding, cfg.dilation, dtype=np.float64
    )
    conv.weight.data[...] = x.w
    assert conv.bias is not None
    conv.bias.data[...] = x.b
    conv(x.a[None])
    dx = conv.backward(x.delta[None])
    assert dx is not None
    return dx[0], conv.weight.grad, conv.bias.grad


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
        dx={k: v[0] for k, v in results.items()},
        dw={k: v[1] for k, v in results.items()},
        db={k: v[2] for k, v in results.items()},
        max_difference=worst,
    )
