"""The lesson's worked examples, with random numbers in place of the symbols.

Each expected value is the lesson's formula written out by hand in this file (indices
start at 1 in the names, as in the lesson). Tolerance: 1e-12 relative (float64).
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.functional import conv2d_backward, conv2d_forward

TOL = 1e-12


@pytest.fixture
def simplest():
    """3x3 input, 2x2 filter, stride 1, depth 1, one filter: net, δ and the gradients."""
    rng = np.random.default_rng(11)
    a = rng.standard_normal((1, 1, 3, 3))
    w = rng.standard_normal((1, 1, 2, 2))
    wb = rng.standard_normal(1)
    net, cache = conv2d_forward(a, w, wb)
    delta = rng.standard_normal(net.shape)
    dx, dw, db = conv2d_backward(delta, cache)
    # named as in the lesson: a11 = a[0,0,0,0], w12 = w[0,0,0,1], d21 = δ[0,0,1,0], ...
    A = {f"a{i + 1}{j + 1}": a[0, 0, i, j] for i in range(3) for j in range(3)}
    W = {f"w{i + 1}{j + 1}": w[0, 0, i, j] for i in range(2) for j in range(2)}
    D = {f"d{i + 1}{j + 1}": delta[0, 0, i, j] for i in range(2) for j in range(2)}
    return A, W, wb[0], D, net, dx, dw, db


def test_forward_net11_and_net12(simplest):
    A, W, wb, _, net, *_ = simplest
    net11 = W["w11"] * A["a11"] + W["w12"] * A["a12"] + W["w21"] * A["a21"] + W["w22"] * A["a22"]
    net12 = W["w11"] * A["a12"] + W["w12"] * A["a13"] + W["w21"] * A["a22"] + W["w22"] * A["a23"]
    assert net[0, 0, 0, 0] == pytest.approx(net11 + wb, rel=TOL)
    assert net[0, 0, 0, 1] == pytest.approx(net12 + wb, rel=TOL)


def test_dE_da11_only_feeds_net11(simplest):
    _, W, _, D, _, dx, _, _ = simplest
    assert dx[0, 0, 0, 0] == pytest.approx(D["d11"] * W["w11"], rel=TOL)


def test_dE_da12_feeds_net11_and_net12(simplest):
    _, W, _, D, _, dx, _, _ = simplest
    expected = D["d11"] * W["w12"] + D["d12"] * W["w11"]
    assert dx[0, 0, 0, 1] == pytest.approx(expected, rel=TOL)


def test_dE_da22_feeds_all_four_outputs(simplest):
    _, W, _, D, _, dx, _, _ = simplest
    expected = D["d11"] * W["w22"] + D["d12"] * W["w21"] + D["d21"] * W["w12"] + D["d22"] * W["w11"]
    assert dx[0, 0, 1, 1] == pytest.approx(expected, rel=TOL)


def test_dE_dw11(simplest):
    A, _, _, D, _, _, dw, _ = simplest
    expected = D["d11"] * A["a11"] + D["d12"] * A["a12"] + D["d21"] * A["a21"] + D["d22"] * A["a22"]
    assert dw[0, 0, 0, 0] == pytest.approx(expected, rel=TOL)


def test_dE_dw12_with_the_corrected_third_term(simplest):
    """The slide prints d21·a23; the correct third term is d21·a22."""
    A, _, _, D, _, _, dw, _ = simplest
    expected = D["d11"] * A["a12"] + D["d12"] * A["a13"] + D["d21"] * A["a22"] + D["d22"] * A["a23"]
    assert dw[0, 0, 0, 1] == pytest.approx(expected, rel=TOL)
    misprint = D["d11"] * A["a12"] + D["d12"] * A["a13"] + D["d21"] * A["a23"] + D["d22"] * A["a23"]
    assert dw[0, 0, 0, 1] != pytest.approx(misprint, rel=1e-6)


def test_dE_dwb_is_the_sum_of_the_error_map(simplest):
    _, _, _, D, _, _, _, db = simplest
    assert db[0] == pytest.approx(D["d11"] + D["d12"] + D["d21"] + D["d22"], rel=TOL)


@pytest.mark.parametrize("height,width,pad", [(5, 5, 1), (6, 5, 0), (5, 8, 1)])
def test_stride2_depth3_two_filters_against_window_sums(height, width, pad):
    """Stride 2, depth 3, two 3x3 filters; (6, 5) unpadded leaves an input row that no
    window reaches (its error must be zero). Expected values: sums over windows written
    below, straight from the lesson's formulas."""
    stride, depth, filters, k = 2, 3, 2, 3
    rng = np.random.default_rng(12)
    a = rng.standard_normal((1, depth, height, width))
    w = rng.standard_normal((filters, depth, k, k))
    wb = rng.standard_normal(filters)
    net, cache = conv2d_forward(a, w, wb, stride=stride, padding=pad)
    delta = rng.standard_normal(net.shape)
    dx, dw, db = conv2d_backward(delta, cache)

    a_p = np.zeros((depth, height + 2 * pad, width + 2 * pad))
    a_p[:, pad : pad + height, pad : pad + width] = a[0]
    out_h, out_w = (height + 2 * pad - k) // stride + 1, (width + 2 * pad - k) // stride + 1
    assert net.shape == (1, filters, out_h, out_w)
    expected_net = np.zeros((filters, out_h, out_w))
    expected_dw = np.zeros_like(w)
    expected_da_p = np.zeros_like(a_p)
    for n in range(filters):
        for i in range(out_h):
            for j in range(out_w):
                # net^l[i,j] = Σ_d Σ_m Σ_q W[d,m,q] · a^{l-1}[d, i·S+m, j·S+q] + w_b
                total = wb[n]
                for d in range(depth):
                    for m in range(k):
                        for q in range(k):
                            r, c = i * stride + m, j * stride + q
                            total += w[n, d, m, q] * a_p[d, r, c]
                            # every weight touches every window it slides over
                            expected_dw[n, d, m, q] += delta[0, n, i, j] * a_p[d, r, c]
                            expected_da_p[d, r, c] += delta[0, n, i, j] * w[n, d, m, q]
                expected_net[n, i, j] = total
    expected_dx = expected_da_p[:, pad : pad + height, pad : pad + width]  # padding: no neurons
    np.testing.assert_allclose(net[0], expected_net, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(dw, expected_dw, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(dx[0], expected_dx, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(db, delta.sum(axis=(0, 2, 3)), rtol=TOL)
    if (height + 2 * pad - k) % stride > pad:  # the last input row was never reached
        assert np.all(dx[0, :, -1, :] == 0)
