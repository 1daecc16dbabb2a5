"""BatchNorm1d/2d and lenet5_bn against PyTorch in float64: values, every gradient, and
the running statistics step after step, in training and evaluation mode.

Oracle: ``torch.nn.BatchNorm1d/2d`` and ``torch.nn.functional.batch_norm`` with autograd,
fed the same weights and inputs; central differences (``cnnlab.gradcheck``) for the
backward pass on its own. Tolerances: float64 values within 1e-12 (gradients scaled by
their size), float32 within 1e-5 of the float64 reference.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab import functional as F
from cnnlab import models, nn
from cnnlab.faults import first_nonfinite

TOL = 1e-12

CASES = [  # (cnnlab class, torch class, input shape)
    (nn.BatchNorm2d, torch.nn.BatchNorm2d, (4, 3, 5, 6)),
    (nn.BatchNorm2d, torch.nn.BatchNorm2d, (1, 3, 4, 4)),  # one sample: N·H·W values
    (nn.BatchNorm2d, torch.nn.BatchNorm2d, (2, 1, 1, 3)),  # one channel, H = 1
    (nn.BatchNorm2d, torch.nn.BatchNorm2d, (5, 2, 3, 1)),
    (nn.BatchNorm1d, torch.nn.BatchNorm1d, (7, 3)),
    (nn.BatchNorm1d, torch.nn.BatchNorm1d, (2, 5)),  # the smallest training batch
    (nn.BatchNorm1d, torch.nn.BatchNorm1d, (4, 3, 6)),  # (N, C, L)
]
OPTIONS = [
    {},
    {"affine": False},
    {"track_running_stats": False},
    {"momentum": None},
    {"eps": 1e-3, "momentum": 0.5},
    {"affine": False, "track_running_stats": False},
]


def close(a, b, tol=TOL, what=""):
    """``|a - b| <= tol·max(1, |b|)`` entrywise, showing both sides on failure."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    err = np.abs(a - b).max() if a.size else 0.0
    assert err <= tol * max(1.0, np.abs(b).max() if b.size else 0.0), (
        f"{what}: max error {err:.3e}\ncnnlab:\n{a}\ntorch:\n{b}"
    )


def twins(cls, tcls, channels, seed=0, **kwargs):
    """A cnnlab layer and a torch layer with the same random γ, β and running stats."""
    rng = np.random.default_rng(seed)
    layer = cls(channels, dtype=np.float64, **kwargs)
    if layer.weight is not None:
        layer.weight.data[...] = rng.uniform(0.5, 2.0, channels)
        layer.bias.data[...] = rng.standard_normal(channels)
    if layer.running_mean is not None:
        layer.running_mean[...] = rng.standard_normal(channels)
        layer.running_var[...] = rng.uniform(0.5, 2.0, channels)
    twin = tcls(channels, **kwargs).double()
    twin.load_state_dict({k: torch.tensor(v) for k, v in layer.state_dict().items()})
    return layer, twin


def torch_step(twin, x, dy):
    tx = torch.tensor(x, requires_grad=True)
    ty = twin(tx)
    ty.backward(torch.tensor(dy))
    return ty.detach().numpy(), tx.grad.numpy()


def assert_same_state(layer, twin, step=""):
    ref = twin.state_dict()
    assert list(layer.state_dict()) == list(ref)
    for name, value in layer.state_dict().items():
        expected = ref[name].numpy()
        assert value.dtype == expected.dtype, name
        close(value, expected, what=f"{name} {step}")


def assert_same_grads(layer, twin):
    grads = {name: p.grad for name, p in layer.named_parameters()}
    assert list(grads) == [name for name, _ in twin.named_parameters()]
    for name, p in twin.named_parameters():
        close(grads[name], p.grad.numpy(), what=f"d{name}")


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "default")
@pytest.mark.parametrize("cls,tcls,shape", CASES, ids=lambda c: getattr(c, "__name__", str(c)))
def test_training_step_equals_torch(cls, tcls, shape, options):
    layer, twin = twins(cls, tcls, shape[1], **options)
    rng = np.random.default_rng(1)
    x = 3 * rng.standard_normal(shape) + 1
    dy = rng.standard_normal(shape)
    ty, tdx = torch_step(twin, x, dy)
    y = layer(x)
    dx = layer.backward(dy)
    close(y, ty, what="y")
    close(dx, tdx, what="dx")
    assert_same_grads(layer, twin)
    assert_same_state(layer, twin)


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "default")
@pytest.mark.parametrize("cls,tcls,shape", CASES, ids=lambda c: getattr(c, "__name__", str(c)))
def test_eval_step_equals_torch(cls, tcls, shape, options):
    """Fixed running statistics, (B4'); without them the batch's, as in torch."""
    layer, twin = twins(cls, tcls, shape[1], **options)
    layer.eval()
    twin.eval()
    rng = np.random.default_rng(2)
    x = 3 * rng.standard_normal(shape) + 1
    dy = rng.standard_normal(shape)
    ty, tdx = torch_step(twin, x, dy)
    close(layer(x), ty, what="y")
    close(layer.backward(dy), tdx, what="dx")
    assert_same_grads(layer, twin)
    assert_same_state(layer, twin)  # evaluation updates nothing


