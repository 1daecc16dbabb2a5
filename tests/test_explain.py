"""cnnlab explain: the lesson's worked example, term lists against an independent
brute-force enumeration, the numeric check, figures and errors."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from clihelp import assert_clean_error, cnnlab
from cnnlab.explain import explain


def test_lesson_case_prints_the_lessons_sums_with_the_corrected_term():
    text = explain(input=(3, 3), kernel=(2, 2), stride=1).to_text()
    lines = {ln.strip() for ln in text.splitlines()}
    assert "dE/da11 = δ11·w11" in lines
    assert "dE/da12 = δ11·w12 + δ12·w11" in lines
    assert "dE/dw11 = δ11·a11 + δ12·a12 + δ21·a21 + δ22·a22" in lines
    # the slide prints δ21·a23 as the third term; the correct one is δ21·a22
    assert "dE/dw12 = δ11·a12 + δ12·a13 + δ21·a22 + δ22·a23" in lines
    assert "(E6) dE/dw_b = δ11 + δ12 + δ21 + δ22" in lines
    assert "they agree" in text


def brute_force(cfg):
    """Independent dependency enumeration from the forward definition (1-based output).

    For each output (n, i, j) and each weight (n, d, p, q), the padded input cell read is
    (i*S + p*R, j*S + q*R); subtract the padding to get the input cell; padding cells
    contribute nothing.
    """
    (h, w), (kh, kw) = cfg["input"], cfg["kernel"]
    (sh, sw), (ph, pw), (rh, rw) = cfg["stride"], cfg["padding"], cfg["dilation"]
    depth, filters = cfg["depth"], cfg["filters"]
    oh = (h + 2 * ph - (rh * (kh - 1) + 1)) // sh + 1
    ow = (w + 2 * pw - (rw * (kw - 1) + 1)) // sw + 1
    inp = {
        f"{d},{r},{c}": []
        for d in range(1, depth + 1)
        for r in range(1, h + 1)
        for c in range(1, w + 1)
    }
    wgt = {
        f"{n},{d},{p},{q}": []
        for n in range(1, filters + 1)
        for d in range(1, depth + 1)
        for p in range(1, kh + 1)
        for q in range(1, kw + 1)
    }
    bias = {
        str(n): [[n, i, j] for i in range(1, oh + 1) for j in range(1, ow + 1)]
        for n in range(1, filters + 1)
    }
    contributions = []
    for n in range(filters):
        for i in range(oh):
            for j in range(ow):
                for d in range(depth):
                    for p in range(kh):
                        for q in range(kw):
                            row = i * sh + p * rh - ph
                            col = j * sw + q * rw - pw
                            if 0 <= row < h and 0 <= col < w:
                                contributions.append(
                                    (n + 1, i + 1, j + 1, d + 1, p + 1, q + 1, row + 1, col + 1)
                                )
    for n, i, j, d, p, q, r, c in contributions:
        inp[f"{d},{r},{c}"].append({"delta": [n, i, j], "w": [n, d, p, q]})
        wgt[f"{n},{d},{p},{q}"].append({"delta": [n, i, j], "a": [d, r, c]})
    return inp, wgt, bias


def _random_configs(count, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        cfg = {
            "input": [int(rng.integers(1, 8)), int(rng.integers(1, 8))],
            "kernel": [int(rng.integers(1, 5)), int(rng.integers(1, 5))],
            "stride": [int(rng.integers(1, 4)), int(rng.integers(1, 4))],
            "padding": [int(rng.integers(0, 5)), int(rng.integers(0, 5))],
            "dilation": [int(rng.integers(1, 3)), int(rng.integers(1, 3))],
            "depth": int(rng.integers(1, 4)),
            "filters": int(rng.integers(1, 4)),
        }
        fits = all(
            cfg["dilation"][a] * (cfg["kernel"][a] - 1) + 1
            <= cfg["input"][a] + 2 * cfg["padding"][a]
            for a in (0, 1)
        )
        if fits:
            out.append(cfg)
    return out


CONFIGS = [
    *_random_configs(240),
    # the shapes naive implementations get wrong, spelled out
    {
        "input": [4, 3],
        "kernel": [2, 2],
        "stride": [2, 2],
        "padding": [0, 0],
        "dilation": [1, 1],
        "depth": 1,
        "filters": 1,
    },  # stride not dividing the width
    {
        "input": [3, 3],
        "kernel": [2, 2],
        "stride": [1, 1],
        "padding": [3, 3],
        "dilation": [1, 1],
        "depth": 2,
        "filters": 2,
    },  # padding >= kernel: (E3) crops
    {
        "input": [5, 6],
        "kernel": [2, 3],
        "stride": [2, 3],
        "padding": [1, 2],
        "dilation": [2, 1],
        "depth": 3,
        "filters": 2,
    },  # everything non-square, dilation
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: json.dumps(c, separators=(",", ":")))
def test_json_terms_equal_brute_force_and_numbers_agree(cfg):
    e = explain(
        cfg["input"],
        cfg["kernel"],
        cfg["stride"],
        cfg["padding"],
        cfg["depth"],
        cfg["filters"],
        cfg["dilation"],
        seed=len(str(cfg)),
    )
    got = json.loads(json.dumps(e.to_json()))
    inp, wgt, bias = brute_force(cfg)
    assert got["input_grad"] == inp
    assert got["weight_grad"] == wgt
    assert got["bias_grad"] == bias
    assert e.verification.max_difference < 1e-12
    # the three computations are independent: check them against each other directly
    for what in (e.verification.dx, e.verification.dw, e.verification.db):
        assert np.abs(what["sums"] - what["layer"]).max(initial=0) < 1e-12
        assert np.abs(what["matrix"] - what["layer"]).max(initial=0) < 1e-12


def test_figures_render_for_a_stride_2_case(tmp_path):
    paths = explain((5, 4), (3, 2), stride=2, padding=1).save_figures(tmp_path)
    pngs = [p for p in paths if p.suffix == ".png"]
    svgs = [p for p in paths if p.suffix == ".svg"]
    assert len(pngs) == len(svgs) == 7
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(p) as img:
            assert 100 <= img.width <= 4000 and 100 <= img.height <= 2000
        assert 2_000 < p.stat().st_size < 500_000
    for p in svgs:
        assert ET.parse(p).getroot().tag.endswith("svg")


def test_latex_has_the_sums_and_matrices():
    tex = explain().to_latex()
    assert (
        r"\frac{\partial E}{\partial w_{12}} &= \delta_{11} a_{12} + \delta_{12} a_{13} + "
        r"\delta_{21} a_{22} + \delta_{22} a_{23}" in tex
    )
    assert r"\begin{bmatrix}" in tex and r"\operatorname{rot180}(W)" in tex


def test_cli_formats_and_errors(tmp_path):
    proc = cnnlab("explain", "--json", "--input", "4x3", "--stride", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["config"]["output"] == [2, 1]
    proc = cnnlab("explain", cwd=tmp_path)
    assert "dE/da12 = δ11·w12 + δ12·w11" in proc.stdout
    assert_clean_error(
        cnnlab("explain", "--input", "12x12", cwd=tmp_path),
        2,
        "too large to print readably",
        "input <= 8x8",
    )
    assert_clean_error(
        cnnlab("explain", "--input", "3", "--kernel", "5", cwd=tmp_path),
        2,
        "larger than the padded input",
    )
    assert_clean_error(cnnlab("explain", "--stride", "0", cwd=tmp_path), 2, "stride must be >= 1")
    assert_clean_error(
        cnnlab("explain", "--padding", "-1", cwd=tmp_path), 2, "padding must be >= 0"
    )
    assert_clean_error(cnnlab("explain", "--kernel", "3xQ", cwd=tmp_path), 2, "AxB")
    assert_clean_error(
        cnnlab("explain", "--input", "20", "--json", cwd=tmp_path), 2, "too large", "input <= 16x16"
    )


# ---------------------------------------------------------------- newcomer defects


def test_numeric_instance_is_never_degenerate():
    """Every a, w, w_b and δ is nonzero, and every gradient entry with terms is nonzero
    (no sum cancels); entries without terms are 0. The README's stride-2 example used to
    get an all-zero δ with the default seed."""
    # CONFIGS holds the README's 4x3, stride 2 case; seed 0 is the default
    cases = [(cfg, seed) for cfg in CONFIGS for seed in (0, 1, len(str(cfg)))]
    for cfg, seed in cases:
        e = explain(
            cfg["input"],
            cfg["kernel"],
            cfg["stride"],
            cfg["padding"],
            cfg["depth"],
            cfg["filters"],
            cfg["dilation"],
            seed=seed,
        )
        x, v = e.instance, e.verification
        for name, values in (("a", x.a), ("w", x.w), ("w_b", x.b), ("δ", x.delta)):
            assert np.all(values != 0), (cfg, seed, name)
            assert np.all(values == np.rint(values)) and np.abs(values).max() <= 4
        for cell, items in e.terms.input_grad.items():
            assert (v.dx["layer"][cell] != 0) == bool(items), (cfg, seed, cell)
        for tap, items in e.terms.weight_grad.items():
            assert (v.dw["layer"][tap] != 0) == bool(items), (cfg, seed, tap)
        assert np.all(v.db["layer"] != 0), (cfg, seed)


def test_numeric_instance_is_non_degenerate_at_the_json_limits():
    for args in (((16, 16), (7, 7), 1, 3, 4, 4), ((16, 15), (2, 3), (3, 1), 0, 4, 4, (1, 2))):
        e = explain(*args, seed=3)
        assert np.all(e.instance.delta != 0) and np.all(e.instance.w != 0)
        dx, dw = e.verification.dx["layer"], e.verification.dw["layer"]
        assert all((dx[c] != 0) == bool(t) for c, t in e.terms.input_grad.items())
        assert all((dw[c] != 0) == bool(t) for c, t in e.terms.weight_grad.items())


@pytest.mark.slow
def test_numeric_instance_is_non_degenerate_on_large_random_layers():
    from cnnlab.explain.config import ExplainConfig
    from cnnlab.explain.instance import make_instance
    from cnnlab.explain.terms import enumerate_terms

    rng = np.random.default_rng(2024)
    done = 0
    while done < 400:
        try:
            cfg = ExplainConfig.make(
                tuple(int(k) for k in rng.integers(1, 17, 2)),
                tuple(int(k) for k in rng.integers(1, 8, 2)),
                tuple(int(k) for k in rng.integers(1, 4, 2)),
                tuple(int(k) for k in rng.integers(0, 5, 2)),
                int(rng.integers(1, 5)),
                int(rng.integers(1, 5)),
                tuple(int(k) for k in rng.integers(1, 4, 2)),
            )
        except ValueError:
            continue  # kernel larger than the padded input
        terms = enumerate_terms(cfg)
        x = make_instance(cfg, int(rng.integers(0, 2**32)), terms)
        for cell, items in terms.input_grad.items():
            got = sum(x.delta[dl] * x.w[wi] for dl, wi in items)
            assert (got != 0) == bool(items), (cfg, cell)
        for tap, items in terms.weight_grad.items():
            got = sum(x.delta[dl] * x.a[ai] for dl, ai in items)
            assert (got != 0) == bool(items), (cfg, tap)
        assert np.all(x.delta.sum(axis=(1, 2)) != 0)
        done += 1


def test_seed_changes_the_numbers_and_is_checked():
    assert not np.array_equal(explain(seed=0).instance.a, explain(seed=1).instance.a)
    np.testing.assert_array_equal(
        explain(seed=2**32 - 1).instance.w, explain(seed=2**32 - 1).instance.w
    )
    for bad in (-1, 2**32, 1.5, True):
        with pytest.raises(ValueError, match="seed"):
            explain(seed=bad)


def test_json_carries_the_numbers_the_text_prints():
    e = explain((4, 3), (2, 2), stride=2, seed=4)
    doc = json.loads(json.dumps(e.to_json()))
    assert doc["seed"] == 4
    num = doc["numbers"]
    np.testing.assert_array_equal(num["a"], e.instance.a)
    np.testing.assert_array_equal(num["w"], e.instance.w)
    np.testing.assert_array_equal(num["delta"], e.instance.delta)
    np.testing.assert_array_equal(num["input_grad"], e.verification.dx["sums"])
    np.testing.assert_array_equal(num["weight_grad"], e.verification.dw["sums"])
    np.testing.assert_array_equal(num["bias_grad"], e.verification.db["sums"])
    # net against the forward definition, written out independently here
    a = e.instance.a
    for i in range(2):
        want = (e.instance.w[0, 0] * a[0, 2 * i : 2 * i + 2, 0:2]).sum() + e.instance.b[0]
        assert num["net"][0][i][0] == want


def test_cli_size_errors_name_the_format_asked_for(tmp_path):
    proc = cnnlab("explain", "--input", "20x20", cwd=tmp_path)
    assert_clean_error(proc, 2, "as text", "input <= 8x8")
    assert "JSON" not in proc.stderr
    proc = cnnlab("explain", "--input", "10", "--latex", cwd=tmp_path)
    assert_clean_error(proc, 2, "as LaTeX", "input <= 8x8")


def test_cli_seed_errors_name_the_flag(tmp_path):
    assert_clean_error(cnnlab("explain", "--seed", "-5", cwd=tmp_path), 2, "--seed", "-5")
    assert_clean_error(cnnlab("explain", "--seed", "x", cwd=tmp_path), 2, "--seed", "'x'")
    assert_clean_error(cnnlab("explain", "--depth", "0", cwd=tmp_path), 2, "--depth")


def test_cli_bad_figures_folder_fails_before_printing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for folder in ("/proc/nope", str(blocker / "figs")):
        proc = cnnlab("explain", "--figures", folder, cwd=tmp_path)
        assert_clean_error(proc, 2, "figures folder", folder)
        assert proc.stdout == ""


def test_cli_output_closed_early_is_silent(tmp_path):
    """`cnnlab explain --json | head`: exit 141 (a tool killed by SIGPIPE), nothing on
    stderr — whether the pipe breaks while writing or at the final flush."""
    for args in (
        ("--json", "--input", "16x16", "--kernel", "7", "--depth", "4", "--filters", "4"),
        ("--input", "3x3"),
    ):
        proc = subprocess.Popen(
            [sys.executable, "-m", "cnnlab", "explain", *args],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader leaves before the first byte
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 141, err
        assert err == ""


def test_a_broken_pipe_that_is_not_stdout_is_still_an_error(monkeypatch, capsys):
    import cnnlab.explain.cli
    from cnnlab.cli import main

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cnnlab.explain.cli, "run_cli", broken)
    assert main(["explain"]) == 1
    assert "Broken pipe" in capsys.readouterr().err
