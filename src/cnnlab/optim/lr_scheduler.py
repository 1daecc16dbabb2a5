"""Learning-rate schedules, as ``torch.optim.lr_scheduler``.

Same names, constructor arguments, defaults and ``step()`` semantics as PyTorch, and
the same floating-point operations in the same order, so the learning rates agree
bit for bit (the tests compare 50+ steps of each against PyTorch)::

    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=100)   # sets opt.lr for step 0
    for batch in batches:
        ...; opt.step()
        sched.step()                                          # opt.lr for the next step

As in PyTorch, constructing a scheduler performs its first step (the learning rate of
step 0), the first scheduler attached to an optimizer records its learning rate as
``opt.initial_lr`` (PyTorch's ``param_group["initial_lr"]``) and every later one starts
from it, and the recursive schedules (``StepLR``, ``CosineAnnealingLR``, ...) update
``opt.lr`` from its current value. A cnnlab optimizer has one learning rate ``opt.lr``,
so :meth:`LRScheduler.get_last_lr` returns a list of one float.

Differences from PyTorch:

- ``state_dict()`` is plain JSON-able data (ints, floats, strings, lists, dicts), so a
  checkpoint can keep it in its JSON metadata; ``json.loads(json.dumps(state))`` loads
  back exactly. Because a cnnlab optimizer's ``state_dict()`` holds arrays only (no
  learning rate), :meth:`LRScheduler.load_state_dict` also restores ``opt.lr``,
  ``opt.initial_lr`` and, for ``OneCycleLR``, the momentum or ``beta1`` it set. Like
  PyTorch it restores the settings saved in the state (``T_max``, ``total_steps``...)
  over the constructor's.
- ``step()`` takes no ``epoch`` argument (deprecated in PyTorch).
- Bad arguments raise ``ValueError`` naming the argument (PyTorch often fails later, or
  not at all); ``OneCycleLR`` stepped past ``total_steps`` raises as PyTorch does, but
  leaves the scheduler unchanged.
- ``LambdaLR`` and ``MultiplicativeLR`` are left out: a function cannot be kept in a
  JSON state. ``ReduceLROnPlateau``, ``CyclicLR``, ``CosineAnnealingWarmRestarts``,
  ``PolynomialLR`` and ``ChainedScheduler`` are not here yet.

:func:`build_schedule` makes the per-batch schedules of ``cnnlab train --schedule``.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from cnnlab.optim.optimizers import Optimizer

__all__ = [
    "SCHEDULES",
    "ConstantLR",
    "CosineAnnealingLR",
    "ExponentialLR",
    "LRScheduler",
    "LinearLR",
    "MultiStepLR",
    "OneCycleLR",
    "SequentialLR",
    "StepLR",
    "build_schedule",
]


# -- argument checks ------------------------------------------------------------------
def _int(value: object, name: str, minimum: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _float(
    value: object,
    name: str,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float in the interval ``low..high`` (ends open or closed)."""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    v = float(value)
    too_low = v <= low if low_open else v < low
    too_high = v >= high if high_open else v > high
    if not math.isfinite(v) or too_low or too_high:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return v


