"""ONNX export and import (``cnnlab.onnx``).

Oracles: onnxruntime runs what cnnlab exports (float32), onnx's reference evaluator
(float64: onnxruntime lacks some float64 kernels), PyTorch's two ONNX exporters and
PyTorch's own logits for what cnnlab loads, and onnxruntime again on small graphs
written here operator by operator.
"""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import cnnlab
from cnnlab import nn
from cnnlab.errors import CheckpointError, MissingDependencyError
from cnnlab.onnx import export, load

TOL32 = {"rtol": 1e-5, "atol": 1e-5}  # float32: onnxruntime and cnnlab sum in other orders
TOL64 = {"rtol": 1e-10, "atol": 1e-10}


def _randomize_batch_norm(model: nn.Module, rng: np.random.Generator) -> None:
    """Give every BatchNorm layer statistics and an affine map that are not the identity."""
    for _, m in model.named_modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c, dtype = m.num_features, m.dtype
            m.weight.data = rng.uniform(0.5, 1.5, c).astype(dtype)
            m.bias.data = rng.normal(0, 0.2, c).astype(dtype)
            m.running_mean = rng.normal(0, 0.2, c).astype(dtype)
            m.running_var = rng.uniform(0.5, 2.0, c).astype(dtype)


def zoo(dropout: bool = True) -> nn.Sequential:
    """Every exported layer, in its awkward cases, for (N, 2, 9, 7) inputs."""
    rng = np.random.default_rng(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, rng=rng),
        nn.BatchNorm2d(4),
        nn.LeakyReLU(0.2),
        # an even kernel width: 'same' pads 1 left, 2 right
        nn.Conv2d(4, 6, (2, 4), padding="same", dilation=(2, 1), groups=2, rng=rng),
        nn.Tanh(),
        nn.MaxPool2d(3, stride=2, padding=1),  # overlapping, padded windows
        nn.Sequential(  # nested; stride, dilation and groups together
            nn.Conv2d(6, 6, 3, stride=2, padding=2, dilation=2, groups=3, rng=rng),
            nn.Sigmoid(),
        ),
        nn.AvgPool2d(3, stride=1, padding=1),  # count_include_pad=True (PyTorch's default)
        nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
        nn.Flatten(),
        nn.Linear(6 * 4 * 3, 20, rng=rng),
        nn.BatchNorm1d(20),
        nn.ReLU(),
        *([nn.Dropout(0.5)] if dropout else []),
        nn.Linear(20, 5, rng=rng),
    )
    _randomize_batch_norm(model, rng)
    return model


ZOO_SHAPE = (1, 2, 9, 7)


