"""Linear, Flatten, activations, Dropout and Sequential against PyTorch (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab import nn

TOL = 1e-12
rng = np.random.default_rng(0)


def _close(a, b, tol=TOL):
    scale = max(1.0, float(np.abs(b).max()) if np.size(b) else 1.0)
    assert np.abs(np.asarray(a) - np.asarray(b)).max() <= tol * scale, (a, b)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n", [1, 5])
def test_linear_matches_torch(bias, n):
    layer = nn.Linear(7, 4, bias=bias, dtype=np.float64)
    tl = torch.nn.Linear(7, 4, bias=bias, dtype=torch.float64)
    with torch.no_grad():
        tl.weight.copy_(torch.tensor(layer.weight.data))
        if bias:
            tl.bias.copy_(torch.tensor(layer.bias.data))
    x = rng.standard_normal((n, 7))
    dy = rng.standard_normal((n, 4))
    tx = torch.tensor(x, requires_grad=True)
    ty = tl(tx)
    ty.backward(torch.tensor(dy))
    y = layer(x)
    dx = layer.backward(dy)
    _close(y, ty.detach().numpy())
    _close(dx, tx.grad.numpy())
    _close(layer.weight.grad, tl.weight.grad.numpy())
    if bias:
        _close(layer.bias.grad, tl.bias.grad.numpy())
    # gradients accumulate over backward calls until zero_grad
    layer(x)
    layer.backward(dy)
    _close(layer.weight.grad, 2 * tl.weight.grad.numpy())
    layer.zero_grad()
    assert not layer.weight.grad.any()


def test_linear_default_init_bound_is_torch_default():
    layer = nn.Linear(400, 120)
    bound = 1 / np.sqrt(400)
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.bias.data).max() <= bound
    assert np.abs(layer.weight.data).max() > 0.9 * bound  # uses the whole range
    assert layer.weight.data.dtype == np.float32


ACTIVATIONS = [
    (lambda: nn.ReLU(), torch.nn.ReLU()),
    (lambda: nn.LeakyReLU(0.2), torch.nn.LeakyReLU(0.2)),
    (lambda: nn.Sigmoid(), torch.nn.Sigmoid()),
    (lambda: nn.Tanh(), torch.nn.Tanh()),
    (lambda: nn.Flatten(), torch.nn.Flatten()),
]


@pytest.mark.parametrize("make, tlayer", ACTIVATIONS)
def test_activation_matches_torch(make, tlayer):
    x = rng.standard_normal((3, 2, 4, 5)) * 3
    x[0, 0, 0, :2] = 0.0  # the kink at zero: torch takes derivative 0 for ReLU
    layer = make()
    y = layer(x)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = tlayer(tx)
    ty.backward(torch.tensor(dy))
    _close(y, ty.detach().numpy())
    _close(dx, tx.grad.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_stable_for_huge_inputs(dtype):
    x = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = nn.Sigmoid()(x)
    assert y.dtype == dtype
    expected = torch.sigmoid(torch.tensor(x.astype(np.float64))).numpy()
    assert np.allclose(y, expected, atol=1e-7)


def test_dropout_train_and_eval():
    layer = nn.Dropout(0.25, rng=np.random.default_rng(5))
    x = np.ones((200, 300))
    y = layer(x)
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01
    assert np.allclose(y[kept], 1 / 0.75)
    dy = rng.standard_normal(x.shape)
    assert np.array_equal(layer.backward(dy), dy * (kept / 0.75))
    layer.eval()
    assert np.array_equal(layer(x), x)
    assert np.array_equal(layer.backward(dy), dy)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        nn.Dropout(1.5)


def _mlp_pair():
    torch.manual_seed(0)
    tm = torch.nn.Sequential(
        torch.nn.Linear(6, 5),
        torch.nn.Tanh(),
        torch.nn.Linear(5, 4),
        torch.nn.ReLU(),
        torch.nn.Linear(4, 3),
    ).double()
    m = nn.Sequential(
        nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)
    ).astype(np.float64)
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    return m, tm


def test_sequential_backward_equals_autograd_and_keys_match_torch():
    m, tm = _mlp_pair()
    assert list(m.state_dict()) == list(tm.state_dict())
    x = rng.standard_normal((4, 6))
    dy = rng.standard_normal((4, 3))
    tx = torch.tensor(x, requires_grad=True)
    tm(tx).backward(torch.tensor(dy))
    y = m(x)
    dx = m.backward(dy)
    _close(y, tm(torch.tensor(x)).detach().numpy())
    _close(dx, tx.grad.numpy())
    for (name, p), (tname, tp) in zip(m.named_parameters(), tm.named_parameters()):
        assert name == tname
        _close(p.grad, tp.grad.numpy())


def test_module_state_dict_errors_and_dtype():
    m, _ = _mlp_pair()
    state = m.state_dict()
    state["0.weight"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"0\.weight"):
        m.load_state_dict(state)
    with pytest.raises(ValueError, match="missing keys"):
        m.load_state_dict({})
    m.astype(np.float32)
    assert all(p.data.dtype == np.float32 for p in m.parameters())
    with pytest.raises(ValueError, match="dtype"):
        m(np.zeros((1, 6)))  # float64 input into float32 parameters


def test_linear_bad_input_messages():
    layer = nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        layer(np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="before forward"):
        nn.Linear(3, 2).backward(np.zeros((1, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="in_features must be >= 1"):
        nn.Linear(0, 2)
