"""Which products make up each sum: found by following every connection of the layer.

For every output position ``(n, i, j)`` and every filter tap ``(d, p, q)`` the forward
pass multiplies ``w[n,d,p,q]`` with the input cell it lands on,
``a[d, i·S + p·R - P, j·S + q·R - P]`` (when that cell is not padding). Each such
connection contributes one term to three sums:

* ``net[n,i,j]``    gets ``w[n,d,p,q]·a[d,r,c]``
* ``dE/da[d,r,c]``  gets ``δ[n,i,j]·w[n,d,p,q]`` (the input fed that output through w)
* ``dE/dw[n,d,p,q]`` gets ``δ[n,i,j]·a[d,r,c]`` (the weight met that input there)

and ``dE/dw_b[n]`` is the sum of all ``δ[n,i,j]``. Indices here are 0-based; the
printed forms add 1, as the lesson does. Terms are listed in the order of the loops
(output position first, then tap), so each sum reads by ascending δ index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cnnlab.explain.config import ExplainConfig

__all__ = ["Terms", "enumerate_terms"]

Index3 = tuple[int, int, int]
Index4 = tuple[int, int, int, int]


@dataclass
class Terms:
    """The sums of the forward and backward passes, as lists of index tuples."""

    forward: dict[Index3, list[tuple[Index4, Index3]]] = field(default_factory=dict)
    input_grad: dict[Index3, list[tuple[Index3, Index4]]] = field(default_factory=dict)
    weight_grad: dict[Index4, list[tuple[Index3, Index3]]] = field(default_factory=dict)
    bias_grad: dict[int, list[Index3]] = field(default_factory=dict)


def enumerate_terms(cfg: ExplainConfig) -> Terms:
    """Follow every connection of the layer ``cfg`` (see the module docstring)."""
    (h, w), (kh, kw) = cfg.input, cfg.kernel
    (sh, sw), (ph, pw), (dh, dw) = cfg.stride, cfg.padding, cfg.dilation
    oh, ow = cfg.output
    t = Terms()
    t.input_grad = {(d, r, c): [] for d in range(cfg.depth) for r in range(h) for c in range(w)}
    t.weight_grad = {
        (n, d, p, q): []
        for n in range(cfg.filters)
        for d in range(cfg.depth)
        for p in range(kh)
        for q in range(kw)
    }
    for n in range(cfg.filters):
        t.bias_grad[n] = []
        for i in range(oh):
            for j in range(ow):
                t.forward[(n, i, j)] = []
                t.bias_grad[n].append((n, i, j))
                for d in range(cfg.depth):
                    for p in range(kh):
                        for q in range(kw):
                            r, c = i * sh + p * dh - ph, j * sw + q * dw - pw
                            if not (0 <= r < h and 0 <= c < w):
                                continue  # a padding cell: zero, contributes nothing
                            t.forward[(n, i, j)].append(((n, d, p, q), (d, r, c)))
                            t.input_grad[(d, r, c)].append(((n, i, j), (n, d, p, q)))
                            t.weight_grad[(n, d, p, q)].append(((n, i, j), (d, r, c)))
    return t