@pytest.mark.parametrize("momentum", [0.1, None, 0.7])
@pytest.mark.parametrize(
    "cls,tcls,shape",
    [CASES[0], CASES[4], CASES[6]],
    ids=lambda c: getattr(c, "__name__", str(c)),
)
def test_running_statistics_over_six_steps_then_eval(cls, tcls, shape, momentum):
    layer, twin = twins(cls, tcls, shape[1], momentum=momentum)
    rng = np.random.default_rng(3)
    for step in range(6):  # parameter gradients accumulate over the steps, in both
        x = (step + 1) * rng.standard_normal(shape) + step
        dy = rng.standard_normal(shape)
        ty, tdx = torch_step(twin, x, dy)
        close(layer(x), ty, what=f"y step {step}")
        close(layer.backward(dy), tdx, what=f"dx step {step}")
        assert_same_state(layer, twin, f"after step {step}")
    assert int(layer.num_batches_tracked) == 6
    assert_same_grads(layer, twin)
    layer.eval()
    twin.eval()
    layer.zero_grad()
    twin.zero_grad()
    x, dy = 2 * rng.standard_normal(shape), rng.standard_normal(shape)
    ty, tdx = torch_step(twin, x, dy)
    close(layer(x), ty, what="eval y")
    close(layer.backward(dy), tdx, what="eval dx")
    assert_same_grads(layer, twin)
    assert_same_state(layer, twin, "after eval")


def test_float32_matches_float64_torch_to_tolerance():
    layer, twin = twins(nn.BatchNorm2d, torch.nn.BatchNorm2d, 4)
    layer.astype(np.float32)
    assert layer.running_mean.dtype == np.float32
    assert layer.num_batches_tracked.dtype == np.int64  # the count stays an integer
    rng = np.random.default_rng(4)
    for _ in range(5):
        x = 2 * rng.standard_normal((3, 4, 6, 5)) + 1
        dy = rng.standard_normal(x.shape)
        ty, tdx = torch_step(twin, x, dy)
        y = layer(x.astype(np.float32))
        dx = layer.backward(dy.astype(np.float32))
        assert y.dtype == dx.dtype == np.float32
        close(y, ty, 1e-5, "y")
        close(dx, tdx, 1e-5, "dx")
    for name, p in twin.named_parameters():
        got = dict(layer.named_parameters())[name].grad
        assert got.dtype == np.float32
        close(got, p.grad.numpy(), 1e-5, f"d{name}")
    for name, value in twin.state_dict().items():
        close(layer.state_dict()[name], value.numpy(), 1e-6, name)


@pytest.mark.parametrize(
    "cls,tcls", [(nn.BatchNorm1d, torch.nn.BatchNorm1d), (nn.BatchNorm2d, torch.nn.BatchNorm2d)]
)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("track", [True, False])
def test_state_dict_keys_and_order_are_torch_s(cls, tcls, affine, track):
    layer = cls(5, affine=affine, track_running_stats=track)
    twin = tcls(5, affine=affine, track_running_stats=track)
    assert list(layer.state_dict()) == list(twin.state_dict())
    for name, value in layer.state_dict().items():
        ref = twin.state_dict()[name].numpy()
        assert value.shape == ref.shape and value.dtype == ref.dtype, name
        np.testing.assert_array_equal(value, ref)  # the initial values: ones, zeros, 0


