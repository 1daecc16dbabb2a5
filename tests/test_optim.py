"""Optimizers: several steps against torch.optim on the same parameters and gradients."""

from __future__ import annotations

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
