"""``cnnlab explain --html`` in a real browser: Debian's chromium driven by Playwright.

The oracle is the Python engine: for every configuration the page shows (the embedded
one and the ones the controls recompute in the browser) the cells, their numbers, the
cells that light up for every gradient cell and the sums written out must equal what
``cnnlab explain --json`` gives for the same configuration and seed — the term lists of
:mod:`cnnlab.explain.terms` (themselves tested against a brute-force enumeration in
``test_explain.py``), the numbers of :mod:`cnnlab.explain.instance` and the lesson's
names of :mod:`cnnlab.explain.names`. The steppers' matrices are held against
:func:`cnnlab.explain.matrices.symbol_steps`, and the page's generator against the
canonical mulberry32 code.

These tests need Playwright (the ``test`` extra) and ``/usr/bin/chromium`` (``apt-get
install chromium``); without them they fail, never skip. One browser serves the whole
module. ``CNNLAB_UPDATE_DOCS=1`` makes ``test_screenshot`` rewrite docs/explain-html.png.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright

from clihelp import cnnlab
from cnnlab.explain import explain
from cnnlab.explain.config import HTML_LIMITS
from cnnlab.explain.instance import Mulberry32
from cnnlab.explain.matrices import symbol_steps
from cnnlab.explain.names import Names

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "docs" / "explain-html.png"
LOAD_LIMIT_S = 1.0


@pytest.fixture(scope="session")
def browser():
    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} not found: the browser tests need Debian's chromium "
        "(apt-get install -y chromium)"
    )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Opened:
    """A page loaded from file:// with every network request refused and recorded."""

    def __init__(self, browser: Browser, path: Path, width: int = 1280, height: int = 800):
        self.url = path.resolve().as_uri()
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.context.set_offline(True)
        self.requests: list[str] = []
        self.problems: list[str] = []
        self.context.on("request", lambda r: self.requests.append(r.url))
        self.context.route(
            "**/*",
            lambda route: route.continue_() if route.request.url == self.url else route.abort(),
        )
        self.page: Page = self.context.new_page()
        self.page.on(
            "console",
            lambda m: (
                self.problems.append(f"console.{m.type}: {m.text}")
                if m.type in ("error", "warning")
                else None
            ),
        )
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        start = time.perf_counter()
        self.page.goto(self.url)  # returns at the load event: the page has been drawn
        self.load_seconds = time.perf_counter() - start
        assert self._flag("ready") == "true"
        # then the page checks its own port against the embedded document
        assert self._flag("checked") == "agrees"

    def _flag(self, name: str, timeout: float = 10.0) -> str | None:
        """A data- attribute of <html>, polled from here (the page's CSP forbids the
        eval that wait_for_function needs)."""
        end = time.perf_counter() + timeout
        while True:
            value = self.page.evaluate(f"document.documentElement.dataset.{name}")
            if value is not None or time.perf_counter() > end:
                return value
            time.sleep(0.02)

    def close(self) -> None:
        self.context.close()

    def assert_clean(self) -> None:
        assert self.problems == [], self.problems
        assert set(self.requests) <= {self.url}, self.requests


def _page_file(tmp_path: Path, name: str = "page.html", **kwargs) -> Path:
    path = tmp_path / name
    explain(**kwargs).save_html(path)
    return path


def _cfg_kwargs(doc: dict) -> dict:
    c = doc["config"]
    return {
        "input": tuple(c["input"]),
        "kernel": tuple(c["kernel"]),
        "stride": tuple(c["stride"]),
        "padding": tuple(c["padding"]),
        "depth": c["depth"],
        "filters": c["filters"],
        "dilation": tuple(c["dilation"]),
    }


# ------------------------------------------------------------- what --json says


def _paren(v: int) -> str:
    return f"({v})" if v < 0 else str(v)


