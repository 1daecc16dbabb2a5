"""The derivation as readable text (unicode) and as a LaTeX fragment."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cnnlab.explain.matrices import format_matrix, symbol_steps

if TYPE_CHECKING:
    from cnnlab.explain import Explanation

__all__ = ["to_latex", "to_text"]


def _sum(parts: list[str]) -> str:
    return " + ".join(parts) if parts else "0"


def _side_by_side(blocks: list[tuple[str, list[str]]], indent: str = "    ") -> list[str]:
    """Print labelled matrices next to each other."""
    heights = max(len(lines) for _, lines in blocks)
    widths = [max(len(label), *(len(s) for s in lines)) for label, lines in blocks]
    out = [indent + "   ".join(label.ljust(wd) for (label, _), wd in zip(blocks, widths))]
    for r in range(heights):
        row = [
            (lines[r] if r < len(lines) else "").ljust(wd) for (_, lines), wd in zip(blocks, widths)
        ]
        out.append(indent + "   ".join(row).rstrip())
    return out


def _pads_text(pads: tuple[tuple[int, int], tuple[int, int]]) -> str:
    def one(k: int) -> str:
        return f"{k}" if k >= 0 else f"crop {-k}"

    (t, b), (lft, r) = pads
    return f"top {one(t)}, bottom {one(b)}, left {one(lft)}, right {one(r)}"


def to_text(e: Explanation) -> str:
    cfg, t, nm = e.config, e.terms, e.names
    lines = [
        "cnnlab explain — the convolution layer's backward pass, worked out",
        "",
        f"Configuration: {cfg.describe()}",
        "Indices start at 1, as in the lesson. Padding cells are zero and are left out "
        "of the sums.",
        "",
    ]
    lines.append("1. Forward pass: net = Σ w·a + w_b")
    for (n, i, j), fwd in t.forward.items():
        parts = [f"{nm.w(wi)}·{nm.a(ai)}" for wi, ai in fwd] + [nm.bias(n)]
        lines.append(f"   {nm.net((n, i, j))} = {_sum(parts)}")
    lines += [
        "",
        "2. Error of the previous layer: each input a feeds some outputs net through a weight w,",
        "   so dE/da = Σ δ·w over those outputs (δ = dE/dnet)",
    ]
    for key, items in t.input_grad.items():
        lines.append(
            f"   dE/d{nm.a(key)} = {_sum([f'{nm.delta(dl)}·{nm.w(wi)}' for dl, wi in items])}"
        )
    lines += [
        "",
        "   Matrix form: (E2) insert stride-1 zeros into δ, (E3) pad with k_eff-1-P "
        "zeros (a crop when negative) plus the rows/columns no window reached,",
        "   (E4) cross-correlate with the filter rotated by 180°, summed over the filters:",
    ]
    for d in range(cfg.depth):
        for n in range(cfg.filters):
            s = symbol_steps(cfg, nm, n, d)
            tag = "" if nm.compact else f" (filter {n + 1}, input channel {d + 1})"
            lines.append(f"   δ{tag}; (E3) padding: {_pads_text(s.pads)}")
            lines += _side_by_side(
                [
                    ("δ", format_matrix(s.delta)),
                    ("(E2) zero-inserted", format_matrix(s.inserted)),
                    ("(E3) padded", format_matrix(s.padded)),
                    ("rot180(W)", format_matrix(s.rotated)),
                ]
            )
        tag = "" if nm.compact else f"[{d + 1}]"
        sums = " + ".join(
            f"cross(padded δ{'' if nm.compact else f'[{n + 1}]'}, rot180 W"
            f"{'' if nm.compact else f'[{n + 1},{d + 1}]'})"
            for n in range(cfg.filters)
        )
        lines.append(f"   (E4) dE/da{tag} = {sums}")
    lines.append(
        "   Then δ of the previous layer = dE/da ∘ f'(net) (element-wise): the "
        "activation in front of this layer applies its derivative."
    )
    lines += [
        "",
        "3. Filter gradients: each weight meets many inputs (weight sharing), so dE/dw = Σ δ·a",
        "   — the error map used as a kernel over the input: "
        "(E5) dE/dW = cross(padded a, zero-inserted δ)",
    ]
    for tap, by_a in t.weight_grad.items():
        products = [f"{nm.delta(dl)}·{nm.a(ai)}" for dl, ai in by_a]
        lines.append(f"   dE/d{nm.w(tap)} = {_sum(products)}")
    for n, deltas in t.bias_grad.items():
        lines.append(f"   (E6) dE/d{nm.bias(n)} = {_sum([nm.delta(i) for i in deltas])}")
    x, v = e.instance, e.verification
    lines += [
        "",
        f"4. Numeric check (random integers, seed {e.seed}): the sums above, the "
        "matrix form and nn.Conv2d.backward",
    ]
    for d in range(cfg.depth):
        lines += _side_by_side(
            [
                (f"a[{d + 1}]", format_matrix(x.a[d], "{:g}")),
                (f"dE/da[{d + 1}]", format_matrix(v.dx["layer"][d], "{:g}")),
            ]
        )
    for n in range(cfg.filters):
        lines += _side_by_side(
            [(f"δ[{n + 1}]", format_matrix(x.delta[n], "{:g}"))]
            + [(f"W[{n + 1},{d + 1}]", format_matrix(x.w[n, d], "{:g}")) for d in range(cfg.depth)]
            + [
                (f"dE/dW[{n + 1},{d + 1}]", format_matrix(v.dw["layer"][n, d], "{:g}"))
                for d in range(cfg.depth)
            ]
        )
    lines.append(f"   dE/dw_b = {np.array2string(v.db['layer'], separator=', ')}")
    verdict = "agree" if v.passed else "DISAGREE"
    lines.append(
        f"   largest difference between the three: {v.max_difference:.3g} — they {verdict}"
    )
    return "\n".join(lines) + "\n"


def _tex(name: str) -> str:
    for old, new in (("δ", r"\delta"), ("w_b", "w_b"), ("net", r"\mathrm{net}")):
        name = name.replace(old, new)
    if "[" in name:
        base, _, idx = name.partition("[")
        return f"{base}_{{{idx.rstrip(']')}}}"
    for base in (r"\delta", r"\mathrm{net}", "a", "w"):
        if name.startswith(base) and name[len(base) :].isdigit():
            return f"{base}_{{{name[len(base) :]}}}"
    return name


def _bmatrix(m: np.ndarray) -> str:
    rows = [" & ".join(_tex(v) if isinstance(v, str) else f"{v:g}" for v in row) for row in m]
    return r"\begin{bmatrix} " + r" \\ ".join(rows) + r" \end{bmatrix}"


def to_latex(e: Explanation) -> str:
    cfg, t, nm = e.config, e.terms, e.names
    out = [f"% cnnlab explain: {cfg.describe()}", r"\begin{align*}"]
    for (n, i, j), fwd in t.forward.items():
        parts = [f"{_tex(nm.w(wi))} {_tex(nm.a(ai))}" for wi, ai in fwd] + [_tex(nm.bias(n))]
        out.append(f"{_tex(nm.net((n, i, j)))} &= {' + '.join(parts)} \\\\")
    for cell, by_w in t.input_grad.items():
        body = " + ".join(f"{_tex(nm.delta(dl))} {_tex(nm.w(wi))}" for dl, wi in by_w) or "0"
        out.append(rf"\frac{{\partial E}}{{\partial {_tex(nm.a(cell))}}} &= {body} \\")
    for tap, by_a in t.weight_grad.items():
        body = " + ".join(f"{_tex(nm.delta(dl))} {_tex(nm.a(ai))}" for dl, ai in by_a) or "0"
        out.append(rf"\frac{{\partial E}}{{\partial {_tex(nm.w(tap))}}} &= {body} \\")
    for n, deltas in t.bias_grad.items():
        body = " + ".join(_tex(nm.delta(i)) for i in deltas)
        out.append(rf"\frac{{\partial E}}{{\partial {_tex(nm.bias(n))}}} &= {body} \\")
    out.append(r"\end{align*}")
    for d in range(cfg.depth):
        for n in range(cfg.filters):
            s = symbol_steps(cfg, nm, n, d)
            out += [
                r"\[",
                rf"\delta = {_bmatrix(s.delta)},\quad "
                rf"\text{{zero-inserted}} = {_bmatrix(s.inserted)},\quad "
                rf"\text{{padded}} = {_bmatrix(s.padded)},\quad "
                rf"\operatorname{{rot180}}(W) = {_bmatrix(s.rotated)}",
                r"\]",
            ]
    out.append(r"% then delta^{l-1} = dE/da \circ f'(net^{l-1})")
    return "\n".join(out) + "\n"
