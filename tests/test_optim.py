"""Optimizers: several steps against torch.optim on the same parameters and gradients."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from cnnlab import optim
from cnnlab.nn import Parameter

TOL = 1e-12  # relative, float64
SHAPES = [(3, 4), (5,), (2, 1, 3, 3)]

CONFIGS = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}),
    ("SGD", {"lr": 0.05, "momentum": 0.5, "dampening": 0.3, "weight_decay": 1e-3}),
    ("Adam", {"lr": 1e-2}),
    ("Adam", {"lr": 1e-2, "betas": (0.8, 0.99), "weight_decay": 1e-2}),
    ("Adam", {"lr": 1e-2, "amsgrad": True}),
    ("AdamW", {"lr": 1e-2}),
    ("AdamW", {"lr": 1e-2, "weight_decay": 0.1, "amsgrad": True}),
]


def _grads(step):
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal(s) for s in SHAPES]


def _run_both(name, kwargs, steps, split=None):
    rng = np.random.default_rng(0)
    init = [rng.standard_normal(s) for s in SHAPES]
    params = [Parameter(v.copy()) for v in init]
    opt = getattr(optim, name)(params, **kwargs)
    tparams = [torch.tensor(v.copy(), requires_grad=True) for v in init]
    topt = getattr(torch.optim, name)(tparams, **kwargs)
    for step in range(steps):
        if split is not None and step == split:  # save and restore mid-way
            state = opt.state_dict()
            params = [Parameter(p.data.copy()) for p in params]
            opt = getattr(optim, name)(params, **kwargs)
            opt.load_state_dict(state)
        for p, tp, g in zip(params, tparams, _grads(step)):
            p.grad[...] = g
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()
    return params, tparams


@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_steps_match_torch(name, kwargs):
    params, tparams = _run_both(name, kwargs, steps=6)
    for p, tp in zip(params, tparams):
        ref = tp.detach().numpy()
        assert np.abs(p.data - ref).max() <= TOL * max(1, np.abs(ref).max())


@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_state_dict_round_trip_continues_identically(name, kwargs):
    params, tparams = _run_both(name, kwargs, steps=6, split=3)
    for p, tp in zip(params, tparams):
        ref = tp.detach().numpy()
        assert np.abs(p.data - ref).max() <= TOL * max(1, np.abs(ref).max())


def test_float32_parameters_stay_float32():
    p = Parameter(np.ones(3, dtype=np.float32))
    p.grad[...] = 0.5
    for opt in (optim.SGD([p], 0.1, momentum=0.9), optim.Adam([p]), optim.AdamW([p])):
        opt.step()
        assert p.data.dtype == np.float32


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda ps: optim.SGD(ps, lr=-1), "lr must be"),
        (lambda ps: optim.SGD(ps, lr=0.1, nesterov=True), "nesterov"),
        (lambda ps: optim.Adam(ps, betas=(0.9, 1.0)), "betas"),
        (lambda ps: optim.Adam(ps, eps=0), "eps must be > 0"),
        (lambda ps: optim.SGD([], lr=0.1), "empty parameter list"),
        (lambda ps: optim.build("rmsprop", ps), "unknown optimizer"),
    ],
)
def test_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make([Parameter(np.zeros(2))])


def test_load_state_dict_rejects_mismatch():
    opt = optim.Adam([Parameter(np.zeros(2))])
    opt.step()
    state = opt.state_dict()
    other = optim.Adam([Parameter(np.zeros(3))])
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="does not fit"):
        optim.SGD([Parameter(np.zeros(2))], momentum=0.9).load_state_dict(state)


def test_package_layout_keeps_the_old_names():
    import cnnlab
    from cnnlab.optim import OPTIMIZERS, lr_scheduler, optimizers

    assert optim.SGD is optimizers.SGD and optim.Optimizer is optimizers.Optimizer
    assert OPTIMIZERS["adam"] is optim.Adam and optim.build is optimizers.build
    assert cnnlab.optim.lr_scheduler.StepLR is lr_scheduler.StepLR


# -- non-finite values: no RuntimeWarning, but found by nonfinite() ---------------------
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_overflowing_step_does_not_warn_and_is_found(name):
    p = Parameter(np.ones((2, 3), dtype=np.float32))
    q = Parameter(np.ones(4, dtype=np.float32))
    opt = getattr(optim, name)([p, q], lr=1e30)
    assert opt.nonfinite() is None
    q.grad[...] = 3e20  # g² and lr·g overflow float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step()
        bad = opt.nonfinite()
    assert bad is not None and bad.param_index == 1 and np.isfinite(p.data).all()
    if name == "SGD":  # p - lr·g = -Inf
        assert bad.buffer is None and not np.isfinite(q.data).all()
    else:  # v = β2·v + (1-β2)·g² = Inf: the update is m/Inf = 0, the parameter stays finite
        assert bad.buffer == "exp_avg_sq" and np.isfinite(q.data).all()
        assert not np.isfinite(opt.state["exp_avg_sq"][1]).all()
    assert bad.describe("fc.bias") == (
        "fc.bias" if bad.buffer is None else "the optimizer's exp_avg_sq of fc.bias"
    )
    assert bad.describe().startswith(("parameter 1", "the optimizer's exp_avg_sq of parameter 1"))


def test_nonfinite_finds_nan_and_finite_values_whose_squares_overflow():
    big = Parameter(np.full(5, 3e30, dtype=np.float32))  # finite, but big·big overflows
    nan = Parameter(np.zeros(3))
    opt = optim.SGD([big, nan], lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert opt.nonfinite() is None
        nan.data[1] = np.nan
        assert opt.nonfinite() == optim.NonFinite(1, None)
        big.data[4] = -np.inf
        assert opt.nonfinite() == optim.NonFinite(0, None)


def test_adam_with_a_huge_learning_rate_stops_instead_of_stalling():
    """The issue's `--lr 1e6` case: Adam's second moment overflows while the loss stays
    finite (every later update is then 0, a silent stall at chance accuracy). A loop
    that checks ``nonfinite()`` after each step sees it at once; nothing warns."""
    from cnnlab import init, models, nn

    init.manual_seed(0)
    model = models.build("digits_cnn")
    names = [n for n, _ in model.named_parameters()]
    rng = np.random.default_rng(0)
    x = rng.random((16, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, size=16)
    opt = optim.Adam(model.parameters(), lr=1e6)
    loss_fn = nn.CrossEntropyLoss()
    found = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(5):
            model.zero_grad()
            with np.errstate(all="ignore"):  # as the training loop runs the model
                loss = loss_fn(model(x), y)
                model.backward(loss_fn.backward())
            assert np.isfinite(loss)
            assert all(np.isfinite(p.grad).all() for p in model.parameters())
            opt.step()
            found = opt.nonfinite()
            if found is not None:
                break
    assert found is not None, "the overflow went unnoticed"
    assert found.buffer == "exp_avg_sq"
    assert "exp_avg_sq of " in found.describe(names[found.param_index])