def _built(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    if name == "zoo":
        return zoo(), ZOO_SHAPE
    model = cnnlab.models.build(name, rng=np.random.default_rng(1))
    _randomize_batch_norm(model, np.random.default_rng(2))
    return model, (1, *cnnlab.models.INPUT_SHAPES[name])


def _inputs(shape: tuple[int, ...], batch: int = 3, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(3).standard_normal((batch, *shape[1:])).astype(dtype)


def _onnxruntime(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _flat(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        return [leaf for child in model for leaf in _flat(child)]
    return [model]


# -- export ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lenet5", "digits_cnn", "lenet5_bn", "zoo"])
def test_export_runs_in_onnxruntime_as_in_cnnlab(name, tmp_path):
    model, shape = _built(name)
    modes = [m.training for _, m in model.named_modules()]
    path = export(model, tmp_path / f"{name}.onnx", shape)
    # exporting neither switched the model to evaluation mode nor changed it
    assert [m.training for _, m in model.named_modules()] == modes
    x = _inputs(shape, batch=3)  # exported with batch 1: the batch dimension is dynamic
    got = _onnxruntime(path, x)
    expected = model.eval()(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, **TOL32)


def test_export_writes_weights_by_state_dict_key_and_a_valid_model(tmp_path):
    model = zoo()
    path = export(model, tmp_path / "zoo.onnx", ZOO_SHAPE, metadata={"dataset": "toy"})
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 17
    weights = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    expected = {k: v for k, v in model.state_dict().items() if "num_batches" not in k}
    assert sorted(weights) == sorted(expected)  # "6.0.weight": the nested Sequential's key
    for key, value in expected.items():
        np.testing.assert_array_equal(weights[key], value)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 2, 9, 7]
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["dataset"] == "toy" and json.loads(props["input_shape"]) == list(ZOO_SHAPE)
    ops = [n.op_type for n in proto.graph.node]
    assert "Dropout" not in ops and ops.count("Identity") == 1  # the inference graph
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temporary file


def test_export_in_float64_matches_the_reference_evaluator(tmp_path):
    model = zoo().astype(np.float64)
    path = export(model, tmp_path / "zoo64.onnx", ZOO_SHAPE)
    proto = onnx.load(str(path))
    assert {t.data_type for t in proto.graph.initializer} == {TensorProto.DOUBLE}
    # LeakyRelu's alpha is a float32 attribute; 0.2 is not exact in float32, so the
    # float64 graph carries the slope as a float64 PRelu tensor instead
    assert "PRelu" in [n.op_type for n in proto.graph.node]
    x = _inputs(ZOO_SHAPE, batch=2, dtype=np.float64)
    (got,) = ReferenceEvaluator(proto).run(None, {"input": x})
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, model.eval()(x), **TOL64)


def test_softmax_and_static_batch(tmp_path):
    model, shape = _built("digits_cnn")
    path = export(model, tmp_path / "p.onnx", (2, *shape[1:]), softmax=True, dynamic_batch=False)
    proto = onnx.load(str(path))
    assert proto.graph.output[0].name == "probabilities"
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 1, 8, 8]
    x = _inputs(shape, batch=2)
    logits = model.eval()(x).astype(np.float64)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(_onnxruntime(path, x), expected, **TOL32)


class _Custom(nn.Module):
    def forward(self, x):
        return x


class _Backwards(nn.Sequential):  # a Sequential whose forward is not Sequential's
    def forward(self, x):
        for layer in reversed(list(self)):
            x = layer(x)
        return x


@pytest.mark.parametrize(
    "model, shape, fragments",
    [
        (
            nn.Sequential(nn.Flatten(), nn.Sequential(nn.ReLU(), _Custom())),
            (1, 4),
            ["layer '1.1'", "_Custom", "supported:"],
        ),
        (
            nn.Sequential(nn.ReLU(), _Backwards(nn.Linear(4, 2), nn.Linear(2, 4))),
            (1, 4),
            ["layer '1'", "_Backwards", "build it as nn.Sequential"],
        ),
        (nn.Sequential(nn.Flatten(start_dim=2)), (1, 2, 3), ["layer '0'", "start_dim=2"]),
        (
            nn.Sequential(nn.BatchNorm1d(3, track_running_stats=False)),
            (2, 3),
            ["layer '0'", "no running statistics"],
        ),
        (nn.Sequential(nn.Linear(4, 2)), (1, 5), ["input_shape (1, 5) does not fit", "Linear"]),
        (nn.Sequential(nn.Linear(4, 2)), (4,), ["input_shape must be"]),
        (
            nn.Sequential(nn.Linear(4, 2), nn.Linear(2, 2, dtype=np.float64)),
            (1, 4),
            ["mixes float32 and float64"],
        ),
    ],
)
def test_export_refuses_what_it_cannot_write(model, shape, fragments, tmp_path):
    with pytest.raises(ValueError) as info:
        export(model, tmp_path / "x.onnx", shape)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert not (tmp_path / "x.onnx").exists()


def test_export_refuses_old_opsets(tmp_path):
    with pytest.raises(ValueError, match="opset must be an int from 17"):
        export(nn.Sequential(nn.ReLU()), tmp_path / "x.onnx", (1, 3), opset=16)


# -- export → load -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["lenet5_bn", "zoo"])
def test_round_trip_gives_back_the_layers_and_weights(name, dtype, tmp_path):
    model, shape = _built(name)
    if name == "zoo":  # Dropout is exported as Identity and comes back as nothing
        model = zoo(dropout=False)
    model.astype(dtype)
    flat = nn.Sequential(*_flat(model))  # nested Sequentials come back flattened
    loaded = load(export(model, tmp_path / "m.onnx", shape))
    assert repr(loaded) == repr(flat)  # every layer's type and arguments
    for mine, theirs in zip(_flat(loaded), _flat(flat)):
        if isinstance(theirs, nn.AvgPool2d):
            assert mine.count_include_pad == theirs.count_include_pad
    expected = {k: v for k, v in flat.state_dict().items() if "num_batches" not in k}
    got = loaded.state_dict()
    assert sorted(k for k in got if "num_batches" not in k) == sorted(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype
        np.testing.assert_array_equal(got[key], value)
    x = _inputs(shape, dtype=dtype)
    np.testing.assert_array_equal(loaded.eval()(x), flat.eval()(x))


# -- models written by PyTorch's exporters -------------------------------------------


class TorchLeNet(torch.nn.Module):
    """LeNet with named layers and ``x.view(x.size(0), -1)``, as tutorials write it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 6, 5, padding=2)
        self.pool = torch.nn.MaxPool2d(2)
        self.conv2 = torch.nn.Conv2d(6, 16, 5)
        self.fc1 = torch.nn.Linear(400, 120, bias=False)
        self.bn1 = torch.nn.BatchNorm1d(120)
        self.fc2 = torch.nn.Linear(120, 84)
        self.drop = torch.nn.Dropout(0.3)
        self.fc3 = torch.nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = x.view(x.size(0), -1)
        x = torch.relu(self.bn1(self.fc1(x)))
        return self.fc3(self.drop(torch.relu(self.fc2(x))))


@pytest.fixture(scope="module")
def torch_lenet(tmp_path_factory):
    """A LeNet exported by both of PyTorch's exporters, with its input and logits."""
    torch.manual_seed(0)
    net = TorchLeNet()
    with torch.no_grad():
        net.bn1.running_mean.normal_(0, 0.2)
        net.bn1.running_var.uniform_(0.5, 2.0)
        net.bn1.weight.uniform_(0.5, 1.5)
        net.bn1.bias.normal_(0, 0.2)
    net.eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        logits = net(x).numpy()
    root = tmp_path_factory.mktemp("torch-onnx")
    paths = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for mode, dynamo in (("torchscript", False), ("dynamo", True)):
            folder = root / mode
            folder.mkdir()
            paths[mode] = folder / "lenet.onnx"
            dynamic = (
                {"dynamic_shapes": ({0: torch.export.Dim("batch")},), "external_data": True}
                if dynamo
                else {"dynamic_axes": {"x": {0: "batch"}}}
            )
            torch.onnx.export(
                net,
                (x[:2],),
                str(paths[mode]),
                input_names=["x"],
                output_names=["logits"],
                dynamo=dynamo,
                **dynamic,
            )
    # the TorchScript model again, its weights moved to an external file
    folder = root / "external"
    folder.mkdir()
    paths["external"] = folder / "lenet.onnx"
    onnx.save_model(
        onnx.load(str(paths["torchscript"])),
        str(paths["external"]),
        save_as_external_data=True,
        location="lenet.onnx.data",
        size_threshold=0,
    )
    return paths, x.numpy(), logits


@pytest.mark.parametrize("mode", ["torchscript", "dynamo", "external"])
def test_lenet_exported_by_pytorch_loads_with_its_logits(torch_lenet, mode, monkeypatch, tmp_path):
    paths, x, logits = torch_lenet
    path = paths[mode]
    ops = [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]
    if mode != "dynamo":  # x.view(x.size(0), -1) as TorchScript writes it
        assert {"Shape", "Gather", "Unsqueeze", "Concat", "Reshape"} <= set(ops)
    if mode in ("dynamo", "external"):
        assert list(path.parent.glob("*.data"))  # weights outside the .onnx file
    monkeypatch.chdir(tmp_path)  # external data is found beside the model, not in the cwd
    model = load(path)
    kinds = [type(layer).__name__ for layer in model]
    assert kinds[:7] == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Flatten"]
    assert kinds.count("Linear") == 3
    np.testing.assert_allclose(model.eval()(x), logits, **TOL32)  # batch 4, exported with 2


# -- graphs written here, operator by operator ---------------------------------------


def _tensor(name: str, array) -> TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _model_file(path, nodes, weights, in_shape, opset=17):
    """Save a graph from input ``x`` to output ``y`` (its shape inferred; checked)."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[_tensor(k, v) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def _w(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _conv_flatten(target, **reshape):
    """Conv 2→3 (3×3) on (N, 2, 6, 6), then Reshape to ``target``, then Gemm to 4."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),
        helper.make_node("Reshape", ["c", "shape"], ["f"], name="flat", **reshape),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], transB=1, name="fc"),
    ]
    weights = {
        "w": _w(3, 2, 3, 3),
        "b": _w(3, seed=1),
        "shape": np.array(target, dtype=np.int64),
        "fc_w": _w(4, 48, seed=2),
        "fc_b": _w(4, seed=3),
    }
    return nodes, weights


