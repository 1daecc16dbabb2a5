"""Learning-rate schedules against torch.optim.lr_scheduler, step by step.

Each case builds the same schedule on a cnnlab optimizer and on a torch optimizer with
the same settings and compares the learning rates (and OneCycleLR's momentum / beta1)
over at least 50 steps. Resuming from a JSON round trip of ``state_dict()`` must then
continue exactly as the uninterrupted schedule.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from cnnlab import optim
from cnnlab.nn import Parameter
from cnnlab.optim import lr_scheduler as L

TL = torch.optim.lr_scheduler
TOL = 1e-12  # relative; the schedules repeat PyTorch's float operations, so 0 in practice
STEPS = 80


def _optimizers(name="SGD", lr=0.1, **kwargs):
    ours = getattr(optim, name)([Parameter(np.zeros(3))], lr=lr, **kwargs)
    theirs = getattr(torch.optim, name)([torch.nn.Parameter(torch.zeros(3))], lr=lr, **kwargs)
    return ours, theirs


def _momentum(opt):
    """beta1 / momentum of a cnnlab or a torch optimizer."""
    if isinstance(opt, torch.optim.Optimizer):
        group = opt.param_groups[0]
        return group["betas"][0] if "betas" in group else group["momentum"]
    return opt.betas[0] if hasattr(opt, "betas") else opt.momentum


# (id, optimizer, optimizer kwargs, build(L or TL, opt), steps)
CASES = [
    ("step", "SGD", {}, lambda M, o: M.StepLR(o, step_size=7, gamma=0.5), STEPS),
    ("step-default-gamma", "Adam", {}, lambda M, o: M.StepLR(o, 10), STEPS),
    ("multistep", "SGD", {}, lambda M, o: M.MultiStepLR(o, [5, 9, 9, 30, 60], 0.3), STEPS),
    ("exponential", "SGD", {}, lambda M, o: M.ExponentialLR(o, gamma=0.95), STEPS),
    ("cosine", "SGD", {}, lambda M, o: M.CosineAnnealingLR(o, T_max=20, eta_min=1e-3), 90),
    ("cosine-50", "AdamW", {}, lambda M, o: M.CosineAnnealingLR(o, T_max=50), 120),
    ("cosine-T1", "SGD", {}, lambda M, o: M.CosineAnnealingLR(o, T_max=1), 60),
    ("linear-warmup", "SGD", {}, lambda M, o: M.LinearLR(o, 0.1, 0.9, total_iters=13), 60),
    ("linear-decay", "SGD", {}, lambda M, o: M.LinearLR(o, 1.0, 0.05, total_iters=40), 60),
    ("linear-default", "Adam", {}, lambda M, o: M.LinearLR(o), 60),
    ("constant", "SGD", {}, lambda M, o: M.ConstantLR(o, factor=0.3, total_iters=8), 60),
    ("constant-none", "SGD", {}, lambda M, o: M.ConstantLR(o, factor=1.0, total_iters=0), 60),
    (
        "sequential-warmup-cosine",
        "SGD",
        {"momentum": 0.9},
        lambda M, o: M.SequentialLR(
            o,
            [M.LinearLR(o, 0.01, total_iters=10), M.CosineAnnealingLR(o, T_max=50)],
            milestones=[10],
        ),
        70,
    ),
    (
        "sequential-three",
        "Adam",
        {},
        lambda M, o: M.SequentialLR(
            o,
            [M.ConstantLR(o, 0.1, 20), M.ExponentialLR(o, 0.9), M.StepLR(o, 5, 0.5)],
            milestones=[12, 30],
        ),
        70,
    ),
    (
        "sequential-warmup-multistep",
        "SGD",
        {},
        lambda M, o: M.SequentialLR(
            o,
            [M.LinearLR(o, 0.2, total_iters=6), M.MultiStepLR(o, [20, 35])],
            milestones=[6],
        ),
        60,
    ),
]

ONECYCLE = [
    ("adam-cos", "Adam", {}, {"max_lr": 0.5, "total_steps": 60}),
    ("adamw-linear", "AdamW", {}, {"max_lr": 0.01, "total_steps": 75, "anneal_strategy": "linear"}),
    ("sgd-cos", "SGD", {"momentum": 0.9}, {"max_lr": 0.2, "epochs": 6, "steps_per_epoch": 10}),
    ("sgd-no-momentum", "SGD", {}, {"max_lr": 0.2, "total_steps": 55}),
    (
        "sgd-three-phase",
        "SGD",
        {"momentum": 0.9, "nesterov": True},
        {"max_lr": 1.0, "total_steps": 64, "three_phase": True, "pct_start": 0.25},
    ),
    (
        "adam-three-linear",
        "Adam",
        {},
        {
            "max_lr": 3e-3,
            "total_steps": 90,
            "three_phase": True,
            "anneal_strategy": "linear",
            "div_factor": 10.0,
            "final_div_factor": 100.0,
            "base_momentum": 0.8,
            "max_momentum": 0.9,
        },
    ),
    ("adam-no-cycle", "Adam", {}, {"max_lr": 0.1, "total_steps": 50, "cycle_momentum": False}),
]


def _assert_close(ours, ref, what):
    assert abs(ours - ref) <= TOL * max(1.0, abs(ref)), f"{what}: cnnlab {ours!r}, torch {ref!r}"


def _walk(sched, opt, steps):
    """lr (and momentum) before each of ``steps`` optimizer steps, then step the schedule."""
    out = []
    for _ in range(steps):
        out.append((sched.get_last_lr()[0], _momentum(opt)))
        opt.step()  # torch warns if its scheduler steps before its optimizer
        sched.step()
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_schedule_matches_torch(case):
    _, opt_name, opt_kwargs, build, steps = case
    ours, theirs = _optimizers(opt_name, **opt_kwargs)
    sched, tsched = build(L, ours), build(TL, theirs)
    a, b = _walk(sched, ours, steps), _walk(tsched, theirs, steps)
    for t, ((lr, _), (tlr, _)) in enumerate(zip(a, b)):
        _assert_close(lr, tlr, f"step {t}")
    assert ours.lr == sched.get_last_lr()[0]
    _assert_close(ours.lr, theirs.param_groups[0]["lr"], "after the last step")
    assert ours.initial_lr == theirs.param_groups[0]["initial_lr"]


@pytest.mark.parametrize("case", ONECYCLE, ids=[c[0] for c in ONECYCLE])
def test_onecycle_matches_torch_with_momentum(case):
    _, opt_name, opt_kwargs, kwargs = case
    ours, theirs = _optimizers(opt_name, **opt_kwargs)
    sched, tsched = L.OneCycleLR(ours, **kwargs), TL.OneCycleLR(theirs, **kwargs)
    total = sched.total_steps
    assert total >= 50
    # every optimizer step gets a rate; the step after the last one is allowed too
    a, b = _walk(sched, ours, total), _walk(tsched, theirs, total)
    a.append((sched.get_last_lr()[0], _momentum(ours)))
    b.append((tsched.get_last_lr()[0], _momentum(theirs)))
    for t, ((lr, m), (tlr, tm)) in enumerate(zip(a, b)):
        _assert_close(lr, tlr, f"lr at step {t}")
        _assert_close(m, tm, f"momentum at step {t}")
    lrs = [lr for lr, _ in a]  # the peak is max_lr when p·T - 1 is a whole step
    assert 0.99 * kwargs["max_lr"] < max(lrs) <= kwargs["max_lr"] * (1 + 1e-15)


def test_onecycle_refuses_to_step_past_total_steps():
    opt = optim.Adam([Parameter(np.zeros(2))])
    sched = L.OneCycleLR(opt, max_lr=0.1, total_steps=50)
    for _ in range(50):
        sched.step()
    last, momentum = sched.get_last_lr(), opt.betas
    with pytest.raises(ValueError, match=r"stepped 51 times.*total_steps=50"):
        sched.step()
    assert sched.last_epoch == 50 and sched.get_last_lr() == last and opt.lr == last[0]
    assert opt.betas == momentum
    with pytest.raises(ValueError, match="total_steps=50"):  # and again: nothing moved
        sched.step()


def test_onecycle_phase_of_no_length():
    """pct_start·total_steps = 1 makes the first phase 0 → 0: PyTorch divides 0 by 0
    (ZeroDivisionError); cnnlab ends the phase where it starts, at max_lr."""
    opt = optim.SGD([Parameter(np.zeros(2))], lr=0.1, momentum=0.9)
    sched = L.OneCycleLR(opt, max_lr=1.0, total_steps=10, pct_start=0.1)
    assert sched.get_last_lr() == [1.0] and opt.momentum == 0.85


def test_continuing_with_last_epoch_matches_torch():
    """last_epoch > -1 (PyTorch's way to continue) needs initial_lr, as in PyTorch."""
    for build in (
        lambda M, o: M.CosineAnnealingLR(o, T_max=30, last_epoch=7),
        lambda M, o: M.StepLR(o, 4, last_epoch=7),
        lambda M, o: M.ExponentialLR(o, 0.9, last_epoch=3),
    ):
        ours, theirs = _optimizers("SGD", lr=0.05)
        ours.initial_lr = 0.1
        theirs.param_groups[0]["initial_lr"] = 0.1
        a, b = _walk(build(L, ours), ours, 50), _walk(build(TL, theirs), theirs, 50)
        for t, ((lr, _), (tlr, _)) in enumerate(zip(a, b)):
            _assert_close(lr, tlr, f"step {t}")
    with pytest.raises(ValueError, match="initial_lr"):
        L.StepLR(optim.SGD([Parameter(np.zeros(2))]), 3, last_epoch=5)


# -- state_dict: JSON, and resuming mid-schedule ------------------------------------------
def _resume_cases():
    for case in CASES:
        yield pytest.param(case[1], case[2], case[3], case[4], id=case[0])
    for name, opt_name, opt_kwargs, kwargs in ONECYCLE:
        yield pytest.param(
            opt_name,
            opt_kwargs,
            lambda M, o, kw=kwargs: M.OneCycleLR(o, **kw),
            None,
            id=f"onecycle-{name}",
        )


@pytest.mark.parametrize("opt_name, opt_kwargs, build, steps", list(_resume_cases()))
def test_state_dict_resumes_exactly(opt_name, opt_kwargs, build, steps):
    ours, _ = _optimizers(opt_name, **opt_kwargs)
    sched = build(L, ours)
    steps = steps or sched.total_steps
    reference = _walk(sched, ours, steps)
    for split in (0, 1, 9, 10, steps // 2, steps - 1):
        opt, _ = _optimizers(opt_name, **opt_kwargs)
        first = build(L, opt)
        head = _walk(first, opt, split)
        state = first.state_dict()
        text = json.dumps(state, allow_nan=False)  # plain data, no NaN, no objects
        assert json.loads(text) == state
        # a new run: fresh optimizer and schedule, then the saved state
        opt, _ = _optimizers(opt_name, **opt_kwargs)
        resumed = build(L, opt)
        resumed.load_state_dict(json.loads(text))
        tail = _walk(resumed, opt, steps - split)
        assert head + tail == reference, f"resumed after {split} steps"


def test_state_dict_holds_settings_under_torch_names():
    opt = optim.SGD([Parameter(np.zeros(2))], lr=0.1)
    state = L.CosineAnnealingLR(opt, T_max=12, eta_min=0.01).state_dict()
    assert state == {
        "name": "CosineAnnealingLR",
        "last_epoch": 0,
        "_step_count": 1,
        "base_lrs": [0.1],
        "_last_lr": [0.1],
        "T_max": 12,
        "eta_min": 0.01,
    }
    torch_state = TL.CosineAnnealingLR(_optimizers()[1], T_max=12, eta_min=0.01).state_dict()
    assert {k: torch_state[k] for k in state if k != "name"} == {
        k: v for k, v in state.items() if k != "name"
    }


def test_load_state_dict_restores_the_saved_settings_as_torch():
    opt = optim.SGD([Parameter(np.zeros(2))], lr=0.1)
    sched = L.StepLR(opt, step_size=3)
    for _ in range(4):
        sched.step()
    other = L.StepLR(optim.SGD([Parameter(np.zeros(2))], lr=0.1), step_size=10)
    other.load_state_dict(sched.state_dict())
    assert other.step_size == 3 and other.last_epoch == 4
    assert other.optimizer.lr == opt.lr == pytest.approx(0.01)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda s: s.update(name="StepLR"), "is for 'StepLR', not CosineAnnealingLR"),
        (lambda s: s.pop("T_max"), r"missing \['T_max'\]"),
        (lambda s: s.update(extra=1), r"unexpected \['extra'\]"),
        (lambda s: s.update(T_max=0), "T_max must be an integer >= 1"),
        (lambda s: s.update(base_lrs=[0.1, 0.2]), "base_lrs"),
        (lambda s: s.update(last_epoch="3"), "last_epoch"),
    ],
)
def test_load_state_dict_rejects_bad_state_and_changes_nothing(mutate, match):
    opt = optim.SGD([Parameter(np.zeros(2))], lr=0.1)
    sched = L.CosineAnnealingLR(opt, T_max=12)
    sched.step()
    state = sched.state_dict()
    mutate(state)
    before = sched.state_dict()
    with pytest.raises(ValueError, match=match):
        sched.load_state_dict(state)
    assert sched.state_dict() == before and opt.lr == before["_last_lr"][0]


