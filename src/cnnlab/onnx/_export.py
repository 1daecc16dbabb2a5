"""cnnlab model → ONNX graph: one small writer per layer type."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab import nn
from cnnlab.functional.conv import conv_padding
from cnnlab.io import atomic_write_bytes
from cnnlab.nn.module import Module, Sequential
from cnnlab.onnx._common import MIN_OPSET, require_onnx


class _Graph:
    """The nodes and initializers of the graph being written."""

    def __init__(self, onnx: Any, dtype: np.dtype) -> None:
        self.onnx = onnx
        self.dtype = dtype
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def weight(self, name: str, array: np.ndarray) -> str:
        """Add ``array`` (in the model's dtype) as an initializer called ``name``."""
        value = np.ascontiguousarray(array, dtype=self.dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], path: str, **attributes: Any) -> str:
        """Add one node for the layer at ``path``; returns its output's name."""
        name = f"/{path}/{op}" if path else f"/{op}"
        output = f"{name}_output"
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=name, **attributes))
        return output


def _key(path: str, name: str) -> str:
    """The state-dict key of parameter ``name`` of the layer at ``path``."""
    return f"{path}.{name}" if path else name


def _export_conv(g: _Graph, path: str, layer: nn.Conv2d, x: str) -> str:
    (top, bottom), (left, right) = conv_padding(
        layer.padding, layer.kernel_size, layer.stride, layer.dilation
    )
    inputs = [x, g.weight(_key(path, "weight"), layer.weight.data)]
    if layer.bias is not None:
        inputs.append(g.weight(_key(path, "bias"), layer.bias.data))
    return g.node(
        "Conv",
        inputs,
        path,
        kernel_shape=list(layer.kernel_size),
        strides=list(layer.stride),
        dilations=list(layer.dilation),
        pads=[top, left, bottom, right],  # ONNX: all begins, then all ends
        group=layer.groups,
    )


def _pool_attributes(layer: nn.MaxPool2d | nn.AvgPool2d) -> dict[str, Any]:
    ph, pw = layer.padding
    return {
        "kernel_shape": list(layer.kernel_size),
        "strides": list(layer.stride),
        "pads": [ph, pw, ph, pw],
        "ceil_mode": 0,
    }


def _export_max_pool(g: _Graph, path: str, layer: nn.MaxPool2d, x: str) -> str:
    return g.node("MaxPool", [x], path, **_pool_attributes(layer))


def _export_avg_pool(g: _Graph, path: str, layer: nn.AvgPool2d, x: str) -> str:
    # ONNX's default is count_include_pad=0, PyTorch's (and cnnlab's) True: always write it
    return g.node(
        "AveragePool",
        [x],
        path,
        count_include_pad=int(layer.count_include_pad),
        **_pool_attributes(layer),
    )


def _export_linear(g: _Graph, path: str, layer: nn.Linear, x: str) -> str:
    inputs = [x, g.weight(_key(path, "weight"), layer.weight.data)]
    if layer.bias is not None:
        inputs.append(g.weight(_key(path, "bias"), layer.bias.data))
    return g.node("Gemm", inputs, path, transB=1)


def _export_flatten(g: _Graph, path: str, layer: nn.Flatten, x: str) -> str:
    if layer.start_dim != 1:  # ONNX's Flatten always makes a matrix
        raise ValueError(
            f"cannot export layer {path!r} (Flatten(start_dim={layer.start_dim})): ONNX's "
            "Flatten gives (batch, features), which is Flatten(start_dim=1) only"
        )
    return g.node("Flatten", [x], path, axis=1)


def _export_leaky_relu(g: _Graph, path: str, layer: nn.LeakyReLU, x: str) -> str:
    slope = layer.negative_slope
    if g.dtype == np.float64 and float(np.float32(slope)) != slope:
        # LeakyRelu's alpha is a float32 attribute; PRelu takes the slope as a tensor
        name = g.weight(_key(path, "negative_slope"), np.array([slope]))
        return g.node("PRelu", [x, name], path)
    return g.node("LeakyRelu", [x], path, alpha=slope)


