"""Cross-entropy and MSE against PyTorch (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from cnnlab import nn

TOL = 1e-12


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("n, k", [(1, 2), (7, 10), (32, 3)])
def test_cross_entropy_matches_torch(n, k, reduction):
    rng = np.random.default_rng(n * k)
    logits = rng.standard_normal((n, k)) * 5
    targets = rng.integers(0, k, size=n)
    loss_fn = nn.CrossEntropyLoss(reduction)
    loss = loss_fn(logits, targets)
    grad = loss_fn.backward()
    t = torch.tensor(logits, requires_grad=True)
    tl = TF.cross_entropy(t, torch.tensor(targets), reduction=reduction)
    tl.backward()
    assert abs(loss - tl.item()) <= TOL * max(1, abs(tl.item()))
    assert np.abs(grad - t.grad.numpy()).max() <= TOL


def test_cross_entropy_is_finite_for_huge_logits():
    logits = np.array([[1000.0, -1000.0, 0.0], [-1e4, 1e4, 3.0]], dtype=np.float32)
    loss_fn = nn.CrossEntropyLoss()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = loss_fn(logits, np.array([1, 1]))
        grad = loss_fn.backward()
    expected = TF.cross_entropy(torch.tensor(logits.astype(np.float64)), torch.tensor([1, 1]))
    assert np.isclose(loss, expected.item(), rtol=1e-5)
    assert grad.dtype == np.float32 and np.isfinite(grad).all()


def test_cross_entropy_bad_targets():
    loss_fn = nn.CrossEntropyLoss()
    logits = np.zeros((3, 4))
    with pytest.raises(ValueError, match="integer"):
        loss_fn(logits, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        loss_fn(logits, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        loss_fn(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match="before forward"):
        nn.CrossEntropyLoss().backward()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_matches_torch(reduction):
    rng = np.random.default_rng(3)
    pred, target = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    loss_fn = nn.MSELoss(reduction)
    loss = loss_fn(pred, target)
    grad = loss_fn.backward()
    t = torch.tensor(pred, requires_grad=True)
    tl = TF.mse_loss(t, torch.tensor(target), reduction=reduction)
    tl.backward()
    assert abs(loss - tl.item()) <= TOL * max(1, abs(tl.item()))
    assert np.abs(grad - t.grad.numpy()).max() <= TOL
    with pytest.raises(ValueError, match="same shape"):
        loss_fn(pred, target[:2])


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("eps", [0.0, 0.05, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("n, k", [(1, 2), (9, 10), (32, 3)])
def test_label_smoothing_matches_torch(n, k, eps, reduction):
    rng = np.random.default_rng(7 * n + k)
    logits = rng.standard_normal((n, k)) * 4
    targets = rng.integers(0, k, size=n)
    loss_fn = nn.CrossEntropyLoss(reduction, label_smoothing=eps)
    loss = loss_fn(logits, targets)
    grad = loss_fn.backward()
    t = torch.tensor(logits, requires_grad=True)
    tl = TF.cross_entropy(t, torch.tensor(targets), reduction=reduction, label_smoothing=eps)
    tl.backward()
    ref = t.grad.numpy()
    assert abs(loss - tl.item()) <= TOL * max(1, abs(tl.item())), (loss, tl.item())
    assert np.abs(grad - ref).max() <= TOL, np.c_[grad.ravel(), ref.ravel()][:6]


def test_label_smoothing_functional_and_float32():
    from cnnlab import functional as F

    rng = np.random.default_rng(1)
    logits = rng.standard_normal((5, 4)).astype(np.float32)
    targets = np.array([0, 3, 1, 1, 2])
    loss, cache = F.cross_entropy_forward(logits, targets, "sum", label_smoothing=0.2)
    grad = F.cross_entropy_backward(cache)
    t = torch.tensor(logits.astype(np.float64), requires_grad=True)
    tl = TF.cross_entropy(t, torch.tensor(targets), reduction="sum", label_smoothing=0.2)
    tl.backward()
    assert grad.dtype == np.float32
    assert np.isclose(loss, tl.item(), rtol=1e-6)
    assert np.allclose(grad, t.grad.numpy(), atol=1e-6)
    # each row of the gradient sums to 0: softmax and the smoothed target both sum to 1
    assert np.abs(grad.sum(axis=1)).max() < 1e-6


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.1", True, None])
def test_label_smoothing_bad_values(bad):
    with pytest.raises(ValueError, match="label_smoothing"):
        nn.CrossEntropyLoss(label_smoothing=bad)
    from cnnlab import functional as F

    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy_forward(np.zeros((2, 3)), np.array([0, 1]), label_smoothing=bad)


def test_label_smoothing_repr():
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss(reduction='mean')"
    assert "label_smoothing=0.1" in repr(nn.CrossEntropyLoss(label_smoothing=0.1))
