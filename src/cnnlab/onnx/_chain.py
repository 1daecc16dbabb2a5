"""The loader's state while it walks a graph: the nodes, the chain of layers so far,
the constants, and the symbolic sizes of shape computations."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.errors import CheckpointError
from cnnlab.nn.module import Module

#: layers are built with a private generator (their weights are overwritten at once):
#: loading a model leaves the global one, cnnlab.init.default_generator, untouched
RNG = np.random.default_rng


@dataclass(frozen=True)
class Dim:
    """The size of axis ``axis`` of the chain's tensor ``tensor`` (known at run time)."""

    tensor: str
    axis: int


@dataclass(frozen=True)
class ShapeOf:
    """``Shape(tensor)[start:]`` of a chain tensor whose rank is unknown."""

    tensor: str
    start: int


class Node:
    """One graph node: its operator, name, inputs, outputs and attributes."""

    def __init__(self, onnx: Any, proto: Any, index: int) -> None:
        self.op: str = proto.op_type
        self.domain: str = proto.domain
        self.name: str = proto.name or f"#{index}"
        self.inputs: list[str] = list(proto.input)
        self.outputs: list[str] = list(proto.output)
        self.attributes: dict[str, Any] = {}
        for a in proto.attribute:
            value = onnx.helper.get_attribute_value(a)
            self.attributes[a.name] = value.decode() if isinstance(value, bytes) else value

    def input(self, i: int) -> str:
        """The name of input ``i`` ("" when absent)."""
        return self.inputs[i] if i < len(self.inputs) else ""


@dataclass
class Chain:
    """What the loader knows while it walks the graph, node by node."""

    path: Path
    onnx: Any
    opset: int
    dtype: np.dtype
    tensor: str  # the chain's current tensor: the last layer's output
    rank: int | None  # its rank, where known
    shapes: dict[str, tuple[int | None, ...]]  # inferred shapes, where known
    graph_outputs: set[str]
    drop_softmax: bool
    values: dict[str, Any] = field(default_factory=dict)  # constants and shape arithmetic
    seen: set[str] = field(default_factory=set)  # every tensor the chain has had
    layers: list[Module] = field(default_factory=list)

    def error(self, node: Node, message: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: node {node.name!r} ({node.op}): {message}")

    def attributes(self, node: Node, **defaults: Any) -> dict[str, Any]:
        """The node's attributes over ``defaults``; any other attribute is refused."""
        unknown = sorted(set(node.attributes) - set(defaults))
        if unknown:
            raise self.error(
                node, f"attribute {unknown[0]!r} is not supported (cnnlab reads {sorted(defaults)})"
            )
        return {**defaults, **node.attributes}

    def value(self, node: Node, i: int) -> Any:
        """Input ``i`` as a constant array or a shape computation; refuses chain tensors."""
        name = node.input(i)
        if name in self.values:
            return self.values[name]
        if name in self.seen:
            raise self.error(
                node,
                f"input {name!r} is computed by the layers, where cnnlab expects a constant; "
                "the graph is not a simple chain of layers",
            )
        raise self.error(node, f"input {i} ({name!r}) is not produced by any earlier node")

    def constant(self, node: Node, i: int) -> np.ndarray:
        """Input ``i`` as a concrete constant array."""
        value = self.value(node, i)
        if not isinstance(value, np.ndarray):
            raise self.error(
                node, f"input {node.input(i)!r} depends on the input's size; expected a constant"
            )
        return value

    def optional_weight(self, node: Node, i: int) -> np.ndarray | None:
        """Input ``i`` as a float array in the model's dtype, None when absent."""
        return self.weight(node, i) if node.input(i) else None

    def weight(self, node: Node, i: int) -> np.ndarray:
        """Input ``i`` as a float array in the model's dtype (a copy)."""
        if not node.input(i):
            raise self.error(node, f"input {i} (a weight) is missing")
        value = self.constant(node, i)
        if value.dtype.kind != "f":
            raise self.error(node, f"weight {node.input(i)!r} has dtype {value.dtype}, not float")
        return np.array(value, dtype=self.dtype, copy=True)
