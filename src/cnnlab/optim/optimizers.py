"""Optimizers: SGD (momentum, Nesterov, weight decay), Adam and AdamW.

Each follows PyTorch's update rule exactly, so a few steps of cnnlab and of
``torch.optim`` on the same parameters and gradients agree to rounding. An optimizer
only reads ``param.grad`` and updates ``param.data`` in place; backward never calls it.

State (moments, step count) is a flat ``dict[str, ndarray]`` (:meth:`Optimizer.state_dict`)
so checkpoints can store it without pickle.

A step never warns: it runs under ``np.errstate(all="ignore")``, so an overflow (a far
too large learning rate) leaves Inf or NaN in the parameters or the moments instead of
a ``RuntimeWarning``. :meth:`Optimizer.nonfinite` finds them after the step, cheaply,
for a training loop to stop on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np

from cnnlab.functional import kernels
from cnnlab.nn.module import Parameter

__all__ = ["OPTIMIZERS", "SGD", "Adam", "AdamW", "NonFinite", "Optimizer", "build"]


def _nonnegative(value: object, name: str) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def _all_finite(a: np.ndarray) -> bool:
    """Whether every entry of ``a`` is finite; call under ``np.errstate(over="ignore")``.

    ``a·a`` is one allocation-free pass (BLAS) and is NaN or Inf whenever an entry is;
    only when it is not finite (a NaN/Inf entry, or finite entries whose squares
    overflow) does the exact, slower ``isfinite`` test decide.
    """
    flat = a.reshape(-1)
    if math.isfinite(float(flat @ flat)):
        return True
    return bool(np.isfinite(a).all())


def _contiguous(*arrays: np.ndarray) -> bool:
    """Whether all are C-contiguous and of one dtype (the compiled update's operands)."""
    first = arrays[0]
    return all(a.flags.c_contiguous and a.dtype == first.dtype for a in arrays)


class NonFinite(NamedTuple):
    """Where :meth:`Optimizer.nonfinite` found a NaN or an Inf."""

    #: position of the parameter in ``optimizer.params`` (the order of ``model.parameters()``)
    param_index: int
    #: ``None`` for the parameter's own values, else the state buffer (e.g. ``"exp_avg_sq"``)
    buffer: str | None

    def describe(self, name: str | None = None) -> str:
        """Words for an error message, e.g. ``"the optimizer's exp_avg_sq of fc1.weight"``.

        ``name`` is the parameter's name (``list(model.named_parameters())[param_index][0]``);
        without it the parameter is called by its index.
        """
        who = name if name is not None else f"parameter {self.param_index}"
        return who if self.buffer is None else f"the optimizer's {self.buffer} of {who}"


class Optimizer:
    """Base class: holds the parameters and a flat state of named arrays.

    Parameters
    ----------
    params : iterable of Parameter
        Usually ``model.parameters()``.
    lr : float
        Learning rate, ``>= 0``. A learning-rate scheduler
        (:mod:`cnnlab.optim.lr_scheduler`) changes ``opt.lr`` between steps.

    Attributes
    ----------
    initial_lr : float or None
        The learning rate a schedule starts from; set by the first scheduler attached
        (``param_group["initial_lr"]`` in PyTorch), ``None`` before.
    """

    #: names of per-parameter state arrays, e.g. ``("exp_avg", "exp_avg_sq")``
    buffers: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list; pass model.parameters()")
        for i, p in enumerate(self.params):
            if not isinstance(p, Parameter):
                raise ValueError(
                    f"optimizer parameters must be cnnlab Parameters, item {i} is "
                    f"{type(p).__name__}"
                )
        self.lr = _nonnegative(lr, "lr")
        self.initial_lr: float | None = None
        self.step_count = 0
        self.state: dict[str, list[np.ndarray | None]] = {
            name: [None] * len(self.params) for name in self.buffers
        }

    def zero_grad(self) -> None:
        """Reset the gradients of all parameters to zero."""
        for p in self.params:
            p.zero_grad()

    def step(self) -> None:
        """Update every parameter once from its ``.grad``.

        Never warns: overflow leaves Inf/NaN behind, which :meth:`nonfinite` reports.
        """
        self.step_count += 1
        with np.errstate(all="ignore"):
            for i, p in enumerate(self.params):
                self._update(i, p)

    def nonfinite(self) -> NonFinite | None:
        """The first parameter or state buffer holding NaN or Inf, or ``None``.

        Call it after :meth:`step`: a step with a far too large learning rate can
        overflow the parameters or only the moments (Adam's ``exp_avg_sq`` = Inf
        turns every later update into 0, a silent stall). Parameters are visited in
        order, each before its state buffers. Costs about one read of the parameters
        and of the state (a dot product per array): for LeNet-5's 61,706 parameters
        some 30 µs, 75-200 µs with Adam's two moments, well under 1 % of a step.

        Returns
        -------
        NonFinite or None
            ``(param_index, buffer)``; ``buffer`` is ``None`` for the parameter itself.
        """
        with np.errstate(all="ignore"):
            for i, p in enumerate(self.params):
                if not _all_finite(p.data):
                    return NonFinite(i, None)
                for name in self.buffers:
                    buf = self.state[name][i]
                    if buf is not None and not _all_finite(buf):
                        return NonFinite(i, name)
        return None

    def _update(self, i: int, p: Parameter) -> None:
        raise NotImplementedError

    def _buffer(self, name: str, i: int, like: np.ndarray) -> np.ndarray:
        buf = self.state[name][i]
        if buf is None or buf.dtype != like.dtype:
            buf = np.zeros_like(like)
            self.state[name][i] = buf
        return buf

    # -- state for checkpoints ---------------------------------------------------
    def hyperparameters(self) -> dict[str, Any]:
        """The settings (JSON-able), e.g. to record in a checkpoint."""
        return {"name": type(self).__name__, "lr": self.lr}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat copy of the state: ``"step"`` and ``"<buffer>.<param index>"`` arrays."""
        out = {"step": np.array([self.step_count], dtype=np.int64)}
        for name, bufs in self.state.items():
            for i, buf in enumerate(bufs):
                if buf is not None:
                    out[f"{name}.{i}"] = buf.copy()
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state_dict` returned (validated against the parameters)."""
        if "step" not in state:
            raise ValueError("optimizer state has no 'step' entry; is it from another optimizer?")
        new: dict[str, list[np.ndarray | None]] = {
            name: [None] * len(self.params) for name in self.buffers
        }
        for key, value in state.items():
            if key == "step":
                continue
            name, _, index = key.rpartition(".")
            if name not in new or not index.isdigit() or int(index) >= len(self.params):
                raise ValueError(
                    f"optimizer state entry {key!r} does not fit {type(self).__name__} "
                    f"with {len(self.params)} parameters (buffers {self.buffers})"
                )
            p = self.params[int(index)]
            if value.shape != p.data.shape:
                raise ValueError(
                    f"optimizer state entry {key!r} has shape {value.shape}, "
                    f"its parameter has {p.data.shape}"
                )
            new[name][int(index)] = np.array(value, dtype=p.data.dtype)
        step = np.asarray(state["step"]).reshape(-1)
        if step.size != 1:
            raise ValueError(f"optimizer state 'step' must hold one number, got {step.size}")
        self.state = new
        self.step_count = int(step[0])


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov and weight decay.

    As ``torch.optim.SGD``::

        g = grad + weight_decay·p
        b = g (first step) or momentum·b + (1 - dampening)·g
        g = g + momentum·b (Nesterov) or b (momentum) or g (plain)
        p = p - lr·g
    """

    buffers = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 0.01,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(params, lr)
        self.momentum = _nonnegative(momentum, "momentum")
        self.dampening = _nonnegative(dampening, "dampening")
        self.weight_decay = _nonnegative(weight_decay, "weight_decay")
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov=True needs momentum > 0 and dampening = 0")

    def _update(self, i: int, p: Parameter) -> None:
        g = p.grad
        if self.weight_decay:
            g = g + self.weight_decay * p.data
        if self.momentum:
            first = self.state["momentum_buffer"][i] is None
            buf = self._buffer("momentum_buffer", i, p.data)
            if first:
                buf[...] = g
            else:
                buf *= self.momentum
                buf += (1 - self.dampening) * g
            g = g + self.momentum * buf if self.nesterov else buf
        p.data -= self.lr * g

    def hyperparameters(self) -> dict[str, Any]:
        return {
            **super().hyperparameters(),
            "momentum": self.momentum,
            "dampening": self.dampening,
            "weight_decay": self.weight_decay,
            "nesterov": self.nesterov,
        }


class Adam(Optimizer):
    """Adam (Kingma & Ba), as ``torch.optim.Adam``; ``weight_decay`` is an L2 term.

    With ``t`` the step count::

        g = grad + weight_decay·p
        m = β1·m + (1-β1)·g          v = β2·v + (1-β2)·g²
        p = p - lr/(1-β1^t) · m / (√v/√(1-β2^t) + eps)
    """

    buffers = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    decoupled = False

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr)
        if len(betas) != 2 or not all(0.0 <= float(b) < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = _nonnegative(eps, "eps")
        if self.eps == 0:
            raise ValueError("eps must be > 0 (it keeps the update finite where v is 0)")
        self.weight_decay = _nonnegative(weight_decay, "weight_decay")
        self.amsgrad = bool(amsgrad)

    def _update(self, i: int, p: Parameter) -> None:
        beta1, beta2 = self.betas
        g = p.grad
        if self.weight_decay and self.decoupled:  # AdamW: shrink the weights directly
            p.data *= 1 - self.lr * self.weight_decay
        m = self._buffer("exp_avg", i, p.data)
        v = self._buffer("exp_avg_sq", i, p.data)
        t = self.step_count
        if kernels.enabled() and not self.amsgrad and _contiguous(p.data, g, m, v):
            # the same operations in one compiled pass; the Python floats rounded to the
            # arrays' dtype as NumPy rounds them in the lines below
            decay = 0.0 if self.decoupled else self.weight_decay
            coefs = (beta1, 1 - beta1, beta2, 1 - beta2, decay)
            scale = (math.sqrt(1 - beta2**t), self.eps, self.lr / (1 - beta1**t))
            kernels.adam(p.data, g, m, v, coefs + scale)
            return
        if self.weight_decay and not self.decoupled:
            g = g + self.weight_decay * p.data
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * (g * g)
        bias1 = 1 - beta1**t
        bias2 = 1 - beta2**t
        if self.amsgrad:
            v_max = self._buffer("max_exp_avg_sq", i, p.data)
            np.maximum(v_max, v, out=v_max)
            v = v_max
        denom = np.sqrt(v)
        denom /= math.sqrt(bias2)
        denom += self.eps
        np.divide(m, denom, out=denom)
        denom *= self.lr / bias1
        p.data -= denom

    def hyperparameters(self) -> dict[str, Any]:
        return {
            **super().hyperparameters(),
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "amsgrad": self.amsgrad,
        }


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``.

    The weights shrink by ``lr·weight_decay·p`` before the Adam step, instead of the
    decay entering the gradient (and so the moments). Default ``weight_decay=0.01``.
    """

    decoupled = True

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def build(name: str, params: Iterable[Parameter], **kwargs: Any) -> Optimizer:
    """An optimizer by name (``sgd``, ``adam``, ``adamw``)."""
    try:
        cls = OPTIMIZERS[name.lower()]
    except (KeyError, AttributeError):
        raise ValueError(
            f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}"
        ) from None
    return cls(params, **kwargs)
