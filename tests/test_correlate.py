"""The primitive and its helpers against independent oracles.

Oracles: scipy.signal.correlate2d (single channel), PyTorch's conv2d (float64), loops
written in this file. Tolerance between the vectorized and loop versions: 1e-12 relative
(they sum in a different order); against scipy/torch 1e-12 relative to the data's scale.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

import cnnlab.functional.correlate as correlate_module
from cnnlab.functional import _correlate_algorithms as algorithms
from cnnlab.functional import (
    correlate2d,
    correlate2d_reference,
    input_grad_padding,
    insert_zeros,
    output_size,
    pad2d,
    receptive_fields,
    rot180,
    weight_correlation,
)

TOL = 1e-12

CASES = [
    # (N, C, H, W, F, kh, kw, stride, dilation, groups)
    (1, 1, 3, 3, 1, 2, 2, 1, 1, 1),
    (2, 3, 7, 5, 4, 3, 2, 1, 1, 1),
    (2, 3, 7, 5, 4, 3, 2, (2, 1), 1, 1),
    (1, 2, 9, 8, 3, 2, 3, 2, (3, 2), 1),
    (3, 4, 6, 6, 6, 3, 3, 1, 1, 2),
    (2, 6, 8, 7, 3, 2, 2, 3, 2, 3),
    (2, 2, 5, 5, 2, 5, 5, 1, 1, 1),  # kernel = input: 1x1 output (the row layout)
    (2, 3, 9, 9, 2, 4, 4, 2, 2, 1),  # 2x2 output, 16 taps: the row layout
]


def close(a, b, tol=TOL):
    scale = max(1.0, float(np.abs(b).max()))
    return float(np.abs(a - b).max()) <= tol * scale


@pytest.mark.parametrize("case", CASES)
def test_vectorized_equals_reference_equals_torch(case):
    n, c, h, w, f, kh, kw, stride, dilation, groups = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c, h, w))
    k = rng.standard_normal((f, c // groups, kh, kw))
    fast = correlate2d(x, k, stride, dilation, groups)
    slow = correlate2d_reference(x, k, stride, dilation, groups)
    ref = torch.nn.functional.conv2d(
        torch.tensor(x), torch.tensor(k), None, stride, 0, dilation, groups
    ).numpy()
    assert fast.shape == slow.shape == ref.shape
    assert close(fast, slow), np.abs(fast - slow).max()
    assert close(fast, ref), np.abs(fast - ref).max()


@pytest.mark.parametrize(
    "algorithm", [algorithms.im2col_columns, algorithms.im2col_rows, algorithms.shift_add]
)
@pytest.mark.parametrize("chunk", [1, 2, 100])
@pytest.mark.parametrize("case", CASES)
def test_every_algorithm_equals_the_reference(algorithm, chunk, case):
    """Each BLAS formulation on its own, whichever correlate2d would pick, and chunked."""
    n, c, h, w, f, kh, kw, stride, dilation, groups = case
    rng = np.random.default_rng(6)
    x = rng.standard_normal((n, c, h, w))
    k = rng.standard_normal((f, c // groups, kh, kw))
    slow = correlate2d_reference(x, k, stride, dilation, groups)
    y = np.full_like(slow, np.nan)
    pairs = [(s, s) if isinstance(s, int) else s for s in (stride, dilation)]
    algorithm(x, k, pairs[0], pairs[1], groups, y, chunk)
    assert close(y, slow), np.abs(y - slow).max()


@pytest.mark.parametrize("case", CASES)
def test_shift_add_skipping_a_zero_border_equals_the_reference(case):
    n, c, h, w, f, kh, kw, stride, dilation, groups = case
    rng = np.random.default_rng(8)
    x = np.zeros((n, c, h + 5, w + 4))
    x[:, :, 3 : 3 + h - 1, 1 : 1 + w] = rng.standard_normal((n, c, h - 1, w))
    k = rng.standard_normal((f, c // groups, kh, kw))
    box = algorithms.nonzero_lattice(x)
    assert box == ((3, 1, h - 1), (1, 1, w))
    slow = correlate2d_reference(x, k, stride, dilation, groups)
    y = np.full_like(slow, np.nan)
    pairs = [(s, s) if isinstance(s, int) else s for s in (stride, dilation)]
    algorithms.shift_add(x, k, pairs[0], pairs[1], groups, y, 2, box)
    assert close(y, slow), np.abs(y - slow).max()


@pytest.mark.parametrize(
    "steps,dilation,pads",
    [
        ((2, 2), (1, 1), ((1, 2), (1, 2))),
        ((3, 2), (2, 1), ((4, 0), (0, 3))),
        ((1, 3), (1, 2), ((2, 2), (5, 1))),
    ],
)
def test_shift_add_on_a_zero_inserted_map_equals_the_reference(steps, dilation, pads):
    """The input gradient's case: stride zeros between entries, a zero border around."""
    rng = np.random.default_rng(9)
    delta = rng.standard_normal((2, 6, 4, 5))
    x = pad2d(insert_zeros(delta, steps), pads)
    lattice = algorithms.nonzero_lattice(x)
    assert lattice == ((pads[0][0], steps[0], 4), (pads[1][0], steps[1], 5))
    k = rng.standard_normal((4, 3, 3, 2))
    slow = correlate2d_reference(x, k, 1, dilation, 2)
    y = np.full_like(slow, np.nan)
    algorithms.shift_add(x, k, (1, 1), dilation, 2, y, 1, lattice)
    assert close(y, slow), np.abs(y - slow).max()
    # a strided correlation may only use unit steps: the lattice is then a box
    rows, cols = algorithms.nonzero_lattice(x, (True, False))
    assert rows == (pads[0][0], 1, steps[0] * 3 + 1) and cols[1] == steps[1]
    assert close(
        correlate2d(x, k, (2, 1), dilation, 2), correlate2d_reference(x, k, (2, 1), dilation, 2)
    )


