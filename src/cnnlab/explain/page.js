/* cnnlab explain --html: the page's computation and its view (inlined into the page).

   The engine is a port of cnnlab.explain — ExplainConfig's checks (config.py), the term
   enumeration (terms.py), the lesson's names (names.py) and the seeded, non-degenerate
   numeric instance (instance.py) — producing the same document as
   `cnnlab explain --json`; cnnlab's tests hold the two equal. The view draws that
   document. Plain ES2017: no library, no network.

   Element contract: every grid cell has data-cell="<grid>:<1-based indices>" with grid
   one of a, w, net, delta, dA, dW, db (padding cells are drawn, class "pad", and have
   none); activating a dA/dW/db cell gives exactly the cells of its terms the class
   "contributes"; the controls are the inputs named input-h, input-w, kernel-h,
   kernel-w, stride, padding, dilation, depth, filters (and seed). */
(function () {
  "use strict";

  // ======================================================================= engine

  const A_VALUES = [-4, -3, -2, -1, 1, 2, 3, 4];
  const W_VALUES = [-3, -2, -1, 1, 2, 3];
  const BIAS_VALUES = [-2, -1, 1, 2];
  const DELTA_VALUES = [-3, -2, -1, 1, 2, 3];
  const MAX_SEED = 4294967295;
  const MAX_REDRAWS = 100000;

  /** mulberry32, as cnnlab.explain.instance.Mulberry32: 32-bit state and output. */
  function mulberry32(seed) {
    let state = seed >>> 0;
    function next() {
      state = (state + 0x6d2b79f5) >>> 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return (t ^ (t >>> 14)) >>> 0;
    }
    return { next, pick: (values) => values[next() % values.length] };
  }

  class ConfigError extends Error {
    constructor(message, field) {
      super(message);
      this.field = field;
    }
  }

  const one = (idx) => idx.map((k) => k + 1);
  const key1 = (idx) => one(idx).join(","); // 1-based, as in --json and data-cell
  const key0 = (idx) => idx.join(",");
  const parse0 = (key) => key.split(",").map(Number);

  function range(n) {
    return Array.from({ length: n }, (_, k) => k);
  }

  function product(...ranges) {
    // all index tuples, the last index fastest (row-major, as Python's nested loops)
    let out = [[]];
    for (const n of ranges) {
      const next = [];
      for (const prefix of out) for (let k = 0; k < n; k++) next.push(prefix.concat([k]));
      out = next;
    }
    return out;
  }

  function integer(text, field, what, minimum, maximum) {
    const s = String(text).trim();
    if (!/^-?\d+$/.test(s)) throw new ConfigError(`${what} must be an integer, got '${text}'`, field);
    const value = parseInt(s, 10);
    if (maximum !== undefined && (value < minimum || value > maximum)) {
      throw new ConfigError(`${what} must be between ${minimum} and ${maximum}, got ${value}`, field);
    }
    if (value < minimum) throw new ConfigError(`${what} must be >= ${minimum}, got ${value}`, field);
    return value;
  }

  /** "3x4" → [3, 4]; "3" → [3, 3] (as config.parse_pair). */
  function parsePair(text, name, minimum) {
    const parts = String(text).toLowerCase().replace(/×/g, "x").split("x");
    if (!(parts.length === 1 || parts.length === 2) || !parts.every((p) => /^\s*-?\d+\s*$/.test(p))) {
      throw new ConfigError(`${name} must be an int or AxB (e.g. 3x2), got '${text}'`, name);
    }
    const values = parts.map((p) => parseInt(p, 10));
    const pair = [values[0], values[values.length - 1]];
    if (Math.min(...pair) < minimum) {
      throw new ConfigError(`${name} must be >= ${minimum} in each dimension, got '${text}'`, name);
    }
    return pair;
  }

  function withDerived(cfg) {
    const kEff = [0, 1].map((a) => cfg.dilation[a] * (cfg.kernel[a] - 1) + 1);
    const output = [0, 1].map(
      (a) => Math.floor((cfg.input[a] + 2 * cfg.padding[a] - kEff[a]) / cfg.stride[a]) + 1
    );
    return Object.assign({}, cfg, { kEff, output });
  }

  /** The configuration from the controls' texts, checked as ExplainConfig.make does. */
  function makeConfig(raw, limits) {
    const cfg = withDerived({
      input: [
        integer(raw["input-h"], "input-h", "input rows", 1),
        integer(raw["input-w"], "input-w", "input columns", 1),
      ],
      kernel: [
        integer(raw["kernel-h"], "kernel-h", "kernel rows", 1),
        integer(raw["kernel-w"], "kernel-w", "kernel columns", 1),
      ],
      stride: parsePair(raw.stride, "stride", 1),
      padding: parsePair(raw.padding, "padding", 0),
      dilation: parsePair(raw.dilation, "dilation", 1),
      depth: integer(raw.depth, "depth", "depth", 1),
      filters: integer(raw.filters, "filters", "filters", 1),
    });
    const seed = integer(raw.seed, "seed", "seed", 0, MAX_SEED);
    ["height", "width"].forEach((axis, a) => {
      const padded = cfg.input[a] + 2 * cfg.padding[a];
      if (cfg.kEff[a] > padded) {
        throw new ConfigError(
          `the kernel's effective ${axis} ${cfg.kEff[a]} (dilation·(k-1)+1) is larger than the ` +
            `padded input's ${axis} ${padded}; use a smaller kernel or more padding`,
          a === 0 ? "kernel-h" : "kernel-w"
        );
      }
    });
    const tooBig = [
      [Math.max(...cfg.input) > limits.input, cfg.input[0] > limits.input ? "input-h" : "input-w"],
      [Math.max(...cfg.kernel) > limits.kernel, cfg.kernel[0] > limits.kernel ? "kernel-h" : "kernel-w"],
      [cfg.depth > limits.depth, "depth"],
      [cfg.filters > limits.filters, "filters"],
    ].find(([big]) => big);
    if (tooBig) {
      throw new ConfigError(
        `this configuration is too large to print readably as an HTML page: the limits are ` +
          `input <= ${limits.input}x${limits.input}, kernel <= ${limits.kernel}x${limits.kernel}, ` +
          `depth <= ${limits.depth}, filters <= ${limits.filters}`,
        tooBig[1]
      );
    }
    return { cfg, seed };
  }

  /** Every connection of the layer, as terms.enumerate_terms (0-based keys "i,j,k"). */
  function enumerateTerms(cfg) {
    const [h, w] = cfg.input, [kh, kw] = cfg.kernel, [sh, sw] = cfg.stride;
    const [ph, pw] = cfg.padding, [dh, dw] = cfg.dilation, [oh, ow] = cfg.output;
    const t = { forward: new Map(), inputGrad: new Map(), weightGrad: new Map(), biasGrad: new Map() };
    for (const idx of product(cfg.depth, h, w)) t.inputGrad.set(key0(idx), []);
    for (const idx of product(cfg.filters, cfg.depth, kh, kw)) t.weightGrad.set(key0(idx), []);
    for (let n = 0; n < cfg.filters; n++) {
      t.biasGrad.set(n, []);
      for (let i = 0; i < oh; i++) {
        for (let j = 0; j < ow; j++) {
          const out = key0([n, i, j]);
          const fwd = [];
          t.forward.set(out, fwd);
          t.biasGrad.get(n).push(out);
          for (let d = 0; d < cfg.depth; d++) {
            for (let p = 0; p < kh; p++) {
              for (let q = 0; q < kw; q++) {
                const r = i * sh + p * dh - ph, c = j * sw + q * dw - pw;
                if (!(r >= 0 && r < h && c >= 0 && c < w)) continue; // padding: contributes nothing
                const wi = key0([n, d, p, q]), ai = key0([d, r, c]);
                fwd.push([wi, ai]);
                t.inputGrad.get(ai).push([out, wi]);
                t.weightGrad.get(wi).push([out, ai]);
              }
            }
          }
        }
      }
    }
    return t;
  }

  /** The seeded, non-degenerate numbers, as instance.make_instance (see its docstring). */
  function makeInstance(cfg, terms, seed) {
    const rng = mulberry32(seed);
    const [h, w_] = cfg.input, [kh, kw] = cfg.kernel, [oh, ow] = cfg.output;
    const a = new Map(), w = new Map(), delta = new Map(), b = [];
    for (const idx of product(cfg.depth, h, w_)) a.set(key0(idx), rng.pick(A_VALUES));
    for (const idx of product(cfg.filters, cfg.depth, kh, kw)) w.set(key0(idx), rng.pick(W_VALUES));
    for (let n = 0; n < cfg.filters; n++) b.push(rng.pick(BIAS_VALUES));
    for (const idx of product(cfg.filters, oh, ow)) delta.set(key0(idx), rng.pick(DELTA_VALUES));

    const total = (values) => values.reduce((s, v) => s + v, 0);
    const dx = new Map(), dw = new Map(), db = new Map();
    for (const [cell, items] of terms.inputGrad) {
      dx.set(cell, total(items.map(([dl, wi]) => delta.get(dl) * w.get(wi))));
    }
    for (const [tap, items] of terms.weightGrad) {
      dw.set(tap, total(items.map(([dl, ai]) => delta.get(dl) * a.get(ai))));
    }
    for (const [n, items] of terms.biasGrad) db.set(n, total(items.map((dl) => delta.get(dl))));

    function firstZero() {
      for (const [cell, items] of terms.inputGrad) {
        if (items.length && dx.get(cell) === 0) {
          return items.flatMap(([dl, wi]) => [["delta", dl], ["w", wi]]);
        }
      }
      for (const [tap, items] of terms.weightGrad) {
        if (items.length && dw.get(tap) === 0) {
          return items.flatMap(([dl, ai]) => [["delta", dl], ["a", ai]]);
        }
      }
      for (const [n, items] of terms.biasGrad) {
        if (db.get(n) === 0) return items.map((dl) => ["delta", dl]);
      }
      return null;
    }

    const choices = { delta: [DELTA_VALUES, delta], w: [W_VALUES, w], a: [A_VALUES, a] };
    let redraws = 0;
    for (let factors = firstZero(); factors !== null; factors = firstZero()) {
      if (redraws === MAX_REDRAWS) throw new Error("no non-degenerate instance found");
      const [kind, index] = factors[rng.next() % factors.length];
      const [values, table] = choices[kind];
      const old = table.get(index);
      let sums; // [gradient map, key, coefficient] of every sum the number is in
      if (kind === "delta") {
        const fwd = terms.forward.get(index);
        sums = fwd.map(([wi, ai]) => [dx, ai, w.get(wi)]);
        sums = sums.concat(fwd.map(([wi, ai]) => [dw, wi, a.get(ai)]));
        sums.push([db, parse0(index)[0], 1]);
      } else if (kind === "w") {
        sums = terms.weightGrad.get(index).map(([dl, ai]) => [dx, ai, delta.get(dl)]);
      } else {
        sums = terms.inputGrad.get(index).map(([dl, wi]) => [dw, wi, delta.get(dl)]);
      }
      const others = values.filter((v) => v !== old);
      const start = rng.next() % others.length;
      let best = old, fewest = sums.length + 1;
      for (let k = 0; k < others.length; k++) {
        const v = others[(start + k) % others.length];
        let zeros = 0;
        for (const [g, key, coef] of sums) if (g.get(key) + (v - old) * coef === 0) zeros++;
        if (zeros < fewest) {
          best = v;
          fewest = zeros;
        }
      }
      table.set(index, best);
      for (const [g, key, coef] of sums) g.set(key, g.get(key) + (best - old) * coef);
      redraws++;
    }
    return { a, w, b, delta, dx, dw, db, redraws };
  }

  function nested(map, shape) {
    // a Map keyed "i,j,k" (0-based) → nested arrays of that shape
    const build = (prefix, dims) =>
      dims.length === 0 ? map.get(key0(prefix)) : range(dims[0]).map((k) => build(prefix.concat([k]), dims.slice(1)));
    return build([], shape);
  }

  /** The document `cnnlab explain --json` prints (without "verification"). */
  function explainDoc(cfg, seed) {
    const t = enumerateTerms(cfg);
    const x = makeInstance(cfg, t, seed);
    const [h, w] = cfg.input, [kh, kw] = cfg.kernel, [oh, ow] = cfg.output;
    const net = new Map();
    for (const [out, fwd] of t.forward) {
      net.set(out, fwd.reduce((s, [wi, ai]) => s + x.w.get(wi) * x.a.get(ai), 0) + x.b[parse0(out)[0]]);
    }
    const input_grad = {}, weight_grad = {}, bias_grad = {};
    for (const [cell, items] of t.inputGrad) {
      input_grad[key1(parse0(cell))] = items.map(([dl, wi]) => ({ delta: one(parse0(dl)), w: one(parse0(wi)) }));
    }
    for (const [tap, items] of t.weightGrad) {
      weight_grad[key1(parse0(tap))] = items.map(([dl, ai]) => ({ delta: one(parse0(dl)), a: one(parse0(ai)) }));
    }
    for (const [n, items] of t.biasGrad) bias_grad[String(n + 1)] = items.map((dl) => one(parse0(dl)));
    return {
      config: {
        input: cfg.input.slice(),
        kernel: cfg.kernel.slice(),
        stride: cfg.stride.slice(),
        padding: cfg.padding.slice(),
        dilation: cfg.dilation.slice(),
        depth: cfg.depth,
        filters: cfg.filters,
        output: cfg.output.slice(),
      },
      seed,
      input_grad,
      weight_grad,
      bias_grad,
      numbers: {
        a: nested(x.a, [cfg.depth, h, w]),
        w: nested(x.w, [cfg.filters, cfg.depth, kh, kw]),
        b: x.b.slice(),
        delta: nested(x.delta, [cfg.filters, oh, ow]),
        net: nested(net, [cfg.filters, oh, ow]),
        input_grad: nested(x.dx, [cfg.depth, h, w]),
        weight_grad: nested(x.dw, [cfg.filters, cfg.depth, kh, kw]),
        bias_grad: range(cfg.filters).map((n) => x.db.get(n)),
      },
    };
  }

  /** The lesson's names, as names.Names: a12, δ12, w12, w_b — or a[d,i,j] when needed. */
  function makeNames(cfg) {
    const largest = Math.max(...cfg.input, ...cfg.output, ...cfg.kernel);
    const compact = cfg.depth === 1 && cfg.filters === 1 && largest <= 9;
    const name = (base, idx) =>
      compact ? base + one(idx).slice(-2).join("") : `${base}[${one(idx).join(",")}]`;
    return {
      compact,
      a: (i) => name("a", i),
      delta: (i) => name("δ", i),
      w: (i) => name("w", i),
      net: (i) => name("net", i),
      bias: (n) => (compact ? "w_b" : `w_b[${n + 1}]`),
    };
  }

  /** Step (E3)'s padding along one axis, as functional.conv.input_grad_padding. */
  function inputGradPadding(size, kernel, stride, padding, dilation) {
    const kEff = dilation * (kernel - 1) + 1;
    const leftover = (size + 2 * padding - kEff) % stride;
    return [kEff - 1 - padding, kEff - 1 - padding + leftover];
  }

  function deepEqual(x, y, path) {
    if (Array.isArray(x) || (x && typeof x === "object")) {
      if (typeof y !== "object" || y === null || Array.isArray(x) !== Array.isArray(y)) return path;
      const kx = Object.keys(x), ky = Object.keys(y);
      if (kx.length !== ky.length) return path;
      for (const k of kx) {
        const bad = deepEqual(x[k], y[k], `${path}.${k}`);
        if (bad) return bad;
      }
      return null;
    }
    return x === y ? null : path;
  }

  // ======================================================================= view

  const DATA = JSON.parse(document.getElementById("cnnlab-data").textContent);
  const LIMITS = DATA.limits;
  const FIELDS = ["input-h", "input-w", "kernel-h", "kernel-w", "stride", "padding", "dilation", "depth", "filters", "seed"];
  const form = document.getElementById("controls");
  const errorBox = document.getElementById("config-error");
  const sumText = document.getElementById("sum-text");
  const sumNote = document.getElementById("sum-note");
  const sumBody = document.getElementById("sum-body");
  const NOTHING = sumText.textContent;

  let doc = null; // the document shown
  let names = null;
  let cellIndex = new Map(); // data-cell → td
  let pinned = null; // the selected gradient cell's data-cell
  let shown = undefined; // the data-cell whose terms are marked now (pinned or hovered)
  let sumHeight = 0; // the tallest the sum has been for this configuration

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  const at = (array, idx) => idx.reduce((x, k) => x[k], array);
  const paren = (v) => (v < 0 ? `(${v})` : String(v));
  const pairText = (p) => (p[0] === p[1] ? String(p[0]) : `${p[0]}x${p[1]}`);

  function describe(cfg) {
    const s = pairText;
    return (
      `input ${cfg.input[0]}×${cfg.input[1]}, depth ${cfg.depth}; ${cfg.filters} filter` +
      `${cfg.filters > 1 ? "s" : ""} ${cfg.kernel[0]}×${cfg.kernel[1]}; stride ${s(cfg.stride)}, ` +
      `padding ${s(cfg.padding)}, dilation ${s(cfg.dilation)} → output ${cfg.output[0]}×${cfg.output[1]}`
    );
  }

  /** A table of cells; each spec: {cell, nm, v, cls, label, sym}. The grids of the
      layer (attrs undefined) are keyboard grids; the steppers' matrices are plain tables. */
  function cellTable(label, rows, attrs) {
    const grid = attrs === undefined;
    const body = el("tbody");
    rows.forEach((row, r) => {
      const tr = el("tr", { role: "row" });
      row.forEach((spec, c) => {
        tr.append(
          el(
            "td",
            {
              role: grid ? "gridcell" : "cell",
              tabindex: grid ? (r === 0 && c === 0 ? 0 : -1) : null,
              "data-cell": spec.cell,
              "data-sym": spec.sym,
              class: spec.cls,
              "aria-label": spec.label,
            },
            el("span", { class: "nm", "aria-hidden": "true", text: spec.nm || "" }),
            el("span", { class: "v", "aria-hidden": "true", text: spec.v })
          )
        );
      });
      body.append(tr);
    });
    return el("table", Object.assign({ class: "cells", role: grid ? "grid" : "table", "aria-label": label }, attrs || {}), body);
  }

  function figure(caption, table) {
    return el("figure", { class: "grid" }, el("figcaption", { text: caption }), el("div", { class: "scroll" }, table));
  }

  function valueCell(grid, idx, nm, value, extra) {
    return {
      cell: `${grid}:${key1(idx)}`,
      nm,
      v: String(value),
      label: `${nm} = ${value}`,
      cls: extra,
    };
  }

  function renderGrids() {
    const cfg = doc.config, num = doc.numbers, nm = names;
    const [h, w] = cfg.input, [kh, kw] = cfg.kernel, [oh, ow] = cfg.output, [ph, pw] = cfg.padding;
    const fwd = document.getElementById("forward-grids");
    const bwd = document.getElementById("backward-grids");
    fwd.replaceChildren();
    bwd.replaceChildren();
    const tag = (text) => (nm.compact ? "" : text);
    const padNote = ph || pw ? `, padding ${pairText(cfg.padding)} hatched` : "";
    for (let d = 0; d < cfg.depth; d++) {
      const rows = range(h + 2 * ph).map((R) =>
        range(w + 2 * pw).map((C) => {
          const r = R - ph, c = C - pw;
          if (r < 0 || r >= h || c < 0 || c >= w) {
            return { nm: "pad", v: "0", cls: "pad", label: "padding, 0" };
          }
          return valueCell("a", [d, r, c], nm.a([d, r, c]), num.a[d][r][c]);
        })
      );
      fwd.append(figure(`a${tag(`[${d + 1}]`)}: input${tag(` channel ${d + 1}`)}${padNote}`, cellTable(`a, input channel ${d + 1}`, rows)));
    }
    for (let n = 0; n < cfg.filters; n++) {
      for (let d = 0; d < cfg.depth; d++) {
        const rows = range(kh).map((p) => range(kw).map((q) => valueCell("w", [n, d, p, q], nm.w([n, d, p, q]), num.w[n][d][p][q])));
        fwd.append(figure(`W${tag(`[${n + 1},${d + 1}]`)}: filter${tag(` ${n + 1}, channel ${d + 1}`)}`, cellTable(`W, filter ${n + 1}, input channel ${d + 1}`, rows)));
      }
    }
    for (let n = 0; n < cfg.filters; n++) {
      const rows = range(oh).map((i) => range(ow).map((j) => valueCell("net", [n, i, j], nm.net([n, i, j]), num.net[n][i][j])));
      fwd.append(figure(`net${tag(`[${n + 1}]`)} (${nm.bias(n)} = ${num.b[n]})`, cellTable(`net, filter ${n + 1}`, rows)));
    }
    for (let n = 0; n < cfg.filters; n++) {
      const rows = range(oh).map((i) => range(ow).map((j) => valueCell("delta", [n, i, j], nm.delta([n, i, j]), num.delta[n][i][j])));
      fwd.append(figure(`δ${tag(`[${n + 1}]`)} = dE/dnet (given)`, cellTable(`delta, filter ${n + 1}`, rows)));
    }
    for (let d = 0; d < cfg.depth; d++) {
      const rows = range(h).map((r) =>
        range(w).map((c) => valueCell("dA", [d, r, c], `dE/d${nm.a([d, r, c])}`, num.input_grad[d][r][c], doc.input_grad[key1([d, r, c])].length ? null : "zero"))
      );
      bwd.append(figure(`dE/da${tag(`[${d + 1}]`)}`, cellTable(`dE/da, input channel ${d + 1}`, rows)));
    }
    for (let n = 0; n < cfg.filters; n++) {
      for (let d = 0; d < cfg.depth; d++) {
        const rows = range(kh).map((p) =>
          range(kw).map((q) => valueCell("dW", [n, d, p, q], `dE/d${nm.w([n, d, p, q])}`, num.weight_grad[n][d][p][q], doc.weight_grad[key1([n, d, p, q])].length ? null : "zero"))
        );
        bwd.append(figure(`dE/dW${tag(`[${n + 1},${d + 1}]`)}`, cellTable(`dE/dW, filter ${n + 1}, input channel ${d + 1}`, rows)));
      }
    }
    const biasRow = range(cfg.filters).map((n) => ({
      cell: `db:${n + 1}`,
      nm: `dE/d${nm.bias(n)}`,
      v: String(num.bias_grad[n]),
      label: `dE/d${nm.bias(n)} = ${num.bias_grad[n]}`,
    }));
    bwd.append(figure("dE/dw_b (E6)", cellTable("dE/dw_b", [biasRow])));
    cellIndex = new Map();
    for (const td of document.querySelectorAll("td[data-cell]")) cellIndex.set(td.dataset.cell, td);
  }

  /** The sum of a gradient cell: its name, the cells of its terms, and the text. */
  function sumOf(cellKey) {
    const [grid, idxText] = cellKey.split(":");
    const idx = idxText.split(",").map((k) => Number(k) - 1);
    const num = doc.numbers, nm = names;
    let lhs, symbols, values, targets, total, note;
    if (grid === "dA") {
      const items = doc.input_grad[idxText];
      lhs = `dE/d${nm.a(idx)}`;
      const dl = items.map((t) => t.delta.map((k) => k - 1)), wi = items.map((t) => t.w.map((k) => k - 1));
      symbols = items.map((_, k) => `${nm.delta(dl[k])}·${nm.w(wi[k])}`);
      values = items.map((_, k) => `${paren(at(num.delta, dl[k]))}·${paren(at(num.w, wi[k]))}`);
      targets = items.flatMap((t) => [`delta:${t.delta.join(",")}`, `w:${t.w.join(",")}`]);
      total = at(num.input_grad, idx);
      note = items.length
        ? "Each term: an error δ of an output this input fed, times the weight that connected them. The matrix form (E2)–(E4) below gives the same number."
        : "No window of the forward pass read this input (the stride skipped it, or only padding reached it): it fed no output, so its error is 0.";
    } else if (grid === "dW") {
      const items = doc.weight_grad[idxText];
      lhs = `dE/d${nm.w(idx)}`;
      const dl = items.map((t) => t.delta.map((k) => k - 1)), ai = items.map((t) => t.a.map((k) => k - 1));
      symbols = items.map((_, k) => `${nm.delta(dl[k])}·${nm.a(ai[k])}`);
      values = items.map((_, k) => `${paren(at(num.delta, dl[k]))}·${paren(at(num.a, ai[k]))}`);
      targets = items.flatMap((t) => [`delta:${t.delta.join(",")}`, `a:${t.a.join(",")}`]);
      total = at(num.weight_grad, idx);
      note = items.length
        ? "Weight sharing: this weight met one input at every output position, so its gradient sums δ·a over all of them (E5 below)."
        : "This weight only ever met padding, so its gradient is 0.";
    } else {
      const n = idx[0];
      const items = doc.bias_grad[idxText];
      lhs = `dE/d${nm.bias(n)}`;
      symbols = items.map((t) => nm.delta(t.map((k) => k - 1)));
      values = items.map((t) => paren(at(num.delta, t.map((k) => k - 1))));
      targets = items.map((t) => `delta:${t.join(",")}`);
      total = num.bias_grad[n];
      note = "(E6) The bias is added to every output of its map, so its gradient is the sum of the error map.";
    }
    const text = symbols.length
      ? `${lhs} = ${symbols.join(" + ")} = ${values.join(" + ")} = ${total}`
      : `${lhs} = 0`;
    return { targets, text, note };
  }

  function show(cellKey) {
    if (cellKey === shown) return;
    shown = cellKey;
    for (const td of document.querySelectorAll("td.contributes")) td.classList.remove("contributes");
    for (const td of document.querySelectorAll("td.active")) {
      td.classList.remove("active");
      td.setAttribute("aria-selected", "false");
    }
    if (!cellKey || !cellIndex.has(cellKey)) {
      sumText.textContent = NOTHING;
      sumNote.textContent = "";
      return;
    }
    const s = sumOf(cellKey);
    for (const t of s.targets) cellIndex.get(t).classList.add("contributes");
    const td = cellIndex.get(cellKey);
    td.classList.add("active");
    td.setAttribute("aria-selected", "true");
    sumText.textContent = s.text;
    sumNote.textContent = s.note;
    // the sum's box only grows: were the page to get shorter under a pointer resting on
    // a cell (scrolled to the bottom), the cells would move and the next one be hovered
    const height = sumBody.offsetHeight;
    if (height > sumHeight) {
      sumHeight = height;
      sumBody.style.minHeight = `${height}px`;
    }
  }

  const isGradient = (td) => td && td.dataset.cell && /^(dA|dW|db):/.test(td.dataset.cell);

  function pin(td) {
    pinned = td.dataset.cell;
    shown = undefined;
    show(pinned);
  }

  function moveFocus(td, dr, dc, toEdge) {
    const table = td.closest("table");
    const r = td.parentElement.rowIndex, c = td.cellIndex;
    const rows = table.rows;
    let nr = r + dr, nc = c + dc;
    if (toEdge) nc = dc < 0 ? 0 : rows[r].cells.length - 1;
    nr = Math.max(0, Math.min(rows.length - 1, nr));
    nc = Math.max(0, Math.min(rows[nr].cells.length - 1, nc));
    const target = rows[nr].cells[nc];
    if (target !== td) target.focus(); // focusin moves the grid's tab stop
  }

  const MOVES = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };

  function wireGrids(container) {
    container.addEventListener("focusin", (e) => {
      // roving tab stop: the grid's one Tab stop follows the cell last focused
      const td = e.target.closest("td");
      if (!td || td.getAttribute("tabindex") === "0") return;
      for (const cell of td.closest("table").querySelectorAll("td[tabindex='0']")) cell.setAttribute("tabindex", "-1");
      td.setAttribute("tabindex", "0");
    });
    container.addEventListener("click", (e) => {
      const td = e.target.closest("td");
      if (isGradient(td)) pin(td);
    });
    container.addEventListener("keydown", (e) => {
      const td = e.target.closest("td");
      if (!td) return;
      if (MOVES[e.key]) {
        moveFocus(td, MOVES[e.key][0], MOVES[e.key][1], false);
        e.preventDefault();
      } else if (e.key === "Home" || e.key === "End") {
        moveFocus(td, 0, e.key === "Home" ? -1 : 1, true);
        e.preventDefault();
      } else if ((e.key === "Enter" || e.key === " ") && isGradient(td)) {
        pin(td);
        e.preventDefault();
      }
    });
    container.addEventListener("mouseover", (e) => {
      const td = e.target.closest("td");
      show(isGradient(td) ? td.dataset.cell : pinned);
    });
    container.addEventListener("mouseleave", () => show(pinned));
  }

  // ------------------------------------------------------------------ steppers

  function valueSpec(v, sym) {
    return { v, sym, kind: "value" };
  }
  const ZERO = (kind) => ({ v: 0, sym: "0", kind });

  function insertZeros(m, stride) {
    const rows = m.length, cols = m[0].length;
    const out = range(stride[0] * (rows - 1) + 1).map(() => range(stride[1] * (cols - 1) + 1).map(() => ZERO("inserted")));
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[i * stride[0]][j * stride[1]] = m[i][j];
    return out;
  }

  function padOrCrop(m, pads) {
    // as matrices._pad_or_crop: negative amounts crop
    const [[top, bottom], [left, right]] = pads;
    const rows = m.length + top + bottom, cols = m[0].length + left + right;
    const out = range(rows).map(() => range(cols).map(() => ZERO("pad")));
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const sr = r - top, sc = c - left;
        if (sr >= 0 && sr < m.length && sc >= 0 && sc < m[0].length) out[r][c] = m[sr][sc];
      }
    }
    return out;
  }

  function specsToRows(m, extra) {
    return m.map((row, r) =>
      row.map((s, c) => {
        const cls = [s.kind === "value" ? "" : s.kind, extra ? extra(r, c) : ""].filter(Boolean).join(" ");
        return {
          nm: s.kind === "value" ? s.sym : "",
          v: String(s.v),
          sym: s.sym,
          cls: cls || null,
          label: s.kind === "value" ? `${s.sym} = ${s.v}` : s.kind === "pad" ? "padding, 0" : "inserted zero",
        };
      })
    );
  }

  function matrix(caption, m, attrs, extra) {
    return figure(caption, cellTable(caption, specsToRows(m, extra), attrs));
  }

  function padsText(pads) {
    const one = (k) => (k >= 0 ? String(k) : `crop ${-k}`);
    const [[t, b], [l, r]] = pads;
    return `top ${one(t)}, bottom ${one(b)}, left ${one(l)}, right ${one(r)}`;
  }

  /** Steps (E2)–(E4) for input channel d: every filter's matrices and the windows. */
  function inputGradModel(d) {
    const cfg = doc.config, num = doc.numbers, nm = names;
    const [h, w] = cfg.input, [kh, kw] = cfg.kernel, [oh, ow] = cfg.output;
    const kEff = [0, 1].map((a) => cfg.dilation[a] * (cfg.kernel[a] - 1) + 1);
    const pads = [0, 1].map((a) => inputGradPadding(cfg.input[a], cfg.kernel[a], cfg.stride[a], cfg.padding[a], cfg.dilation[a]));
    const filters = range(cfg.filters).map((n) => {
      const delta = range(oh).map((i) => range(ow).map((j) => valueSpec(num.delta[n][i][j], nm.delta([n, i, j]))));
      const inserted = insertZeros(delta, cfg.stride);
      const padded = padOrCrop(inserted, pads);
      const rotated = range(kh).map((p) => range(kw).map((q) => valueSpec(num.w[n][d][kh - 1 - p][kw - 1 - q], nm.w([n, d, kh - 1 - p, kw - 1 - q]))));
      const kernel = insertZeros(rotated, cfg.dilation); // dilation: R-1 zeros between taps
      return { n, delta, inserted, padded, rotated, kernel };
    });
    const windowAt = (r, c) =>
      filters.flatMap((f) => {
        const products = [];
        for (let u = 0; u < kEff[0]; u++) {
          for (let v = 0; v < kEff[1]; v++) {
            const x = f.padded[r + u][c + v], k = f.kernel[u][v];
            if (x.kind === "value" && k.kind === "value") products.push({ sym: `${x.sym}·${k.sym}`, text: `${paren(x.v)}·${paren(k.v)}`, value: x.v * k.v });
          }
        }
        return products;
      });
    const result = range(h).map((r) => range(w).map((c) => windowAt(r, c).reduce((s, p) => s + p.value, 0)));
    return { d, kEff, pads, filters, windowAt, result, sums: num.input_grad[d] };
  }

  /** Step (E5) for filter n and channel d: the zero-inserted δ slides over the padded a. */
  function weightGradModel(n, d) {
    const cfg = doc.config, num = doc.numbers, nm = names;
    const [h, w] = cfg.input, [ph, pw] = cfg.padding, [kh, kw] = cfg.kernel, [oh, ow] = cfg.output;
    const a = range(h + 2 * ph).map((R) =>
      range(w + 2 * pw).map((C) => {
        const r = R - ph, c = C - pw;
        return r < 0 || r >= h || c < 0 || c >= w ? ZERO("pad") : valueSpec(num.a[d][r][c], nm.a([d, r, c]));
      })
    );
    const delta = range(oh).map((i) => range(ow).map((j) => valueSpec(num.delta[n][i][j], nm.delta([n, i, j]))));
    const inserted = insertZeros(delta, cfg.stride);
    const origin = (p, q) => [p * cfg.dilation[0], q * cfg.dilation[1]];
    const windowAt = (p, q) => {
      const [r0, c0] = origin(p, q);
      const products = [];
      for (let u = 0; u < inserted.length; u++) {
        for (let v = 0; v < inserted[0].length; v++) {
          const x = a[r0 + u][c0 + v], k = inserted[u][v];
          if (x.kind === "value" && k.kind === "value") products.push({ sym: `${k.sym}·${x.sym}`, text: `${paren(k.v)}·${paren(x.v)}`, value: x.v * k.v });
        }
      }
      return products;
    };
    const result = range(kh).map((p) => range(kw).map((q) => windowAt(p, q).reduce((s, x) => s + x.value, 0)));
    return { n, d, a, inserted, origin, windowAt, result, sums: num.weight_grad[n][d] };
  }

  function productsText(lhs, products, total) {
    if (!products.length) return `${lhs}: no product under the window has two numbers (only zeros), so it is 0.`;
    let running = 0;
    const steps = products.map((p) => {
      running += p.value;
      return `${p.sym} = ${p.text} = ${p.value} (running ${running})`;
    });
    return `${lhs} = ${steps.join("; ")} → ${total}`;
  }

  function resultFigure(caption, values, attrs, done, now) {
    const m = values.map((row, r) =>
      row.map((v, c) => {
        const k = r * row.length + c;
        const pending = done !== undefined && k > done;
        return { nm: "", v: pending ? "·" : String(v), cls: pending ? "pending" : k === now ? "done-now" : null, label: pending ? "not yet computed" : String(v) };
      })
    );
    return figure(caption, cellTable(caption, m, attrs));
  }

  function verdict(same) {
    if (!same) console.error("cnnlab explain: the matrix form differs from the sums");
    return el("p", { class: "verdict", "data-equal": same ? "true" : "false", text: same ? "✓ equal: the matrix form gives exactly the sums above." : "✗ they differ" });
  }

  const steppers = {};

  function makeStepper(id, title, selectors, buildSteps) {
    const section = document.getElementById(id);
    section.replaceChildren();
    const state = { step: 0, steps: [], sel: {} };
    const count = el("span", { class: "step-count", "aria-live": "polite" });
    const buttons = {};
    const bar = el("div", { class: "bar", role: "toolbar", "aria-label": `${title}: steps` });
    for (const s of selectors) {
      if (s.count < 2) {
        state.sel[s.key] = 0;
        continue;
      }
      const select = el("select", { id: `${id}-${s.key}`, name: `${id}-${s.key}` }, range(s.count).map((k) => el("option", { value: k, text: `${s.label} ${k + 1}` })));
      state.sel[s.key] = 0;
      select.addEventListener("change", () => {
        state.sel[s.key] = Number(select.value);
        rebuild(0);
      });
      bar.append(el("label", { for: `${id}-${s.key}`, class: "sr" }, `${s.label}: `), select);
    }
    for (const [action, label, aria] of [
      ["first", "◀◀ Start", "first step"],
      ["prev", "◀ Back", "previous step"],
      ["next", "Next ▶", "next step"],
      ["last", "End ▶▶", "last step"],
    ]) {
      buttons[action] = el("button", { type: "button", "data-action": action, "aria-label": aria, text: label });
      buttons[action].addEventListener("click", () => go(action));
      bar.append(buttons[action]);
    }
    bar.append(count);
    const caption = el("p", { class: "caption" });
    const stage = el("div", { class: "stage grids" });
    const products = el("p", { class: "products mono" });
    section.append(el("h2", { id: `${id}-title`, text: title }), bar, caption, stage, products);

    function rebuild(step) {
      state.steps = buildSteps(state.sel);
      render(step);
    }
    function render(step) {
      state.step = Math.max(0, Math.min(state.steps.length - 1, step));
      const s = state.steps[state.step];
      section.dataset.step = String(state.step + 1);
      section.dataset.steps = String(state.steps.length);
      section.dataset.stage = s.stage;
      count.textContent = `Step ${state.step + 1} of ${state.steps.length}: ${s.short}`;
      caption.textContent = s.caption;
      stage.replaceChildren(...s.figures());
      products.replaceChildren(...(s.after ? s.after() : []));
      buttons.first.disabled = buttons.prev.disabled = state.step === 0;
      buttons.next.disabled = buttons.last.disabled = state.step === state.steps.length - 1;
    }
    function go(action) {
      const last = state.steps.length - 1;
      render({ first: 0, prev: state.step - 1, next: state.step + 1, last }[action]);
    }
    section.onkeydown = (e) => {
      if (e.target.tagName === "SELECT" || e.altKey || e.ctrlKey || e.metaKey) return;
      const action = { ArrowRight: "next", ArrowLeft: "prev", Home: "first", End: "last" }[e.key];
      if (!action) return;
      go(action);
      e.preventDefault();
    };
    rebuild(0);
    steppers[id] = { state, go };
  }

  function inputGradSteps(sel) {
    const cfg = doc.config, nm = names;
    const m = inputGradModel(sel.d);
    const [h, w] = cfg.input;
    const tagN = (n) => (cfg.filters > 1 ? ` of filter ${n + 1}` : "");
    const tagD = nm.compact ? "" : `[${sel.d + 1}]`;
    const dil = cfg.dilation[0] > 1 || cfg.dilation[1] > 1;
    const attrs = (name, n) => ({ "data-matrix": name, "data-filter": n + 1 });
    const steps = [
      {
        stage: "delta",
        short: "δ",
        caption: "δ = dE/dnet: the error map of each filter, known from the layer above.",
        figures: () => m.filters.map((f) => matrix(`δ${tagN(f.n)}`, f.delta, attrs("delta", f.n))),
      },
      {
        stage: "inserted",
        short: "(E2) zero-inserted δ",
        caption: `(E2) Insert stride−1 zeros between neighbouring entries (stride ${pairText(cfg.stride)}): the error map a stride-1 layer would have had.`,
        figures: () => m.filters.map((f) => matrix(`(E2) δ${tagN(f.n)}, zeros inserted`, f.inserted, attrs("inserted", f.n))),
      },
      {
        stage: "padded",
        short: "(E3) padded δ",
        caption: `(E3) Pad with k_eff−1−P zeros (a crop when negative), plus the rows/columns no window reached: ${padsText(m.pads)}.`,
        figures: () => m.filters.map((f) => matrix(`(E3) δ${tagN(f.n)}, padded`, f.padded, attrs("padded", f.n))),
      },
      {
        stage: "rot180",
        short: "rot180 W",
        caption: `Rotate each filter by 180°${dil ? `, then insert dilation−1 zeros between its taps (dilation ${pairText(cfg.dilation)})` : ""}: the kernel of (E4).`,
        figures: () => m.filters.map((f) => matrix(`rot180 W${nm.compact ? "" : `[${f.n + 1},${sel.d + 1}]`}${dil ? ", dilated" : ""}`, f.kernel, attrs("rot180", f.n))),
      },
    ];
    for (let r = 0; r < h; r++) {
      for (let c = 0; c < w; c++) {
        const k = r * w + c;
        const lhs = `dE/d${nm.a([sel.d, r, c])}`;
        steps.push({
          stage: "window",
          short: `(E4) window at ${lhs}`,
          caption: `(E4) The rotated filter slides over the padded δ; at row ${r + 1}, column ${c + 1} the products of the cells under it add up to ${lhs}${cfg.filters > 1 ? ", summed over the filters" : ""}.`,
          figures: () => [
            ...m.filters.flatMap((f) => [
              matrix(`(E3) δ${tagN(f.n)} under the window`, f.padded, attrs("window", f.n), (u, v) => (u >= r && u < r + m.kEff[0] && v >= c && v < c + m.kEff[1] ? "window" : "")),
              matrix(`rot180 W${nm.compact ? "" : `[${f.n + 1},${sel.d + 1}]`}`, f.kernel, attrs("kernel", f.n)),
            ]),
            resultFigure(`dE/da${tagD} so far`, m.result, { "data-matrix": "partial" }, k, k),
          ],
          after: () => [productsText(lhs, m.windowAt(r, c), m.result[r][c])],
        });
      }
    }
    const same = JSON.stringify(m.result) === JSON.stringify(m.sums);
    steps.push({
      stage: "result",
      short: "(E4) result = the sums",
      caption: `(E4) dE/da${tagD} = Σ over filters of cross(padded δ, rot180 W). Then δ of the layer below = dE/da ∘ f'(net) there.`,
      figures: () => [resultFigure(`matrix form: dE/da${tagD}`, m.result, { "data-matrix": "result" }), resultFigure(`the sums: dE/da${tagD}`, m.sums, { "data-matrix": "sums" })],
      after: () => [verdict(same)],
    });
    return steps;
  }

  function weightGradSteps(sel) {
    const cfg = doc.config, nm = names;
    const m = weightGradModel(sel.n, sel.d);
    const [kh, kw] = cfg.kernel;
    const rows = m.inserted.length, cols = m.inserted[0].length;
    const tagD = nm.compact ? "" : `[${sel.d + 1}]`;
    const tagN = nm.compact ? "" : `[${sel.n + 1}]`;
    const tagND = nm.compact ? "" : `[${sel.n + 1},${sel.d + 1}]`;
    const steps = [
      {
        stage: "padded-a",
        short: "padded a",
        caption: `The input a${tagD} as the forward pass saw it, with its zero padding (hatched).`,
        figures: () => [matrix(`a${tagD}, padded`, m.a, { "data-matrix": "padded-a" })],
      },
      {
        stage: "inserted",
        short: "(E2) zero-inserted δ",
        caption: `(E2) The error map δ${tagN} with stride−1 zeros inserted: it is the kernel of (E5).`,
        figures: () => [matrix(`(E2) δ${tagN}, zeros inserted`, m.inserted, { "data-matrix": "inserted" })],
      },
    ];
    for (let p = 0; p < kh; p++) {
      for (let q = 0; q < kw; q++) {
        const k = p * kw + q;
        const [r0, c0] = m.origin(p, q);
        const lhs = `dE/d${nm.w([sel.n, sel.d, p, q])}`;
        steps.push({
          stage: "window",
          short: `(E5) window at ${lhs}`,
          caption: `(E5) The zero-inserted δ slides over the padded input${cfg.dilation[0] > 1 || cfg.dilation[1] > 1 ? " in steps of the dilation" : ""}; at tap row ${p + 1}, column ${q + 1} the products under it add up to ${lhs}.`,
          figures: () => [
            matrix(`a${tagD} under the window`, m.a, { "data-matrix": "window" }, (u, v) => (u >= r0 && u < r0 + rows && v >= c0 && v < c0 + cols ? "window" : "")),
            matrix(`(E2) δ${tagN}`, m.inserted, { "data-matrix": "kernel" }),
            resultFigure(`dE/dW${tagND} so far`, m.result, { "data-matrix": "partial" }, k, k),
          ],
          after: () => [productsText(lhs, m.windowAt(p, q), m.result[p][q])],
        });
      }
    }
    const same = JSON.stringify(m.result) === JSON.stringify(m.sums);
    steps.push({
      stage: "result",
      short: "(E5) result = the sums",
      caption: `(E5) dE/dW${tagND} = cross(padded a${tagD}, zero-inserted δ${tagN}).`,
      figures: () => [resultFigure(`matrix form: dE/dW${tagND}`, m.result, { "data-matrix": "result" }), resultFigure(`the sums: dE/dW${tagND}`, m.sums, { "data-matrix": "sums" })],
      after: () => [verdict(same)],
    });
    return steps;
  }

  // ------------------------------------------------------------------ the page

  function render(newDoc) {
    doc = newDoc;
    names = makeNames(doc.config);
    document.getElementById("config-desc").textContent = `${describe(doc.config)}; seed ${doc.seed}`;
    pinned = null;
    shown = undefined;
    sumHeight = 0;
    sumBody.style.minHeight = "";
    renderGrids();
    show(null);
    makeStepper(
      "stepper-dA",
      "Matrix form of dE/da: δ → (E2) insert zeros → (E3) pad → rot180 W → (E4) slide",
      [{ key: "d", label: "input channel", count: doc.config.depth }],
      inputGradSteps
    );
    makeStepper(
      "stepper-dW",
      "Matrix form of dE/dW: padded a, (E2) zero-inserted δ → (E5) slide",
      [
        { key: "n", label: "filter", count: doc.config.filters },
        { key: "d", label: "input channel", count: doc.config.depth },
      ],
      (sel) => weightGradSteps(sel)
    );
  }

  function readControls() {
    const raw = {};
    for (const f of FIELDS) raw[f] = form.elements[f].value;
    return raw;
  }

  function onControls() {
    for (const f of FIELDS) form.elements[f].removeAttribute("aria-invalid");
    let made;
    try {
      made = makeConfig(readControls(), LIMITS);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      errorBox.textContent = e.message;
      if (form.elements[e.field]) form.elements[e.field].setAttribute("aria-invalid", "true");
      document.documentElement.dataset.state = "invalid";
      return;
    }
    errorBox.textContent = "";
    render(explainDoc(made.cfg, made.seed));
    document.documentElement.dataset.state = "ok";
  }

  function start() {
    const c = DATA.config;
    const initial = {
      "input-h": c.input[0],
      "input-w": c.input[1],
      "kernel-h": c.kernel[0],
      "kernel-w": c.kernel[1],
      stride: pairText(c.stride),
      padding: pairText(c.padding),
      dilation: pairText(c.dilation),
      depth: c.depth,
      filters: c.filters,
      seed: DATA.seed,
    };
    for (const f of FIELDS) form.elements[f].value = String(initial[f]);
    for (const [f, limit] of [["input-h", LIMITS.input], ["input-w", LIMITS.input], ["kernel-h", LIMITS.kernel], ["kernel-w", LIMITS.kernel], ["depth", LIMITS.depth], ["filters", LIMITS.filters]]) {
      form.elements[f].max = String(limit);
    }
    form.elements.seed.max = String(MAX_SEED);
    document.getElementById("config-limits").textContent =
      `input ≤ ${LIMITS.input}×${LIMITS.input}, kernel ≤ ${LIMITS.kernel}×${LIMITS.kernel}, ` +
      `depth ≤ ${LIMITS.depth}, filters ≤ ${LIMITS.filters}`;
    form.addEventListener("input", onControls);
    form.addEventListener("submit", (e) => e.preventDefault());
    wireGrids(document.getElementById("forward-grids"));
    wireGrids(document.getElementById("backward-grids"));
    // the page draws what cnnlab computed, and checks that its own port agrees
    const embedded = {
      config: DATA.config,
      seed: DATA.seed,
      input_grad: DATA.input_grad,
      weight_grad: DATA.weight_grad,
      bias_grad: DATA.bias_grad,
      numbers: DATA.numbers,
    };
    render(embedded);
    document.documentElement.dataset.state = "ok";
    document.documentElement.dataset.ready = "true";
    // once the page is up: does the page's own port agree with cnnlab for this case?
    setTimeout(() => {
      const differs = deepEqual(explainDoc(withDerived(DATA.config), DATA.seed), embedded, "doc");
      if (differs) {
        console.error(`cnnlab explain: the page's computation differs from cnnlab's at ${differs}`);
        errorBox.textContent = `This page's own computation differs from cnnlab's (at ${differs}): please report it.`;
      }
      document.documentElement.dataset.checked = differs ? "differs" : "agrees";
    }, 0);
  }

  window.cnnlabExplain = {
    /** The --json document for a configuration given as the controls' texts. */
    compute(raw) {
      const made = makeConfig(raw, LIMITS);
      return explainDoc(made.cfg, made.seed);
    },
    random(seed, count) {
      const rng = mulberry32(seed);
      return range(count).map(() => rng.next());
    },
    document: () => doc,
    steppers,
  };

  start();
})();
