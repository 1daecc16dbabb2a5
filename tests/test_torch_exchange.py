"""Weights to and from PyTorch: safetensors files written by PyTorch, key maps for named
layers, and ``load_state_dict``'s renaming, dtype conversion and all-or-nothing copy.

Oracle: PyTorch's own logits for the same weights (float32 to 1e-5, float64 to 1e-10).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from safetensors.torch import save_file as torch_save_file

import cnnlab
from cnnlab import models, nn
from cnnlab.errors import CheckpointError
from cnnlab.io import map_state_dict_keys

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
NP = {torch.float32: np.float32, torch.float64: np.float64}


class TorchLeNet(torch.nn.Module):
    """LeNet-5 as PyTorch users write it: named layers, functional activations."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = torch.nn.Conv2d(6, 16, 5)
        self.fc1 = torch.nn.Linear(16 * 5 * 5, 120)
        self.fc2 = torch.nn.Linear(120, 84)
        self.fc3 = torch.nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.nn.functional
        x = f.max_pool2d(f.relu(self.conv1(x)), 2)
        x = f.max_pool2d(f.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(f.relu(self.fc2(f.relu(self.fc1(x)))))


def torch_sequential_lenet() -> torch.nn.Sequential:
    """The same layers as cnnlab.models.lenet5, in a torch Sequential (same keys)."""
    t = torch.nn
    return t.Sequential(
        t.Conv2d(1, 6, 5, padding=2), t.ReLU(), t.MaxPool2d(2),
        t.Conv2d(6, 16, 5), t.ReLU(), t.MaxPool2d(2), t.Flatten(),
        t.Linear(400, 120), t.ReLU(), t.Linear(120, 84), t.ReLU(), t.Linear(84, 10),
    )  # fmt: skip


def _input(dtype: torch.dtype, n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 1, 28, 28)).astype(NP[dtype])