def test_all_zero_and_nan_inputs():
    x = np.zeros((2, 6, 9, 9))
    assert algorithms.nonzero_lattice(x) == ((0, 1, 0), (0, 1, 0))
    np.testing.assert_array_equal(correlate2d(x, np.ones((1, 6, 3, 3))), 0.0)
    x[0, 1, 4, 5] = np.nan
    assert algorithms.nonzero_lattice(x) == ((4, 1, 1), (5, 1, 1))
    y = correlate2d(x, np.ones((1, 6, 3, 3)))
    assert np.isnan(y[0, 0, 2:5, 3:6]).all() and not np.isnan(y[1]).any()


def test_the_choice_of_algorithm():
    # LeNet conv1's input gradient: 6 error maps in, 1 channel out -> shift-add
    assert algorithms.shift_add_is_cheaper(6, 1, 25, 32 * 32, 28 * 28)
    # its forward pass: 1 channel in, 6 out -> receptive-field columns
    assert not algorithms.shift_add_is_cheaper(1, 6, 25, 32 * 32, 28 * 28)
    # as many channels out as in -> columns
    assert not algorithms.shift_add_is_cheaper(64, 64, 9, 58 * 58, 56 * 56)


@pytest.mark.parametrize("shape", [(3, 3, 2, 2), (7, 5, 3, 2), (4, 9, 4, 1), (6, 6, 6, 6)])
def test_single_channel_equals_scipy(shape):
    h, w, kh, kw = shape
    rng = np.random.default_rng(2)
    image, kernel = rng.standard_normal((h, w)), rng.standard_normal((kh, kw))
    ref = scipy.signal.correlate2d(image, kernel, mode="valid")
    x, k = image[None, None], kernel[None, None]
    assert close(correlate2d(x, k)[0, 0], ref)
    assert close(correlate2d_reference(x, k)[0, 0], ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_computes_in_the_input_dtype(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 6, 6)).astype(dtype)
    k = rng.standard_normal((3, 2, 3, 3)).astype(dtype)
    assert correlate2d(x, k).dtype == dtype
    assert correlate2d_reference(x, k).dtype == dtype
    assert correlate2d(x, rng.standard_normal((1, 2, 5, 5)).astype(dtype)).dtype == dtype


def test_chunked_batches_give_the_same_result(monkeypatch):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((7, 4, 9, 8))
    k = rng.standard_normal((6, 2, 3, 2))
    whole = correlate2d(x, k, (2, 1), (1, 2), 2)
    wide = rng.standard_normal((4, 2, 6, 7))
    whole_rows = correlate2d(x, wide, 1, 1, 2)  # 4x2 output, 84 taps: row layout
    # scratch limit of one sample: every sample is its own chunk
    monkeypatch.setattr(correlate_module, "CHUNK_BYTES", 1)
    np.testing.assert_array_equal(correlate2d(x, k, (2, 1), (1, 2), 2), whole)
    np.testing.assert_array_equal(correlate2d(x, wide, 1, 1, 2), whole_rows)
    assert close(whole_rows, correlate2d_reference(x, wide, 1, 1, 2))


def test_receptive_fields_hold_what_each_tap_sees():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 9, 8))
    fields = receptive_fields(x, (3, 2), (2, 3), (2, 1))
    oh, ow = output_size(9, 3, 2, 2), output_size(8, 2, 3, 1)
    assert fields.shape == (2, 3, 3, 2, oh, ow)
    for n, c, m, q, i, j in np.ndindex(fields.shape):
        assert fields[n, c, m, q, i, j] == x[n, c, i * 2 + m * 2, j * 3 + q]
    with pytest.raises(ValueError, match="does not fit"):
        receptive_fields(x, 10)