def test_sequential_state_checks_its_schedulers():
    def make():
        opt = optim.SGD([Parameter(np.zeros(2))], lr=0.1)
        warm = L.LinearLR(opt, 0.1, total_iters=3)
        return L.SequentialLR(opt, [warm, L.ExponentialLR(opt, 0.9)], milestones=[3])

    state = make().state_dict()
    bad = json.loads(json.dumps(state))
    bad["_schedulers"] = bad["_schedulers"][:1]
    with pytest.raises(ValueError, match="holds 1 schedulers, this one has 2"):
        make().load_state_dict(bad)
    bad = json.loads(json.dumps(state))
    bad["_schedulers"][1]["name"] = "StepLR"
    with pytest.raises(ValueError, match="'StepLR', not ExponentialLR"):
        make().load_state_dict(bad)


# -- argument errors ------------------------------------------------------------------------
def _sgd():
    return optim.SGD([Parameter(np.zeros(2))], lr=0.1)


class _Plain(optim.Optimizer):
    """An optimizer without momentum or betas."""

    def _update(self, i, p):
        p.data -= self.lr * p.grad


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: L.StepLR(object(), 3), "needs a cnnlab optimizer"),
        (lambda: L.StepLR(_sgd(), 0), "step_size must be an integer >= 1"),
        (lambda: L.StepLR(_sgd(), 2.5), "step_size must be an integer"),
        (lambda: L.StepLR(_sgd(), 3, gamma=0), "gamma must be a finite number in"),
        (lambda: L.MultiStepLR(_sgd(), 5), "milestones must be a list"),
        (lambda: L.MultiStepLR(_sgd(), [3, 0]), "each milestone must be an integer >= 1"),
        (lambda: L.ExponentialLR(_sgd(), gamma=float("nan")), "gamma"),
        (lambda: L.CosineAnnealingLR(_sgd(), T_max=0), "T_max must be an integer >= 1"),
        (lambda: L.CosineAnnealingLR(_sgd(), 10, eta_min=-1), "eta_min"),
        (lambda: L.LinearLR(_sgd(), start_factor=0), r"start_factor .*\(0, 1\]"),
        (lambda: L.LinearLR(_sgd(), end_factor=1.5), r"end_factor .*\[0, 1\]"),
        (lambda: L.LinearLR(_sgd(), total_iters=0), "total_iters must be an integer >= 1"),
        (lambda: L.ConstantLR(_sgd(), factor=0), "factor"),
        (lambda: L.StepLR(_sgd(), 3, last_epoch=-2), "last_epoch must be an integer >= -1"),
        (lambda: L.OneCycleLR(_sgd(), max_lr=0.1), "total_steps, or both epochs and"),
        (lambda: L.OneCycleLR(_sgd(), 0.1, total_steps=0), "total_steps must be an integer"),
        (lambda: L.OneCycleLR(_sgd(), 0.1, epochs=2, steps_per_epoch=0), "steps_per_epoch"),
        (lambda: L.OneCycleLR(_sgd(), 0, total_steps=10), "max_lr"),
        (lambda: L.OneCycleLR(_sgd(), 0.1, 10, pct_start=1.2), "pct_start"),
        (lambda: L.OneCycleLR(_sgd(), 0.1, 10, anneal_strategy="exp"), "anneal_strategy"),
        (lambda: L.OneCycleLR(_sgd(), 0.1, 10, div_factor=0), "div_factor"),
        (lambda: L.OneCycleLR(_sgd(), 0.1, 10, three_phase="yes"), "three_phase"),
        (
            lambda: L.OneCycleLR(optim.Adam([Parameter(np.zeros(2))]), 0.1, 10, max_momentum=1.0),
            r"max_momentum .*\[0, 1\)",
        ),
        (
            lambda: L.OneCycleLR(_Plain([Parameter(np.zeros(2))], 0.1), 0.1, 10),
            "cycle_momentum=False",
        ),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_onecycle_without_momentum_cycling_takes_any_optimizer():
    opt = _Plain([Parameter(np.zeros(2))], 0.1)
    sched = L.OneCycleLR(opt, 0.1, 10, cycle_momentum=False)
    assert sched.get_last_lr() == pytest.approx([0.1 / 25], rel=1e-15)