def test_weights_travel_from_torch_and_back():
    rng = np.random.default_rng(5)
    twin = torch.nn.BatchNorm2d(3).double()
    torch.nn.init.uniform_(twin.weight, 0.5, 2.0)
    torch.nn.init.normal_(twin.bias)
    for _ in range(3):  # torch's running statistics and count, from training
        twin(torch.tensor(rng.standard_normal((4, 3, 5, 5)) + 2))
    layer = nn.BatchNorm2d(3, dtype=np.float64)
    layer.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})
    assert int(layer.num_batches_tracked) == 3
    twin.eval()
    layer.eval()
    x = rng.standard_normal((2, 3, 5, 5))
    close(layer(x), twin(torch.tensor(x)).detach().numpy(), what="eval y after loading")
    layer.train()
    twin.train()
    for _ in range(2):  # now cnnlab trains, and torch takes its state back
        x = rng.standard_normal((4, 3, 5, 5))
        layer(x)
        twin(torch.tensor(x))
    back = torch.nn.BatchNorm2d(3).double()
    back.load_state_dict({k: torch.tensor(v) for k, v in layer.state_dict().items()})
    for name, value in back.state_dict().items():
        close(value.numpy(), twin.state_dict()[name].numpy(), what=name)
    assert int(back.num_batches_tracked) == 5


def test_gradients_accumulate_across_two_backward_calls():
    layer, twin = twins(nn.BatchNorm1d, torch.nn.BatchNorm1d, 4)
    rng = np.random.default_rng(6)
    for _ in range(2):  # no zero_grad in between, in either
        x, dy = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
        torch_step(twin, x, dy)
        layer(x)
        layer.backward(dy)
    assert_same_grads(layer, twin)
    one = nn.BatchNorm1d(4, dtype=np.float64)  # and twice the same call is twice one
    one(x)
    one.backward(dy)
    once = one.weight.grad.copy()
    one(x)
    one.backward(dy)
    close(one.weight.grad, 2 * once, what="accumulated dgamma")


# evaluation without running statistics is an error, tested below
@pytest.mark.parametrize("training,with_running", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(6, 3), (3, 3, 4, 5)])
def test_functional_pair_equals_torch_functional(shape, affine, with_running, training):
    rng = np.random.default_rng(7)
    c = shape[1]
    x, dy = 2 * rng.standard_normal(shape) + 1, rng.standard_normal(shape)
    gamma = rng.uniform(0.5, 2.0, c) if affine else None
    beta = rng.standard_normal(c) if affine else None
    mean = rng.standard_normal(c) if with_running else None
    var = rng.uniform(0.5, 2.0, c) if with_running else None
    t = {
        k: None if v is None else torch.tensor(v, requires_grad=k in "gb")
        for k, v in {"g": gamma, "b": beta, "m": mean, "v": var}.items()
    }
    if with_running:
        t["m"], t["v"] = t["m"].clone(), t["v"].clone()
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.batch_norm(
        tx, t["m"], t["v"], t["g"], t["b"], training=training, momentum=0.3, eps=1e-4
    )
    ty.backward(torch.tensor(dy))
    y, cache = F.batch_norm_forward(
        x, gamma, beta, mean, var, training=training, momentum=0.3, eps=1e-4
    )
    dx, dgamma, dbeta = F.batch_norm_backward(dy, cache)
    close(y, ty.detach().numpy(), what="y")
    close(dx, tx.grad.numpy(), what="dx")
    if affine:
        close(dgamma, t["g"].grad.numpy(), what="dgamma")
        close(dbeta, t["b"].grad.numpy(), what="dbeta")
    else:
        assert dgamma is None and dbeta is None
    if with_running:  # updated in place, as torch updates its tensors
        close(mean, t["m"].numpy(), what="running_mean")
        close(var, t["v"].numpy(), what="running_var")


def test_functional_cumulative_average_counts_batches():
    """momentum=None: the running mean is the plain average of the batch means."""
    rng = np.random.default_rng(8)
    mean, var, count = np.zeros(2), np.ones(2), np.array(0, np.int64)
    batches = [rng.standard_normal((4, 2)) + k for k in range(5)]
    for x in batches:
        F.batch_norm_forward(
            x, None, None, mean, var, training=True, momentum=None, num_batches_tracked=count
        )
    assert int(count) == 5
    close(mean, np.mean([b.mean(axis=0) for b in batches], axis=0), what="cumulative mean")
    close(var, np.mean([b.var(axis=0, ddof=1) for b in batches], axis=0), what="cumulative var")


