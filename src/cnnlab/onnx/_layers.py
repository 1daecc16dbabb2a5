"""ONNX operators → cnnlab layers: one small function per operator.

Each takes the :class:`~cnnlab.onnx._chain.Chain` and the node, checks every attribute
(an unknown one is refused, never ignored), and returns the layer, or None for an
operator that adds none (Identity, the bias Add of a MatMul, a dropped Softmax).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from cnnlab import nn
from cnnlab.functional.conv import conv_padding
from cnnlab.nn.module import Module
from cnnlab.onnx._arith import entries
from cnnlab.onnx._chain import RNG, Chain, Dim, Node
from cnnlab.onnx._common import f32


def _padding(
    chain: Chain,
    node: Node,
    a: dict[str, Any],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[int, int] | str:
    """ONNX's ``auto_pad``/``pads`` as cnnlab's ``padding``: ``(ph, pw)`` or ``'same'``."""
    auto_pad = a["auto_pad"]
    if auto_pad == "VALID":
        return (0, 0)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        totals = [dilation[i] * (kernel[i] - 1) for i in (0, 1)]
        if stride != (1, 1):
            raise chain.error(
                node,
                f"auto_pad={auto_pad} with stride {list(stride)} pads by an amount that "
                "depends on the input size; cnnlab resolves it for stride 1 only",
            )
        if auto_pad == "SAME_LOWER" and any(t % 2 for t in totals):
            raise chain.error(
                node,
                "auto_pad=SAME_LOWER puts the odd padding row first; cnnlab's 'same' "
                "puts it last (SAME_UPPER)",
            )
        return "same"
    if auto_pad != "NOTSET":
        raise chain.error(node, f"auto_pad={auto_pad!r} is not supported")
    pads = list(a["pads"] or [0, 0, 0, 0])
    if len(pads) != 4:
        raise chain.error(node, f"pads {pads}: expected 4 values for a 2-D operator")
    top, left, bottom, right = pads
    if (top, left) == (bottom, right):
        return (top, left)
    if stride == (1, 1) and conv_padding("same", kernel, stride, dilation) == (
        (top, bottom),
        (left, right),
    ):
        return "same"
    raise chain.error(
        node,
        f"pads {pads} differ between the two sides; cnnlab pads both sides equally (or "
        "as 'same' with stride 1, the extra row and column at the bottom and right)",
    )


def _pair_of(chain: Chain, node: Node, value: Any, name: str) -> tuple[int, int]:
    if value is None or len(value) != 2:
        raise chain.error(node, f"{name} {value}: expected 2 values (a 2-D operator)")
    return int(value[0]), int(value[1])


def _op_conv(chain: Chain, node: Node) -> Module:
    a = chain.attributes(
        node, auto_pad="NOTSET", dilations=[1, 1], group=1, kernel_shape=None, pads=None,
        strides=[1, 1],
    )  # fmt: skip
    weight, bias = chain.weight(node, 1), chain.optional_weight(node, 2)
    if weight.ndim != 4:
        raise chain.error(node, f"weight of shape {weight.shape}: only 2-D convolutions")
    kernel = (weight.shape[2], weight.shape[3])
    if a["kernel_shape"] is not None and tuple(a["kernel_shape"]) != kernel:
        raise chain.error(node, f"kernel_shape {a['kernel_shape']} differs from the weight's")
    stride = _pair_of(chain, node, a["strides"], "strides")
    dilation = _pair_of(chain, node, a["dilations"], "dilations")
    padding = _padding(chain, node, a, kernel, stride, dilation)
    groups = int(a["group"])
    layer = nn.Conv2d(
        weight.shape[1] * groups, weight.shape[0], kernel, stride, padding, dilation, groups,
        bias=bias is not None, dtype=chain.dtype, rng=RNG(0),
    )  # fmt: skip
    layer.weight.data = weight
    if layer.bias is not None and bias is not None:
        layer.bias.data = bias
    chain.rank = 4
    return layer


def _pool_geometry(
    chain: Chain, node: Node, a: dict[str, Any]
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """``(kernel, stride, padding)`` of a MaxPool or AveragePool node."""
    kernel = _pair_of(chain, node, a["kernel_shape"], "kernel_shape")
    stride = _pair_of(chain, node, a["strides"], "strides")
    if a["dilations"] is not None and list(a["dilations"]) != [1, 1]:
        raise chain.error(node, f"dilations {a['dilations']}: cnnlab pools without dilation")
    padding = _padding(chain, node, a, kernel, stride, (1, 1))
    if isinstance(padding, str):  # 'same': more padding after than before
        raise chain.error(
            node,
            f"pads {a['pads']}, auto_pad={a['auto_pad']}: cnnlab pools with the same "
            "padding on both sides",
        )
    if a["ceil_mode"]:
        # ceil and floor give the same windows when the stride divides H + 2p - k
        shape = chain.shapes.get(node.input(0))
        sizes = shape[2:] if shape is not None and len(shape) == 4 else (None, None)
        if any(
            size is None or (size + 2 * p - k) % s
            for size, p, k, s in zip(sizes, padding, kernel, stride)
        ):
            raise chain.error(
                node,
                "ceil_mode=1 is not supported: cnnlab pools with floor, which gives the "
                "same windows only when the stride divides (size + 2·pad - kernel); here "
                + ("the input's size is unknown" if None in sizes else "it does not"),
            )
    return kernel, stride, padding


def _op_max_pool(chain: Chain, node: Node) -> Module:
    a = chain.attributes(
        node, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, pads=None,
        storage_order=0, strides=[1, 1],
    )  # fmt: skip
    chain.rank = 4
    return nn.MaxPool2d(*_pool_geometry(chain, node, a))


def _op_average_pool(chain: Chain, node: Node) -> Module:
    a = chain.attributes(
        node, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None,
        kernel_shape=None, pads=None, strides=[1, 1],
    )  # fmt: skip
    kernel, stride, padding = _pool_geometry(chain, node, a)
    chain.rank = 4
    return nn.AvgPool2d(kernel, stride, padding, count_include_pad=bool(a["count_include_pad"]))


def _linear(chain: Chain, node: Node, weight: np.ndarray, bias: np.ndarray | None) -> nn.Linear:
    """A Linear layer with ``weight`` (out, in) and ``bias`` (broadcast to (out,))."""
    out_features, in_features = weight.shape
    layer = nn.Linear(
        in_features, out_features, bias=bias is not None, dtype=chain.dtype, rng=RNG(0)
    )
    layer.weight.data = np.ascontiguousarray(weight)
    if layer.bias is not None and bias is not None:
        if bias.size not in (1, out_features) or bias.ndim > 2:
            raise chain.error(node, f"bias of shape {bias.shape} for {out_features} outputs")
        layer.bias.data = np.array(np.broadcast_to(bias.reshape(-1), (out_features,)))
    chain.rank = 2
    return layer


def _op_gemm(chain: Chain, node: Node) -> Module:
    a = chain.attributes(node, alpha=1.0, beta=1.0, transA=0, transB=0)
    if a["transA"]:
        raise chain.error(node, "transA=1 is not a Linear layer")
    b, c = chain.weight(node, 1), chain.optional_weight(node, 2)
    if b.ndim != 2:
        raise chain.error(node, f"B of shape {b.shape}: expected a matrix")
    weight = b if a["transB"] else b.T  # Linear's weight is (out, in)
    if a["alpha"] != 1.0:
        weight = weight * chain.dtype.type(a["alpha"])
    if c is not None and a["beta"] != 1.0:
        c = c * chain.dtype.type(a["beta"])
    return _linear(chain, node, weight, c)


def _op_matmul(chain: Chain, node: Node) -> Module:
    chain.attributes(node)
    b = chain.weight(node, 1)
    if b.ndim != 2 or chain.rank not in (2, None):
        raise chain.error(node, "only a matrix times a constant matrix is a Linear layer")
    return _linear(chain, node, b.T, None)


def _op_add(chain: Chain, node: Node) -> None:
    """The bias of a Linear layer made of MatMul + Add (torch's dynamo exporter)."""
    chain.attributes(node)
    last = chain.layers[-1] if chain.layers else None
    if not isinstance(last, nn.Linear) or last.bias is not None:
        raise chain.error(
            node, "Add is supported only as the bias of a preceding MatMul (a Linear layer)"
        )
    bias = chain.weight(node, 1 if node.input(0) == chain.tensor else 0)
    chain.layers[-1] = _linear(chain, node, last.weight.data, bias)
    return None


def _op_relu(chain: Chain, node: Node) -> Module:
    chain.attributes(node)
    return nn.ReLU()


def _op_leaky_relu(chain: Chain, node: Node) -> Module:
    a = chain.attributes(node, alpha=0.01)
    return nn.LeakyReLU(f32(a["alpha"]))


def _op_prelu(chain: Chain, node: Node) -> Module:
    chain.attributes(node)
    slope = chain.constant(node, 1)
    if slope.size != 1:
        raise chain.error(node, f"slope of shape {slope.shape}: cnnlab has one slope per layer")
    return nn.LeakyReLU(float(slope.reshape(-1)[0]))


def _op_sigmoid(chain: Chain, node: Node) -> Module:
    chain.attributes(node)
    return nn.Sigmoid()


def _op_tanh(chain: Chain, node: Node) -> Module:
    chain.attributes(node)
    return nn.Tanh()


def _op_flatten(chain: Chain, node: Node) -> Module:
    a = chain.attributes(node, axis=1)
    axis = a["axis"] + (chain.rank or 0) if a["axis"] < 0 else a["axis"]
    if axis != 1:
        raise chain.error(node, f"axis={a['axis']}: cnnlab flattens all but the batch (axis 1)")
    chain.rank = 2
    return nn.Flatten()


def _op_reshape(chain: Chain, node: Node) -> Module:
    """A Reshape that flattens to (batch, features), however the target is written."""
    a = chain.attributes(node, allowzero=0)
    target = entries(chain, node, chain.value(node, 1))
    shape = chain.shapes.get(node.input(0))
    features = None
    if shape is not None and all(isinstance(d, int) for d in shape[1:]):
        features = math.prod(d for d in shape[1:] if d is not None)
    if len(target) == 2:
        first, second = target
        keeps_batch = (
            (isinstance(first, Dim) and first.axis == 0)  # x.size(0)
            or (isinstance(first, int) and first == 0 and not a["allowzero"])  # copies N
            or (shape is not None and isinstance(first, int) and first == shape[0])
        )
        if keeps_batch and (second == -1 or (features is not None and second == features)):
            chain.rank = 2
            return nn.Flatten()
        if first == -1 and features is not None and second == features:
            chain.rank = 2
            return nn.Flatten()
    shown = [f"dim {d.axis} of {d.tensor!r}" if isinstance(d, Dim) else d for d in target]
    unknown = (
        " (the input's shape is unknown, so [-1, K] cannot be checked)" if not features else ""
    )
    raise chain.error(
        node,
        f"reshape to {shown} is not a flatten to (batch, features){unknown}; cnnlab loads "
        "Reshape only as a flatten ([-1, K], [N, -1], [0, -1], [x.size(0), -1])",
    )


def _op_identity(chain: Chain, node: Node) -> None:
    chain.attributes(node)
    return None


def _op_dropout(chain: Chain, node: Node) -> Module:
    a = chain.attributes(node, seed=0, ratio=0.5, is_test=1)  # ratio, is_test: opset < 12
    ratio = a["ratio"]
    if node.input(1):
        ratio = float(chain.constant(node, 1).reshape(-1)[0])
    if node.input(2) and chain.constant(node, 2).any():
        raise chain.error(node, "training_mode=True: an inference graph was expected")
    return nn.Dropout(f32(ratio))


def _op_batch_normalization(chain: Chain, node: Node) -> Module:
    a = chain.attributes(
        node, epsilon=1e-5, momentum=0.9, training_mode=0, spatial=1, is_test=1,
    )  # fmt: skip
    if a["training_mode"] or not a["spatial"]:
        raise chain.error(node, "only inference-mode, per-channel batch normalisation is supported")
    if chain.rank not in (2, 3, 4):
        raise chain.error(node, f"input of rank {chain.rank}: expected 2, 3 (1d) or 4 (2d)")
    scale, shift, mean, var = (chain.weight(node, i).reshape(-1) for i in (1, 2, 3, 4))
    if not scale.size == shift.size == mean.size == var.size:
        raise chain.error(node, "scale, bias, mean and var differ in size")
    kind = nn.BatchNorm2d if chain.rank == 4 else nn.BatchNorm1d
    # ONNX's momentum weighs the running value, PyTorch's the batch; float32 → round
    momentum = round(1.0 - f32(a["momentum"]), 7)
    layer = kind(scale.size, eps=f32(a["epsilon"]), momentum=momentum, dtype=chain.dtype)
    assert layer.weight is not None and layer.bias is not None
    layer.weight.data, layer.bias.data = scale, shift
    layer.running_mean, layer.running_var = mean, var
    return layer


def _op_softmax(chain: Chain, node: Node) -> None:
    a = chain.attributes(node, axis=-1 if chain.opset >= 13 else 1)
    if node.outputs[0] not in chain.graph_outputs:
        raise chain.error(node, "a Softmax inside the graph is not supported")
    if chain.rank != 2 or a["axis"] not in (1, -1):
        raise chain.error(node, "only a Softmax over the classes of (batch, classes) logits")
    if not chain.drop_softmax:
        raise chain.error(
            node,
            "cnnlab models output logits and have no Softmax layer; "
            "cnnlab.onnx.load(path, drop_softmax=True) loads the model without it",
        )
    return None


LAYERS: dict[str, Callable[[Chain, Node], Module | None]] = {
    "Conv": _op_conv,
    "MaxPool": _op_max_pool,
    "AveragePool": _op_average_pool,
    "Gemm": _op_gemm,
    "MatMul": _op_matmul,
    "Add": _op_add,
    "Relu": _op_relu,
    "LeakyRelu": _op_leaky_relu,
    "PRelu": _op_prelu,
    "Sigmoid": _op_sigmoid,
    "Tanh": _op_tanh,
    "Flatten": _op_flatten,
    "Reshape": _op_reshape,
    "Identity": _op_identity,
    "Dropout": _op_dropout,
    "BatchNormalization": _op_batch_normalization,
    "Softmax": _op_softmax,
}
