"""Parameters and buffers: `.data` assignment keeps `.grad` consistent (as PyTorch's
does), buffers travel in the state dict under PyTorch's names and order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab import nn


def _float64_twin(layer: nn.Conv2d) -> nn.Conv2d:
    twin = nn.Conv2d(2, 3, 3, dtype=np.float64)
    twin.weight.data[...] = layer.weight.data
    assert twin.bias is not None and layer.bias is not None
    twin.bias.data[...] = layer.bias.data
    return twin


def test_assigning_float64_data_to_a_float32_layer_makes_it_a_float64_layer():
    rng = np.random.default_rng(0)
    layer = nn.Conv2d(2, 3, 3)  # float32
    layer.weight.data = layer.weight.data.astype(np.float64)
    assert layer.bias is not None
    layer.bias.data = layer.bias.data.astype(np.float64)
    assert layer.weight.grad.dtype == np.float64 and layer.bias.grad.dtype == np.float64
    twin = _float64_twin(layer)
    x = rng.standard_normal((2, 2, 6, 5))
    dy = rng.standard_normal((2, 3, 4, 3))
    layer(x)
    layer.backward(dy)
    twin(x)
    twin.backward(dy)
    # a float32 grad would round the float64 gradients to ~1e-7
    np.testing.assert_allclose(layer.weight.grad, twin.weight.grad, rtol=0, atol=1e-13)


def test_assigning_float32_data_to_a_float64_layer_gives_a_float32_grad():
    layer = nn.Linear(4, 2, dtype=np.float64)
    layer.weight.grad += 1.0
    layer.weight.data = layer.weight.data.astype(np.float32)
    assert layer.weight.grad.dtype == np.float32
    np.testing.assert_array_equal(layer.weight.grad, np.ones((2, 4), np.float32))


def test_pytorch_data_assignment_changes_dtype_the_same_way():
    # the oracle: in PyTorch a .data assignment of another dtype changes the parameter
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float32))
    p.data = torch.zeros(3, dtype=torch.float64)
    assert p.dtype == torch.float64
    q = nn.Parameter(np.zeros(3, np.float32))
    q.data = np.zeros(3, np.float64)
    assert q.dtype == np.float64 and q.grad.dtype == np.float64


@pytest.mark.parametrize(
    "value,match",
    [
        (np.zeros((3, 2), np.float32), r"shape \(3, 2\).*shape \(2, 3\)"),
        (np.zeros((2, 3), np.int64), "float32 or float64 ndarray, got int64"),
        ([[0.0] * 3] * 2, "float32 or float64 ndarray, got list"),
    ],
)
def test_bad_data_assignment_is_refused_and_changes_nothing(value, match):
    p = nn.Parameter(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=match):
        p.data = value
    assert p.data.shape == (2, 3) and p.data.dtype == np.float32 and p.data.sum() == 6


def test_grad_assignment_must_match_data():
    p = nn.Parameter(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="shape and dtype of its data"):
        p.grad = np.zeros((2, 3), np.float64)
    with pytest.raises(ValueError, match="shape and dtype of its data"):
        p.grad = np.zeros((3, 2), np.float32)
    g = np.full((2, 3), 2.0, np.float32)
    p.grad = g
    assert p.grad is g


class _WithBuffers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(np.ones(2, np.float32))
        self.register_buffer("running", np.zeros(2, np.float32))
        self.register_buffer("count", np.zeros((), np.int64))
        self.child = nn.Linear(2, 2)


def test_buffers_are_in_the_state_dict_in_pytorchs_order():
    m = _WithBuffers()
    assert list(m.state_dict()) == [
        "scale",
        "running",
        "count",
        "child.weight",
        "child.bias",
    ]
    assert [n for n, _ in m.named_buffers()] == ["running", "count"]
    assert [n for n, _ in m.named_parameters()] == ["scale", "child.weight", "child.bias"]


def test_buffers_load_convert_and_stay_registered():
    m = _WithBuffers()
    state = m.state_dict()
    state["running"] = np.array([1.5, 2.5], np.float64)
    state["count"] = np.array(7)
    m.load_state_dict(state)
    assert m.running.dtype == np.float32 and m.running.tolist() == [1.5, 2.5]
    assert int(m.count) == 7
    m.astype(np.float64)
    assert m.running.dtype == np.float64 and m.count.dtype == np.int64
    assert m.state_dict()["running"].dtype == np.float64
    m.running = np.array([3.0, 4.0])  # assignment replaces the registered array
    assert m.state_dict()["running"].tolist() == [3.0, 4.0]
    with pytest.raises(ValueError, match="buffer and must stay an ndarray"):
        m.running = None
    with pytest.raises(ValueError, match="missing keys"):
        m.load_state_dict({k: v for k, v in state.items() if k != "count"})