@pytest.mark.parametrize("chunk_bytes", [None, 1])
def test_weight_correlation_is_torchs_weight_gradient(monkeypatch, chunk_bytes):
    if chunk_bytes is not None:  # one sample per chunk of per-sample products
        monkeypatch.setattr(correlate_module, "CACHE_CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 4, 9, 10))
    w = rng.standard_normal((6, 2, 3, 2))
    stride, dilation, groups = (2, 1), (1, 3), 2
    xt, wt = torch.tensor(x), torch.tensor(w, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, None, stride, 0, dilation, groups)
    delta = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(delta))
    dw = weight_correlation(receptive_fields(x, (3, 2), stride, dilation), delta, groups)
    assert dw.shape == w.shape and dw.flags.c_contiguous
    assert close(dw, wt.grad.numpy())
    # and correlate2d reading the same fields is the forward product
    fields = receptive_fields(x, (3, 2), stride, dilation)
    assert close(correlate2d(x, w, stride, dilation, groups, fields=fields), yt.detach().numpy())
    with pytest.raises(ValueError, match="fields must be"):
        correlate2d(x, w, 1, dilation, groups, fields=fields)
    with pytest.raises(ValueError, match="do not fit"):
        weight_correlation(fields, delta[:, :, 1:], groups)


def test_output_size_formula():
    for size in range(1, 12):
        for kernel in range(1, 4):
            for stride in range(1, 4):
                for dilation in range(1, 3):
                    k_eff = dilation * (kernel - 1) + 1
                    expected = len(range(0, size - k_eff + 1, stride)) if size >= k_eff else 0
                    assert max(0, output_size(size, kernel, stride, dilation)) == expected


def test_pad2d_pads_and_crops():
    x = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    padded = pad2d(x, ((1, 2), (3, 0)))
    assert padded.shape == (2, 6, 7)
    for c in range(2):
        for i in range(6):
            for j in range(7):
                si, sj = i - 1, j - 3
                inside = 0 <= si < 3 and 0 <= sj < 4
                assert padded[c, i, j] == (x[c, si, sj] if inside else 0.0)
    np.testing.assert_array_equal(pad2d(x, ((-1, 0), (-1, -2))), x[:, 1:, 1:2])
    np.testing.assert_array_equal(
        pad2d(x, ((2, -1), (0, -3))), np.concatenate([np.zeros((2, 2, 1)), x[:, :2, :1]], axis=1)
    )
    np.testing.assert_array_equal(pad2d(x, 1), np.pad(x, ((0, 0), (1, 1), (1, 1))))
    assert pad2d(x, 0) is x
    with pytest.raises(ValueError, match="crops more"):
        pad2d(x, ((-2, -2), (0, 0)))


def test_insert_zeros_and_rot180_by_hand():
    x = np.arange(1, 7, dtype=np.float64).reshape(1, 2, 3)
    z = insert_zeros(x, (2, 3))
    assert z.shape == (1, 3, 7)
    expected = np.zeros((1, 3, 7))
    for i in range(2):
        for j in range(3):
            expected[0, 2 * i, 3 * j] = x[0, i, j]
    np.testing.assert_array_equal(z, expected)
    assert insert_zeros(x, 1) is x
    k = np.arange(6.0).reshape(1, 1, 2, 3)
    rotated = rot180(k)
    for m in range(2):
        for q in range(3):
            assert rotated[0, 0, m, q] == k[0, 0, 1 - m, 2 - q]


@pytest.mark.parametrize(
    "size,kernel,stride,padding,dilation",
    [
        (3, 2, 1, (0, 0), 1),
        (4, 2, 2, (0, 0), 1),
        (5, 3, 2, (3, 3), 1),
        (9, 3, 2, (1, 2), 2),
        (7, 2, 3, (5, 5), 2),
        (6, 4, 1, (1, 2), 1),
    ],
)
def test_input_grad_padding_restores_the_input_size(size, kernel, stride, padding, dilation):
    """Zero-inserted error map + padding, correlated with the k_eff filter, gives H rows."""
    k_eff = dilation * (kernel - 1) + 1
    out = (size + sum(padding) - k_eff) // stride + 1
    before, after = input_grad_padding(size, kernel, stride, padding, dilation)
    assert before == k_eff - 1 - padding[0]
    leftover = size + sum(padding) - k_eff - stride * (out - 1)
    assert after == k_eff - 1 - padding[1] + leftover
    assert stride * (out - 1) + 1 + before + after - k_eff + 1 == size
