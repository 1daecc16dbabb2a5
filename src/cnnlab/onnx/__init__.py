"""ONNX export and import: cnnlab models to and from the ONNX format.

:func:`export` writes a model as an ONNX inference graph (opset ≥ 17, a dynamic batch
dimension) that onnxruntime and other runtimes can run; :func:`load` reads back an ONNX
file made of the same operators, including those PyTorch's two exporters
(``torch.onnx.export`` with ``dynamo=False`` or ``dynamo=True``) write for a plain CNN,
as a :class:`~cnnlab.nn.Sequential` of cnnlab layers.

Layer ↔ operator::

    Conv2d              Conv (pads, strides, dilations, group; 'same'/'valid' as pads)
    MaxPool2d           MaxPool (ceil_mode 0)
    AvgPool2d           AveragePool (count_include_pad as the layer's; ceil_mode 0)
    Linear              Gemm (transB=1); loads Gemm with transB 0/1, and MatMul + Add
    Flatten             Flatten (axis 1); loads Reshape to (batch, -1)-like shapes too
    ReLU, Sigmoid, Tanh Relu, Sigmoid, Tanh
    LeakyReLU           LeakyRelu (PRelu with a float64 slope when a float64 model's
                        slope is not exact in float32, ONNX's attribute type)
    Dropout             Identity (the graph computes what ``model.eval()`` does);
                        loads Dropout (as nn.Dropout) and Identity (as nothing)
    BatchNorm1d/2d      BatchNormalization with the running statistics (inference)
    (softmax=True)      Softmax over axis 1 at the end

A loaded model is a chain: each operator reads the output of the one before, plus
constant weights. The small shape computations exporters put in front of a flattening
``Reshape`` (``Shape → Gather → Unsqueeze → Concat`` for ``x.view(x.size(0), -1)``)
are evaluated symbolically; anything else — a branch, an unknown operator or an
attribute cnnlab cannot honour — is refused with an error naming the node and its
operator.

The ``onnx`` package is imported only when needed: install it with
``pip install 'cnnlab[onnx]'``.
"""

from __future__ import annotations

from cnnlab.onnx._cli import add_cli_arguments, cli_model_and_dataset, run_cli
from cnnlab.onnx._common import MIN_OPSET
from cnnlab.onnx._export import export
from cnnlab.onnx._load import load

__all__ = ["MIN_OPSET", "add_cli_arguments", "cli_model_and_dataset", "export", "load", "run_cli"]
