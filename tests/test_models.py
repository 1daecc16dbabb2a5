"""Models: LeNet-5 equals a PyTorch twin with the same weights; recipes rebuild models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab import init, models


def _torch_lenet5():
    T = torch.nn
    return T.Sequential(
        T.Conv2d(1, 6, 5, padding=2),
        T.ReLU(),
        T.MaxPool2d(2),
        T.Conv2d(6, 16, 5),
        T.ReLU(),
        T.MaxPool2d(2),
        T.Flatten(),
        T.Linear(400, 120),
        T.ReLU(),
        T.Linear(120, 84),
        T.ReLU(),
        T.Linear(84, 10),
    ).double()


def test_lenet5_forward_and_backward_equal_torch_twin():
    model = models.lenet5(dtype=np.float64)
    twin = _torch_lenet5()
    assert list(model.state_dict()) == list(twin.state_dict())
    twin.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 1, 28, 28))
    dy = rng.standard_normal((3, 10))
    tx = torch.tensor(x, requires_grad=True)
    ty = twin(tx)
    ty.backward(torch.tensor(dy))
    y = model(x)
    dx = model.backward(dy)
    assert np.abs(y - ty.detach().numpy()).max() < 1e-12
    assert np.abs(dx - tx.grad.numpy()).max() < 1e-12
    for name, p in model.named_parameters():
        ref = dict(twin.named_parameters())[name].grad.numpy()
        assert np.abs(p.grad - ref).max() <= 1e-11 * max(1, np.abs(ref).max()), name


def test_parameter_counts_and_shapes():
    assert sum(p.data.size for p in models.lenet5().parameters()) == 61706
    assert models.digits_cnn()(np.zeros((2, 1, 8, 8), np.float32)).shape == (2, 10)


def test_manual_seed_makes_construction_reproducible():
    init.manual_seed(7)
    a = models.lenet5().state_dict()
    init.manual_seed(7)
    b = models.lenet5().state_dict()
    init.manual_seed(8)
    c = models.lenet5().state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["0.weight"], c["0.weight"])


def test_build_and_spec():
    model = models.build("lenet5", num_classes=4)
    assert models.spec(model) == {"name": "lenet5", "kwargs": {"num_classes": 4}}
    with pytest.raises(ValueError, match="unknown model"):
        models.build("resnet")
    with pytest.raises(ValueError, match="no model spec"):
        from cnnlab import nn

        models.spec(nn.Sequential(nn.ReLU()))
