"""Initialisers: fans as PyTorch computes them, and the distributions' bounds and spread."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab import init

SHAPES = [(120, 400), (6, 1, 5, 5), (16, 6, 5, 5), (64, 32, 3, 2)]


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_equal_torch(shape):
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init.fans(shape) == expected


@pytest.mark.parametrize("shape", SHAPES)
def test_distributions_match_torchs_formulas(shape):
    rng = np.random.default_rng(0)
    big = (shape[0] * 50, *shape[1:])  # more samples, same fans per row
    fan_in = init.fans(shape)[0]
    fan_out_big = init.fans(big)[1]
    w = init.torch_default(big, rng=rng)
    assert np.abs(w).max() <= 1 / np.sqrt(fan_in) and w.dtype == np.float32
    t = torch.empty(big)
    torch.nn.init.kaiming_normal_(t, nonlinearity="relu")
    w = init.he_normal(big, rng=rng)
    assert abs(w.std() / t.std().item() - 1) < 0.05
    torch.nn.init.xavier_uniform_(t)
    w = init.xavier_uniform(big, rng=rng)
    bound = np.sqrt(6 / (fan_in + fan_out_big))
    assert np.abs(w).max() <= bound and abs(t.abs().max().item() / bound - 1) < 0.01
    assert abs(w.std() / t.std().item() - 1) < 0.05


def test_manual_seed_resets_the_default_generator():
    init.manual_seed(3)
    a = init.he_normal((4, 4))
    init.manual_seed(3)
    assert np.array_equal(a, init.he_normal((4, 4)))
    with pytest.raises(ValueError, match="non-negative int"):
        init.manual_seed(-1)
    with pytest.raises(ValueError, match=">= 2 dims"):
        init.fans((3,))