def test_sequential_bad_arguments():
    opt, other = _sgd(), _sgd()
    a, b = L.LinearLR(opt, total_iters=2), L.ExponentialLR(opt, 0.9)
    with pytest.raises(ValueError, match="non-empty list"):
        L.SequentialLR(opt, [], [])
    with pytest.raises(ValueError, match="one milestone fewer"):
        L.SequentialLR(opt, [a, b], [2, 4])
    with pytest.raises(ValueError, match="another optimizer"):
        L.SequentialLR(other, [a, b], [2])
    with pytest.raises(ValueError, match="must not decrease"):
        L.SequentialLR(opt, [a, b, L.StepLR(opt, 2)], [5, 2])
    inner = L.SequentialLR(opt, [a, b], [2])
    with pytest.raises(ValueError, match="other than SequentialLR"):
        L.SequentialLR(opt, [inner, b], [2])


# -- build_schedule: the per-batch schedules of `cnnlab train --schedule` ----------------------
def _curve(sched, opt, steps):
    lrs = []
    for _ in range(steps):  # the loop steps the schedule after every batch, the last one too
        lrs.append(opt.lr)
        sched.step()
    return lrs


@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
def test_build_schedule_none_and_step(opt_name):
    epochs, spe, lr = 4, 25, 0.05
    opt = getattr(optim, opt_name)([Parameter(np.zeros(2))], lr=lr)
    assert (
        _curve(L.build_schedule("none", opt, epochs=epochs, steps_per_epoch=spe), opt, 100)
        == [lr] * 100
    )
    opt = getattr(optim, opt_name)([Parameter(np.zeros(2))], lr=lr)
    curve = _curve(L.build_schedule("step", opt, epochs=epochs, steps_per_epoch=spe), opt, 100)
    expected = [lr] * 50 + [lr * 0.1] * 25 + [lr * 0.01] * 25
    assert curve == pytest.approx(expected, rel=1e-12)


