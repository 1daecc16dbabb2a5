"""The numeric instance of ``cnnlab explain``: small nonzero integers, never degenerate.

The numbers come from **mulberry32**, a 32-bit generator small enough to be written the
same way in Python and in the page's JavaScript (``page.js``), so ``cnnlab explain
--seed S`` and the page recomputing in the browser show the same numbers for the same
configuration and seed.

Non-degenerate means that every ``a``, ``w``, ``w_b`` and ``δ`` is nonzero (each term of
a sum is a nonzero product) and that every ``dE/da``, ``dE/dw`` and ``dE/dw_b`` with at
least one term is nonzero (no sum cancels to 0), so a numeric check can tell a missing
or wrong term from a right one. Entries with no term at all (inputs no window reached,
taps that only ever met padding) are 0, as they must be.

How the numbers are drawn (the page does exactly the same):

1. ``a`` (D, H, W), ``w`` (N, D, KH, KW), ``w_b`` (N,), ``δ`` (N, OH, OW), each in
   row-major order, each entry ``VALUES[next() % len(VALUES)]`` of its value list;
2. while some gradient entry with terms is 0 (searched in the order ``dE/da``,
   ``dE/dw``, ``dE/dw_b``, each row-major), one factor of its terms changes: the
   ``next() % count``-th of the factors listed term by term (``δ, w`` for ``dE/da``;
   ``δ, a`` for ``dE/dw``; ``δ`` for ``dE/dw_b``) takes, among the other values of its
   list, the one that leaves the fewest of the sums it is in at 0 (ties: the first
   found going round the list from index ``next() % count``). A number appears at most
   once in each sum, so the change makes that sum nonzero; it may cancel another, which
   a later round repairs.

Both choices matter. Redrawing ``w`` and ``a`` too, not only ``δ``: with a 1×3 error
map, three δ cannot dodge the zeros of dozens of sums. Picking the value that zeroes the
fewest sums rather than a random one: a δ is in up to ``N·D·KH·KW`` short sums, and a
random value cancels a few of them each time, so the repair never ends on large layers;
with the choice it ends within about a hundred rounds on the largest layers (checked on
some two thousand random layers up to the JSON limits; the slow tests redo 400 of them).
:data:`MAX_REDRAWS` bounds the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnlab.explain.config import ExplainConfig
from cnnlab.explain.terms import Terms, enumerate_terms

__all__ = [
    "A_VALUES",
    "BIAS_VALUES",
    "DELTA_VALUES",
    "MAX_REDRAWS",
    "MAX_SEED",
    "W_VALUES",
    "Instance",
    "Mulberry32",
    "make_instance",
]

#: the values each kind of number is drawn from (small, nonzero: readable products)
A_VALUES = (-4, -3, -2, -1, 1, 2, 3, 4)
W_VALUES = (-3, -2, -1, 1, 2, 3)
BIAS_VALUES = (-2, -1, 1, 2)
DELTA_VALUES = (-3, -2, -1, 1, 2, 3)
#: the largest seed (the generator's state is 32 bits)
MAX_SEED = 2**32 - 1
#: redraws allowed before giving up (never reached in the tests' thousands of cases)
MAX_REDRAWS = 100_000

_MASK = 0xFFFFFFFF


class Mulberry32:
    """The mulberry32 generator (Tommy Ettinger, public domain): 32-bit state and output.

    ``next()`` equals the JavaScript ``t = (a += 0x6D2B79F5); t = Math.imul(t ^ t >>> 15,
    t | 1); t ^= t + Math.imul(t ^ t >>> 7, t | 61); return (t ^ t >>> 14) >>> 0``.
    """

    def __init__(self, seed: int) -> None:
        self.state = seed & _MASK

    def next(self) -> int:
        """The next 32-bit unsigned integer."""
        self.state = (self.state + 0x6D2B79F5) & _MASK
        t = self.state
        t = ((t ^ (t >> 15)) * (t | 1)) & _MASK
        t ^= (t + ((t ^ (t >> 7)) * (t | 61))) & _MASK
        return (t ^ (t >> 14)) & _MASK

    def pick(self, values: tuple[int, ...]) -> int:
        """One of ``values`` (``values[next() % len(values)]``)."""
        return values[self.next() % len(values)]


@dataclass
class Instance:
    """A numeric case: input, filters, bias and error map (float64 holding small integers).

    Shapes
    ------
    a : (D, H, W); w : (N, D, KH, KW); b : (N,); delta : (N, OH, OW)
    """

    a: np.ndarray
    w: np.ndarray
    b: np.ndarray
    delta: np.ndarray
    #: how many numbers were redrawn to avoid a zero gradient entry
    redraws: int = 0


def make_instance(cfg: ExplainConfig, seed: int = 0, terms: Terms | None = None) -> Instance:
    """Draw the non-degenerate numeric instance of ``cfg`` for ``seed`` (module docstring).

    Parameters
    ----------
    cfg : ExplainConfig
    seed : int
        0 to :data:`MAX_SEED`.
    terms : Terms, optional
        ``enumerate_terms(cfg)``, if already at hand.

    Raises
    ------
    ValueError
        A seed outside 0 .. 2**32-1.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be between 0 and {MAX_SEED}, got {seed}")
    if terms is None:
        terms = enumerate_terms(cfg)
    rng = Mulberry32(int(seed))
    (h, w_), (kh, kw), (oh, ow) = cfg.input, cfg.kernel, cfg.output
    depth, filters = cfg.depth, cfg.filters
    a: dict[Any, int] = {
        (d, r, c): rng.pick(A_VALUES) for d in range(depth) for r in range(h) for c in range(w_)
    }
    w: dict[Any, int] = {
        (n, d, p, q): rng.pick(W_VALUES)
        for n in range(filters)
        for d in range(depth)
        for p in range(kh)
        for q in range(kw)
    }
    b = [rng.pick(BIAS_VALUES) for _ in range(filters)]
    delta: dict[Any, int] = {
        (n, i, j): rng.pick(DELTA_VALUES)
        for n in range(filters)
        for i in range(oh)
        for j in range(ow)
    }

    # the gradients by the sums, kept up to date as numbers are redrawn (exact integers)
    dx: dict[Any, int] = {
        cell: sum(delta[dl] * w[wi] for dl, wi in items) for cell, items in terms.input_grad.items()
    }
    dw: dict[Any, int] = {
        tap: sum(delta[dl] * a[ai] for dl, ai in items) for tap, items in terms.weight_grad.items()
    }
    db = {n: sum(delta[i] for i in terms.bias_grad[n]) for n in range(filters)}

    def first_zero() -> list[tuple[str, Any]] | None:
        """The factors of the first gradient entry that has terms and is 0."""
        for cell, items in terms.input_grad.items():
            if items and dx[cell] == 0:
                return [f for dl, wi in items for f in (("delta", dl), ("w", wi))]
        for tap, by_a in terms.weight_grad.items():
            if by_a and dw[tap] == 0:
                return [f for dl, ai in by_a for f in (("delta", dl), ("a", ai))]
        for n in range(filters):
            if db[n] == 0:
                return [("delta", dl) for dl in terms.bias_grad[n]]
        return None

    choices: dict[str, tuple[tuple[int, ...], dict[Any, int]]] = {
        "delta": (DELTA_VALUES, delta),
        "w": (W_VALUES, w),
        "a": (A_VALUES, a),
    }
    redraws = 0
    while (factors := first_zero()) is not None:
        if redraws == MAX_REDRAWS:  # pragma: no cover - never observed
            raise RuntimeError(f"no non-degenerate instance found for {cfg.describe()}")
        kind, index = factors[rng.next() % len(factors)]
        values, table = choices[kind]
        old = table[index]
        # the sums this number is in, each with its coefficient (the other factor)
        sums: list[tuple[dict[Any, int], Any, int]]
        if kind == "delta":  # δ[n,i,j] is in dE/da, dE/dw and dE/dw_b
            sums = [(dx, ai, w[wi]) for wi, ai in terms.forward[index]]
            sums += [(dw, wi, a[ai]) for wi, ai in terms.forward[index]]
            sums.append((db, index[0], 1))
        elif kind == "w":  # w[n,d,p,q] is in dE/da only
            sums = [(dx, ai, delta[dl]) for dl, ai in terms.weight_grad[index]]
        else:  # a[d,r,c] is in dE/dw only
            sums = [(dw, wi, delta[dl]) for dl, wi in terms.input_grad[index]]
        # the new value that leaves the fewest of them 0 (ties: first from a random start)
        others = [v for v in values if v != old]
        start = rng.next() % len(others)
        best, fewest = old, len(sums) + 1
        for k in range(len(others)):
            v = others[(start + k) % len(others)]
            zeros = sum(1 for g, key, coef in sums if g[key] + (v - old) * coef == 0)
            if zeros < fewest:
                best, fewest = v, zeros
        table[index] = best
        for g, key, coef in sums:
            g[key] += (best - old) * coef
        redraws += 1

    def array(values: dict[Any, int], shape: tuple[int, ...]) -> np.ndarray:
        return np.array(list(values.values()), dtype=np.float64).reshape(shape)

    return Instance(
        a=array(a, (depth, h, w_)),
        w=array(w, (filters, depth, kh, kw)),
        b=np.array(b, dtype=np.float64),
        delta=array(delta, (filters, oh, ow)),
        redraws=redraws,
    )