def expected_view(doc: dict) -> dict:
    """From a --json document: every data-cell with its number, and for each gradient
    cell the data-cells of its terms and its sum written out (the lesson's names)."""
    e = explain(**_cfg_kwargs(doc), seed=doc["seed"])
    nm = Names(e.config)
    num = doc["numbers"]

    def at(array, one_based):
        for k in one_based:
            array = array[k - 1]
        return array

    def zero(one_based):
        return tuple(k - 1 for k in one_based)

    def key(indices):
        return ",".join(str(k) for k in indices)

    c = doc["config"]
    (h, w), (kh, kw), (oh, ow) = c["input"], c["kernel"], c["output"]
    depth, filters = c["depth"], c["filters"]
    values = {}
    for idx in np.ndindex(depth, h, w):
        one = [k + 1 for k in idx]
        values[f"a:{key(one)}"] = at(num["a"], one)
        values[f"dA:{key(one)}"] = at(num["input_grad"], one)
    for idx in np.ndindex(filters, depth, kh, kw):
        one = [k + 1 for k in idx]
        values[f"w:{key(one)}"] = at(num["w"], one)
        values[f"dW:{key(one)}"] = at(num["weight_grad"], one)
    for idx in np.ndindex(filters, oh, ow):
        one = [k + 1 for k in idx]
        values[f"net:{key(one)}"] = at(num["net"], one)
        values[f"delta:{key(one)}"] = at(num["delta"], one)
    for n in range(filters):
        values[f"db:{n + 1}"] = num["bias_grad"][n]

    def written(lhs, symbols, numbers, total):
        if not symbols:
            return f"{lhs} = 0"
        return f"{lhs} = {' + '.join(symbols)} = {' + '.join(numbers)} = {total}"

    clicks = {}
    for cell, items in doc["input_grad"].items():
        one = [int(k) for k in cell.split(",")]
        clicks[f"dA:{cell}"] = (
            sorted(
                {f"delta:{key(t['delta'])}" for t in items} | {f"w:{key(t['w'])}" for t in items}
            ),
            written(
                f"dE/d{nm.a(zero(one))}",
                [f"{nm.delta(zero(t['delta']))}·{nm.w(zero(t['w']))}" for t in items],
                [
                    f"{_paren(at(num['delta'], t['delta']))}·{_paren(at(num['w'], t['w']))}"
                    for t in items
                ],
                at(num["input_grad"], one),
            ),
        )
    for tap, items in doc["weight_grad"].items():
        one = [int(k) for k in tap.split(",")]
        clicks[f"dW:{tap}"] = (
            sorted(
                {f"delta:{key(t['delta'])}" for t in items} | {f"a:{key(t['a'])}" for t in items}
            ),
            written(
                f"dE/d{nm.w(zero(one))}",
                [f"{nm.delta(zero(t['delta']))}·{nm.a(zero(t['a']))}" for t in items],
                [
                    f"{_paren(at(num['delta'], t['delta']))}·{_paren(at(num['a'], t['a']))}"
                    for t in items
                ],
                at(num["weight_grad"], one),
            ),
        )
    for n, items in doc["bias_grad"].items():
        clicks[f"db:{n}"] = (
            sorted(f"delta:{key(t)}" for t in items),
            written(
                f"dE/d{nm.bias(int(n) - 1)}",
                [nm.delta(zero(t)) for t in items],
                [_paren(at(num["delta"], t)) for t in items],
                num["bias_grad"][int(n) - 1],
            ),
        )
    return {"values": values, "clicks": clicks}


# what the page shows: every data-cell's number, and what clicking each gradient cell does
READ_PAGE = """() => {
  const cells = [...document.querySelectorAll("[data-cell]")];
  const keys = cells.map((el) => el.dataset.cell);
  const values = {};
  for (const el of cells) values[el.dataset.cell] = el.querySelector(".v").textContent;
  const clicks = {};
  for (const el of cells.filter((el) => /^(dA|dW|db):/.test(el.dataset.cell))) {
    el.click();
    const cellsOf = (sel) =>
      [...document.querySelectorAll(sel)].map((x) => x.dataset.cell || x.outerHTML);
    const sum = document.getElementById("sum-text").textContent;
    clicks[el.dataset.cell] = [cellsOf(".contributes").sort(), sum, cellsOf(".active")];
  }
  return JSON.stringify({ keys, values, clicks });
}"""


