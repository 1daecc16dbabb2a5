"""How the lesson names things: ``a11``, ``δ12``, ``w21``, ``w_b`` (1-based).

With one input channel and one filter, and every index a single digit, names are the
lesson's compact ones (``δ12`` is δ at row 1, column 2). Otherwise indices are written
out in brackets: ``a[d,i,j]``, ``δ[n,i,j]``, ``w[n,d,p,q]``, ``w_b[n]``.
"""

from __future__ import annotations

from cnnlab.explain.config import ExplainConfig

__all__ = ["Names"]


class Names:
    """Symbol names for one configuration."""

    def __init__(self, cfg: ExplainConfig) -> None:
        largest = max(*cfg.input, *cfg.output, *cfg.kernel)
        self.compact = cfg.depth == 1 and cfg.filters == 1 and largest <= 9

    def _name(self, base: str, index: tuple[int, ...], keep: int) -> str:
        one = [k + 1 for k in index]
        if self.compact:
            return base + "".join(str(k) for k in one[-keep:])
        return f"{base}[{','.join(str(k) for k in one)}]"

    def a(self, index: tuple[int, int, int]) -> str:
        return self._name("a", index, 2)

    def delta(self, index: tuple[int, int, int]) -> str:
        return self._name("δ", index, 2)

    def w(self, index: tuple[int, int, int, int]) -> str:
        return self._name("w", index, 2)

    def net(self, index: tuple[int, int, int]) -> str:
        return self._name("net", index, 2)

    def bias(self, n: int) -> str:
        return "w_b" if self.compact else f"w_b[{n + 1}]"
