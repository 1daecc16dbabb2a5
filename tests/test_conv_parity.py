"""conv2d_forward / conv2d_backward against PyTorch (torch.nn.functional.conv2d + autograd).

Tolerances: float64 — max |ours - torch| <= 1e-10 · max(1, max |torch|) for y, dx, dw, db;
float32 — 1e-4 relative to the same scale. The adjoint identities hold to 1e-12 relative
to the sum of the absolute products.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.functional import conv2d_backward, conv2d_forward

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

TOL64 = 1e-10
TOL32 = 1e-4
ADJOINT_TOL = 1e-12


def torch_conv(x, w, b, stride, padding, dilation, groups, dy):
    """y, dx, dw, db from PyTorch autograd (computed in the arrays' dtype)."""
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride, padding, dilation, groups)
    if dy is None:
        return yt.detach().numpy(), None, None, None
    yt.backward(torch.tensor(dy))
    db = None if bt is None else bt.grad.numpy()
    return yt.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), db


def make(config, dtype, seed=0):
    n, c, h, w_, f, kh, kw, stride, padding, dilation, groups, bias = config
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w_)).astype(dtype)
    w = rng.standard_normal((f, c // groups, kh, kw)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype) if bias else None
    return x, w, b, stride, padding, dilation, groups


def assert_close(name, ours, ref, tol):
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != torch {ref.shape}"
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    err = float(np.abs(ours.astype(np.float64) - ref).max(initial=0.0))
    assert err <= tol * scale, (
        f"{name}: max error {err:.3e} > {tol:g}·{scale:.3g}\nours:\n{ours}\ntorch:\n{ref}"
    )


def check_against_torch(config, dtype, tol, seed=0, keep_fields=True):
    x, w, b, stride, padding, dilation, groups = make(config, dtype, seed)
    y, cache = conv2d_forward(x, w, b, stride, padding, dilation, groups, keep_fields)
    dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(dtype)
    dx, dw, db = conv2d_backward(dy, cache)
    ref = torch_conv(x, w, b, stride, padding, dilation, groups, dy)
    for name, ours, theirs in zip(("y", "dx", "dw"), (y, dx, dw), ref[:3], strict=True):
        assert ours is not None and ours.dtype == dtype, f"{name} dtype {ours.dtype}"
        assert_close(name, ours, theirs, tol)
    if b is None:
        assert db is None
    else:
        assert db is not None and db.dtype == dtype
        assert_close("db", db, ref[3], tol)


# (N, C, H, W, F, kh, kw, stride, padding, dilation, groups, bias): the shapes that break
# implementations, covered whatever hypothesis draws.
NASTY = [
    (1, 1, 3, 3, 1, 2, 2, 1, 0, 1, 1, True),  # the lesson's example
    (2, 2, 4, 5, 3, 2, 3, 1, (4, 3), 1, 1, True),  # padding >= kernel size
    (2, 3, 4, 3, 2, 2, 1, 2, 0, 1, 1, True),  # 4x3 input, stride 2 does not divide
    (1, 2, 7, 8, 3, 3, 2, (2, 3), (1, 2), 1, 1, False),  # non-square stride/padding
    (2, 2, 9, 7, 3, 3, 2, 1, 1, (2, 3), 1, True),  # dilation
    (1, 2, 6, 6, 2, 2, 2, 3, 5, 2, 1, True),  # dilation, stride, padding > k_eff
    (2, 4, 6, 5, 6, 3, 3, 1, 1, 1, 2, True),  # groups
    (2, 3, 5, 5, 3, 3, 3, 2, 1, 1, 3, True),  # depthwise
    (1, 6, 10, 9, 4, 2, 3, (2, 1), (0, 3), (3, 1), 2, False),  # everything at once
    (2, 2, 5, 6, 3, 4, 3, 1, "same", 1, 1, True),  # 'same', even kernel: extra at bottom
    (1, 2, 5, 6, 2, 2, 2, 1, "same", (3, 2), 2, True),  # 'same' with dilation, groups
    (1, 1, 4, 4, 2, 4, 4, 1, "valid", 1, 1, True),  # kernel = input
    (2, 3, 7, 5, 4, 1, 1, 3, 0, 1, 1, True),  # 1x1 kernel, stride 3
    (1, 1, 2, 5, 1, 4, 2, 1, (1, 0), 1, 1, True),  # kernel fits only thanks to padding
    (1, 2, 3, 3, 2, 3, 3, 4, 6, 1, 1, True),  # stride > kernel, big padding
    (3, 2, 8, 3, 5, 3, 1, (3, 1), (2, 0), (2, 1), 1, False),  # C_in != C_out, H >> W
]


# keep_fields: the weight gradient read from the forward's receptive fields, or
# computed as its own correlation; both must match
@pytest.mark.parametrize("keep_fields", [True, False])
@pytest.mark.parametrize("config", NASTY)
def test_nasty_cases_float64(config, keep_fields):
    check_against_torch(config, np.float64, TOL64, keep_fields=keep_fields)


@pytest.mark.parametrize("keep_fields", [True, False])
@pytest.mark.parametrize("config", NASTY)
def test_nasty_cases_float32(config, keep_fields):
    check_against_torch(config, np.float32, TOL32, keep_fields=keep_fields)


@st.composite
def conv_configs(draw):
    """Valid configurations, kept small; padding ranges past the kernel size."""
    groups = draw(st.integers(1, 3))
    c, f = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    n = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.one_of(st.just((1, 1)), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    kinds = ["int", "pair", "valid"] + (["same"] if stride == (1, 1) else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "int":
        padding = draw(st.integers(0, 5))
        pads = (padding, padding)
    elif kind == "pair":
        padding = (draw(st.integers(0, 5)), draw(st.integers(0, 5)))
        pads = padding
    else:
        padding = kind
        pads = (0, 0) if kind == "valid" else (dilation[0] * (kh - 1), dilation[1] * (kw - 1))
    k_eff = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    total = pads if kind == "same" else (2 * pads[0], 2 * pads[1])
    low = (max(1, k_eff[0] - total[0]), max(1, k_eff[1] - total[1]))
    h = draw(st.integers(low[0], low[0] + 5))
    w = draw(st.integers(low[1], low[1] + 5))
    bias = draw(st.booleans())
    return (n, c, h, w, f, kh, kw, stride, padding, dilation, groups, bias)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(config=conv_configs(), seed=st.integers(0, 2**16), keep_fields=st.booleans())
def test_hypothesis_parity_float64(config, seed, keep_fields):
    check_against_torch(config, np.float64, TOL64, seed, keep_fields)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(config=conv_configs(), seed=st.integers(0, 2**16), keep_fields=st.booleans())
def test_hypothesis_parity_float32(config, seed, keep_fields):
    check_against_torch(config, np.float32, TOL32, seed, keep_fields)


@pytest.mark.parametrize("config", NASTY)
def test_adjoint_identities(config):
    """<conv(x), δ> = <x, dx(δ)> and <conv_w(x), δ> = <w, dw(δ)> (no bias: linear maps)."""
    x, w, _, stride, padding, dilation, groups = make(config, np.float64)
    y, cache = conv2d_forward(x, w, None, stride, padding, dilation, groups)
    delta = np.random.default_rng(7).standard_normal(y.shape)
    dx, dw, db = conv2d_backward(delta, cache)
    assert db is None
    lhs = float(np.vdot(y, delta))
    scale = float(np.vdot(np.abs(y), np.abs(delta)))
    assert abs(lhs - float(np.vdot(x, dx))) <= ADJOINT_TOL * scale, (lhs, np.vdot(x, dx))
    assert abs(lhs - float(np.vdot(w, dw))) <= ADJOINT_TOL * scale, (lhs, np.vdot(w, dw))


def test_fields_are_kept_only_when_asked_and_small_enough(monkeypatch):
    import cnnlab.functional.conv as conv_module
    from cnnlab.functional import kernels

    monkeypatch.setattr(kernels, "_active", False)  # the NumPy path keeps them
    x, w, b, *_ = make((2, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1, True), np.float64)
    assert conv2d_forward(x, w, b, padding=1)[1].fields.shape == (2, 3, 3, 3, 8, 8)
    assert conv2d_forward(x, w, b, padding=1, keep_fields=False)[1].fields is None
    monkeypatch.setattr(conv_module, "CHUNK_BYTES", 2 * 3 * 9 * 64 * 8 - 1)
    assert conv2d_forward(x, w, b, padding=1)[1].fields is None


def test_need_dx_false_skips_input_gradient_only():
    x, w, b, stride, padding, dilation, groups = make(NASTY[8], np.float64)
    y, cache = conv2d_forward(x, w, b, stride, padding, dilation, groups)
    dy = np.random.default_rng(3).standard_normal(y.shape)
    dx, dw, db = conv2d_backward(dy, cache, need_dx=False)
    full = conv2d_backward(dy, cache)
    assert dx is None
    np.testing.assert_array_equal(dw, full[1])
    assert db is None and full[2] is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_keep_the_input_dtype_and_inputs_are_untouched(dtype):
    x, w, b, *_ = make((2, 3, 6, 5, 4, 3, 2, 2, 1, 1, 1, True), dtype)
    saved = (x.copy(), w.copy(), b.copy())
    y, cache = conv2d_forward(x, w, b, 2, 1)
    dx, dw, db = conv2d_backward(np.ones_like(y), cache)
    assert {a.dtype for a in (y, dx, dw, db)} == {np.dtype(dtype)}
    for before, after in zip(saved, (x, w, b), strict=True):
        np.testing.assert_array_equal(before, after)


def test_non_contiguous_inputs_match_torch():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 4, 7, 6)).transpose(0, 1, 3, 2)[::2]  # strided view
    w = rng.standard_normal((3, 4, 2, 3))[:, :, ::-1]
    y, cache = conv2d_forward(x, w, None, (2, 1), 1)
    dy = rng.standard_normal(y.shape).transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2)
    dx, dw, _ = conv2d_backward(dy, cache)
    ref = torch_conv(x.copy(), w.copy(), None, (2, 1), 1, 1, 1, dy.copy())
    for name, ours, theirs in zip(("y", "dx", "dw"), (y, dx, dw), ref[:3], strict=True):
        assert_close(name, ours, theirs, TOL64)


@pytest.mark.parametrize("groups", [1, 2])
def test_an_empty_batch_works_as_in_torch(groups):
    rng = np.random.default_rng(9)
    x = np.zeros((0, 4, 5, 5))
    w = rng.standard_normal((6, 4 // groups, 3, 3))
    b = rng.standard_normal(6)
    y, cache = conv2d_forward(x, w, b, 2, 1, 1, groups)
    dy = np.zeros(y.shape)
    dx, dw, db = conv2d_backward(dy, cache)
    ref = torch_conv(x, w, b, 2, 1, 1, groups, dy)
    for name, ours, theirs in zip(("y", "dx", "dw", "db"), (y, dx, dw, db), ref, strict=True):
        assert_close(name, ours, theirs, TOL64)