def assert_page_shows(page: Page, doc: dict) -> None:
    want = expected_view(doc)
    got = json.loads(page.evaluate(READ_PAGE))
    assert len(got["keys"]) == len(set(got["keys"])), "a data-cell appears twice"
    assert set(got["keys"]) == set(want["values"])
    numbers = {k: int(v) for k, v in got["values"].items()}
    assert numbers == want["values"]
    assert set(got["clicks"]) == set(want["clicks"])
    for cell, (marked, text, active) in got["clicks"].items():
        assert marked == want["clicks"][cell][0], cell
        assert text == want["clicks"][cell][1], cell
        assert active == [cell]


CONTRACT_CONTROLS = (
    "input-h",
    "input-w",
    "kernel-h",
    "kernel-w",
    "stride",
    "padding",
    "dilation",
    "depth",
    "filters",
)


SET_FIELDS = """(texts) => {
  let last = null;
  for (const [name, value] of Object.entries(texts)) {
    const input = document.querySelector(`input[name="${name}"]`);
    if (input.value !== value) last = input;
    input.value = value;
  }
  if (last) last.dispatchEvent(new Event("input", { bubbles: true }));
}"""


def set_controls(page: Page, cfg: dict, seed: int, typed: bool = True) -> None:
    """Enter a configuration into the page's controls: typed field by field as a user
    would (``typed``), or all values set and one input event sent, in one round trip."""

    def pair(p):
        return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"

    texts = {
        "input-h": cfg["input"][0],
        "input-w": cfg["input"][1],
        "kernel-h": cfg["kernel"][0],
        "kernel-w": cfg["kernel"][1],
        "stride": pair(cfg["stride"]),
        "padding": pair(cfg["padding"]),
        "dilation": pair(cfg["dilation"]),
        "depth": cfg["depth"],
        "filters": cfg["filters"],
        "seed": seed,
    }
    texts = {name: str(value) for name, value in texts.items()}
    if typed:
        for name, value in texts.items():
            if page.input_value(f'input[name="{name}"]') != value:
                page.fill(f'input[name="{name}"]', value)
    else:
        page.evaluate(SET_FIELDS, texts)
    assert page.text_content("#config-error") == ""
    assert page.evaluate("document.documentElement.dataset.state") == "ok"


def random_configs(count: int, seed: int) -> list[dict]:
    """Random layers within the page's limits, all of them possible."""
    rng = np.random.default_rng(seed)
    out: list[dict] = []
    while len(out) < count:
        cfg = {
            "input": [int(rng.integers(1, 8)), int(rng.integers(1, 8))],
            "kernel": [int(rng.integers(1, 5)), int(rng.integers(1, 5))],
            "stride": [int(rng.integers(1, 4)), int(rng.integers(1, 4))],
            "padding": [int(rng.integers(0, 4)), int(rng.integers(0, 4))],
            "dilation": [int(rng.integers(1, 3)), int(rng.integers(1, 3))],
            "depth": int(rng.integers(1, 4)),
            "filters": int(rng.integers(1, 4)),
        }
        if all(
            cfg["dilation"][a] * (cfg["kernel"][a] - 1) + 1
            <= cfg["input"][a] + 2 * cfg["padding"][a]
            for a in (0, 1)
        ):
            out.append(cfg)
    return out


CONFIGS = [
    *random_configs(30, seed=13),
    # the shapes that break implementations, spelled out
    {
        "input": [4, 3],
        "kernel": [2, 2],
        "stride": [2, 2],
        "padding": [0, 0],
        "dilation": [1, 1],
        "depth": 1,
        "filters": 1,
    },
    {
        "input": [3, 3],
        "kernel": [2, 2],
        "stride": [1, 1],
        "padding": [3, 3],
        "dilation": [1, 1],
        "depth": 2,
        "filters": 2,
    },
    {
        "input": [5, 6],
        "kernel": [2, 3],
        "stride": [2, 3],
        "padding": [1, 2],
        "dilation": [2, 1],
        "depth": 3,
        "filters": 2,
    },
    {
        "input": [12, 12],
        "kernel": [5, 5],
        "stride": [1, 1],
        "padding": [2, 2],
        "dilation": [1, 1],
        "depth": 1,
        "filters": 1,
    },
]


