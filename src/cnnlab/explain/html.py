"""``cnnlab explain --html``: the derivation as one interactive, self-contained page.

The page is ``page.html`` with ``page.css``, ``page.js`` and the explanation's
:meth:`~cnnlab.explain.Explanation.to_json` document inlined: no network, no library,
it works from ``file://``. Its script draws that document (the grids of ``a``, ``W``,
``net``, ``δ`` and the gradients, the sums behind any gradient cell, the matrix form as
steppers) and, when the controls change, recomputes it with a JavaScript port of the
term enumeration and of the seeded numeric instance (:mod:`.instance`), which the tests
hold equal to ``cnnlab explain --json``. A Content-Security-Policy forbids every
request, so a page that tried to load anything would fail loudly rather than leak.

Element contract (tests and users' scripts rely on it): every grid cell carries
``data-cell="<grid>:<1-based indices joined by commas>"``, grid one of ``a``, ``w``,
``net``, ``delta``, ``dA``, ``dW``, ``db`` (drawn padding cells have class ``pad`` and
no ``data-cell``); activating a ``dA``/``dW``/``db`` cell (click, hover, Enter or Space)
gives exactly the cells of its terms the class ``contributes``; the controls are
``<input>`` elements named ``input-h``, ``input-w``, ``kernel-h``, ``kernel-w``,
``stride``, ``padding``, ``dilation``, ``depth``, ``filters`` and ``seed``.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import TYPE_CHECKING

import cnnlab
from cnnlab.explain.config import HTML_LIMITS

if TYPE_CHECKING:
    from cnnlab.explain import Explanation

__all__ = ["to_html"]


def _asset(name: str) -> str:
    return resources.files("cnnlab.explain").joinpath(name).read_text(encoding="utf-8")


def _script_safe(text: str, tag: str) -> str:
    """Refuse text that would end its ``<script>``/``<style>`` element early."""
    if f"</{tag}" in text.lower():
        raise ValueError(f"page asset contains '</{tag}', which would end the element")
    return text


def to_html(e: Explanation) -> str:
    """The page for ``e`` (see the module docstring); a str holding the whole file."""
    data = e.to_json()
    data["limits"] = HTML_LIMITS
    # JSON inside <script>: "<" escaped, so no "</script>" or "<!--" can appear in it
    embedded = json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")
    page = _asset("page.html")
    for marker, value in (
        ("/*cnnlab:css*/", _script_safe(_asset("page.css"), "style")),
        ("/*cnnlab:js*/", _script_safe(_asset("page.js"), "script")),
        ("/*cnnlab:data*/", embedded),
        ("/*cnnlab:description*/", html.escape(f"{e.config.describe()}; seed {e.seed}")),
        ("/*cnnlab:version*/", html.escape(cnnlab.__version__)),
    ):
        assert page.count(marker) == 1, marker
        page = page.replace(marker, value)
    return page