def test_build_schedule_cosine_is_the_closed_form():
    opt = optim.Adam([Parameter(np.zeros(2))], lr=0.01)
    curve = _curve(L.build_schedule("cosine", opt, epochs=3, steps_per_epoch=40), opt, 120)
    expected = [0.01 * (1 + math.cos(math.pi * t / 120)) / 2 for t in range(120)]
    assert curve == pytest.approx(expected, rel=1e-12, abs=1e-17)
    assert opt.lr == pytest.approx(0.0, abs=1e-17)  # after the last batch


@pytest.mark.parametrize("opt_name", ["SGD", "AdamW"])
def test_build_schedule_onecycle_is_torch_onecycle(opt_name):
    kwargs = {"momentum": 0.9} if opt_name == "SGD" else {}
    ours, theirs = _optimizers(opt_name, lr=0.3, **kwargs)
    sched = L.build_schedule("onecycle", ours, epochs=5, steps_per_epoch=12)
    tsched = TL.OneCycleLR(theirs, max_lr=0.3, total_steps=60)
    a, b = _walk(sched, ours, 60), _walk(tsched, theirs, 60)
    for t, ((lr, m), (tlr, tm)) in enumerate(zip(a, b)):
        _assert_close(lr, tlr, f"lr at step {t}")
        _assert_close(m, tm, f"momentum at step {t}")


