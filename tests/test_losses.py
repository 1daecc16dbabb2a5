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
