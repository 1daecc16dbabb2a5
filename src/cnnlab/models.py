"""Models by name: LeNet-5 (also with BatchNorm) for 28×28 digits, a small CNN for 8×8 ones.

Every model is a :class:`~cnnlab.nn.Sequential`, so its parameter names
(``0.weight``, ``3.bias``, ...) are those of a ``torch.nn.Sequential`` of the same
layers and weights can be exchanged with PyTorch one-to-one. A built model carries
its recipe in ``model.spec`` (``{"name": ..., "kwargs": {...}}``), which checkpoints
store so :func:`cnnlab.load` can rebuild it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnlab import nn
from cnnlab._validate import FLOAT_DTYPES, positive_int

__all__ = ["MODELS", "build", "digits_cnn", "lenet5", "lenet5_bn", "spec"]


def _dtype(dtype: Any) -> np.dtype:
    d = np.dtype(dtype)
    if d not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {d}")
    return d


def lenet5(
    num_classes: int = 10, *, dtype: Any = np.float32, rng: np.random.Generator | None = None
) -> nn.Sequential:
    """LeNet-5 (LeCun et al., 1998) in its common modern form, for 1×28×28 images.

    Which LeNet: the layer sizes of LeNet-5 (6 and 16 feature maps of 5×5 filters,
    then 120, 84 and 10 units), with the changes everyone makes today: the 28×28 input
    is zero-padded by 2 (the original took 32×32), ReLU instead of scaled tanh, max
    pooling instead of trainable subsampling, full connections from S2 to C3 (the
    original used a sparse table) and a softmax/cross-entropy output instead of RBF
    units. 61,706 parameters.

    ``conv5 pad2 → 6, ReLU, maxpool 2, conv5 → 16, ReLU, maxpool 2, flatten,
    linear 400→120, ReLU, 120→84, ReLU, 84→num_classes``

    Shapes
    ------
    Input ``(N, 1, 28, 28)``; output logits ``(N, num_classes)``.
    """
    num_classes = positive_int(num_classes, "num_classes")
    d = _dtype(dtype)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2, dtype=d, rng=rng),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, dtype=d, rng=rng),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120, dtype=d, rng=rng),
        nn.ReLU(),
        nn.Linear(120, 84, dtype=d, rng=rng),
        nn.ReLU(),
        nn.Linear(84, num_classes, dtype=d, rng=rng),
    )
    model.spec = {"name": "lenet5", "kwargs": {"num_classes": num_classes}}
    model.input_shape = INPUT_SHAPES["lenet5"]  # checked by forward
    return model


def lenet5_bn(
    num_classes: int = 10, *, dtype: Any = np.float32, rng: np.random.Generator | None = None
) -> nn.Sequential:
    """LeNet-5 with batch normalisation, for 1×28×28 images.

    :func:`lenet5` with a :class:`~cnnlab.nn.BatchNorm2d` after each convolution and a
    :class:`~cnnlab.nn.BatchNorm1d` after the first two linear layers, each placed
    before its ReLU (as Ioffe and Szegedy, 2015, normalise the pre-activation).

    The layers followed by batch normalisation have no bias, as is conventional (e.g.
    ResNet's ``conv → BatchNorm`` blocks): in training the normalisation subtracts each
    channel's mean, so a per-channel bias would be removed again and never learn
    (its gradient is zero); BatchNorm's own shift ``β`` takes its place. The output
    layer keeps its bias. 61,932 parameters (``lenet5`` has 61,706); the state dict
    also holds the running mean and variance (226 values each) and four batch counts.

    ``conv5 pad2 → 6 (no bias), BN2d, ReLU, maxpool 2, conv5 → 16 (no bias), BN2d,
    ReLU, maxpool 2, flatten, linear 400→120 (no bias), BN1d, ReLU, 120→84 (no bias),
    BN1d, ReLU, 84→num_classes``

    Train it in training mode (``model.train()``) and evaluate it in evaluation mode
    (``model.eval()``): in training every forward pass normalises with the batch's
    statistics and updates the running ones, so an evaluation pass left in training
    mode would both depend on the batch and change the model.

    Shapes
    ------
    Input ``(N, 1, 28, 28)``; output logits ``(N, num_classes)``. Training needs
    ``N >= 2`` (batch statistics of one sample are undefined).
    """
    num_classes = positive_int(num_classes, "num_classes")
    d = _dtype(dtype)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2, bias=False, dtype=d, rng=rng),
        nn.BatchNorm2d(6, dtype=d),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, bias=False, dtype=d, rng=rng),
        nn.BatchNorm2d(16, dtype=d),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120, bias=False, dtype=d, rng=rng),
        nn.BatchNorm1d(120, dtype=d),
        nn.ReLU(),
        nn.Linear(120, 84, bias=False, dtype=d, rng=rng),
        nn.BatchNorm1d(84, dtype=d),
        nn.ReLU(),
        nn.Linear(84, num_classes, dtype=d, rng=rng),
    )
    model.spec = {"name": "lenet5_bn", "kwargs": {"num_classes": num_classes}}
    model.input_shape = INPUT_SHAPES["lenet5_bn"]  # checked by forward
    return model


def digits_cnn(
    num_classes: int = 10, *, dtype: Any = np.float32, rng: np.random.Generator | None = None
) -> nn.Sequential:
    """A small CNN for scikit-learn's 1×8×8 digits (the embedded default data set).

    ``conv3 pad1 → 16, ReLU, maxpool 2, conv3 pad1 → 32, ReLU, maxpool 2, flatten,
    linear 128→64, ReLU, 64→num_classes`` — 15,754 parameters; trains to ≥ 97 % in
    seconds.

    Shapes
    ------
    Input ``(N, 1, 8, 8)``; output logits ``(N, num_classes)``.
    """
    num_classes = positive_int(num_classes, "num_classes")
    d = _dtype(dtype)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, dtype=d, rng=rng),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, dtype=d, rng=rng),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 2 * 2, 64, dtype=d, rng=rng),
        nn.ReLU(),
        nn.Linear(64, num_classes, dtype=d, rng=rng),
    )
    model.spec = {"name": "digits_cnn", "kwargs": {"num_classes": num_classes}}
    model.input_shape = INPUT_SHAPES["digits_cnn"]  # checked by forward
    return model


MODELS: dict[str, Callable[..., nn.Sequential]] = {
    "lenet5": lenet5,
    "lenet5_bn": lenet5_bn,
    "digits_cnn": digits_cnn,
}

#: the input each model expects, (channels, height, width)
INPUT_SHAPES: dict[str, tuple[int, int, int]] = {
    "lenet5": (1, 28, 28),
    "lenet5_bn": (1, 28, 28),
    "digits_cnn": (1, 8, 8),
}


def build(name: str, *, dtype: Any = np.float32, **kwargs: Any) -> nn.Sequential:
    """Build a model by name (see :data:`MODELS`) with keyword arguments."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    try:
        return MODELS[name](dtype=dtype, **kwargs)
    except TypeError as exc:
        raise ValueError(f"bad arguments for model {name!r}: {exc}") from None


def spec(model: nn.Module) -> dict[str, Any]:
    """The JSON-able recipe ``{"name", "kwargs"}`` a built model carries."""
    recipe = getattr(model, "spec", None)
    if not isinstance(recipe, dict) or recipe.get("name") not in MODELS:
        raise ValueError(
            f"{type(model).__name__} has no model spec; only models made by "
            f"cnnlab.models ({sorted(MODELS)}) can be saved and rebuilt by name"
        )
    return {"name": recipe["name"], "kwargs": dict(recipe.get("kwargs", {}))}
