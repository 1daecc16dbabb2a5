"""``cnnlab explain``: the lesson's derivation, generated and checked for any small case.

>>> from cnnlab.explain import explain
>>> print(explain(input=(3, 3), kernel=(2, 2)).to_text())  # doctest: +SKIP

The sums come from following every connection of the layer (:mod:`.terms`), the
matrix form from the same steps as the library's backward pass (:mod:`.matrices`),
and a non-degenerate numeric instance (:mod:`.instance`) checks both against
:class:`cnnlab.nn.Conv2d` (:mod:`.verify`). :meth:`Explanation.to_html` puts it all in
one interactive page (:mod:`.html`).
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.explain.config import HTML_LIMITS, JSON_LIMITS, TEXT_LIMITS, ExplainConfig
from cnnlab.explain.instance import Instance, make_instance
from cnnlab.explain.names import Names
from cnnlab.explain.terms import Terms, enumerate_terms
from cnnlab.explain.verify import Verification, verify

__all__ = ["ExplainConfig", "Explanation", "explain"]


def _key(index: tuple[int, ...]) -> str:
    return ",".join(str(k + 1) for k in index)


def _one_based(index: tuple[int, ...]) -> list[int]:
    return [k + 1 for k in index]


def _ints(values: np.ndarray) -> list[Any]:
    """Nested lists of Python ints (the instance holds small integers in float64)."""
    out: list[Any] = np.rint(values).astype(np.int64).tolist()
    return out


@dataclass
class Explanation:
    """The worked derivation of one configuration (see :func:`explain`)."""

    config: ExplainConfig
    terms: Terms
    names: Names
    instance: Instance
    verification: Verification
    seed: int

    def to_text(self) -> str:
        """Readable unicode text (the CLI's default output)."""
        from cnnlab.explain.text import to_text

        self.config.check_size(TEXT_LIMITS, "text")
        return to_text(self)

    def to_latex(self) -> str:
        """A LaTeX fragment (``align*`` for the sums, ``bmatrix`` for the matrices)."""
        from cnnlab.explain.text import to_latex

        self.config.check_size(TEXT_LIMITS, "LaTeX")
        return to_latex(self)

    def to_json(self) -> dict[str, Any]:
        """The term lists, keyed by 1-based indices joined by commas, and the numbers.

        ``numbers`` holds the numeric instance (``a``, ``w``, ``b``, ``delta``) and what
        the layer computes from it (``net``, ``input_grad``, ``weight_grad``,
        ``bias_grad``), as nested lists of integers in the arrays' index order.
        """
        t, x, v = self.terms, self.instance, self.verification
        return {
            "config": self.config.to_json(),
            "seed": self.seed,
            "input_grad": {
                _key(k): [{"delta": _one_based(dl), "w": _one_based(wi)} for dl, wi in items]
                for k, items in t.input_grad.items()
            },
            "weight_grad": {
                _key(k): [{"delta": _one_based(dl), "a": _one_based(ai)} for dl, ai in items]
                for k, items in t.weight_grad.items()
            },
            "bias_grad": {
                str(n + 1): [_one_based(i) for i in items] for n, items in t.bias_grad.items()
            },
            "numbers": {
                "a": _ints(x.a),
                "w": _ints(x.w),
                "b": _ints(x.b),
                "delta": _ints(x.delta),
                "net": _ints(v.net["layer"]),
                "input_grad": _ints(v.dx["layer"]),
                "weight_grad": _ints(v.dw["layer"]),
                "bias_grad": _ints(v.db["layer"]),
            },
            "verification": {"max_difference": v.max_difference},
        }

    def to_html(self) -> str:
        """One self-contained interactive page (no network needed; see :mod:`.html`).

        Raises
        ------
        ValueError
            A configuration beyond :data:`~cnnlab.explain.config.HTML_LIMITS`.
        """
        from cnnlab.explain.html import to_html

        self.config.check_size(HTML_LIMITS, "an HTML page")
        return to_html(self)

    def save_html(self, path: str | Path) -> Path:
        """Write :meth:`to_html` to ``path`` (UTF-8); returns the path."""
        page = self.to_html()
        path = Path(path)
        path.write_text(page, encoding="utf-8")
        return path

    def save_figures(self, directory: str | Path) -> list[Path]:
        """PNG and SVG figures of each step into ``directory``; returns the paths."""
        from cnnlab.explain.figures import save_figures

        self.config.check_size(TEXT_LIMITS, "figures")
        return save_figures(self, Path(directory))


def explain(
    input: Any = (3, 3),
    kernel: Any = (2, 2),
    stride: Any = 1,
    padding: Any = 0,
    depth: int = 1,
    filters: int = 1,
    dilation: Any = 1,
    *,
    seed: int = 0,
) -> Explanation:
    """Work out the backward pass of a small convolution layer.

    Parameters
    ----------
    input, kernel : (rows, cols), int or "AxB"
    stride, padding, dilation : int, (int, int) or "AxB"
    depth : int
        Input channels ``D``.
    filters : int
        Filters (output channels) ``N``.
    seed : int
        Seed of the numeric instance, 0 to 2**32-1 (:mod:`cnnlab.explain.instance`: small
        nonzero integers; no gradient entry that has terms is 0).

    Raises
    ------
    ValueError
        Impossible configuration (kernel larger than the padded input, stride 0, ...) or
        one beyond the JSON limits (:data:`~cnnlab.explain.config.JSON_LIMITS`); a seed
        outside 0 .. 2**32-1.
    """
    cfg = ExplainConfig.make(input, kernel, stride, padding, depth, filters, dilation)
    cfg.check_size(JSON_LIMITS, "JSON")
    terms = enumerate_terms(cfg)
    instance = make_instance(cfg, seed, terms)
    return Explanation(cfg, terms, Names(cfg), instance, verify(cfg, terms, instance), seed)


class _CallableModule(types.ModuleType):
    """Lets ``cnnlab.explain(...)`` call :func:`explain` while the package stays importable."""

    def __call__(self, *args: Any, **kwargs: Any) -> Explanation:
        return explain(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