def test_bad_input_is_refused_with_clear_messages():
    x = np.zeros((1, 3))
    twin = torch.nn.BatchNorm1d(3).double()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        twin(torch.tensor(x))  # the oracle refuses it too
    layer = nn.BatchNorm1d(3, dtype=np.float64)
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\.eval\(\)"):
        layer(x)
    assert int(layer.num_batches_tracked) == 0  # nothing was counted
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm2d(3, dtype=np.float64)(np.zeros((1, 3, 1, 1)))
    layer.eval()  # evaluation of one sample is fine, as in torch
    twin.eval()
    close(layer(x + 1), twin(torch.tensor(x + 1)).detach().numpy(), what="eval N=1")
    with pytest.raises(ValueError, match="dtype float32 but the layer's parameters are float64"):
        layer(x.astype(np.float32))
    with pytest.raises(ValueError, match=r"expects 3 channels on axis 1 \(N, 3\)"):
        layer(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"expects input of shape \(N, C, H, W\)"):
        nn.BatchNorm2d(3)(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, C\) or \(N, C, L\)"):
        nn.BatchNorm1d(3)(np.zeros((2, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm2d\.backward called before forward"):
        nn.BatchNorm2d(3).backward(np.zeros((2, 3, 1, 1), np.float32))
    with pytest.raises(ValueError, match="momentum must be a number in"):
        nn.BatchNorm2d(3, momentum=1.5)
    with pytest.raises(ValueError, match="num_features must be >= 1"):
        nn.BatchNorm1d(0)
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        nn.BatchNorm1d(3, dtype=np.int32)
    with pytest.raises(ValueError, match="needs running_mean and running_var"):
        F.batch_norm_forward(np.zeros((2, 3)), None, None, None, None, training=False)
    with pytest.raises(ValueError, match="both running_mean and running_var"):
        F.batch_norm_forward(np.zeros((2, 3)), None, None, np.zeros(3), None, training=True)
    with pytest.raises(ValueError, match=r"momentum=None .* needs num_batches_tracked"):
        F.batch_norm_forward(
            np.ones((2, 3)), None, None, np.zeros(3), np.ones(3), training=True, momentum=None
        )
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\)"):
        F.batch_norm_forward(np.zeros((2, 3)), np.ones(4), None, None, None, training=True)
    with pytest.raises(ValueError, match="dy must have the forward output's shape"):
        _, cache = F.batch_norm_forward(np.ones((2, 3)), None, None, None, None, training=True)
        F.batch_norm_backward(np.zeros((3, 3)), cache)


def test_affine_free_layer_reports_the_dtype_of_its_statistics():
    layer = nn.BatchNorm2d(2, affine=False, dtype=np.float64)
    assert layer.dtype == np.float64 and layer.parameters() == []
    with pytest.raises(ValueError, match="dtype float32"):
        layer(np.zeros((2, 2, 3, 3), np.float32))
    free = nn.BatchNorm2d(2, affine=False, track_running_stats=False)
    assert free(np.ones((2, 2, 1, 1))).dtype == np.float64  # nothing to disagree with


@pytest.mark.parametrize("cls", [nn.BatchNorm1d, nn.BatchNorm2d])
def test_config_rebuilds_the_layer(cls):
    layer = cls(6, eps=1e-3, momentum=None, affine=False, track_running_stats=True)
    config = layer.config()
    assert config == {
        "num_features": 6,
        "eps": 1e-3,
        "momentum": None,
        "affine": False,
        "track_running_stats": True,
        "dtype": "float32",
    }
    rebuilt = cls(**json.loads(json.dumps(config)))
    assert rebuilt.config() == config and repr(rebuilt) == repr(layer)
    assert cls(6).config()["momentum"] == 0.1


# -- central differences -----------------------------------------------------------------
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize(
    "layer,shape",
    [
        (nn.BatchNorm2d(3, dtype=np.float64), (2, 3, 4, 5)),
        (nn.BatchNorm1d(4, momentum=None), (5, 4)),  # float32: checked in float64
        (nn.BatchNorm2d(2, affine=False, dtype=np.float64), (3, 2, 2, 2)),
    ],
    ids=["2d", "1d-float32", "2d-affine-free"],
)
def test_gradcheck_passes_and_leaves_the_running_statistics_alone(layer, shape, mode):
    rng = np.random.default_rng(9)
    if layer.weight is not None:
        layer.weight.data[...] = rng.uniform(0.5, 2.0, layer.num_features)
        layer.bias.data[...] = rng.standard_normal(layer.num_features)
    layer.running_mean[...] = rng.standard_normal(layer.num_features)
    layer.train(mode == "train")
    before = layer.state_dict()
    buffers = [layer.running_mean, layer.running_var, layer.num_batches_tracked]
    report = cnnlab.gradcheck(layer, 2 * rng.standard_normal(shape) + 1)
    assert report.passed, str(report)
    assert [c.name for c in report.checks] == ["input"] + [n for n, _ in layer.named_parameters()]
    after = layer.state_dict()
    for name in before:  # hundreds of training passes ran: none of them counts
        assert after[name].dtype == before[name].dtype, name
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    assert all(a is b for a, b in zip(buffers, layer._buffers.values(), strict=True))


class BatchNormWithFrozenStatsBackward(nn.BatchNorm2d):
    """A plausible mistake: the training backward pass treats μ and σ as constants."""

    def forward(self, x):
        y = super().forward(x)
        self._cache = self._cache._replace(batch_stats=False)
        return y


def test_gradcheck_catches_a_backward_that_ignores_the_batch_statistics():
    layer = BatchNormWithFrozenStatsBackward(3, dtype=np.float64)
    x = np.random.default_rng(10).standard_normal((2, 3, 3, 3))
    report = cnnlab.gradcheck(layer, x)
    assert not report["input"].passed
    assert report["weight"].passed and report["bias"].passed  # (B1), (B2) unaffected
    layer.eval()  # where the statistics ARE constants, (B4') is right
    assert cnnlab.gradcheck(layer, x).passed


def test_a_diagnostic_forward_does_not_count_as_a_batch():
    model = models.lenet5_bn(dtype=np.float64, rng=np.random.default_rng(11))
    before = model.state_dict()
    x = np.random.default_rng(12).standard_normal((3, 1, 28, 28))
    assert first_nonfinite(model, x) == "the loss"  # every layer ran, in training mode
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


# -- lenet5_bn ---------------------------------------------------------------------------
def torch_lenet5_bn(num_classes=10):
    T = torch.nn
    return T.Sequential(
        T.Conv2d(1, 6, 5, padding=2, bias=False),
        T.BatchNorm2d(6),
        T.ReLU(),
        T.MaxPool2d(2),
        T.Conv2d(6, 16, 5, bias=False),
        T.BatchNorm2d(16),
        T.ReLU(),
        T.MaxPool2d(2),
        T.Flatten(),
        T.Linear(400, 120, bias=False),
        T.BatchNorm1d(120),
        T.ReLU(),
        T.Linear(120, 84, bias=False),
        T.BatchNorm1d(84),
        T.ReLU(),
        T.Linear(84, num_classes),
    ).double()


def test_lenet5_bn_trains_and_evaluates_like_a_torch_twin():
    model = models.lenet5_bn(dtype=np.float64, rng=np.random.default_rng(13))
    twin = torch_lenet5_bn()
    assert list(model.state_dict()) == list(twin.state_dict())
    twin.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    n_params = sum(p.data.size for p in model.parameters())
    assert n_params == sum(p.numel() for p in twin.parameters()) == 61932
    rng = np.random.default_rng(14)
    for step in range(5):
        x, dy = rng.standard_normal((4, 1, 28, 28)), rng.standard_normal((4, 10))
        model.zero_grad()
        twin.zero_grad()
        ty, tdx = torch_step(twin, x, dy)
        close(model(x), ty, what=f"y step {step}")
        close(model.backward(dy), tdx, 1e-11, f"dx step {step}")
        for name, p in twin.named_parameters():
            got = dict(model.named_parameters())[name].grad
            close(got, p.grad.numpy(), 1e-11, f"d{name} step {step}")
    assert_same_state(model, twin, "after five training steps")
    model.eval()
    twin.eval()
    model.zero_grad()
    twin.zero_grad()
    x, dy = rng.standard_normal((3, 1, 28, 28)), rng.standard_normal((3, 10))
    ty, tdx = torch_step(twin, x, dy)
    close(model(x), ty, what="eval y")
    close(model.backward(dy), tdx, 1e-11, "eval dx")
    for name, p in twin.named_parameters():
        close(dict(model.named_parameters())[name].grad, p.grad.numpy(), 1e-11, f"eval d{name}")


def test_lenet5_bn_by_name_and_saved_with_its_running_statistics(tmp_path):
    assert models.INPUT_SHAPES["lenet5_bn"] == models.INPUT_SHAPES["lenet5"]
    model = models.build("lenet5_bn", num_classes=4)
    assert models.spec(model) == {"name": "lenet5_bn", "kwargs": {"num_classes": 4}}
    rng = np.random.default_rng(15)
    for _ in range(2):
        model(rng.standard_normal((3, 1, 28, 28)).astype(np.float32))
    loaded = cnnlab.load(cnnlab.save(model, tmp_path / "bn.safetensors"))
    assert int(loaded[1].num_batches_tracked) == 2
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], value, err_msg=name)
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    model.eval()
    loaded.eval()
    np.testing.assert_array_equal(loaded(x), model(x))