def _export_batch_norm(g: _Graph, path: str, layer: nn.BatchNorm1d | nn.BatchNorm2d, x: str) -> str:
    if layer.running_mean is None or layer.running_var is None:
        raise ValueError(
            f"cannot export layer {path!r} ({type(layer).__name__}): it has no running "
            "statistics (track_running_stats=False), so it normalises with each batch's "
            "statistics even in evaluation, which an inference graph cannot express"
        )
    c = layer.num_features
    scale = np.ones(c) if layer.weight is None else layer.weight.data
    shift = np.zeros(c) if layer.bias is None else layer.bias.data
    inputs = [
        x,
        g.weight(_key(path, "weight"), scale),
        g.weight(_key(path, "bias"), shift),
        g.weight(_key(path, "running_mean"), layer.running_mean),
        g.weight(_key(path, "running_var"), layer.running_var),
    ]
    attributes: dict[str, Any] = {"epsilon": layer.eps}
    if layer.momentum is not None:  # ONNX weighs the running value, PyTorch the batch's
        attributes["momentum"] = 1.0 - layer.momentum
    return g.node("BatchNormalization", inputs, path, **attributes)


def _export_simple(op: str) -> Callable[[_Graph, str, Any, str], str]:
    def write(g: _Graph, path: str, layer: Any, x: str) -> str:
        return g.node(op, [x], path)

    return write


EXPORTERS: dict[type, Callable[[_Graph, str, Any, str], str]] = {
    nn.Conv2d: _export_conv,
    nn.MaxPool2d: _export_max_pool,
    nn.AvgPool2d: _export_avg_pool,
    nn.Linear: _export_linear,
    nn.Flatten: _export_flatten,
    nn.ReLU: _export_simple("Relu"),
    nn.LeakyReLU: _export_leaky_relu,
    nn.Sigmoid: _export_simple("Sigmoid"),
    nn.Tanh: _export_simple("Tanh"),
    nn.Dropout: _export_simple("Identity"),  # evaluation mode: dropout is the identity
    nn.BatchNorm1d: _export_batch_norm,
    nn.BatchNorm2d: _export_batch_norm,
}


def layers_of(module: Module, path: str = "") -> list[tuple[str, Module]]:
    """The layers of ``module`` in the order they run, nested Sequentials flattened, each
    with its dotted path (the prefix of its state-dict keys)."""
    if isinstance(module, Sequential) and type(module).forward is Sequential.forward:
        found: list[tuple[str, Module]] = []
        for name, child in module.named_children():
            found += layers_of(child, f"{path}.{name}" if path else name)
        return found
    if type(module) not in EXPORTERS:
        where = f"layer {path!r}" if path else "the model"
        why = (
            "a container whose forward pass cnnlab cannot read (build it as nn.Sequential)"
            if any(True for _ in module.children())
            else "a layer type ONNX export does not know"
        )
        known = ", ".join(sorted(t.__name__ for t in EXPORTERS))
        raise ValueError(
            f"cannot export {where} of type {type(module).__name__}: {why}; "
            f"supported: {known} and nested Sequentials"
        )
    return [(path, module)]


def _model_dtype(model: Module) -> np.dtype:
    dtypes = {p.dtype for p in model.parameters()}
    dtypes |= {b.dtype for _, b in model.named_buffers() if b.dtype.kind == "f"}
    if len(dtypes) > 1:
        raise ValueError(
            f"the model mixes {' and '.join(sorted(map(str, dtypes)))} arrays; convert it "
            "to one dtype first, e.g. model.astype(np.float32)"
        )
    dtype = dtypes.pop() if dtypes else np.dtype(np.float32)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"ONNX export needs a float32 or float64 model, got {dtype}")
    return np.dtype(dtype)


def _checked_shape(input_shape: Any) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in input_shape)
        ok = len(shape) >= 2 and all(d >= 1 for d in shape) and shape == tuple(input_shape)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"input_shape must be a tuple of at least two positive ints, (N, C, H, W) for "
            f"a CNN, got {input_shape!r}"
        )
    return shape


def _output_shape(model: Module, shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, ...]:
    """Run a copy of the model in evaluation mode on zeros: checks that ``shape`` fits
    and gives the output's shape, without touching the model's caches or modes."""
    probe = copy.deepcopy(model)
    probe.eval()
    try:
        return tuple(probe(np.zeros(shape, dtype=dtype)).shape)
    except ValueError as exc:
        raise ValueError(f"input_shape {shape} does not fit the model: {exc}") from None


