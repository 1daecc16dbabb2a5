"""Figures of each step of the backward pass (matplotlib, PNG and SVG).

For the first filter and input channel: δ, the zero-inserted δ (E2), the padded δ
(E3), the rotated filter, the rotated filter sliding over the padded δ (one window
highlighted), and the result dE/da (E4). Cells show the lesson's symbols, zeros grey.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.explain.matrices import symbol_steps

if TYPE_CHECKING:
    from cnnlab.explain import Explanation

__all__ = ["save_figures"]


def _grid(
    ax: Any,
    m: np.ndarray,
    title: str,
    highlight: tuple[int, int, int, int] | None = None,
    values: np.ndarray | None = None,
) -> None:
    from matplotlib.patches import Rectangle

    rows, cols = m.shape
    ax.set_xlim(0, cols)
    ax.set_ylim(rows, 0)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    for r in range(rows):
        for c in range(cols):
            text = str(m[r, c])
            zero = text == "0"
            ax.add_patch(
                Rectangle(
                    (c, r),
                    1,
                    1,
                    facecolor="#eeeeee" if zero else "#dbe9f6",
                    edgecolor="#555555",
                    linewidth=0.8,
                )
            )
            label = text if values is None else f"{values[r, c]:g}"
            ax.text(
                c + 0.5,
                r + 0.5,
                label,
                ha="center",
                va="center",
                fontsize=8 if len(label) < 5 else 6,
                color="#999999" if zero else "black",
            )
    if highlight is not None:
        r0, c0, h, w = highlight
        ax.add_patch(Rectangle((c0, r0), w, h, fill=False, edgecolor="#d62728", linewidth=2.2))


def _steps(e: Explanation) -> list[tuple[str, dict[str, Any]]]:
    cfg, nm = e.config, e.names
    s = symbol_steps(cfg, nm, 0, 0)
    result = np.empty(cfg.input, dtype=object)
    for r in range(cfg.input[0]):
        for c in range(cfg.input[1]):
            result[r, c] = nm.a((0, r, c)).replace("a", "dE/da", 1)
    kh, kw = cfg.k_eff
    return [
        ("delta", {"m": s.delta, "title": "δ = dE/dnet (error map)"}),
        (
            "zero-inserted",
            {"m": s.inserted, "title": f"(E2) δ, stride {cfg.stride}: zeros inserted"},
        ),
        ("padded", {"m": s.padded, "title": "(E3) padded: k_eff-1-P (+ leftovers)"}),
        ("rot180-w", {"m": s.rotated, "title": "rot180(W)"}),
        (
            "sliding-window",
            {
                "m": s.padded,
                "title": "(E4) rot180(W) slides over padded δ",
                "highlight": (0, 0, kh, kw),
            },
        ),
        (
            "result",
            {
                "m": result,
                "title": "(E4) dE/da = cross(padded δ, rot180 W)",
                "values": e.verification.dx["layer"][0],
            },
        ),
    ]


def save_figures(e: Explanation, directory: Path) -> list[Path]:
    """Write ``steps.png``/``steps.svg`` (all panels) and one PNG/SVG per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create the figures folder {directory}: {exc.strerror}") from None
    steps = _steps(e)
    written = []
    fig, axes = plt.subplots(1, len(steps), figsize=(2.6 * len(steps), 3.0), dpi=100)
    for ax, (_, spec) in zip(axes, steps):
        _grid(ax, **spec)
    fig.suptitle(f"Backward pass of a convolution: {e.config.describe()}", fontsize=10)
    fig.tight_layout()
    for ext in ("png", "svg"):
        path = directory / f"steps.{ext}"
        fig.savefig(path, format=ext)
        written.append(path)
    plt.close(fig)
    for name, spec in steps:
        rows, cols = spec["m"].shape
        fig, ax = plt.subplots(
            figsize=(max(2.2, 0.55 * cols + 0.6), max(2.0, 0.55 * rows + 0.8)), dpi=100
        )
        _grid(ax, **spec)
        fig.tight_layout()
        for ext in ("png", "svg"):
            path = directory / f"{name}.{ext}"
            fig.savefig(path, format=ext)
            written.append(path)
        plt.close(fig)
    return written
