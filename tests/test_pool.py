"""Max and average pooling against PyTorch (float64), including padding, overlap, ties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab import nn

TOL = 1e-12  # float64, relative to the values' scale

CASES = [
    # (N, C, H, W, kernel, stride, padding)
    (2, 3, 8, 8, 2, None, 0),  # LeNet's: non-overlapping
    (1, 2, 7, 5, 3, 2, 1),  # overlap, padding, H != W, stride not dividing
    (2, 1, 6, 9, (2, 3), (1, 2), (1, 1)),  # non-square everything, stride 1 overlap
    (3, 2, 5, 5, 3, 1, 0),  # heavy overlap
    (1, 1, 4, 3, 2, 2, 1),  # padding at the edge, odd width
    (2, 2, 7, 9, 2, 2, 1),  # the 2x2 tournament with -inf padding, odd sizes
]


def _torch_pool(kind: str, x: np.ndarray, dy: np.ndarray, k, s, p, cip=True):
    t = torch.tensor(x, requires_grad=True)
    if kind == "max":
        y = TF.max_pool2d(t, k, s, p)
    else:
        y = TF.avg_pool2d(t, k, s, p, count_include_pad=cip)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), t.grad.numpy()


def _check(kind, x, k, s, p, cip=True, seed=0):
    layer = nn.MaxPool2d(k, s, p) if kind == "max" else nn.AvgPool2d(k, s, p, cip)
    y = layer(x)
    dy = np.random.default_rng(seed).standard_normal(y.shape)
    dx = layer.backward(dy)
    ty, tdx = _torch_pool(kind, x, dy, k, s, p, cip)
    assert y.shape == ty.shape
    scale = max(1.0, np.abs(ty).max(), np.abs(tdx).max())
    assert np.abs(y - ty).max() <= TOL * scale, (y, ty)
    assert np.abs(dx - tdx).max() <= TOL * scale, (dx, tdx)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", CASES)
def test_pool_matches_torch(kind, case):
    n, c, h, w, k, s, p = case
    x = np.random.default_rng(1).standard_normal((n, c, h, w))
    _check(kind, x, k, s, p)


@pytest.mark.parametrize("case", CASES)
def test_avg_pool_count_include_pad_false(case):
    n, c, h, w, k, s, p = case
    x = np.random.default_rng(2).standard_normal((n, c, h, w))
    _check("avg", x, k, s, p, cip=False)


@pytest.mark.parametrize("case", CASES)
def test_max_pool_ties_go_to_the_first_maximum_as_torch(case):
    """Small integers make many exact ties; torch picks the first maximum in the window."""
    n, c, h, w, k, s, p = case
    x = np.random.default_rng(3).integers(0, 2, size=(n, c, h, w)).astype(np.float64)
    _check("max", x, k, s, p)


def test_overlapping_windows_accumulate():
    # one big value in the middle wins all four overlapping 2x2 windows (stride 1)
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0
    layer = nn.MaxPool2d(2, stride=1)
    layer(x)
    dx = layer.backward(np.ones((1, 1, 2, 2)))
    assert dx[0, 0, 1, 1] == 4.0 and dx.sum() == 4.0


def test_float32_stays_float32():
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    for layer in (nn.MaxPool2d(2), nn.AvgPool2d(3, 1, 1)):
        y = layer(x)
        assert y.dtype == np.float32
        assert layer.backward(np.ones_like(y)).dtype == np.float32


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kernel_size": 0}, "kernel_size must be >= 1"),
        ({"kernel_size": 2, "padding": 2}, "at most half the kernel"),
        ({"kernel_size": 2, "stride": 0}, "stride must be >= 1"),
        ({"kernel_size": 2, "padding": -1}, "padding must be >= 0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nn.MaxPool2d(**kwargs)


def test_bad_inputs():
    layer = nn.MaxPool2d(3)
    with pytest.raises(ValueError, match="4-D"):
        layer(np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match="larger than the padded input"):
        layer(np.zeros((1, 1, 2, 5)))
    with pytest.raises(ValueError, match="before forward"):
        nn.MaxPool2d(2).backward(np.zeros((1, 1, 1, 1)))
    layer(np.zeros((1, 1, 6, 6)))
    with pytest.raises(ValueError, match="shape"):
        layer.backward(np.zeros((1, 1, 3, 3)))
    with pytest.raises(ValueError, match="float32 or float64"):
        layer(np.zeros((1, 1, 6, 6), dtype=np.int64))


configs = st.tuples(
    st.integers(1, 3),  # N
    st.integers(1, 3),  # C
    st.integers(1, 9),  # H
    st.integers(1, 9),  # W
    st.integers(1, 4),  # kh
    st.integers(1, 4),  # kw
    st.integers(1, 3),  # sh
    st.integers(1, 3),  # sw
    st.integers(0, 2),  # ph
    st.integers(0, 2),  # pw
)


def _torch_accepts(kind, x, k, s, p):
    try:
        t = torch.tensor(x)
        (TF.max_pool2d if kind == "max" else TF.avg_pool2d)(t, k, s, p)
        return True
    except RuntimeError:
        return False


@pytest.mark.slow
@settings(max_examples=1200, deadline=None, derandomize=True)
@given(cfg=configs, kind=st.sampled_from(["max", "avg"]))
def test_fuzz_pool_configs(cfg, kind):
    """Valid configs equal PyTorch; invalid ones raise ValueError, never anything else."""
    n, c, h, w, kh, kw, sh, sw, ph, pw = cfg
    x = np.random.default_rng(h * 31 + w).standard_normal((n, c, h, w))
    k, s, p = (kh, kw), (sh, sw), (ph, pw)
    if _torch_accepts(kind, x, k, s, p):
        _check(kind, x, k, s, p)
    else:
        with pytest.raises(ValueError):
            layer = nn.MaxPool2d(k, s, p) if kind == "max" else nn.AvgPool2d(k, s, p)
            layer(x)


def test_nan_counts_as_the_maximum_as_in_torch():
    x = np.random.default_rng(4).standard_normal((1, 2, 6, 6))
    x[0, 0, 1, 1] = np.nan
    x[0, 1, 2, 3] = np.nan
    for k, s, p in ((2, 2, 0), (3, 1, 1)):
        layer = nn.MaxPool2d(k, s, p)
        y = layer(x)
        dy = np.random.default_rng(5).standard_normal(y.shape)
        dx = layer.backward(dy)
        ty, tdx = _torch_pool("max", x, dy, k, s, p)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(ty))
        np.testing.assert_allclose(y[~np.isnan(y)], ty[~np.isnan(ty)], rtol=0, atol=1e-12)
        np.testing.assert_allclose(dx, tdx, rtol=0, atol=1e-12)