def _torch_logits(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net.eval()(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_torch_written_sequential_file_loads_with_model(tmp_path, dtype):
    torch.manual_seed(0)
    net = torch_sequential_lenet().to(dtype)
    path = tmp_path / "torch.safetensors"
    torch_save_file(net.state_dict(), str(path))

    model = models.lenet5(dtype=NP[dtype])
    assert cnnlab.load(path, model=model) is model
    x = _input(dtype)
    np.testing.assert_allclose(model(x), _torch_logits(net, x), rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_torch_lenet_with_named_layers_loads_through_the_key_map(tmp_path, dtype):
    torch.manual_seed(1)
    net = TorchLeNet().to(dtype)
    path = tmp_path / "torch.safetensors"
    torch_save_file(net.state_dict(), str(path))

    model = models.lenet5(dtype=NP[dtype])
    key_map = map_state_dict_keys(net.state_dict(), model)
    assert key_map == {
        "conv1.weight": "0.weight",
        "conv1.bias": "0.bias",
        "conv2.weight": "3.weight",
        "conv2.bias": "3.bias",
        "fc1.weight": "7.weight",
        "fc1.bias": "7.bias",
        "fc2.weight": "9.weight",
        "fc2.bias": "9.bias",
        "fc3.weight": "11.weight",
        "fc3.bias": "11.bias",
    }
    with pytest.raises(CheckpointError, match="key_map="):  # the keys differ: a clear hint
        cnnlab.load(path, model=models.lenet5(dtype=NP[dtype]))
    cnnlab.load(path, model=model, key_map=key_map)
    x = _input(dtype)
    np.testing.assert_allclose(model(x), _torch_logits(net, x), rtol=0, atol=TOL[dtype])

    # the state dict directly, torch tensors as they come
    again = models.lenet5(dtype=NP[dtype])
    again.load_state_dict(net.state_dict(), key_map=key_map)
    assert np.array_equal(again(x), model(x))


def test_cnnlab_weights_go_into_a_named_torch_model():
    model = models.lenet5(dtype=np.float64, rng=np.random.default_rng(3))
    net = TorchLeNet().double()
    key_map = map_state_dict_keys(net.state_dict(), model)
    ours = model.state_dict()
    net.load_state_dict({theirs: torch.from_numpy(ours[k]) for theirs, k in key_map.items()})
    x = _input(torch.float64)
    np.testing.assert_allclose(_torch_logits(net, x), model(x), rtol=0, atol=1e-10)


def test_a_plain_state_dict_file_needs_a_model(tmp_path):
    path = tmp_path / "torch.safetensors"
    torch_save_file(torch_sequential_lenet().state_dict(), str(path))
    with pytest.raises(CheckpointError, match=re.escape("cnnlab.load(path, model=...)")) as err:
        cnnlab.load(path)
    assert str(path) in str(err.value) and "not a cnnlab file" in str(err.value)
    with pytest.raises(CheckpointError, match=r"missing keys \['12\.weight', '12\.bias'\]"):
        cnnlab.load(path, model=nn.Sequential(*models.lenet5(), nn.Linear(10, 2)))


def test_dtype_conversion_on_load_is_the_models(tmp_path):
    """float64 weights into a float32 model are rounded (as torch's copy_), and back."""
    torch.manual_seed(2)
    net = torch_sequential_lenet().double()
    path = tmp_path / "torch64.safetensors"
    torch_save_file(net.state_dict(), str(path))
    model = cnnlab.load(path, model=models.lenet5())  # float32
    assert model.dtype == np.float32
    for key, value in net.state_dict().items():
        expected = value.to(torch.float32).numpy()
        assert model.state_dict()[key].dtype == np.float32
        assert np.array_equal(model.state_dict()[key], expected), key
    wide = models.lenet5(dtype=np.float64)
    wide.load_state_dict(model.state_dict())  # float32 into float64: exact
    for key, value in model.state_dict().items():
        assert wide.state_dict()[key].dtype == np.float64
        assert np.array_equal(wide.state_dict()[key], value.astype(np.float64))


class Norm(nn.Module):
    """A layer with BatchNorm's entries: parameters, then running statistics as buffers."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(np.ones(n, dtype=np.float32))
        self.bias = nn.Parameter(np.zeros(n, dtype=np.float32))
        self.register_buffer("running_mean", np.zeros(n, dtype=np.float32))
        self.register_buffer("running_var", np.ones(n, dtype=np.float32))


def test_key_map_covers_buffers_and_drops_num_batches_tracked():
    t = torch.nn

    class Net(t.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = t.Linear(4, 3)
            self.bn1 = t.BatchNorm1d(3)

    net = Net()
    with torch.no_grad():
        net.bn1.running_mean.uniform_()
        net.bn1.running_var.uniform_(1, 2)
        net.bn1.weight.uniform_()
    model = nn.Sequential(nn.Linear(4, 3), Norm(3))
    key_map = map_state_dict_keys(net.state_dict(), model)
    assert key_map["bn1.num_batches_tracked"] is None
    assert key_map["bn1.running_var"] == "1.running_var"
    model.load_state_dict(net.state_dict(), key_map=key_map)
    for theirs, ours in key_map.items():
        if ours is not None:
            assert np.array_equal(model.state_dict()[ours], net.state_dict()[theirs].numpy())


def test_layers_that_cannot_be_paired_are_named():
    net = TorchLeNet()
    net.fc1 = torch.nn.Linear(400, 100)
    net.fc2 = torch.nn.Linear(100, 84)
    with pytest.raises(ValueError, match=r"layer 'fc1'.*weight \(100, 400\).*layer '7'"):
        map_state_dict_keys(net.state_dict(), models.lenet5())
    with pytest.raises(ValueError, match=r"5 layers .*'conv1'.* the model has 4"):
        map_state_dict_keys(TorchLeNet().state_dict(), models.digits_cnn())


def test_load_state_dict_key_map_forms():
    src = nn.Sequential(nn.Linear(3, 2, dtype=np.float64), nn.ReLU(), nn.Linear(2, 1))
    theirs = {f"net.{k}": v for k, v in src.state_dict().items()}
    theirs["net.extra"] = np.zeros(1)

    def rename(key):
        return None if key == "net.extra" else key.removeprefix("net.")

    dst = nn.Sequential(nn.Linear(3, 2, dtype=np.float64), nn.ReLU(), nn.Linear(2, 1))
    dst.load_state_dict(theirs, key_map=rename)
    assert all(np.array_equal(dst.state_dict()[k], v) for k, v in src.state_dict().items())

    plain = {"w0": theirs["net.0.weight"], "2.bias": theirs["net.2.bias"]}
    dst = nn.Sequential(nn.Linear(3, 2, dtype=np.float64), nn.ReLU(), nn.Linear(2, 1))
    dst.load_state_dict(plain, strict=False, key_map={"w0": "0.weight"})  # others kept
    assert np.array_equal(dst[0].weight.data, src[0].weight.data)
    assert np.array_equal(dst[2].bias.data, src[2].bias.data)

    with pytest.raises(ValueError, match=r"maps both 'a' and 'b' to '0\.bias'"):
        dst.load_state_dict({"a": np.zeros(2), "b": np.zeros(2)}, key_map=lambda k: "0.bias")
    with pytest.raises(ValueError, match="key_map must be a dict"):
        dst.load_state_dict(src.state_dict(), key_map=["0.weight"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected a str or None"):
        dst.load_state_dict(src.state_dict(), key_map=lambda k: 3)


def test_load_state_dict_is_all_or_nothing_and_refuses_lossy_kinds():
    model = nn.Sequential(nn.Linear(3, 2, dtype=np.float64), nn.Linear(2, 1, dtype=np.float64))
    counter = Norm(1)
    counter.register_buffer("count", np.zeros((), dtype=np.int64))
    before = model.state_dict()
    bad = {k: np.full_like(v, 7.0) for k, v in before.items()}
    bad["1.bias"] = np.zeros(2)  # wrong shape: nothing may be written
    with pytest.raises(ValueError, match=r"'1\.bias' has shape \(2,\), the model expects \(1,\)"):
        model.load_state_dict(bad)
    assert all(np.array_equal(model.state_dict()[k], v) for k, v in before.items())

    ints = {k: np.ones(v.shape, dtype=np.int32) for k, v in before.items()}
    model.load_state_dict(ints)  # integers into float parameters: exact
    assert all(np.all(v == 1.0) and v.dtype == np.float64 for v in model.state_dict().values())

    state = counter.state_dict()
    state["count"] = np.array(2.5)
    with pytest.raises(ValueError, match=r"'count' has dtype float64.*int64"):
        counter.load_state_dict(state)
    state["count"] = np.array(3)
    counter.load_state_dict(state)
    assert counter.count == 3 and counter.count.dtype == np.int64
    with pytest.raises(ValueError, match="has dtype <U1"):
        model.load_state_dict({**before, "0.bias": np.array(["a", "b"])})
