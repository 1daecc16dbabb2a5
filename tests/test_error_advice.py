"""Error messages a newcomer meets first: the advice they give must work.

* An array of the wrong dtype is refused with advice of the form
  ``<variable>.astype(np.<float dtype>)``. The oracle is the advice itself: the test
  binds the variable it names to the array the test passed, evaluates the advised
  expression and calls again — the call must then succeed.
* A layer inside a Sequential that refuses its input says which layer it is; the
  models of :mod:`cnnlab.models` say up front what input they expect; the first
  layer's own messages (about the caller's input) stay exactly what that layer says.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import cnnlab
from cnnlab import functional as F
from cnnlab import models, nn

RNG = np.random.default_rng(0)
X4 = RNG.standard_normal((2, 1, 6, 6)).astype(np.float32)
X2 = RNG.standard_normal((2, 3)).astype(np.float32)
W4 = RNG.standard_normal((2, 1, 3, 3)).astype(np.float32)
W2 = RNG.standard_normal((4, 3)).astype(np.float32)
B = np.zeros(4, np.float32)
INT = np.int64


def _conv_backward(a):
    conv = nn.Conv2d(1, 2, 3)
    conv(X4)
    return conv.backward(a["dy"])


def _dropout_backward(a):
    drop = nn.Dropout(0.5, rng=np.random.default_rng(0))
    drop(X2)
    return drop.backward(a["dy"])


def _gradcheck_function(a):
    def fn(x, w):
        return x @ w.T

    def backward(dy, x, w):
        return dy @ w, dy.T @ x

    return cnnlab.gradcheck(fn, a["inputs"], backward=backward)


# name -> (call taking the arguments, the arguments with one of the wrong dtype)
CASES = {
    "Conv2d input": (lambda a: nn.Conv2d(1, 2, 3)(a["x"]), {"x": X4.astype(INT)}),
    "Linear input": (lambda a: nn.Linear(3, 4)(a["x"]), {"x": X2.astype(INT)}),
    "MaxPool2d input": (lambda a: nn.MaxPool2d(2)(a["x"]), {"x": X4.astype(INT)}),
    "AvgPool2d input": (lambda a: nn.AvgPool2d(2)(a["x"]), {"x": X4.astype(INT)}),
    "ReLU input": (lambda a: nn.ReLU()(a["x"]), {"x": X4.astype(INT)}),
    "Sigmoid input": (lambda a: nn.Sigmoid()(a["x"]), {"x": X4.astype(INT)}),
    "Flatten input": (lambda a: nn.Flatten()(a["x"]), {"x": X4.astype(INT)}),
    "Dropout input": (lambda a: nn.Dropout(0.5)(a["x"]), {"x": X4.astype(INT)}),
    "Conv2d dy": (_conv_backward, {"dy": np.ones((2, 2, 4, 4), INT)}),
    "Dropout dy": (_dropout_backward, {"dy": np.ones((2, 3), INT)}),
    "conv2d weight": (lambda a: F.conv2d_forward(X4, a["w"], None), {"w": W4.astype(INT)}),
    "conv2d bias": (lambda a: F.conv2d_forward(X4, W4, a["b"]), {"b": np.zeros(2, INT)}),
    "conv2d input": (lambda a: F.conv2d_forward(a["x"], W4, None), {"x": X4.astype(INT)}),
    "linear weight": (lambda a: F.linear_forward(X2, a["w"], B), {"w": W2.astype(INT)}),
    "linear bias": (lambda a: F.linear_forward(X2, W2, a["b"]), {"b": B.astype(INT)}),
    "linear bias float64": (lambda a: F.linear_forward(X2, W2, a["b"]), {"b": B.astype(float)}),
    "conv2d weight float64": (
        lambda a: F.conv2d_forward(X4, a["w"], None),
        {"w": W4.astype(float)},
    ),
    "max_pool2d input": (lambda a: F.max_pool2d_forward(a["x"], 2), {"x": X4.astype(INT)}),
    "relu input": (lambda a: F.relu(a["x"]), {"x": X4.astype(INT)}),
    "gradcheck input": (_gradcheck_function, {"inputs": [X2.astype(float), W2.astype(INT)]}),
}
ADVICE = re.compile(r"(?P<var>[A-Za-z_]\w*(?:\[(?P<index>\d+)\])?)\.astype\(np\.(?P<dtype>\w+)\)")


@pytest.mark.parametrize("case", sorted(CASES))
def test_dtype_advice_names_a_float_dtype_and_the_argument_and_works(case):
    call, args = CASES[case]
    with pytest.raises(ValueError) as info:
        call(args)
    message = str(info.value)
    advice = list(ADVICE.finditer(message))
    assert advice, message
    for found in advice:  # every alternative offered names a float dtype
        assert found["dtype"] in ("float32", "float64"), message
    fixed = dict(args)
    for found in advice:  # any one alternative that touches an argument given works
        name = found["var"].partition("[")[0]
        if name not in args:
            continue
        value = eval(found[0], {"np": np}, args)  # the advice, as the user would type it
        if found["index"] is None:
            fixed = {**args, name: value}
        else:
            fixed = {**args, name: list(args[name])}
            fixed[name][int(found["index"])] = value
        break
    else:
        pytest.fail(f"the advice names no argument of the call: {message}")
    call(fixed)  # the advice followed, the call goes through


def test_parameter_refuses_int_data_with_float_advice():
    with pytest.raises(ValueError, match=r"got int64.*dtype=np\.float32"):
        nn.Conv2d(1, 1, 2).weight.data = np.ones((1, 1, 2, 2), np.int64)


# -- Sequential: which layer refused, and what the models expect ------------------------


@pytest.mark.parametrize(
    ("build", "bad", "expected"),
    [
        (models.lenet5, (2, 1, 8, 8), "(N, 1, 28, 28)"),
        (models.lenet5, (2, 1, 29, 29), "(N, 1, 28, 28)"),
        (models.lenet5, (2, 1, 32, 32), "(N, 1, 28, 28)"),
        (models.digits_cnn, (2, 1, 28, 28), "(N, 1, 8, 8)"),
    ],
)
def test_models_say_what_input_they_expect(build, bad, expected):
    model = build()
    with pytest.raises(ValueError) as info:
        model(np.zeros(bad, np.float32))
    message = str(info.value)
    assert model.spec["name"] in message and expected in message and str(bad) in message
    right = (2, *models.INPUT_SHAPES[model.spec["name"]])
    assert model(np.zeros(right, np.float32)).shape == (2, 10)


def _layers():
    return [
        nn.Conv2d(1, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.Flatten(),
        nn.Linear(16, 3),
    ]


def test_a_later_layer_that_refuses_is_named_with_its_own_reason():
    x = np.zeros((2, 1, 8, 8), np.float32)
    layers = _layers()
    with pytest.raises(ValueError) as info:
        nn.Sequential(*layers)(x)
    # the oracle: the same layers called one by one, outside any Sequential
    h = layers[2](layers[1](layers[0](x)))
    with pytest.raises(ValueError) as alone:
        layers[3](h)
    message = str(info.value)
    assert message.startswith("layer 3 (Conv2d)"), message
    assert str(h.shape) in message and str(alone.value) in message


@pytest.mark.parametrize(
    "x",
    [
        np.zeros((2, 3, 8, 8), np.float32),  # wrong channels
        np.zeros((2, 8, 8), np.float32),  # 3-D
        np.zeros((2, 1, 8, 8), np.int64),  # wrong dtype
        [[1.0]],  # not an array
    ],
    ids=["channels", "3-D", "int64", "list"],
)
def test_the_first_layers_own_message_is_kept(x):
    layers = _layers()
    with pytest.raises(ValueError) as alone:
        layers[0](x)
    with pytest.raises(ValueError) as inside:
        nn.Sequential(*layers)(x)
    assert str(inside.value) == str(alone.value)


@pytest.mark.parametrize("shape", [(2, 3, 28, 28), (2, 28, 28), (28, 28)])
def test_models_leave_other_mismatches_to_the_first_layer(shape):
    model = models.lenet5()
    x = np.zeros(shape, np.float32)
    with pytest.raises(ValueError) as alone:
        model[0](x)
    with pytest.raises(ValueError) as inside:
        model(x)
    assert str(inside.value) == str(alone.value)
