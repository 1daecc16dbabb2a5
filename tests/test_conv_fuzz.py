"""Fuzzing the convolution against PyTorch (slow: run with ``pytest -m slow``).

Random layer configurations and input shapes, valid or not: wherever PyTorch computes a
result, ours must equal it (float64, 1e-10 relative to the values' scale, for y, dx, dw,
db); wherever PyTorch refuses, ours must raise ValueError — never another exception.
Only 4-D inputs with N >= 1 are drawn: cnnlab does not take unbatched 3-D input, and
PyTorch skips most argument checks on an empty batch, where cnnlab still checks (the
empty batch itself is compared in test_conv_parity.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

from cnnlab.functional import conv2d_backward, conv2d_forward

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning"),
]

TOL = 1e-10


def sometimes(draw, good, bad):
    """Draw from ``good``, or one time in ten from ``bad`` (a mistake)."""
    return draw(bad) if draw(st.integers(0, 9)) == 0 else draw(good)


@st.composite
def layer_and_input(draw):
    """Mostly valid configurations, with every kind of mistake mixed in."""
    groups = sometimes(draw, st.sampled_from([1, 1, 1, 2, 3]), st.integers(-1, 0))
    g = max(groups, 1)
    c = sometimes(draw, st.integers(1, 3).map(lambda k: k * g), st.integers(1, 6))
    f = sometimes(draw, st.integers(1, 3).map(lambda k: k * g), st.integers(1, 6))
    w_channels = sometimes(draw, st.just(max(c // g, 1)), st.integers(1, 4))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    step = st.integers(1, 3)
    stride = sometimes(
        draw, st.one_of(step, st.tuples(step, step)), st.sampled_from([0, -1, (1, 0)])
    )
    dilation = sometimes(draw, st.one_of(step, st.tuples(step, step)), st.sampled_from([0, (0, 2)]))
    pad = st.integers(0, 5)
    padding = sometimes(
        draw,
        st.one_of(pad, st.tuples(pad, pad), st.sampled_from(["same", "valid"])),
        st.sampled_from([-1, (2, -1), "full", "SAME"]),
    )
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 14)), draw(st.integers(1, 14))
    bias = sometimes(draw, st.sampled_from(["none", "ok"]), st.just("wrong"))
    w_dtype = sometimes(draw, st.just(np.float64), st.just(np.float32))
    return n, c, h, w, f, w_channels, kh, kw, stride, padding, dilation, groups, bias, w_dtype


def torch_result(x, w, b, stride, padding, dilation, groups, dy_seed):
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride, padding, dilation, groups)
    dy = np.random.default_rng(dy_seed).standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dy))
    db = None if bt is None else bt.grad.numpy()
    return yt.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), db, dy


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(config=layer_and_input(), seed=st.integers(0, 1000))
def test_valid_equals_torch_and_invalid_raises_value_error(config, seed):
    n, c, h, w_, f, wc, kh, kw, stride, padding, dilation, groups, bias, w_dtype = config
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w_))
    w = rng.standard_normal((f, wc, kh, kw)).astype(w_dtype)
    b = None if bias == "none" else rng.standard_normal(f if bias == "ok" else f + 1)
    try:
        expected = torch_result(x, w, b, stride, padding, dilation, groups, seed + 1)
    except (RuntimeError, ValueError):
        event("invalid: torch refuses")
        with pytest.raises(ValueError):
            conv2d_forward(x, w, b, stride, padding, dilation, groups)
        return
    event("valid")
    keep_fields = seed % 2 == 0  # both ways of computing the weight gradient
    y, cache = conv2d_forward(x, w, b, stride, padding, dilation, groups, keep_fields)
    dx, dw, db = conv2d_backward(expected[4], cache)
    names = ("y", "dx", "dw", "db")
    for name, ours, theirs in zip(names, (y, dx, dw, db), expected[:4], strict=True):
        if theirs is None:
            assert ours is None, name
            continue
        scale = max(1.0, float(np.abs(theirs).max(initial=0.0)))
        err = float(np.abs(ours - theirs).max(initial=0.0))
        assert ours.shape == theirs.shape and err <= TOL * scale, (name, err, config)
