"""cnnlab.gradcheck: passes correct gradients, catches wrong ones, refuses bad arguments.

The oracle for "wrong" is a gradient broken on purpose (a dropped rot180, a transposed
weight gradient, an off-by-one entry); "right" is the conv layer PyTorch agrees with.
"""

from __future__ import annotations

import argparse
import re
import subprocess

import numpy as np
import pytest

import cnnlab
import cnnlab.functional.conv as conv_module
import cnnlab.gradcheck as gc
from clihelp import assert_clean_error
from clihelp import cnnlab as cnnlab_cli
from cnnlab.functional import conv2d_backward, conv2d_forward
from cnnlab.nn import Conv2d


def small_input(shape=(2, 2, 5, 7), seed=1):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"stride": 2, "padding": 3},
        {"stride": (2, 1), "dilation": (1, 2), "padding": (1, 2)},
        {"padding": "same", "bias": False},
    ],
)
def test_passes_on_the_conv_layer(kwargs):
    conv = Conv2d(2, 4, (3, 2), rng=np.random.default_rng(0), **kwargs)
    report = cnnlab.gradcheck(conv, small_input())
    assert report.passed, str(report)
    names = [c.name for c in report.checks]
    assert names == ["input", "weight"] + (["bias"] if conv.bias is not None else [])
    assert report["weight"].checked == conv.weight.data.size


def test_module_is_restored_after_the_check():
    conv = Conv2d(2, 3, 2, rng=np.random.default_rng(0))
    conv.weight.grad += 1.5
    before = conv.weight.data.copy()
    gc.gradcheck(conv, small_input().astype(np.float32))
    assert conv.weight.data.dtype == np.float32
    np.testing.assert_array_equal(conv.weight.data, before)
    assert np.all(conv.weight.grad == 1.5)


class ConvWithoutRot180(Conv2d):
    """The classic mistake: correlating the error map with the filter as it is."""

    def backward(self, dy):
        from cnnlab.functional import kernels

        original = conv_module.rot180
        conv_module.rot180 = lambda k: k
        try:
            with kernels.use("numpy"):  # the mistake is made on the NumPy lines (E4)
                return super().backward(dy)
        finally:
            conv_module.rot180 = original


def test_catches_a_backward_that_drops_the_rot180():
    conv = ConvWithoutRot180(2, 3, (3, 2), padding=1, rng=np.random.default_rng(0))
    report = gc.gradcheck(conv, small_input())
    assert not report.passed
    assert not report["input"].passed
    assert report["weight"].passed and report["bias"].passed
    worst = report["input"]
    assert abs(worst.analytic - worst.numeric) > 1e-3
    assert "FAILED" in str(report) and "WRONG" in str(report)


def conv_fn(x, w, b):
    return conv2d_forward(x, w, b, stride=2, padding=1)[0]


def conv_grads(dy, x, w, b):
    _, cache = conv2d_forward(x, w, b, stride=2, padding=1)
    return conv2d_backward(dy, cache)


def test_function_with_its_backward_passes_and_a_wrong_one_fails():
    rng = np.random.default_rng(3)
    inputs = (
        rng.standard_normal((2, 2, 5, 6)),
        rng.standard_normal((3, 2, 3, 3)),
        rng.standard_normal(3),
    )
    report = gc.gradcheck(conv_fn, inputs, backward=conv_grads)
    assert report.passed, str(report)
    assert [c.name for c in report.checks] == ["input0", "input1", "input2"]

    def transposed_dw(dy, x, w, b):
        dx, dw, db = conv_grads(dy, x, w, b)
        return dx, dw[:, :, ::-1, ::-1], db

    bad = gc.gradcheck(conv_fn, inputs, backward=transposed_dw)
    assert not bad.passed and not bad["input1"].passed and bad["input0"].passed