# ------------------------------------------------------------------------ tests


def test_page_is_one_self_contained_file(tmp_path):
    page = explain((5, 4), (3, 2), stride=2, padding=1, seed=3).to_html()
    assert page.startswith("<!DOCTYPE html>")
    lowered = page.lower()
    for outside in ("http://", "https://", '<link rel="stylesheet"', " src=", "@import", "url("):
        assert outside not in lowered, outside
    assert "content-security-policy" in lowered and "default-src 'none'" in lowered
    assert lowered.count("</script>") == 2 and lowered.count("</style>") == 1
    # the embedded document is exactly --json's (plus the page's limits)
    data = re.search(r'<script type="application/json" id="cnnlab-data">(.*?)</script>', page, re.S)
    assert data is not None
    embedded = json.loads(data.group(1))
    assert embedded.pop("limits") == HTML_LIMITS
    want = explain((5, 4), (3, 2), stride=2, padding=1, seed=3).to_json()
    assert embedded == json.loads(json.dumps(want))


def test_cli_writes_the_page_and_refuses_what_it_cannot_show(tmp_path):
    proc = cnnlab("explain", "--input", "4x3", "--stride", "2", "--html", "p.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "p.html" in proc.stderr
    assert (tmp_path / "p.html").read_text(encoding="utf-8") == explain((4, 3), stride=2).to_html()
    proc = cnnlab("explain", "--html", "-", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout == explain().to_html()
    proc = cnnlab("explain", "--input", "13x13", "--html", "big.html", cwd=tmp_path)
    assert proc.returncode == 2 and "as an HTML page" in proc.stderr
    assert "input <= 12x12" in proc.stderr and not (tmp_path / "big.html").exists()
    with pytest.raises(ValueError, match="HTML page"):
        explain((13, 13)).to_html()


def test_loads_offline_fast_and_clean(browser, tmp_path):
    path = _page_file(tmp_path, input=(5, 5), kernel=(3, 3), stride=2, padding=1)
    opened = Opened(browser, path)
    try:
        assert opened.load_seconds < LOAD_LIMIT_S, opened.load_seconds
        browser_load_ms = opened.page.evaluate(
            "performance.getEntriesByType('navigation')[0].loadEventEnd"
        )
        assert 0 < browser_load_ms < LOAD_LIMIT_S * 1000
        # offline: only the file itself was ever requested, and the page works
        opened.page.click('[data-cell="dA:1,2,2"]')
        assert opened.page.locator(".contributes").count() > 0
        opened.assert_clean()
        assert opened.requests == [opened.url]
    finally:
        opened.close()


def test_every_cell_of_random_configurations_matches_json(browser, tmp_path):
    """The embedded page, then 34 configurations typed into the controls: every number
    and every gradient cell's highlighted terms and written sum equal --json's."""
    first = CONFIGS[0]
    path = tmp_path / "page.html"
    e = explain(**_cfg_kwargs({"config": first}), seed=5)
    e.save_html(path)
    opened = Opened(browser, path)
    page = opened.page
    try:
        assert_page_shows(page, json.loads(json.dumps(e.to_json())))
        # the CLI's --json is the API's to_json (checked once: a subprocess is slow)
        proc = cnnlab("explain", "--json", "--input", "4x3", "--stride", "2", "--seed", "9",
                      cwd=tmp_path)  # fmt: skip
        assert json.loads(proc.stdout) == json.loads(
            json.dumps(explain((4, 3), stride=2, seed=9).to_json())
        )
        rng = np.random.default_rng(99)
        for k, cfg in enumerate(CONFIGS[1:], 1):
            seed = int(rng.integers(0, 2**32))
            set_controls(page, cfg, seed, typed=k % 8 == 1)
            doc = json.loads(
                json.dumps(explain(**_cfg_kwargs({"config": cfg}), seed=seed).to_json())
            )
            assert_page_shows(page, doc)
            # the in-page engine's document is --json's, field for field
            engine = json.loads(page.evaluate("JSON.stringify(cnnlabExplain.document())"))
            doc.pop("verification")
            assert engine == doc, k
            # real pointer clicks too (hit-testing, nothing covering the cells)
            want = expected_view(doc)["clicks"]
            for cell in rng.choice(sorted(want), size=2 if k % 8 == 1 else 1):
                page.click(f'[data-cell="{cell}"]')
                marked = page.eval_on_selector_all(
                    ".contributes", "els => els.map(e => e.dataset.cell)"
                )
                assert sorted(marked) == want[cell][0], cell
        opened.assert_clean()
    finally:
        opened.close()


def test_hover_previews_and_keyboard_activates(browser, tmp_path):
    path = _page_file(tmp_path, input=(4, 4), kernel=(2, 2), stride=1, padding=1, seed=2)
    opened = Opened(browser, path)
    page = opened.page
    try:
        doc = json.loads(json.dumps(explain((4, 4), (2, 2), 1, 1, seed=2).to_json()))
        want = expected_view(doc)["clicks"]

        def marked():
            return sorted(
                page.eval_on_selector_all(".contributes", "els => els.map(e => e.dataset.cell)")
            )

        page.hover('[data-cell="dA:1,2,2"]')
        assert marked() == want["dA:1,2,2"][0]
        page.hover("h1")  # leaving the grid: back to the (empty) selection
        assert marked() == []
        page.click('[data-cell="dW:1,1,1,2"]')
        page.hover('[data-cell="dA:1,3,3"]')
        assert marked() == want["dA:1,3,3"][0]
        page.mouse.move(1, 1)
        assert marked() == want["dW:1,1,1,2"][0]
        # keyboard: focus the dE/da grid, arrows move, Enter and Space select
        page.focus('[data-cell="dA:1,1,1"]')
        page.keyboard.press("Enter")
        assert marked() == want["dA:1,1,1"][0]
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowDown")
        assert page.evaluate("document.activeElement.dataset.cell") == "dA:1,2,2"
        page.keyboard.press(" ")
        assert marked() == want["dA:1,2,2"][0]
        assert page.text_content("#sum-text") == want["dA:1,2,2"][1]
        # one tab stop per grid: Tab leaves the grid for the next one
        # (the dE/dW grid's stop is the cell clicked before)
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.dataset.cell") == "dW:1,1,1,2"
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("Enter")
        assert marked() == want["dW:1,1,1,1"][0]
        page.keyboard.press("Shift+Tab")  # back into dE/da, at the cell left last
        assert page.evaluate("document.activeElement.dataset.cell") == "dA:1,2,2"
        opened.assert_clean()
    finally:
        opened.close()


def _symbols(page: Page, selector: str) -> list[list[str]]:
    return page.eval_on_selector(
        selector,
        "t => [...t.rows].map(r => [...r.cells].map(c => c.dataset.sym))",
    )


def _name(e, kind: str, term: dict) -> str:
    """The lesson's name of a term's factor (``kind`` "delta", "w" or "a")."""
    return getattr(e.names, kind)(tuple(k - 1 for k in term[kind]))


def _numbers(page: Page, selector: str) -> list[list[int]]:
    return page.eval_on_selector(
        selector,
        "t => [...t.rows].map(r => [...r.cells].map("
        "  c => Number(c.querySelector('.v').textContent)))",
    )


STEPPER_CASES = [
    ((4, 3), (2, 2), (2, 2), (0, 0), 1, 1, (1, 1)),  # stride not dividing the width
    ((3, 3), (2, 2), (1, 1), (3, 3), 2, 2, (1, 1)),  # padding >= kernel: (E3) crops
    ((5, 6), (2, 3), (2, 3), (1, 2), 2, 2, (2, 1)),  # non-square, dilation
]


@pytest.mark.parametrize("case", STEPPER_CASES, ids=lambda c: "-".join(map(str, c)))
def test_steppers_walk_the_matrix_form(browser, tmp_path, case):
    inp, ker, stride, pad, depth, filters, dil = case
    e = explain(inp, ker, stride, pad, depth, filters, dil, seed=11)
    path = tmp_path / "page.html"
    e.save_html(path)
    doc = json.loads(json.dumps(e.to_json()))
    opened = Opened(browser, path)
    page = opened.page
    try:
        d, n = depth - 1, filters - 1  # the last channel and filter, picked in the selects
        if depth > 1:
            page.select_option("#stepper-dA-d", str(d))
            page.select_option("#stepper-dW-d", str(d))
        if filters > 1:
            page.select_option("#stepper-dW-n", str(n))
        section = page.locator("#stepper-dA")
        h, w = inp
        assert section.get_attribute("data-steps") == str(4 + h * w + 1)
        page.focus("#stepper-dA")
        stages = []
        for f in range(filters):
            s = symbol_steps(e.config, e.names, f, d)
            assert (
                _symbols(page, f'#stepper-dA [data-matrix="delta"][data-filter="{f + 1}"]')
                == s.delta.tolist()
            )
        page.keyboard.press("ArrowRight")
        stages.append(section.get_attribute("data-stage"))
        for f in range(filters):
            s = symbol_steps(e.config, e.names, f, d)
            assert (
                _symbols(page, f'#stepper-dA [data-matrix="inserted"][data-filter="{f + 1}"]')
                == s.inserted.tolist()
            )
        page.keyboard.press("ArrowRight")
        stages.append(section.get_attribute("data-stage"))
        for f in range(filters):
            s = symbol_steps(e.config, e.names, f, d)
            assert (
                _symbols(page, f'#stepper-dA [data-matrix="padded"][data-filter="{f + 1}"]')
                == s.padded.tolist()
            )
        page.keyboard.press("ArrowRight")
        stages.append(section.get_attribute("data-stage"))
        for f in range(filters):
            s = symbol_steps(e.config, e.names, f, d)
            shown = np.array(
                _symbols(page, f'#stepper-dA [data-matrix="rot180"][data-filter="{f + 1}"]'),
                dtype=object,
            )
            assert shown[:: dil[0], :: dil[1]].tolist() == s.rotated.tolist()
            assert (shown != "0").sum() == ker[0] * ker[1]  # the rest are dilation zeros
        # every window: its products are exactly the terms of that dE/da, its total the number
        for r in range(h):
            for c in range(w):
                page.keyboard.press("ArrowRight")
                assert section.get_attribute("data-stage") == "window"
                text = page.text_content("#stepper-dA .products")
                got = Counter(re.findall(r"(δ\S+·w\S+) =", text))
                items = doc["input_grad"][f"{d + 1},{r + 1},{c + 1}"]
                want = Counter(f"{_name(e, 'delta', t)}·{_name(e, 'w', t)}" for t in items)
                assert got == want, (r, c, text)
                assert text.endswith(f"→ {doc['numbers']['input_grad'][d][r][c]}") or not items
        page.keyboard.press("ArrowRight")
        assert section.get_attribute("data-stage") == "result"
        assert stages == ["inserted", "padded", "rot180"]
        assert (
            _numbers(page, '#stepper-dA [data-matrix="result"]') == doc["numbers"]["input_grad"][d]
        )
        assert page.get_attribute("#stepper-dA .verdict", "data-equal") == "true"
        page.keyboard.press("Home")
        assert section.get_attribute("data-step") == "1"
        page.keyboard.press("End")
        assert section.get_attribute("data-stage") == "result"

        # (E5): the buttons this time
        kh, kw = ker
        dw = page.locator("#stepper-dW")
        assert dw.get_attribute("data-steps") == str(2 + kh * kw + 1)
        page.click('#stepper-dW [data-action="next"]')
        s = symbol_steps(e.config, e.names, n, d)
        assert _symbols(page, '#stepper-dW [data-matrix="inserted"]') == s.inserted.tolist()
        for p in range(kh):
            for q in range(kw):
                page.click('#stepper-dW [data-action="next"]')
                text = page.text_content("#stepper-dW .products")
                got = Counter(re.findall(r"(δ\S+·a\S+) =", text))
                items = doc["weight_grad"][f"{n + 1},{d + 1},{p + 1},{q + 1}"]
                want = Counter(f"{_name(e, 'delta', t)}·{_name(e, 'a', t)}" for t in items)
                assert got == want, (p, q, text)
        page.click('#stepper-dW [data-action="next"]')
        assert dw.get_attribute("data-stage") == "result"
        assert (
            _numbers(page, '#stepper-dW [data-matrix="result"]')
            == doc["numbers"]["weight_grad"][n][d]
        )
        assert page.get_attribute("#stepper-dW .verdict", "data-equal") == "true"
        assert page.is_disabled('#stepper-dW [data-action="next"]')
        opened.assert_clean()
    finally:
        opened.close()


def test_generator_is_mulberry32(browser, tmp_path):
    """The page's generator and Python's against the canonical mulberry32 code."""
    opened = Opened(browser, _page_file(tmp_path))
    canonical = """([seed, count]) => {
      function mulberry32(a) {
        return function() {
          var t = a += 0x6D2B79F5;
          t = Math.imul(t ^ t >>> 15, t | 1);
          t ^= t + Math.imul(t ^ t >>> 7, t | 61);
          return ((t ^ t >>> 14) >>> 0) / 4294967296;
        }
      }
      const next = mulberry32(seed);
      return Array.from({length: count}, () => Math.round(next() * 4294967296));
    }"""
    try:
        for seed in (0, 1, 42, 2**31 - 1, 2**31, 2**32 - 1):
            reference = opened.page.evaluate(canonical, [seed, 500])
            page = opened.page.evaluate("([s, n]) => cnnlabExplain.random(s, n)", [seed, 500])
            rng = Mulberry32(seed)
            assert [rng.next() for _ in range(500)] == reference == page, seed
        opened.assert_clean()
    finally:
        opened.close()


def test_controls_refuse_bad_values_with_a_message(browser, tmp_path):
    opened = Opened(browser, _page_file(tmp_path))
    page = opened.page
    try:
        before = page.evaluate("JSON.stringify(cnnlabExplain.document())")
        for name, value, fragment in (
            ("kernel-h", "9", "larger than the padded input"),
            ("stride", "0", "stride must be >= 1"),
            ("padding", "2xQ", "AxB"),
            ("input-w", "13", "input <= 12x12"),
            ("seed", "-1", "seed must be between 0 and 4294967295"),
        ):
            old = page.input_value(f'input[name="{name}"]')
            page.fill(f'input[name="{name}"]', value)
            assert fragment in page.text_content("#config-error"), (name, value)
            assert page.get_attribute(f'input[name="{name}"]', "aria-invalid") == "true"
            # the last good configuration stays on screen
            assert page.evaluate("JSON.stringify(cnnlabExplain.document())") == before
            page.fill(f'input[name="{name}"]', old)
            assert page.text_content("#config-error") == ""
        opened.assert_clean()
    finally:
        opened.close()


CUE_STYLES = """() => {
  const style = (sel, pseudo) => {
    const el = document.querySelector(sel);
    const s = getComputedStyle(el, pseudo || null);
    const rect = el.getBoundingClientRect();
    return { borderStyle: s.borderTopStyle, shadow: s.boxShadow, content: s.content,
             background: s.backgroundImage, size: [rect.width, rect.height] };
  };
  return {
    plain: style('td[data-cell^="w:"]:not(.contributes)'),
    contributes: style("td.contributes"),
    contributesMark: style("td.contributes", "::after"),
    active: style("td.active"),
    activeMark: style("td.active", "::after"),
    pad: style("td.pad"),
  };
}"""


@pytest.mark.parametrize("viewport", [(1280, 800), (390, 844)], ids=["desktop", "phone"])
def test_accessible_and_readable(browser, tmp_path, viewport):
    path = _page_file(tmp_path, input=(6, 6), kernel=(3, 3), padding=1, depth=2, filters=2)
    opened = Opened(browser, path, *viewport)
    page = opened.page
    try:
        # every control is labelled; the nine the contract names are there
        labels = page.evaluate(
            """[...document.querySelectorAll('#controls input')].map(
                i => [i.name, i.labels.length, i.labels[0].textContent.trim()])"""
        )
        assert {name for name, _, _ in labels} >= set(CONTRACT_CONTROLS)
        assert all(count >= 1 and text for _, count, text in labels), labels
        # every grid is labelled and reachable by Tab (one tab stop each)
        grids = page.evaluate(
            """[...document.querySelectorAll('table[role=grid]')].map(t => [
                t.getAttribute('aria-label'), t.querySelectorAll('td[tabindex="0"]').length])"""
        )
        assert grids and all(label and stops == 1 for label, stops in grids), grids
        # nothing wider than the screen: wide grids scroll inside their own box
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], width
        overflowing = page.evaluate(
            """[...document.querySelectorAll('table.cells')].filter(
                t => t.getBoundingClientRect().right > window.innerWidth + 1
                     && getComputedStyle(t.parentElement).overflowX !== 'auto').length"""
        )
        assert overflowing == 0
        # readable text: the cells' numbers at least 12 px
        size = page.evaluate(
            "parseFloat(getComputedStyle(document.querySelector('td .v')).fontSize)"
        )
        assert size >= 12
        # colour is not the only cue: rings, hatching and marks; and marking a cell
        # does not change its size (nothing may move under the pointer)
        size = """(() => {
            const r = document.querySelector('[data-cell="w:1,1,1,1"]').getBoundingClientRect();
            return [r.width, r.height]; })()"""
        before = page.evaluate(size)
        page.click('[data-cell="dA:1,2,2"]')
        cues = page.evaluate(CUE_STYLES)
        assert cues["plain"]["shadow"] == "none"
        assert cues["contributes"]["shadow"].count("inset") == 1
        assert cues["contributesMark"]["content"] not in ("none", "normal", '""')
        assert cues["active"]["shadow"].count("inset") == 3  # a double ring
        assert cues["activeMark"]["content"] not in ("none", "normal", '""')
        assert cues["pad"]["borderStyle"] == "dashed" and "gradient" in cues["pad"]["background"]
        assert (
            page.evaluate("document.querySelector('[data-cell=\"w:1,1,1,1\"]').className")
            == "contributes"
        )
        assert page.evaluate(size) == before
        # focus is visible: a real outline on a focused cell and on a button
        page.focus('[data-cell="w:1,1,1,1"]')
        outline = page.evaluate(
            """(() => { const s = getComputedStyle(document.activeElement);
                return [s.outlineStyle, parseFloat(s.outlineWidth)]; })()"""
        )
        assert outline[0] != "none" and outline[1] >= 2, outline
        page.focus('#stepper-dA [data-action="next"]')
        page.keyboard.press("Enter")
        assert page.get_attribute("#stepper-dA", "data-step") == "2"
        opened.assert_clean()
    finally:
        opened.close()


def test_screenshot(browser, tmp_path):
    """The README's picture, taken by this browser; CNNLAB_UPDATE_DOCS=1 rewrites it."""
    path = _page_file(tmp_path, input=(5, 5), kernel=(3, 3), stride=2, padding=1, seed=0)
    opened = Opened(browser, path, 1280, 800)
    page = opened.page
    try:
        page.click('[data-cell="dA:1,2,3"]')
        page.focus("#stepper-dA")
        for _ in range(4 + 7):  # to the window at dE/da23
            page.keyboard.press("ArrowRight")
        page.evaluate("document.activeElement.blur()")
        page.mouse.move(0, 0)  # off the grids: the clicked cell's terms stay marked
        page.evaluate("window.scrollTo(0, 0)")
        height = page.evaluate(
            """Math.ceil(document.querySelector('#stepper-dA').getBoundingClientRect().bottom
                         + window.scrollY) + 12"""
        )
        shot = tmp_path / "explain-html.png"
        page.screenshot(
            path=str(shot), full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": height}
        )
        with Image.open(shot) as img:
            assert img.width == 1280 and 700 <= img.height <= 2400
            assert len(img.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50  # not blank
        if os.environ.get("CNNLAB_UPDATE_DOCS"):
            shutil.copyfile(shot, SCREENSHOT)
        assert SCREENSHOT.exists(), "docs/explain-html.png: run with CNNLAB_UPDATE_DOCS=1"
        opened.assert_clean()
    finally:
        opened.close()