HAND_MADE = {
    # torch's dynamo exporter can write Linear as MatMul + Add; the bias either side
    "matmul_add": (
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
            helper.make_node("Add", ["h", "b1"], ["a"], name="add1"),
            helper.make_node("Relu", ["a"], ["r"], name="relu"),
            helper.make_node("MatMul", ["r", "w2"], ["h2"], name="mm2"),
            helper.make_node("Add", ["b2", "h2"], ["y"], name="add2"),
        ],
        {"w1": _w(6, 5), "b1": _w(5, seed=1), "w2": _w(5, 3, seed=2), "b2": _w(1, 3, seed=3)},
        ["N", 6],
        ["Linear", "ReLU", "Linear"],
    ),
    "gemm_transB0_alpha_beta": (
        [helper.make_node("Gemm", ["x", "b", "c"], ["y"], alpha=0.5, beta=2.0, name="gemm")],
        {"b": _w(6, 4), "c": _w(4, seed=1)},
        ["N", 6],
        ["Linear"],
    ),
    "reshape_0_-1": (*_conv_flatten([0, -1]), ["N", 2, 6, 6], ["Conv2d", "Flatten", "Linear"]),
    "reshape_-1_K": (*_conv_flatten([-1, 48]), ["N", 2, 6, 6], ["Conv2d", "Flatten", "Linear"]),
    # a static batch: dynamo writes the batch size it was given into the target
    "reshape_static_batch": (
        *_conv_flatten([3, 48], allowzero=1),
        [3, 2, 6, 6],
        ["Conv2d", "Flatten", "Linear"],
    ),
    # x.view(x.size(0), -1) as torch's dynamo exporter writes it with optimize=False
    "reshape_dynamo_unoptimized": (
        [
            helper.make_node("Shape", ["x"], ["n1"], start=0, end=1),
            helper.make_node("Squeeze", ["n1"], ["n"]),
            helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),
            helper.make_node("Constant", [], ["minus1"], value_ints=[-1]),
            helper.make_node("Reshape", ["n", "minus1"], ["n_1d"]),
            helper.make_node("Concat", ["n_1d", "minus1"], ["shape"], axis=0),
            helper.make_node("Reshape", ["c", "shape"], ["f"], allowzero=1),
            helper.make_node("Gemm", ["f", "fc_w"], ["g"], transB=1),
            helper.make_node("Identity", ["g"], ["y"]),
        ],
        {k: v for k, v in _conv_flatten([0])[1].items() if k not in ("shape", "fc_b")},
        ["N", 2, 6, 6],
        ["Conv2d", "Flatten", "Linear"],
    ),
    "auto_pad_and_ceil_mode": (
        [
            helper.make_node("Conv", ["x", "w"], ["c"], auto_pad="SAME_UPPER", name="same"),
            helper.make_node("Conv", ["c", "w2"], ["v"], auto_pad="VALID", strides=[2, 1]),
            # (6 - 2) % 2 == 0 rows, (5 - 3) % 2 == 0 columns: ceil and floor agree
            helper.make_node(
                "MaxPool", ["v"], ["m"], kernel_shape=[2, 3], strides=[2, 2], ceil_mode=1
            ),
            helper.make_node(  # ONNX's default: padding cells not counted
                "AveragePool", ["m"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]
            ),
        ],
        {"w": _w(3, 2, 4, 2), "w2": _w(4, 3, 3, 3, seed=1)},
        ["N", 2, 13, 7],
        ["Conv2d", "Conv2d", "MaxPool2d", "AvgPool2d"],
    ),
    "prelu_dropout_identity_batchnorm": (
        [
            helper.make_node("PRelu", ["x", "slope"], ["p"], name="prelu"),
            helper.make_node("Dropout", ["p", "ratio"], ["d"], name="drop"),
            helper.make_node("Identity", ["d"], ["i"], name="id"),
            helper.make_node(
                "BatchNormalization", ["i", "g", "beta", "mu", "var"], ["y"], epsilon=1e-3
            ),
        ],
        {
            "slope": np.array([0.3], dtype=np.float32),
            "ratio": np.array(0.25, dtype=np.float32),
            "g": _w(3),
            "beta": _w(3, seed=1),
            "mu": _w(3, seed=2),
            "var": np.abs(_w(3, seed=3)) + 0.5,
        },
        ["N", 3, 4, 4],
        ["LeakyReLU", "Dropout", "BatchNorm2d"],
    ),
}