def test_report_points_at_the_wrong_entry():
    x = np.random.default_rng(4).standard_normal((3, 4))

    def backward(dy, x):
        grad = dy * np.cos(x)
        grad[2, 1] += 0.5  # one wrong entry
        return (grad,)

    report = gc.gradcheck(np.sin, x, backward=backward, seed=5)
    check = report["input0"]
    assert not report.passed and check.index == (2, 1)
    dy = np.random.default_rng(5).standard_normal((3, 4))  # the projection gradcheck draws
    assert check.numeric == pytest.approx(dy[2, 1] * np.cos(x[2, 1]), rel=1e-6)
    assert check.analytic == pytest.approx(dy[2, 1] * np.cos(x[2, 1]) + 0.5, rel=1e-12)


def test_max_entries_checks_a_subset():
    conv = Conv2d(2, 3, 2, dtype=np.float64, rng=np.random.default_rng(0))
    report = gc.gradcheck(conv, small_input(), max_entries=10)
    assert report.passed and report["input"].checked == 10 and report["bias"].checked == 3


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"eps": 0.0}, r"eps must be > 0"),
        ({"eps": -1e-6}, r"eps must be a non-negative number"),
        ({"atol": -1.0}, r"atol must be a non-negative number"),
        ({"rtol": "x"}, r"rtol must be a non-negative number"),
        ({"seed": -1}, r"seed must be >= 0"),
        ({"max_entries": 0}, r"max_entries must be >= 1"),
        ({"inputs": [small_input(), small_input()]}, r"a Module takes one input array, got 2"),
        ({"inputs": []}, r"at least one array"),
        ({"inputs": [[1.0, 2.0]]}, r"inputs\[0\] must be a NumPy ndarray"),
        ({"inputs": np.ones((1, 2, 3, 3), dtype=int)}, r"inputs\[0\] must have dtype float32"),
        ({"backward": lambda dy, x: (dy,)}, r"backward= is for functions"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    args = {"fn_or_module": Conv2d(2, 3, 2), "inputs": small_input()} | kwargs
    with pytest.raises(ValueError, match=message):
        gc.gradcheck(**args)


def test_bad_function_arguments_raise_value_error():
    x = small_input()
    with pytest.raises(ValueError, match=r"needs backward=callable"):
        gc.gradcheck(np.sin, x)
    with pytest.raises(ValueError, match=r"Module or a callable"):
        gc.gradcheck(42, x, backward=lambda dy, x: (dy,))
    with pytest.raises(ValueError, match=r"returned 2 gradients for 1 inputs"):
        gc.gradcheck(np.sin, x, backward=lambda dy, x: (dy, dy))
    with pytest.raises(ValueError, match=r"has shape \(3,\), expected \(2, 2, 5, 7\)"):
        gc.gradcheck(np.sin, x, backward=lambda dy, x: (np.zeros(3),))
    with pytest.raises(ValueError, match=r"must return an ndarray"):
        gc.gradcheck(lambda x: 1.0, x, backward=lambda dy, x: (dy,))


def parse(argv):
    parser = argparse.ArgumentParser()
    gc.add_cli_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        "--stride 2 --padding 3 --kernel 3x2 --input 5x7".split(),
        "--channels 4x6 --groups 2 --dilation 2x1 --input 8x7 --seed 3 --no-bias".split(),
        "--padding same --kernel 4x3 --channels 3".split(),
    ],
)
def test_cli_passes_on_conv(argv, capsys):
    assert gc.run_cli(parse(argv)) == 0
    out = capsys.readouterr().out
    assert "Conv2d(" in out and "PASSED" in out


def test_cli_returns_1_when_the_gradient_is_wrong(monkeypatch, capsys):
    monkeypatch.setattr(cnnlab.nn, "Conv2d", ConvWithoutRot180)
    assert gc.run_cli(parse(["--padding", "2"])) == 1
    assert "FAILED" in capsys.readouterr().out


