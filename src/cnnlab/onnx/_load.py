"""ONNX graph → cnnlab model: walk the nodes in order, building a chain of layers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from cnnlab.errors import CheckpointError
from cnnlab.nn.module import Sequential
from cnnlab.onnx._arith import ARITHMETIC, ON_VALUES
from cnnlab.onnx._chain import Chain, Node
from cnnlab.onnx._common import require_onnx
from cnnlab.onnx._layers import LAYERS


def _shape_of(value_info: Any) -> tuple[int | None, ...] | None:
    t = value_info.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim)


def _inferred_shapes(onnx: Any, proto: Any) -> dict[str, tuple[int | None, ...]]:
    """Every tensor's shape that ONNX's shape inference can tell."""
    try:
        graph = onnx.shape_inference.infer_shapes(proto).graph
    except Exception:  # inference is a help, not a requirement
        graph = proto.graph
    shapes = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        shape = _shape_of(info)
        if shape is not None:
            shapes[info.name] = shape
    return shapes


def _step(chain: Chain, node: Node, used: set[str]) -> None:
    """Follow one node: shape arithmetic, or a layer appended to the chain."""
    if node.domain not in ("", "ai.onnx"):
        raise chain.error(node, f"operator of domain {node.domain!r} is not supported")
    data = node.input(0)
    if node.op in ARITHMETIC:
        chain.values[node.outputs[0]] = ARITHMETIC[node.op](chain, node)
        return
    if node.op in ON_VALUES and data in chain.values:  # not a layer: reads no tensor
        chain.values[node.outputs[0]] = ON_VALUES[node.op](chain, node)
        return
    if node.op not in LAYERS:
        raise chain.error(
            node,
            f"unsupported operator {node.op}; cnnlab loads {', '.join(sorted(LAYERS))} "
            "(and the shape arithmetic of a flattening Reshape)",
        )
    if node.op == "Add" and node.input(1) == chain.tensor:
        data = node.input(1)
    if data != chain.tensor:
        where = "an earlier tensor of the chain" if data in chain.seen else "not the chain"
        raise chain.error(
            node,
            f"it reads {data!r} ({where}) where the last layer's output {chain.tensor!r} "
            "was expected: the graph is not a simple chain of layers",
        )
    if sum(name in chain.seen for name in node.inputs) > 1:
        raise chain.error(node, "it reads the chain twice: the graph is not a simple chain")
    for extra in node.outputs[1:]:
        if extra and extra in used:
            raise chain.error(node, f"its output {extra!r} is used; cnnlab reads the first only")
    try:
        layer = LAYERS[node.op](chain, node)
    except CheckpointError:
        raise
    except ValueError as exc:  # the layer refuses the values (e.g. pool padding)
        raise chain.error(node, str(exc)) from None
    if layer is not None:
        chain.layers.append(layer)
    chain.tensor = node.outputs[0]
    chain.seen.add(chain.tensor)


class Loaded(NamedTuple):
    """A loaded model, the file's ``metadata_props`` and the graph input's shape
    (``None`` for a dimension without a fixed size, such as a dynamic batch)."""

    model: Sequential
    metadata: dict[str, str]
    input_shape: tuple[int | None, ...] | None


def read(path: str | Path, drop_softmax: bool) -> Loaded:
    """:func:`load`, also returning what the command line needs from the file."""
    onnx = require_onnx()
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; give the path of an .onnx model")
    try:  # external weights (.data files) are read from the model's folder
        proto = onnx.load(str(path))
    except Exception as exc:  # protobuf and onnx raise many kinds; all mean "unreadable"
        raise CheckpointError(
            f"{path}: not a readable ONNX model (truncated or corrupt, or an external data "
            f"file is missing): {str(exc).strip()}"
        ) from None
    graph = proto.graph
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise CheckpointError(
            f"{path}: the graph has {len(inputs)} inputs and {len(graph.output)} outputs; "
            "cnnlab loads models with one input and one output"
        )
    elem = inputs[0].type.tensor_type.elem_type
    dtypes = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64}
    if elem not in dtypes:
        raise CheckpointError(
            f"{path}: input {inputs[0].name!r} has type "
            f"{onnx.TensorProto.DataType.Name(elem)}; cnnlab loads float and double models"
        )
    input_shape = _shape_of(inputs[0])
    chain = Chain(
        path=path,
        onnx=onnx,
        opset=opset,
        dtype=np.dtype(dtypes[elem]),
        tensor=inputs[0].name,
        rank=None if input_shape is None else len(input_shape),
        shapes=_inferred_shapes(onnx, proto),
        graph_outputs={graph.output[0].name},
        drop_softmax=drop_softmax,
        values=dict(weights),
        seen={inputs[0].name},
    )
    used = {name for node in graph.node for name in node.input} | chain.graph_outputs
    for index, proto_node in enumerate(graph.node):
        _step(chain, Node(onnx, proto_node, index), used)
    if graph.output[0].name != chain.tensor:
        raise CheckpointError(
            f"{path}: the graph's output {graph.output[0].name!r} is not the end of the "
            f"chain of layers ({chain.tensor!r}); cnnlab loads simple chains only"
        )
    metadata = {p.key: p.value for p in proto.metadata_props}
    return Loaded(Sequential(*chain.layers), metadata, input_shape)


def load(path: str | Path, *, drop_softmax: bool = False) -> Sequential:
    """Load an ONNX model made of a chain of supported operators as a cnnlab model.

    Reads what :func:`export` writes and what PyTorch's exporters write for a plain CNN
    (``torch.onnx.export`` with ``dynamo=False`` or ``True``): Conv, MaxPool,
    AveragePool, Gemm (``transB`` 0 or 1), MatMul + Add, Relu, LeakyRelu, PRelu (one
    slope), Sigmoid, Tanh, Flatten, Reshape used as a flatten (``[-1, K]``, ``[N, -1]``,
    ``[0, -1]``, or ``x.size(0)`` computed by Shape → Gather → Unsqueeze → Concat),
    Identity, Dropout and BatchNormalization. Weights may be inline or in external
    data files beside the model (read from the model's folder, as PyTorch writes them).

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file.
    drop_softmax : bool
        Load a model that ends with a Softmax without it, so it outputs logits as
        cnnlab models do (the classes' order is unchanged). False: such a model is
        refused.

    Returns
    -------
    Sequential
        The layers in order (``0``, ``1``, ...), in the graph's dtype (float32 or
        float64), in training mode as every new cnnlab model; call ``.eval()`` for
        inference (it matters for Dropout and BatchNorm).

    Raises
    ------
    CheckpointError
        An unreadable file or missing external data, a graph that is not a simple chain,
        or an unsupported operator or attribute: the message names the node and its
        operator.
    MissingDependencyError
        The ``onnx`` package is not installed.

    Shapes
    ------
    The graph's: input ``(N, C, H, W)`` for a CNN; output ``(N, classes)``.
    """
    return read(path, drop_softmax).model