@pytest.mark.parametrize("case", sorted(HAND_MADE))
def test_hand_written_graphs_load_as_onnxruntime_runs_them(case, tmp_path):
    nodes, weights, in_shape, kinds = HAND_MADE[case]
    path = _model_file(tmp_path / "g.onnx", nodes, weights, in_shape)
    model = load(path)
    assert [type(layer).__name__ for layer in model] == kinds
    batch = in_shape[0] if isinstance(in_shape[0], int) else 3
    x = np.random.default_rng(4).standard_normal((batch, *in_shape[1:])).astype(np.float32)
    np.testing.assert_allclose(model.eval()(x), _onnxruntime(path, x), **TOL32)


def test_a_final_softmax_is_refused_or_dropped(tmp_path):
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["z"], transB=1, name="fc"),
        helper.make_node("Softmax", ["z"], ["y"], name="probs"),
    ]
    path = _model_file(tmp_path / "s.onnx", nodes, {"w": _w(3, 5)}, ["N", 5])
    with pytest.raises(CheckpointError, match=r"'probs' \(Softmax\).*drop_softmax=True"):
        load(path)
    model = load(path, drop_softmax=True)
    x = _w(2, 5, seed=9)
    z = model(x).astype(np.float64)
    np.testing.assert_allclose(np.exp(z) / np.exp(z).sum(1, keepdims=True), _onnxruntime(path, x))


