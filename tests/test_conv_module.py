"""nn.Conv2d against torch.nn.Conv2d: values, gradients, accumulation, init, repr, state.

Tolerances: float64 1e-10 relative to the values' scale; float32 1e-4.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cnnlab.nn import Conv2d, Sequential

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

CONFIGS = [
    # (in, out, kernel, stride, padding, dilation, groups, bias)
    (1, 6, 5, 1, 2, 1, 1, True),
    (3, 4, (3, 2), (2, 1), (1, 3), 1, 1, True),
    (4, 6, 3, 2, 0, (2, 1), 2, False),
    (2, 2, (2, 4), 1, "same", 2, 2, True),
    (3, 5, 2, 3, "valid", 1, 1, True),
]


def twins(config, dtype, seed=0):
    c_in, c_out, kernel, stride, padding, dilation, groups, bias = config
    ours = Conv2d(
        c_in,
        c_out,
        kernel,
        stride,
        padding,
        dilation,
        groups,
        bias,
        dtype=dtype,
        rng=np.random.default_rng(seed),
    )
    theirs = torch.nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups, bias)
    theirs = theirs.to(torch.float64 if dtype == np.float64 else torch.float32)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    return ours, theirs


def close(ours, ref, tol):
    scale = max(1.0, float(np.abs(ref).max()))
    assert ours.shape == ref.shape
    assert float(np.abs(ours - ref).max()) <= tol * scale, (ours, ref)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("config", CONFIGS)
def test_matches_torch_and_accumulates(config, dtype, tol):
    ours, theirs = twins(config, dtype)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, config[0], 9, 8)).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    y = ours(x)
    yt = theirs(xt)
    close(y, yt.detach().numpy(), tol)
    assert y.dtype == dtype
    dy = rng.standard_normal(y.shape).astype(dtype)
    for _ in range(2):  # two backward calls: gradients add up, as in torch
        dx = ours.backward(dy)
        theirs(xt).backward(torch.tensor(dy))
    close(dx, xt.grad.numpy() / 2, tol)
    close(ours.weight.grad, theirs.weight.grad.numpy(), tol)
    if ours.bias is not None:
        close(ours.bias.grad, theirs.bias.grad.numpy(), tol)
    ours.zero_grad()
    assert not ours.weight.grad.any()


def test_needs_input_grad_false_returns_none_but_still_accumulates():
    conv = Conv2d(2, 3, 3, padding=1, dtype=np.float64, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((2, 2, 5, 5))
    dy = np.random.default_rng(2).standard_normal((2, 3, 5, 5))
    conv(x)
    conv.backward(dy)
    full = conv.weight.grad.copy(), conv.bias.grad.copy()
    conv.zero_grad()
    conv.needs_input_grad = False
    conv(x)
    assert conv.backward(dy) is None
    np.testing.assert_array_equal(conv.weight.grad, full[0])
    np.testing.assert_array_equal(conv.bias.grad, full[1])


@pytest.mark.parametrize("config", CONFIGS)
def test_repr_matches_torch(config):
    ours, theirs = twins(config, np.float32)
    assert repr(ours) == repr(theirs)


def test_torch_default_init_bounds_and_spread():
    conv = Conv2d(8, 64, (5, 3), groups=2, rng=np.random.default_rng(0))
    fan_in = 8 // 2 * 5 * 3
    bound = 1 / math.sqrt(fan_in)
    w, b = conv.weight.data, conv.bias.data
    assert w.shape == (64, 4, 5, 3) and b.shape == (64,)
    assert w.dtype == b.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound  # bias: the weight's fan-in
    # uniform on [-bound, bound]: std = bound/√3 (3840 samples: within 5%)
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.05
    assert np.abs(b).max() > bound / 2  # spread over the bound, not a tiny one
    again = Conv2d(8, 64, (5, 3), groups=2, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(again.weight.data, w)


def test_state_dict_keys_and_round_trip_from_torch():
    theirs = torch.nn.Conv2d(3, 4, 3, bias=False)
    ours = Conv2d(3, 4, 3, bias=False)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]
    assert ours.bias is None
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    np.testing.assert_array_equal(ours.weight.data, theirs.weight.detach().numpy())
    assert list(Conv2d(3, 4, 3).state_dict()) == ["weight", "bias"]
    model = Sequential(Conv2d(1, 2, 3), Conv2d(2, 2, 1))
    assert list(model.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]


def test_astype_float64_then_float64_input():
    conv = Conv2d(1, 2, 2)
    conv.astype(np.float64)
    y = conv(np.ones((1, 1, 3, 3)))
    assert y.dtype == np.float64
    assert conv.backward(np.ones_like(y)).dtype == np.float64
