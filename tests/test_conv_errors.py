"""Bad input to the convolution raises ValueError naming what is wrong and what is expected."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.functional import conv2d_backward, conv2d_forward, correlate2d, correlate2d_reference
from cnnlab.nn import Conv2d

X = np.zeros((2, 3, 5, 5))
W = np.zeros((4, 3, 3, 3))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            {"w": np.zeros((4, 2, 3, 3))},
            r"channel mismatch.*expects x with 2 channels.*got x with 3",
        ),
        ({"w": np.zeros((4, 1, 3, 3)), "groups": 2}, r"groups=2 must divide.*channels \(3\)"),
        (
            {"x": np.zeros((2, 4, 5, 5)), "w": np.zeros((3, 2, 3, 3)), "groups": 2},
            r"groups=2 must divide.*number of filters \(3\)",
        ),
        ({"w": np.zeros((4, 3, 7, 3))}, r"effective height.*7 is larger than the padded.*5"),
        ({"dilation": 3}, r"effective height d·\(k-1\)\+1 = 7 .*expected at most 5"),
        (
            {"w": np.zeros((4, 3, 3, 8)), "padding": 1},
            r"effective width.*8.*padded input's width 7",
        ),
        ({"stride": 0}, r"stride must be >= 1.*got 0"),
        ({"stride": (1, -2)}, r"stride must be >= 1.*got \(1, -2\)"),
        ({"dilation": 0}, r"dilation must be >= 1.*got 0"),
        ({"groups": 0}, r"groups must be >= 1, got 0"),
        ({"padding": -1}, r"padding must be >= 0.*got -1"),
        ({"padding": (0, -3)}, r"padding must be >= 0.*got \(0, -3\)"),
        (
            {"padding": "full"},
            r"padding must be an int, a pair of ints, 'valid' or 'same', got 'full'",
        ),
        ({"padding": "SAME"}, r"'valid' or 'same', got 'SAME'"),
        ({"padding": "same", "stride": 2}, r"padding='same' needs stride 1.*got stride=\(2, 2\)"),
        ({"padding": (1, 2, 3)}, r"padding must be an int or a pair of ints"),
        ({"stride": 1.5}, r"stride must be an int or a pair of ints"),
        ({"x": X[0]}, r"x must be 4-D, got shape \(3, 5, 5\) \(3-D\)"),
        ({"x": X[None]}, r"x must be 4-D, got shape \(1, 2, 3, 5, 5\)"),
        ({"w": W[0]}, r"w must be 4-D"),
        ({"x": X.astype(np.int64)}, r"x must have dtype float32 or float64, got int64"),
        ({"x": X.astype(object)}, r"x must have dtype float32 or float64, got object"),
        ({"w": W.astype(np.int32)}, r"w must have dtype float32 or float64, got int32"),
        ({"x": X.tolist()}, r"x must be a NumPy ndarray, got list"),
        ({"x": X.astype(np.float32)}, r"x has dtype float32 but w has dtype float64"),
        ({"b": np.zeros(3)}, r"b must have shape \(4,\), got \(3,\)"),
        ({"b": np.zeros(4, np.float32)}, r"x has dtype float64 but b has dtype float32"),
    ],
)
def test_conv2d_forward_rejects(kwargs, message):
    args = {"x": X, "w": W, "b": None} | kwargs
    with pytest.raises(ValueError, match=message):
        conv2d_forward(**args)


def test_backward_rejects_dy_of_the_wrong_shape_or_dtype():
    y, cache = conv2d_forward(X, W, None, stride=2, padding=1)
    with pytest.raises(ValueError, match=r"dy must have the forward output's shape \(2, 4, 3, 3\)"):
        conv2d_backward(np.zeros((2, 4, 3, 2)), cache)
    with pytest.raises(ValueError, match=r"dy must be 4-D"):
        conv2d_backward(np.zeros((4, 3, 3)), cache)
    with pytest.raises(ValueError, match=r"dy has dtype float32 but w has dtype float64"):
        conv2d_backward(y.astype(np.float32), cache)
    with pytest.raises(ValueError, match=r"dy must have dtype float32 or float64, got int64"):
        conv2d_backward(y.astype(np.int64), cache)


@pytest.mark.parametrize("fn", [correlate2d, correlate2d_reference])
def test_primitive_rejects(fn):
    with pytest.raises(ValueError, match=r"expects x with 2 channels, got 3"):
        fn(X, np.zeros((4, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"kernel 5x7 is larger than the input 5x5"):
        fn(X, np.zeros((4, 3, 3, 4)), dilation=2)
    with pytest.raises(ValueError, match=r"groups=2 must divide"):
        fn(X, np.zeros((4, 1, 3, 3)), groups=2)


@pytest.mark.parametrize(
    "args,kwargs,message",
    [
        ((3, 4, 3), {"groups": 2}, r"groups=2 must divide in_channels \(3\)"),
        (
            (4, 3, 3),
            {"groups": 2},
            r"groups=2 must divide in_channels \(4\) and out_channels \(3\)",
        ),
        ((3, 4, 0), {}, r"kernel_size must be >= 1"),
        ((0, 4, 3), {}, r"in_channels must be >= 1, got 0"),
        ((3, 4, 3), {"stride": 0}, r"stride must be >= 1"),
        ((3, 4, 3), {"dilation": -1}, r"dilation must be >= 1"),
        ((3, 4, 3), {"padding": -2}, r"padding must be >= 0"),
        ((3, 4, 3), {"padding": "same", "stride": 2}, r"padding='same' needs stride 1"),
        ((3, 4, 3), {"padding": "half"}, r"'valid' or 'same', got 'half'"),
        ((3, 4, 3), {"dtype": np.int32}, r"dtype must be float32 or float64, got int32"),
    ],
)
def test_conv2d_module_rejects_bad_construction(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Conv2d(*args, **kwargs)


def test_conv2d_module_rejects_bad_calls():
    conv = Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"backward called before forward"):
        conv.backward(np.zeros((2, 4, 3, 3), np.float32))
    with pytest.raises(
        ValueError,
        match=r"dtype float64 but the layer's parameters are float32.*"
        r"model.astype\(np.float64\)",
    ):
        conv(X)
    with pytest.raises(
        ValueError, match=r"expects input with 3 channels.*got shape \(2, 2, 5, 5\)"
    ):
        conv(np.zeros((2, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"must be 4-D"):
        conv(np.zeros((3, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"kernel's effective height"):
        conv(np.zeros((1, 3, 2, 5), np.float32))
    conv(np.zeros((2, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"dy must have the forward output's shape \(2, 4, 3, 3\)"):
        conv.backward(np.zeros((2, 4, 3, 4), np.float32))