@pytest.mark.parametrize(
    "nodes, weights, in_shape, fragments",
    [
        (  # an operator cnnlab has no layer for
            [
                helper.make_node("Relu", ["x"], ["r"], name="relu"),
                helper.make_node("Abs", ["r"], ["y"], name="the_abs"),
            ],
            {},
            ["N", 4],
            ["node 'the_abs' (Abs)", "unsupported operator Abs"],
        ),
        (  # a residual connection
            [
                helper.make_node("Relu", ["x"], ["r"], name="relu"),
                helper.make_node("Sigmoid", ["r"], ["s"], name="sig"),
                helper.make_node("Add", ["s", "r"], ["y"], name="skip"),
            ],
            {},
            ["N", 4],
            ["node 'skip' (Add)", "not a simple chain"],
        ),
        (
            [helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 1, 1, 0], name="lopsided")],
            {"w": _w(2, 1, 3, 3)},
            ["N", 1, 5, 5],
            ["node 'lopsided' (Conv)", "pads [0, 1, 1, 0] differ"],
        ),
        (
            [
                helper.make_node(
                    "Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2], name="s2"
                )
            ],
            {"w": _w(2, 1, 3, 3)},
            ["N", 1, 5, 5],
            ["node 's2' (Conv)", "auto_pad=SAME_UPPER with stride [2, 2]"],
        ),
        (  # (6 - 3) % 2 != 0: ceil mode adds a window floor mode does not have
            [
                helper.make_node(
                    "MaxPool",
                    ["x"],
                    ["y"],
                    kernel_shape=[3, 3],
                    strides=[2, 2],
                    ceil_mode=1,
                    name="ceil",
                )
            ],
            {},
            ["N", 1, 6, 6],
            ["node 'ceil' (MaxPool)", "ceil_mode=1 is not supported"],
        ),
        (
            [helper.make_node("Reshape", ["x", "shape"], ["y"], name="split")],
            {"shape": np.array([-1, 2, 8], dtype=np.int64)},
            ["N", 16],
            ["node 'split' (Reshape)", "not a flatten"],
        ),
        (  # an attribute cnnlab would have to ignore
            [helper.make_node("Gemm", ["x", "w"], ["y"], transA=1, name="ta")],
            {"w": _w(4, 3)},
            [4, "N"],
            ["node 'ta' (Gemm)", "transA=1"],
        ),
    ],
)
def test_load_refuses_what_it_cannot_represent(nodes, weights, in_shape, fragments, tmp_path):
    path = _model_file(tmp_path / "bad.onnx", nodes, weights, in_shape)
    with pytest.raises(CheckpointError) as info:
        load(path)
    for fragment in ["bad.onnx", *fragments]:
        assert fragment in str(info.value)