def export(
    model: Module,
    path: str | Path,
    input_shape: tuple[int, ...] = (1, 1, 28, 28),
    *,
    opset: int = MIN_OPSET,
    softmax: bool = False,
    dynamic_batch: bool = True,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` as an ONNX inference graph to ``path`` (atomically).

    The graph computes what ``model.eval()`` computes: Dropout is the identity and
    BatchNorm uses its running statistics, whatever mode the model is in (the model is
    not changed). Weights are initializers named by their state-dict keys
    (``0.weight``, ``3.1.bias``, ...), in the model's dtype (float32 or float64); the
    model is checked with ``onnx.checker.check_model`` before it is written.

    Parameters
    ----------
    model : Module
        A layer or a :class:`~cnnlab.nn.Sequential` (nested ones allowed) of Conv2d,
        MaxPool2d, AvgPool2d, Linear, Flatten, ReLU, LeakyReLU, Sigmoid, Tanh, Dropout,
        BatchNorm1d and BatchNorm2d.
    path : str or Path
        The ``.onnx`` file to write.
    input_shape : tuple of int
        One input's shape, ``(N, C, H, W)`` for a CNN; run once through a copy of the
        model to check that it fits.
    opset : int
        ONNX opset version, at least 17.
    softmax : bool
        End with a Softmax over axis 1: the graph outputs probabilities instead of
        logits (output name ``probabilities`` instead of ``logits``).
    dynamic_batch : bool
        Name the batch dimension ``N`` so any batch size runs (default); False fixes it
        to ``input_shape[0]``.
    metadata : dict, optional
        Recorded in the model's ``metadata_props`` (strings, others as JSON), e.g.
        ``{"dataset": "mnist"}`` so ``cnnlab eval`` knows the data set. The input shape
        (``input_shape``) and the model's name (``model``, for models of
        :mod:`cnnlab.models`) are recorded too.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        A layer ONNX export does not support (the message names its path and type),
        an ``input_shape`` that does not fit the model, a model mixing dtypes, or an
        opset below 17.
    MissingDependencyError
        The ``onnx`` package is not installed.

    Notes
    -----
    What an inference graph does not carry: Dropout layers (written as Identity),
    BatchNorm's ``num_batches_tracked`` and a ``momentum=None`` (ONNX's momentum is
    PyTorch's ``1 - momentum``; without one, :func:`load` gives PyTorch's default 0.1).
    ONNX float attributes are float32: LeakyReLU's slope comes back as the shortest
    decimal of its float32 value (0.2 stays 0.2).

    Shapes
    ------
    Graph input ``input``: ``(N, *input_shape[1:])``; output ``logits`` (or
    ``probabilities``): ``(N, *model_output[1:])``.
    """
    onnx = require_onnx()
    from onnx import TensorProto, helper

    import cnnlab

    if not isinstance(model, Module):
        raise ValueError(f"model must be a cnnlab Module, got {type(model).__name__}")
    newest = int(onnx.defs.onnx_opset_version())
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(
            f"opset must be an int from {MIN_OPSET} to {newest} (the newest this onnx "
            f"package knows), got {opset!r}"
        )
    layers = layers_of(model)
    dtype = _model_dtype(model)
    shape = _checked_shape(input_shape)
    out_shape = _output_shape(model, shape, dtype)

    g = _Graph(onnx, dtype)
    x = "input"
    for path_, layer in layers:
        x = EXPORTERS[type(layer)](g, path_, layer, x)
    if softmax:
        x = g.node("Softmax", [x], "", axis=1)
    output = "probabilities" if softmax else "logits"
    if not g.nodes:  # an empty Sequential: the identity
        g.nodes.append(helper.make_node("Identity", [x], [output], name="/Identity"))
    else:
        g.nodes[-1].output[0] = output

    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    batch: int | str = "N" if dynamic_batch else shape[0]
    graph = helper.make_graph(
        g.nodes,
        "cnnlab",
        [helper.make_tensor_value_info("input", elem, [batch, *shape[1:]])],
        [helper.make_tensor_value_info(output, elem, [batch, *out_shape[1:]])],
        initializer=g.initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(
        graph, opset_imports=opsets, producer_name="cnnlab", producer_version=cnnlab.__version__
    )
    proto.ir_version = helper.find_min_ir_version_for(opsets)  # readable by older runtimes
    props = {"input_shape": json.dumps(list(shape))}
    recipe = getattr(model, "spec", None)
    if isinstance(recipe, dict) and isinstance(recipe.get("name"), str):
        props["model"] = recipe["name"]
    for key, value in (metadata or {}).items():
        props[str(key)] = value if isinstance(value, str) else json.dumps(value)
    helper.set_model_props(proto, props)
    onnx.checker.check_model(proto, full_check=True)
    path = Path(path)
    data = proto.SerializeToString()
    atomic_write_bytes(path, lambda tmp: Path(tmp).write_bytes(data))
    return path
