"""The matrix form of the backward pass, for symbols and for numbers.

The same steps as :func:`cnnlab.functional.conv2d_backward`: (E2) insert ``S-1`` zeros
between the entries of δ, (E3) pad it by ``k_eff-1-P`` (a crop when negative) plus the
leftover rows/columns, (E4) cross-correlate with the 180°-rotated filter, summed over
filters. Symbol matrices are object arrays of names (``"0"`` for an inserted or padded
zero); numeric ones go through the library's own helpers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnlab.explain.config import ExplainConfig
from cnnlab.explain.names import Names
from cnnlab.functional.conv import input_grad_padding

__all__ = ["SymbolSteps", "symbol_steps"]


@dataclass
class SymbolSteps:
    """For one filter ``n`` and input channel ``d``: the matrices of steps (E2)–(E4)."""

    delta: np.ndarray  #: δ_n, (OH, OW)
    inserted: np.ndarray  #: (E2) zero-inserted δ_n
    padded: np.ndarray  #: (E3) padded (or cropped) δ_n
    rotated: np.ndarray  #: rot180 of W_{n,d}
    pads: tuple[tuple[int, int], tuple[int, int]]  #: (E3) amounts (negative: crop)


def _pad_or_crop(m: np.ndarray, pads: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
    (top, bottom), (left, right) = pads
    out = np.full((m.shape[0] + top + bottom, m.shape[1] + left + right), "0", dtype=object)
    # the part of m that survives a crop, and where it lands
    src_r = slice(max(0, -top), m.shape[0] - max(0, -bottom))
    src_c = slice(max(0, -left), m.shape[1] - max(0, -right))
    part = m[src_r, src_c]
    out[max(0, top) : max(0, top) + part.shape[0], max(0, left) : max(0, left) + part.shape[1]] = (
        part
    )
    return out


def symbol_steps(cfg: ExplainConfig, names: Names, n: int, d: int) -> SymbolSteps:
    """The symbolic matrices of (E2)–(E4) for filter ``n`` and input channel ``d``."""
    oh, ow = cfg.output
    delta = np.empty((oh, ow), dtype=object)
    for i in range(oh):
        for j in range(ow):
            delta[i, j] = names.delta((n, i, j))
    sh, sw = cfg.stride
    inserted = np.full((sh * (oh - 1) + 1, sw * (ow - 1) + 1), "0", dtype=object)
    inserted[::sh, ::sw] = delta
    pads = (
        input_grad_padding(cfg.input[0], cfg.kernel[0], sh, (cfg.padding[0],) * 2, cfg.dilation[0]),
        input_grad_padding(cfg.input[1], cfg.kernel[1], sw, (cfg.padding[1],) * 2, cfg.dilation[1]),
    )
    kh, kw = cfg.kernel
    weights = np.empty((kh, kw), dtype=object)
    for p in range(kh):
        for q in range(kw):
            weights[p, q] = names.w((n, d, p, q))
    return SymbolSteps(delta, inserted, _pad_or_crop(inserted, pads), weights[::-1, ::-1], pads)


def format_matrix(m: np.ndarray, fmt: str = "{}") -> list[str]:
    """Rows of a matrix as aligned text lines inside brackets."""
    cells = [[fmt.format(v) if not isinstance(v, str) else v for v in row] for row in m]
    width = max((len(c) for row in cells for c in row), default=1)
    lines = []
    for k, row in enumerate(cells):
        left, right = ("⎡", "⎤") if k == 0 else ("⎣", "⎦") if k == len(cells) - 1 else ("⎢", "⎥")
        if len(cells) == 1:
            left, right = "[", "]"
        lines.append(left + " ".join(c.rjust(width) for c in row) + right)
    return lines