def test_unreadable_files_and_missing_external_data(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07 this is not a protobuf \xff\xff")
    with pytest.raises(CheckpointError, match=r"junk\.onnx: not a readable ONNX model"):
        load(junk)
    with pytest.raises(CheckpointError, match=r"absent\.onnx: no such file"):
        load(tmp_path / "absent.onnx")
    model, shape = _built("digits_cnn")
    inline = export(model, tmp_path / "inline.onnx", shape)
    (tmp_path / "ext").mkdir()
    outside = tmp_path / "ext" / "m.onnx"
    onnx.save_model(
        onnx.load(str(inline)), str(outside), save_as_external_data=True, location="m.data"
    )
    (tmp_path / "ext" / "m.data").unlink()
    with pytest.raises(CheckpointError, match=r"m\.onnx: .*external data.*m\.data"):
        load(outside)


def test_without_the_onnx_package_the_error_names_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'cnnlab\[onnx\]'"):
        export(nn.Sequential(nn.ReLU()), tmp_path / "x.onnx", (1, 3))
    with pytest.raises(MissingDependencyError):
        load(tmp_path / "x.onnx")
    cnnlab.save(cnnlab.models.digits_cnn(), tmp_path / "m.safetensors")
    from cnnlab.cli import main

    code = main(["export", "--checkpoint", str(tmp_path / "m.safetensors"), "--onnx", "o.onnx"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "cnnlab[onnx]" in err, err