def test_cli_bad_values_raise_value_error(monkeypatch):
    with pytest.raises(ValueError, match=r"--kernel must be N or AxB"):
        gc.run_cli(parse(["--kernel", "3by2"]))
    with pytest.raises(ValueError, match=r"kernel's effective height"):
        gc.run_cli(parse(["--kernel", "9", "--padding", "0"]))
    monkeypatch.delattr(cnnlab.nn, "MaxPool2d", raising=False)
    with pytest.raises(ValueError, match=r"--layer 'maxpool' is not available"):
        gc.run_cli(parse(["--layer", "maxpool"]))


# -- a check too big to run in full: refused with a way out, or shown with a progress bar --


def test_library_progress_bar_goes_to_stderr_and_changes_nothing(capsys):
    conv = Conv2d(2, 3, 2, dtype=np.float64, rng=np.random.default_rng(0))
    quiet = gc.gradcheck(conv, small_input(), max_entries=10)
    assert capsys.readouterr().err == ""
    shown = gc.gradcheck(conv, small_input(), max_entries=10, progress=True)
    err = capsys.readouterr().err
    assert "gradcheck" in err and "/23" in err  # 10 input + 10 of 24 weight + 3 bias entries
    assert str(shown) == str(quiet)


def checked(report_text):
    """``{name: entries checked}`` from a printed report."""
    rows = re.findall(r"^  (\w+)\s+(\([\d, ]*\))\s+(\d+) ", report_text, flags=re.M)
    return {name: int(count) for name, _, count in rows}


def test_cli_max_entries_all_or_n(capsys):
    assert gc.run_cli(parse(["--input", "6x6", "--max-entries", "all"])) == 0
    # batch 2, 2 input channels, 6x6; weight 3x2x3x2; bias 3: every entry
    assert checked(capsys.readouterr().out) == {"input": 144, "weight": 36, "bias": 3}
    assert gc.run_cli(parse(["--input", "6x6", "--max-entries", "7"])) == 0
    out = capsys.readouterr().out
    assert "at most 7 random entries" in out and "--max-entries all" in out
    assert checked(out) == {"input": 7, "weight": 7, "bias": 3}
    for bad in ("0", "many"):
        with pytest.raises(SystemExit):
            parse(["--max-entries", bad])


def test_cli_progress_bar_only_when_it_will_take_long(monkeypatch, capsys):
    assert gc.run_cli(parse([])) == 0  # the default: milliseconds
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(gc, "PROGRESS_SECONDS", 0.0)  # now anything counts as long
    assert gc.run_cli(parse([])) == 0
    assert "gradcheck" in capsys.readouterr().err


def test_cli_refuses_a_check_estimated_too_long_and_says_how_to_go_on(monkeypatch):
    monkeypatch.setattr(gc, "LIMIT_SECONDS", 0.0)
    with pytest.raises(
        ValueError, match=r"about .*here; .*--max-entries \d+: about .*--max-entries all"
    ):
        gc.run_cli(parse([]))
    assert gc.run_cli(parse(["--max-entries", "all"])) == 0  # the way beyond the limit


def test_cli_big_layer_is_refused_at_once_with_a_way_out(tmp_path):
    argv = ("gradcheck", "--input", "200x200", "--channels", "8")
    try:
        proc = cnnlab_cli(*argv, cwd=tmp_path, timeout=60)  # it used to run for hours
    except subprocess.TimeoutExpired:
        pytest.fail("cnnlab gradcheck --input 200x200 --channels 8 ran for over a minute")
    assert_clean_error(proc, 2, "640,392 entries", "--max-entries", "--max-entries all")
    assert proc.stdout.count("\n") == 1  # the layer line only: no check was run


def test_cli_big_layer_with_max_entries_checks_a_subset(tmp_path):
    proc = cnnlab_cli(
        "gradcheck", "--input", "200x200", "--channels", "8", "--max-entries", "5", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert checked(proc.stdout) == {"input": 5, "weight": 5, "bias": 5}
    assert "PASSED" in proc.stdout