@pytest.mark.parametrize(
    "name, torch_main",
    [
        ("cosine", lambda o, m: TL.CosineAnnealingLR(o, T_max=m)),
        ("step", lambda o, m: TL.MultiStepLR(o, [round(m / 2), round(3 * m / 4)])),
        ("none", lambda o, m: TL.ConstantLR(o, factor=1.0, total_iters=0)),
    ],
)
def test_build_schedule_warmup_is_torch_linear_then_sequential(name, torch_main):
    epochs, spe, warmup = 6, 10, 1.5  # 15 warm-up steps, then 45
    ours, theirs = _optimizers("SGD", lr=0.2, momentum=0.9)
    sched = L.build_schedule(name, ours, epochs=epochs, steps_per_epoch=spe, warmup_epochs=warmup)
    warm = TL.LinearLR(theirs, start_factor=0.01, end_factor=1.0, total_iters=15)
    tsched = TL.SequentialLR(theirs, [warm, torch_main(theirs, 45)], milestones=[15])
    a, b = _walk(sched, ours, 60), _walk(tsched, theirs, 60)
    for t, ((lr, _), (tlr, _)) in enumerate(zip(a, b)):
        _assert_close(lr, tlr, f"step {t}")
    assert a[0][0] == pytest.approx(0.2 * 0.01) and a[15][0] == 0.2