def _one_float_list(value: object, name: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != 1:
        raise ValueError(f"scheduler state {name!r} must be a list of one number, got {value!r}")
    return [_float(value[0], name)]


# -- base class -----------------------------------------------------------------------
class LRScheduler:
    """Base class: sets ``optimizer.lr`` once per :meth:`step`.

    Parameters
    ----------
    optimizer : Optimizer
        A cnnlab optimizer; its ``lr`` is the schedule's starting point (or its
        ``initial_lr``, if another scheduler was attached first).
    last_epoch : int
        Index of the last step taken; ``-1`` (default) starts the schedule. Another
        value continues a schedule and needs ``optimizer.initial_lr`` set, as PyTorch
        needs ``initial_lr`` in the param group (prefer :meth:`load_state_dict`).

    Attributes
    ----------
    last_epoch : int
        Steps taken since the start (``0`` right after construction). Schedules are
        counted in whatever unit ``step()`` is called for: epochs or batches.
    base_lrs : list of float
        ``[optimizer.initial_lr]``.
    """

    #: constructor settings that :meth:`state_dict` keeps besides the counters
    _settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise ValueError(
                f"{type(self).__name__} needs a cnnlab optimizer (e.g. optim.SGD), got "
                f"{type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        last_epoch = _int(last_epoch, "last_epoch", -1)
        if last_epoch == -1:
            if optimizer.initial_lr is None:
                optimizer.initial_lr = optimizer.lr
        elif optimizer.initial_lr is None:
            raise ValueError(
                f"last_epoch={last_epoch} continues a schedule, but the optimizer has no "
                "initial_lr; start with last_epoch=-1 and restore the schedule with "
                "load_state_dict()"
            )
        self.base_lrs: list[float] = [optimizer.initial_lr]
        self.last_epoch = last_epoch
        self._last_lr: list[float] = [optimizer.lr]
        self._initial_step()

    # -- stepping ---------------------------------------------------------------------
    def _initial_step(self) -> None:
        """Reset the step count and take the first step (PyTorch's ``_initial_step``)."""
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def step(self) -> None:
        """Advance one step and set ``optimizer.lr``; call it after ``optimizer.step()``."""
        self._step_count += 1
        self.last_epoch += 1
        try:
            lr = self._next_lr()
        except Exception:
            self._step_count -= 1
            self.last_epoch -= 1
            raise
        self._set_lr(lr)

    def _jump_to(self, epoch: int) -> None:
        """Set ``last_epoch`` and the lr there (PyTorch's ``_update_lr(epoch)``).

        Uses the closed form where the schedule has one; :class:`SequentialLR` starts
        the next schedule with ``_jump_to(0)``.
        """
        self.last_epoch = epoch
        lr = self._closed_form_lr()
        self._set_lr(self._next_lr() if lr is None else lr)

    def _set_lr(self, lr: float) -> None:
        self.optimizer.lr = lr
        self._last_lr = [lr]

    def _next_lr(self) -> float:
        """The learning rate at ``last_epoch`` (PyTorch's ``get_lr``), from ``optimizer.lr``."""
        raise NotImplementedError

    def _closed_form_lr(self) -> float | None:
        """The learning rate at ``last_epoch`` from ``base_lrs`` alone, if there is a formula."""
        return None

    def get_last_lr(self) -> list[float]:
        """The learning rate set by the last step, as ``[lr]`` (one per param group)."""
        return list(self._last_lr)

    # -- state ------------------------------------------------------------------------
    def _check(self) -> None:
        """Validate (and normalize) the settings named in ``_settings``."""

    def state_dict(self) -> dict[str, Any]:
        """The schedule's position and settings as JSON-able plain data.

        Keys: ``name`` (the class), ``last_epoch``, ``_step_count``, ``base_lrs``,
        ``_last_lr`` and the constructor settings (PyTorch's attribute names).
        """
        state: dict[str, Any] = {
            "name": type(self).__name__,
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "base_lrs": list(self.base_lrs),
            "_last_lr": list(self._last_lr),
        }
        for key in self._settings:
            value = getattr(self, key)
            state[key] = list(value) if isinstance(value, (list, tuple)) else value
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, and the optimizer's ``lr`` with it.

        The following steps then give exactly the learning rates an uninterrupted
        schedule gives. Construct the scheduler first (that performs its first step),
        then load.

        Raises
        ------
        ValueError
            The state is from another scheduler class or malformed (nothing changed).
        """
        self._check_keys(state, {"last_epoch", "_step_count", "base_lrs", "_last_lr"})
        saved = dict(self.__dict__)
        try:
            for key in self._settings:
                setattr(self, key, state[key])
            self._check()
            self.last_epoch = _int(state["last_epoch"], "last_epoch", -1)
            self._step_count = _int(state["_step_count"], "_step_count", 0)
            self.base_lrs = _one_float_list(state["base_lrs"], "base_lrs")
            self._last_lr = _one_float_list(state["_last_lr"], "_last_lr")
        except ValueError:
            self.__dict__.update(saved)
            raise
        self._restore_optimizer()

    def _check_keys(self, state: object, counters: set[str]) -> None:
        if not isinstance(state, dict):
            raise ValueError(f"scheduler state must be a dict, got {type(state).__name__}")
        name = type(self).__name__
        if state.get("name") != name:
            raise ValueError(
                f"scheduler state is for {state.get('name')!r}, not {name}; build the "
                "schedule the checkpoint was saved with"
            )
        expected = {"name", *counters, *self._settings}
        if set(state) != expected:
            missing = sorted(expected - set(state))
            extra = sorted(set(state) - expected)
            raise ValueError(f"{name} state does not fit: missing {missing}, unexpected {extra}")

    def _restore_optimizer(self) -> None:
        self.optimizer.lr = self._last_lr[0]
        self.optimizer.initial_lr = self.base_lrs[0]

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._settings)
        return f"{type(self).__name__}({settings}, last_epoch={self.last_epoch})"


# -- schedules --------------------------------------------------------------------------
class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` steps.

    ``lr = base_lr · gamma^(last_epoch // step_size)`` (computed recursively, as PyTorch).

    Parameters
    ----------
    optimizer : Optimizer
    step_size : int
        Period of the decay, ``>= 1``.
    gamma : float
        Factor, default 0.1.
    last_epoch : int
        See :class:`LRScheduler`.
    """

    _settings = ("step_size", "gamma")

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        self.step_size = step_size
        self.gamma = gamma
        self._check()
        super().__init__(optimizer, last_epoch)

    def _check(self) -> None:
        self.step_size = _int(self.step_size, "step_size", 1)
        self.gamma = _float(self.gamma, "gamma", 0.0, low_open=True)

    def _next_lr(self) -> float:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self.optimizer.lr
        return self.optimizer.lr * self.gamma

    def _closed_form_lr(self) -> float:
        return self.base_lrs[0] * self.gamma ** (self.last_epoch // self.step_size)


class MultiStepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` at each milestone step.

    ``lr = base_lr · gamma^(number of milestones <= last_epoch)``; a milestone listed
    twice multiplies twice (PyTorch keeps them in a ``Counter``, cnnlab in a sorted list).

    Parameters
    ----------
    optimizer : Optimizer
    milestones : sequence of int
        Step indices ``>= 1`` at which the decay happens.
    gamma : float
        Factor, default 0.1.
    last_epoch : int
        See :class:`LRScheduler`.
    """

    _settings = ("milestones", "gamma")
    milestones: list[int]

    def __init__(
        self,
        optimizer: Optimizer,
        milestones: Sequence[int],
        gamma: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        self.milestones = milestones  # type: ignore[assignment]
        self.gamma = gamma
        self._check()
        super().__init__(optimizer, last_epoch)

    def _check(self) -> None:
        if not isinstance(self.milestones, (list, tuple)):
            raise ValueError(f"milestones must be a list of step indices, got {self.milestones!r}")
        self.milestones = sorted(_int(m, "each milestone", 1) for m in self.milestones)
        self._counts = Counter(self.milestones)
        self.gamma = _float(self.gamma, "gamma", 0.0, low_open=True)

    def _next_lr(self) -> float:
        if self.last_epoch not in self._counts:
            return self.optimizer.lr
        return self.optimizer.lr * self.gamma ** self._counts[self.last_epoch]

    def _closed_form_lr(self) -> float:
        return self.base_lrs[0] * self.gamma ** bisect_right(self.milestones, self.last_epoch)


class ConstantLR(LRScheduler):
    """Multiply the learning rate by ``factor`` for the first ``total_iters`` steps.

    With ``factor=1`` (or ``total_iters=0``) the learning rate stays the optimizer's:
    :func:`build_schedule` uses that for ``"none"``.

    Parameters
    ----------
    optimizer : Optimizer
    factor : float
        In ``(0, 1]``, default 1/3 (PyTorch also allows 0, which then divides by zero).
    total_iters : int
        Steps at the reduced rate, default 5.
    last_epoch : int
        See :class:`LRScheduler`.
    """

    _settings = ("factor", "total_iters")

    def __init__(
        self,
        optimizer: Optimizer,
        factor: float = 1.0 / 3,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        self.factor = factor
        self.total_iters = total_iters
        self._check()
        super().__init__(optimizer, last_epoch)

    def _check(self) -> None:
        self.factor = _float(self.factor, "factor", 0.0, 1.0, low_open=True)
        self.total_iters = _int(self.total_iters, "total_iters", 0)

    def _next_lr(self) -> float:
        if self.last_epoch == 0:
            return self.optimizer.lr * self.factor
        if self.last_epoch != self.total_iters:
            return self.optimizer.lr
        return self.optimizer.lr * (1.0 / self.factor)

    def _closed_form_lr(self) -> float:
        return self.base_lrs[0] * (
            self.factor + (self.last_epoch >= self.total_iters) * (1 - self.factor)
        )


class LinearLR(LRScheduler):
    """Scale the learning rate linearly from ``start_factor`` to ``end_factor`` (warm-up).

    ``lr = base_lr · (start + (end - start) · min(last_epoch, total_iters) / total_iters)``,
    computed recursively as PyTorch does; after ``total_iters`` steps it stays.

    Parameters
    ----------
    optimizer : Optimizer
    start_factor : float
        In ``(0, 1]``, default 1/3.
    end_factor : float
        In ``[0, 1]``, default 1.
    total_iters : int
        Steps to go from one to the other, ``>= 1``, default 5.
    last_epoch : int
        See :class:`LRScheduler`.
    """

    _settings = ("start_factor", "end_factor", "total_iters")

    def __init__(
        self,
        optimizer: Optimizer,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        self._check()
        super().__init__(optimizer, last_epoch)

    def _check(self) -> None:
        self.start_factor = _float(self.start_factor, "start_factor", 0.0, 1.0, low_open=True)
        self.end_factor = _float(self.end_factor, "end_factor", 0.0, 1.0)
        self.total_iters = _int(self.total_iters, "total_iters", 1)

    def _next_lr(self) -> float:
        lr = self.optimizer.lr
        if self.last_epoch == 0:
            return lr * self.start_factor
        if self._is_initial or self.last_epoch > self.total_iters:
            return lr
        return lr * (
            1.0
            + (self.end_factor - self.start_factor)
            / (
                self.total_iters * self.start_factor
                + (self.last_epoch - 1) * (self.end_factor - self.start_factor)
            )
        )

    def _closed_form_lr(self) -> float:
        return self.base_lrs[0] * (
            self.start_factor
            + (self.end_factor - self.start_factor)
            * min(self.total_iters, self.last_epoch)
            / self.total_iters
        )


class ExponentialLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every step: ``lr = base_lr · gamma^last_epoch``.

    Parameters
    ----------
    optimizer : Optimizer
    gamma : float
        Factor, ``> 0``.
    last_epoch : int
        See :class:`LRScheduler`.
    """

    _settings = ("gamma",)

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        self._check()
        super().__init__(optimizer, last_epoch)

    def _check(self) -> None:
        self.gamma = _float(self.gamma, "gamma", 0.0, low_open=True)

    def _next_lr(self) -> float:
        if self._is_initial:
            return self.optimizer.lr
        return self.optimizer.lr * self.gamma

    def _closed_form_lr(self) -> float:
        return self.base_lrs[0] * self.gamma**self.last_epoch


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from the base learning rate to ``eta_min`` over ``T_max`` steps.

    Closed form (SGDR without restarts)::

        lr_t = eta_min + (base_lr - eta_min) · (1 + cos(π t / T_max)) / 2

    computed, as PyTorch does, by the recursion
    ``lr_t = eta_min + (lr_{t-1} - eta_min) · (1 + cos(π t/T_max)) / (1 + cos(π (t-1)/T_max))``
    (so another change to ``opt.lr`` carries over). Past ``T_max`` the rate climbs
    back, a period of ``2·T_max``, as in PyTorch.

    Parameters
    ----------
    optimizer : Optimizer
    T_max : int
        Steps of the half period, ``>= 1``.
    eta_min : float
        The lowest learning rate, default 0.
    last_epoch : int
        See :class:`LRScheduler`.
    """

    _settings = ("T_max", "eta_min")

    def __init__(
        self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        self.T_max = T_max
        self.eta_min = eta_min
        self._check()
        super().__init__(optimizer, last_epoch)

    def _check(self) -> None:
        self.T_max = _int(self.T_max, "T_max", 1)
        self.eta_min = _float(self.eta_min, "eta_min", 0.0)

    def _next_lr(self) -> float:
        lr, base, t, period = self.optimizer.lr, self.base_lrs[0], self.last_epoch, self.T_max
        if self._is_initial:
            return lr
        if self._step_count == 1 and t > 0:  # continued with last_epoch > -1
            return self.eta_min + (base - self.eta_min) * (1 + math.cos(t * math.pi / period)) / 2
        if (t - 1 - period) % (2 * period) == 0:  # at the bottom the ratio would be 0/0
            return lr + (base - self.eta_min) * (1 - math.cos(math.pi / period)) / 2
        ratio = (1 + math.cos(math.pi * t / period)) / (1 + math.cos(math.pi * (t - 1) / period))
        return ratio * (lr - self.eta_min) + self.eta_min

    def _closed_form_lr(self) -> float:
        base, t = self.base_lrs[0], self.last_epoch
        return self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2


class SequentialLR(LRScheduler):
    """Run ``schedulers`` one after the other, switching at the ``milestones`` steps.

    As PyTorch: construction resets ``opt.lr`` to ``opt.initial_lr``, rewinds every
    scheduler by the step its own construction took, and takes the first step of the
    first one. At step ``milestones[i]`` scheduler ``i+1`` starts at its step 0 (its
    closed form), e.g. a warm-up then a cosine decay::

        warm = LinearLR(opt, start_factor=0.01, total_iters=500)
        decay = CosineAnnealingLR(opt, T_max=9500)
        sched = SequentialLR(opt, [warm, decay], milestones=[500])

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer all of ``schedulers`` were built on.
    schedulers : list of LRScheduler
        At least one; not a ``SequentialLR`` itself.
    milestones : list of int
        ``len(schedulers) - 1`` non-decreasing step indices ``>= 0``.
    last_epoch : int
        ``-1`` (default); see :class:`LRScheduler`.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        schedulers: Sequence[LRScheduler],
        milestones: Sequence[int],
        last_epoch: int = -1,
    ) -> None:
        if not isinstance(schedulers, (list, tuple)) or not schedulers:
            raise ValueError("SequentialLR needs a non-empty list of schedulers")
        for i, s in enumerate(schedulers):
            if not isinstance(s, LRScheduler) or isinstance(s, SequentialLR):
                raise ValueError(
                    f"SequentialLR: schedulers[{i}] must be a learning-rate scheduler other "
                    f"than SequentialLR, got {type(s).__name__}"
                )
            if s.optimizer is not optimizer:
                raise ValueError(
                    f"SequentialLR: schedulers[{i}] ({type(s).__name__}) was built on another "
                    "optimizer; build every scheduler on the one given to SequentialLR"
                )
        if not isinstance(milestones, (list, tuple)) or len(milestones) != len(schedulers) - 1:
            raise ValueError(
                f"SequentialLR needs one milestone fewer than schedulers: got "
                f"{len(schedulers)} schedulers and milestones {milestones!r}"
            )
        self._milestones = [_int(m, "each milestone", 0) for m in milestones]
        if self._milestones != sorted(self._milestones):
            raise ValueError(f"SequentialLR milestones must not decrease, got {milestones!r}")
        if not isinstance(optimizer, Optimizer) or optimizer.initial_lr is None:
            raise ValueError("SequentialLR needs the optimizer its schedulers were built on")
        self._schedulers = list(schedulers)
        self.optimizer = optimizer
        self.last_epoch = _int(last_epoch, "last_epoch", -1) + 1
        self.base_lrs = [optimizer.initial_lr]
        optimizer.lr = optimizer.initial_lr  # undo what the schedulers' construction set
        for s in self._schedulers:
            s.last_epoch -= 1
        first = self._schedulers[bisect_right(self._milestones, 0)]
        first._initial_step()
        self._last_lr = first.get_last_lr()

    def step(self) -> None:
        """Step the scheduler whose turn it is (start the next one at a milestone)."""
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        try:
            if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
                scheduler._jump_to(0)
            else:
                scheduler.step()
        except Exception:
            self.last_epoch -= 1
            raise
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        """Position, milestones, the optimizer's momentum and each scheduler's state."""
        return {
            "name": type(self).__name__,
            "last_epoch": self.last_epoch,
            "_milestones": list(self._milestones),
            "_last_lr": list(self._last_lr),
            "_momentum": self._cycled_momentum(),
            "_schedulers": [s.state_dict() for s in self._schedulers],
        }

    def _cycled_momentum(self) -> float | None:
        """The optimizer's momentum (beta1) if one of the schedulers cycles it, else None.

        Kept in the state because only the latest of several ``OneCycleLR`` knows it.
        """
        if any(getattr(s, "cycle_momentum", False) for s in self._schedulers):
            return _get_momentum(self.optimizer)
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output, the schedulers' states and ``opt.lr``."""
        self._check_keys(
            state, {"last_epoch", "_milestones", "_last_lr", "_momentum", "_schedulers"}
        )
        children = state["_schedulers"]
        if not isinstance(children, list) or len(children) != len(self._schedulers):
            raise ValueError(
                f"SequentialLR state holds {len(children) if isinstance(children, list) else 0} "
                f"schedulers, this one has {len(self._schedulers)}"
            )
        milestones = state["_milestones"]
        if not isinstance(milestones, list) or len(milestones) != len(self._milestones):
            raise ValueError(f"SequentialLR state has milestones {milestones!r}")
        last_epoch = _int(state["last_epoch"], "last_epoch", 0)
        last_lr = _one_float_list(state["_last_lr"], "_last_lr")
        momentum = state["_momentum"]
        if momentum is not None:
            momentum = _float(momentum, "_momentum", 0.0)
        saved = [dict(s.__dict__) for s in self._schedulers]
        try:
            for s, child in zip(self._schedulers, children):
                s.load_state_dict(child)
        except ValueError:
            for s, d in zip(self._schedulers, saved):
                s.__dict__.update(d)
            raise
        self._milestones = [_int(m, "each milestone", 0) for m in milestones]
        self.last_epoch, self._last_lr = last_epoch, last_lr
        self.optimizer.lr = last_lr[0]
        if momentum is not None:
            _set_momentum(self.optimizer, momentum)

    def __repr__(self) -> str:
        inner = ", ".join(repr(s) for s in self._schedulers)
        return (
            f"SequentialLR([{inner}], milestones={self._milestones}, last_epoch={self.last_epoch})"
        )


def _get_momentum(optimizer: Optimizer) -> float | None:
    """The momentum ``OneCycleLR`` cycles: Adam's ``beta1``, SGD's ``momentum``, else None."""
    betas = getattr(optimizer, "betas", None)
    if betas is not None:
        return float(betas[0])
    momentum = getattr(optimizer, "momentum", None)
    return None if momentum is None else float(momentum)


def _set_momentum(optimizer: Optimizer, value: float) -> None:
    if hasattr(optimizer, "betas"):
        optimizer.betas = (value, optimizer.betas[1])
    else:
        optimizer.momentum = value  # type: ignore[attr-defined]


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topor): up to ``max_lr``, then far below the start.

    With ``T = total_steps`` (or ``epochs × steps_per_epoch``), ``p = pct_start``,
    ``initial_lr = max_lr / div_factor`` and ``min_lr = initial_lr / final_div_factor``
    the learning rate is annealed (cosine or linear, as ``anneal_strategy``) between
    these points, the step indices as PyTorch counts them::

        step 0 → p·T - 1:            initial_lr → max_lr     momentum max → base
        p·T - 1 → T - 1:             max_lr → min_lr          momentum base → max
      three_phase=True:
        step 0 → p·T - 1:            initial_lr → max_lr     momentum max → base
        p·T - 1 → 2p·T - 2:          max_lr → initial_lr      momentum base → max
        2p·T - 2 → T - 1:            initial_lr → min_lr      momentum max

    With ``cycle_momentum`` the momentum moves inversely: ``beta1`` of Adam/AdamW,
    ``momentum`` of SGD (set to ``max_momentum`` at construction, as PyTorch does even
    when SGD was built without momentum). The learning rate changes every batch: call
    ``step()`` after each ``optimizer.step()``. ``T`` calls are allowed (the last one
    sets the rate no step uses); one more raises ``ValueError``.

    Parameters
    ----------
    optimizer : Optimizer
    max_lr : float
        The peak learning rate (``opt.lr`` is not used; ``opt.initial_lr`` becomes
        ``max_lr / div_factor``).
    total_steps : int, optional
        Steps in the cycle; else ``epochs`` and ``steps_per_epoch`` give it.
    epochs, steps_per_epoch : int, optional
    pct_start : float
        Fraction of the steps spent rising, in ``[0, 1]``, default 0.3.
    anneal_strategy : {'cos', 'linear'}
    cycle_momentum : bool
        Default True; needs an optimizer with ``betas`` or ``momentum``.
    base_momentum, max_momentum : float
        Defaults 0.85 and 0.95.
    div_factor, final_div_factor : float
        Defaults 25 and 1e4.
    three_phase : bool
        Default False (fastai's two phases).
    last_epoch : int
        See :class:`LRScheduler`.
    """

    _settings = (
        "total_steps",
        "max_lr",
        "min_lr",
        "pct_start",
        "anneal_strategy",
        "three_phase",
        "cycle_momentum",
        "base_momentum",
        "max_momentum",
        "_last_momentum",
    )

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float,
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise ValueError(
                f"OneCycleLR needs a cnnlab optimizer (e.g. optim.SGD), got "
                f"{type(optimizer).__name__}"
            )
        if total_steps is not None:
            self.total_steps = _int(total_steps, "total_steps", 1)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = _int(epochs, "epochs", 1) * _int(
                steps_per_epoch, "steps_per_epoch", 1
            )
        else:
            raise ValueError("OneCycleLR needs total_steps, or both epochs and steps_per_epoch")
        max_lr = _float(max_lr, "max_lr", 0.0, low_open=True)
        div_factor = _float(div_factor, "div_factor", 0.0, low_open=True)
        final_div_factor = _float(final_div_factor, "final_div_factor", 0.0, low_open=True)
        self.max_lr = max_lr
        self.min_lr = max_lr / div_factor / final_div_factor
        self.pct_start = pct_start
        self.anneal_strategy = anneal_strategy
        self.three_phase = three_phase
        self.cycle_momentum = cycle_momentum
        self.base_momentum = base_momentum
        self.max_momentum = max_momentum
        self._last_momentum: float | None = None
        self.optimizer = optimizer
        self._check()
        if last_epoch == -1:
            optimizer.initial_lr = max_lr / div_factor
            if self.cycle_momentum:
                _set_momentum(optimizer, self.max_momentum)
                self._last_momentum = self.max_momentum
        super().__init__(optimizer, last_epoch)

    def _check(self) -> None:
        self.total_steps = _int(self.total_steps, "total_steps", 1)
        self.max_lr = _float(self.max_lr, "max_lr", 0.0, low_open=True)
        self.min_lr = _float(self.min_lr, "min_lr", 0.0)
        self.pct_start = _float(self.pct_start, "pct_start", 0.0, 1.0)
        if self.anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"anneal_strategy must be 'cos' or 'linear', got {self.anneal_strategy!r}"
            )
        for name in ("three_phase", "cycle_momentum"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
            setattr(self, name, bool(getattr(self, name)))
        if self.cycle_momentum:
            uses_beta1 = hasattr(self.optimizer, "betas")
            if not uses_beta1 and not hasattr(self.optimizer, "momentum"):
                raise ValueError(
                    f"cycle_momentum=True needs an optimizer with momentum (SGD) or betas "
                    f"(Adam, AdamW), not {type(self.optimizer).__name__}; pass "
                    "cycle_momentum=False"
                )
            high = 1.0 if uses_beta1 else math.inf
            for name in ("base_momentum", "max_momentum"):
                setattr(
                    self, name, _float(getattr(self, name), name, 0.0, high, high_open=uses_beta1)
                )
            if self._last_momentum is not None:
                self._last_momentum = _float(
                    self._last_momentum, "_last_momentum", 0.0, high, high_open=uses_beta1
                )
        # (end_step, start_lr, end_lr, start_momentum, end_momentum), as PyTorch's phases
        total, pct = self.total_steps, self.pct_start
        rise = (float(pct * total) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum")
        if self.three_phase:
            self._phases = [
                rise,
                (
                    float(2 * pct * total) - 2,
                    "max_lr",
                    "initial_lr",
                    "base_momentum",
                    "max_momentum",
                ),
                (total - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
            ]
        else:
            self._phases = [rise, (total - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            cos_out = math.cos(math.pi * pct) + 1
            return end + (start - end) / 2.0 * cos_out
        return (end - start) * pct + start

    def _next_lr(self) -> float:
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(
                f"OneCycleLR stepped {step} times, but its cycle has total_steps="
                f"{self.total_steps}; build it with the number of optimizer steps the run "
                "takes (epochs × steps_per_epoch)"
            )
        values = {
            "initial_lr": self.base_lrs[0],
            "max_lr": self.max_lr,
            "min_lr": self.min_lr,
            "max_momentum": self.max_momentum,
            "base_momentum": self.base_momentum,
        }
        start_step = 0.0
        for i, phase in enumerate(self._phases):
            if step <= phase[0] or i == len(self._phases) - 1:
                break
            start_step = phase[0]
        end_step, lr0, lr1, m0, m1 = phase
        # a phase of no length ends where it starts (PyTorch divides 0 by 0 there)
        pct = (step - start_step) / (end_step - start_step) if end_step != start_step else 1.0
        lr = self._anneal(values[lr0], values[lr1], pct)
        if self.cycle_momentum:
            self._last_momentum = self._anneal(values[m0], values[m1], pct)
            _set_momentum(self.optimizer, self._last_momentum)
        return lr

    def _restore_optimizer(self) -> None:
        super()._restore_optimizer()
        if self.cycle_momentum and self._last_momentum is not None:
            _set_momentum(self.optimizer, self._last_momentum)


# -- the schedules of `cnnlab train --schedule` ------------------------------------------
#: names :func:`build_schedule` takes
SCHEDULES = ("none", "step", "cosine", "onecycle")
#: fractions of the (post-warm-up) steps at which ``"step"`` multiplies the rate by 0.1
STEP_FRACTIONS = (0.5, 0.75)


def build_schedule(
    name: str,
    optimizer: Optimizer,
    *,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0,
    warmup_start_factor: float = 0.01,
    **kwargs: Any,
) -> LRScheduler:
    """A learning-rate schedule over a whole run, stepped once per batch.

    Build it right after the optimizer, before the first step (it sets ``opt.lr`` for
    step 0); call ``sched.step()`` after every ``opt.step()``. With
    ``T = epochs × steps_per_epoch`` optimizer steps, ``W = round(warmup_epochs ×
    steps_per_epoch)`` warm-up steps (at least 1 when ``warmup_epochs > 0``) and
    ``M = T - W``, the learning rate ``lr`` the optimizer was built with follows:

    ``"none"``
        ``lr`` throughout (a :class:`ConstantLR` with ``factor=1``).
    ``"step"``
        ``lr``, then ``lr × 0.1`` from step ``W + round(M/2)`` and ``lr × 0.01`` from
        step ``W + round(3M/4)`` (:class:`MultiStepLR`; ``gamma=`` changes the 0.1).
    ``"cosine"``
        Cosine annealing from ``lr`` to ``eta_min=0`` over ``M`` steps
        (:class:`CosineAnnealingLR` with ``T_max=M``); the last batch runs at
        ``lr·(1 - cos(π/M))/2 ≈ 0``.
    ``"onecycle"``
        :class:`OneCycleLR` over all ``T`` steps with ``max_lr=lr``: from ``lr/25`` up
        to ``lr`` in the first 30 % of the steps, then down to ``lr/25/1e4``; it cycles
        Adam's ``beta1`` (SGD's ``momentum``) 0.95 → 0.85 → 0.95 unless
        ``cycle_momentum=False``. It warms up by itself, so ``warmup_epochs`` must be 0.

    With ``warmup_epochs > 0`` the schedule is preceded by ``W`` steps of linear
    warm-up from ``lr × warmup_start_factor`` towards ``lr`` (:class:`LinearLR`), the
    two chained by :class:`SequentialLR` with ``milestones=[W]``.

    Parameters
    ----------
    name : {'none', 'step', 'cosine', 'onecycle'}
    optimizer : Optimizer
    epochs : int
        Epochs of the whole run, ``>= 1``.
    steps_per_epoch : int
        Batches per epoch (``len(loader)``), ``>= 1``.
    warmup_epochs : float
        Epochs of warm-up, ``0 <= warmup_epochs < epochs``; fractions are allowed.
    warmup_start_factor : float
        The warm-up's first factor, in ``(0, 1]``, default 0.01.
    **kwargs
        Passed to the main schedule: ``gamma`` (step), ``eta_min`` (cosine), any
        :class:`OneCycleLR` argument but ``max_lr`` and the step counts (onecycle).

    Returns
    -------
    LRScheduler
        Its ``state_dict()`` goes into a checkpoint's JSON; on resume build the same
        schedule again and ``load_state_dict()`` it.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {list(SCHEDULES)}")
    epochs = _int(epochs, "epochs", 1)
    steps_per_epoch = _int(steps_per_epoch, "steps_per_epoch", 1)
    warmup = _float(warmup_epochs, "warmup_epochs", 0.0)
    if warmup >= epochs:
        raise ValueError(
            f"a warm-up of {warmup_epochs} epochs leaves nothing of a {epochs}-epoch run; "
            "use fewer warm-up epochs than epochs"
        )
    total = epochs * steps_per_epoch
    warmup_steps = max(1, round(warmup * steps_per_epoch)) if warmup > 0 else 0
    if warmup_steps >= total:
        raise ValueError(
            f"a warm-up of {warmup_steps} steps leaves nothing of a {total}-step run; "
            "use fewer warm-up epochs"
        )
    allowed = {"none": set(), "step": {"gamma"}, "cosine": {"eta_min"}}.get(name)
    if allowed is not None and set(kwargs) - allowed:
        raise ValueError(
            f"schedule {name!r} takes no {sorted(set(kwargs) - allowed)}; "
            f"its settings: {sorted(allowed) or 'none'}"
        )
    main_steps = total - warmup_steps
    main: LRScheduler
    if name == "onecycle":
        if warmup_steps:
            raise ValueError(
                "the onecycle schedule warms up by itself (the first pct_start=0.3 of the "
                "steps); drop the warm-up"
            )
        for key in ("max_lr", "total_steps", "epochs", "steps_per_epoch"):
            if key in kwargs:
                raise ValueError(f"build_schedule sets OneCycleLR's {key}; do not pass it")
        return OneCycleLR(optimizer, max_lr=optimizer.lr, total_steps=total, **kwargs)
    if warmup_steps:
        warm = LinearLR(
            optimizer,
            start_factor=warmup_start_factor,
            end_factor=1.0,
            total_iters=warmup_steps,
        )
    if name == "none":
        main = ConstantLR(optimizer, factor=1.0, total_iters=0)
    elif name == "step":
        milestones = sorted({max(1, round(f * main_steps)) for f in STEP_FRACTIONS})
        main = MultiStepLR(optimizer, milestones=milestones, **kwargs)
    else:
        main = CosineAnnealingLR(optimizer, T_max=main_steps, **kwargs)
    if not warmup_steps:
        return main
    return SequentialLR(optimizer, [warm, main], milestones=[warmup_steps])
