"""Shape arithmetic: what exporters compute in front of a flattening Reshape.

``x.view(x.size(0), -1)`` becomes ``Shape → Gather → Unsqueeze → Concat → Reshape``
(TorchScript exporter), or ``Shape(end=1) → Squeeze → Reshape → Concat → Reshape``
(dynamo exporter, unoptimised). These nodes are evaluated here on constants and on
:class:`~cnnlab.onnx._chain.Dim` s, the sizes of the chain's tensors known only at run
time, so the Reshape can tell whether it flattens to (batch, features).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnlab.onnx._chain import Chain, Dim, Node, ShapeOf


def entries(chain: Chain, node: Node, value: Any) -> list[Any]:
    """A 1-D shape value as a list of ints and :class:`Dim` s."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return [int(v) for v in value]
    if isinstance(value, list):
        return value
    raise chain.error(node, "a shape computation cnnlab cannot follow (expected a 1-D shape)")


def _op_constant(chain: Chain, node: Node) -> Any:
    a = chain.attributes(node, value=None, value_int=None, value_ints=None)
    if a["value"] is not None:
        return chain.onnx.numpy_helper.to_array(a["value"])
    if a["value_int"] is not None:
        return np.array(a["value_int"], dtype=np.int64)
    if a["value_ints"] is not None:
        return np.array(a["value_ints"], dtype=np.int64)
    raise chain.error(node, "a Constant without a value")


def _op_shape(chain: Chain, node: Node) -> Any:
    a = chain.attributes(node, start=0, end=None)
    source = node.input(0)
    if source in chain.values and isinstance(chain.values[source], np.ndarray):
        return np.array(chain.values[source].shape[a["start"] : a["end"]], dtype=np.int64)
    if source not in chain.seen:
        raise chain.error(node, f"input {source!r} is not produced by any earlier node")
    known = chain.shapes.get(source)
    if known is not None:
        axes = range(len(known))[a["start"] : a["end"]]
        return [Dim(source, axis) for axis in axes]
    if a["start"] < 0 or (a["end"] is not None and a["end"] < 0):
        raise chain.error(node, f"the rank of {source!r} is unknown; cannot count from its end")
    if a["end"] is None:
        return ShapeOf(source, a["start"])
    return [Dim(source, axis) for axis in range(a["start"], a["end"])]


def _op_gather(chain: Chain, node: Node) -> Any:
    a = chain.attributes(node, axis=0)
    data, index = chain.value(node, 0), chain.constant(node, 1)
    if isinstance(data, np.ndarray):
        return np.take(data, index, axis=a["axis"])
    if a["axis"] != 0 or index.ndim > 1:
        raise chain.error(node, "a shape computation cnnlab cannot follow")
    picks = [int(i) for i in index.reshape(-1)]
    if isinstance(data, ShapeOf):
        if min(picks) < 0:
            raise chain.error(node, f"the rank of {data.tensor!r} is unknown; negative index")
        dims = [Dim(data.tensor, data.start + i) for i in picks]
    else:
        dims = [data[i] for i in picks]
    return dims[0] if index.ndim == 0 else dims


def _axes(chain: Chain, node: Node) -> list[int]:
    """Unsqueeze/Squeeze axes: an attribute before opset 13, an input since."""
    if "axes" in node.attributes:
        return list(chain.attributes(node, axes=None)["axes"])
    chain.attributes(node)
    return [int(v) for v in chain.constant(node, 1).reshape(-1)] if node.input(1) else []


def _op_unsqueeze(chain: Chain, node: Node) -> Any:
    data, axes = chain.value(node, 0), _axes(chain, node)
    if isinstance(data, np.ndarray):
        return np.expand_dims(data, tuple(axes))
    if isinstance(data, (Dim, int)) and axes in ([0], [-1]):
        return [data]
    raise chain.error(node, "a shape computation cnnlab cannot follow")


def _op_squeeze(chain: Chain, node: Node) -> Any:
    data, axes = chain.value(node, 0), _axes(chain, node)
    if isinstance(data, np.ndarray):
        return np.squeeze(data, tuple(axes)) if axes else np.squeeze(data)
    if isinstance(data, list) and len(data) == 1 and axes in ([], [0], [-1]):
        return data[0]
    raise chain.error(node, "a shape computation cnnlab cannot follow")


def _op_concat(chain: Chain, node: Node) -> Any:
    a = chain.attributes(node, axis=0)
    parts = [chain.value(node, i) for i in range(len(node.inputs))]
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts, axis=a["axis"])
    if a["axis"] not in (0, -1):
        raise chain.error(node, "a shape computation cnnlab cannot follow")
    return [entry for p in parts for entry in entries(chain, node, p)]


def _op_cast(chain: Chain, node: Node) -> Any:
    a = chain.attributes(node, to=None, saturate=1, round_mode="up")
    data = chain.value(node, 0)
    if isinstance(data, np.ndarray):
        return data.astype(chain.onnx.helper.tensor_dtype_to_np_dtype(a["to"]))
    return data  # sizes stay sizes


def _op_identity_constant(chain: Chain, node: Node) -> Any:
    chain.attributes(node)
    return chain.value(node, 0)


def _op_reshape_constant(chain: Chain, node: Node) -> Any:
    """Reshape of a shape value: an exported ``x.size(0)`` made 1-D by ``[-1]``."""
    chain.attributes(node, allowzero=0)
    data, target = chain.value(node, 0), chain.constant(node, 1)
    if isinstance(data, np.ndarray):
        return data.reshape(target)
    if isinstance(data, (Dim, int)) and target.tolist() in ([-1], [1]):
        return [data]
    if isinstance(data, list) and target.tolist() in ([-1], [len(data)]):
        return data
    raise chain.error(node, "a shape computation cnnlab cannot follow")


ARITHMETIC: dict[str, Callable[[Chain, Node], Any]] = {
    "Constant": _op_constant,
    "Shape": _op_shape,
    "Gather": _op_gather,
    "Unsqueeze": _op_unsqueeze,
    "Squeeze": _op_squeeze,
    "Concat": _op_concat,
    "Cast": _op_cast,
}

#: layer operators that may also act on constants and shape values
ON_VALUES: dict[str, Callable[[Chain, Node], Any]] = {
    "Identity": _op_identity_constant,
    "Reshape": _op_reshape_constant,
}