def test_build_schedule_resumes_mid_warmup_through_json():
    def make():
        opt = optim.Adam([Parameter(np.zeros(2))], lr=1e-3)
        return opt, L.build_schedule("cosine", opt, epochs=5, steps_per_epoch=20, warmup_epochs=1)

    opt, sched = make()
    reference = _curve(sched, opt, 100)
    opt, sched = make()
    head = _curve(sched, opt, 13)
    text = json.dumps(sched.state_dict())
    opt, sched = make()
    sched.load_state_dict(json.loads(text))
    assert head + _curve(sched, opt, 87) == reference


@pytest.mark.parametrize(
    "args, match",
    [
        ({"name": "linear"}, r"unknown schedule 'linear'; choose one of \['none', 'step'"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"steps_per_epoch": 0}, "steps_per_epoch must be an integer >= 1"),
        ({"warmup_epochs": 3}, "use fewer warm-up epochs than epochs"),
        ({"warmup_epochs": -1}, "warmup_epochs"),
        ({"name": "onecycle", "warmup_epochs": 1}, "warms up by itself"),
        ({"name": "onecycle", "max_lr": 1.0}, "sets OneCycleLR's max_lr"),
        ({"name": "cosine", "gamma": 0.5}, r"schedule 'cosine' takes no \['gamma'\]"),
        ({"name": "none", "eta_min": 0.0}, "takes no"),
        ({"warmup_start_factor": 0.0, "warmup_epochs": 1}, "start_factor"),
    ],
)
def test_build_schedule_bad_arguments(args, match):
    kwargs = {"name": "step", "epochs": 3, "steps_per_epoch": 10, **args}
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=match):
        L.build_schedule(name, _sgd(), **kwargs)


def test_schedules_listed_for_the_command_line():
    assert L.SCHEDULES == ("none", "step", "cosine", "onecycle")
    for name in L.SCHEDULES:  # every name can run a whole run, stepping after each batch
        opt = optim.SGD([Parameter(np.zeros(2))], lr=0.1, momentum=0.9)
        sched = L.build_schedule(name, opt, epochs=2, steps_per_epoch=5)
        _curve(sched, opt, 10)
