"""The training loop: the lesson's cycle, and the events where callbacks hook in.

One step is the cycle of the lesson::

    zero_grad → forward → loss → backward (every layer adds into its .grad) → step

:class:`Trainer` runs it over the batches of each epoch and fires an event around
each part. Everything else — the progress bar, metrics, validation, checkpoints, the
NaN guard, signals, plots — is a :class:`Callback` that reacts to events, so the loop
knows nothing of files, terminals or signals, and a new feature is a new callback.

Events, in the order they fire (each callback method receives the trainer)::

    before_fit
      before_epoch
        before_batch → after_loss → after_backward → after_step     (every batch)
      after_epoch          (``trainer.epoch`` already counts the finished epoch)
    after_fit            (also after a CancelFit)
    on_interrupt         (a callback raised TrainingInterrupted; it then propagates)
    teardown             (always, last: release what before_fit took)

Control flow is an exception a callback raises: :class:`CancelFit` ends training once
the current event is over (its other callbacks still run, then ``after_fit``),
:class:`~cnnlab.errors.TrainingInterrupted` stops now, to be resumed, and any other
error (e.g. :class:`~cnnlab.errors.TrainingError`) propagates. When several processes
train together (MPI), a callback that stops the run on what one process sees takes
a vote first (:meth:`Trainer.agree`), so that every process stops after the same step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from cnnlab.distributed import LOCAL, World
from cnnlab.errors import TrainingInterrupted
from cnnlab.nn.module import Module

__all__ = ["EVENTS", "Callback", "CancelFit", "Trainer"]

EVENTS = (
    "before_fit",
    "before_epoch",
    "before_batch",
    "after_loss",
    "after_backward",
    "after_step",
    "after_epoch",
    "after_fit",
    "on_interrupt",
    "teardown",
)


class CancelFit(Exception):
    """Raised by a callback to end training early: the other callbacks of the same
    event still run (so an epoch's files are written), then ``after_fit``."""


class Callback:
    """Base class of the loop's callbacks: override the events you need.

    ``order`` sorts callbacks (lower first, ties keep the given order): the
    bookkeeping ones run early (-30 … -10), user callbacks at 0, the writers after
    them (10 … 30), the signal check last (100). A callback whose progress must
    survive an interruption returns it from :meth:`state_dict` (JSON-able); the
    checkpoint stores it under :attr:`name` and :meth:`load_state_dict` restores it.
    """

    order: int = 0

    @property
    def name(self) -> str:
        return type(self).__name__

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def before_fit(self, trainer: Trainer) -> None: ...
    def before_epoch(self, trainer: Trainer) -> None: ...
    def before_batch(self, trainer: Trainer) -> None: ...
    def after_loss(self, trainer: Trainer) -> None: ...
    def after_backward(self, trainer: Trainer) -> None: ...
    def after_step(self, trainer: Trainer) -> None: ...
    def after_epoch(self, trainer: Trainer) -> None: ...
    def after_fit(self, trainer: Trainer) -> None: ...
    def on_interrupt(self, trainer: Trainer) -> None: ...
    def teardown(self, trainer: Trainer) -> None: ...


class Trainer:
    """Mini-batch gradient descent over ``loader``, with events for ``callbacks``.

    Parameters
    ----------
    model : Module
    loss_fn
        E.g. :class:`~cnnlab.nn.CrossEntropyLoss`: ``loss_fn(logits, y)`` and
        ``loss_fn.backward()``.
    optimizer : Optimizer
        Over ``model.parameters()``.
    loader : DataLoader
        ``loader.epoch_batches(epoch, start_step)`` gives an epoch's batches.
    callbacks : iterable of Callback
    runner
        What runs the forward and backward passes: the model itself (default) or a
        :class:`~cnnlab.distributed.ShardedModel` around it.
    world : World, optional
        The processes training together (:mod:`cnnlab.distributed`); default one.
        Callbacks that stop the run agree through :meth:`agree`.

    Attributes a callback may read (and, where it says so, change)
    ------------------------------------------------------------
    epoch : int
        Epochs completed (so the current epoch's 0-based index during it).
    step : int
        Steps completed in the current epoch.
    x, y, logits, loss
        The current batch (``before_batch`` may replace ``x``), its output and loss.
    history : list of dict
        One row per finished epoch (the metrics callbacks fill it).
    interrupted : TrainingInterrupted or None
        The interruption being handled, during ``on_interrupt``.

    Shapes
    ------
    x: ``(B, C, H, W)``; y: ``(B,)``; logits: ``(B, K)``.
    """

    def __init__(
        self,
        model: Module,
        loss_fn: Any,
        optimizer: Any,
        loader: Any,
        callbacks: Iterable[Callback] = (),
        *,
        runner: Any = None,
        world: World = LOCAL,
    ) -> None:
        self.model, self.loss_fn, self.opt, self.loader = model, loss_fn, optimizer, loader
        self.runner = model if runner is None else runner
        self.world = world
        self.callbacks = sorted(callbacks, key=lambda cb: cb.order)
        self.dtype = model.dtype
        self.epoch, self.step, self.epochs = 0, 0, 0
        self.history: list[dict[str, Any]] = []
        self.x = self.y = self.logits = np.zeros(0)
        self.loss = float("nan")
        self.interrupted: TrainingInterrupted | None = None
        self._handlers = {
            event: [
                getattr(cb, event)
                for cb in self.callbacks
                if getattr(type(cb), event) is not getattr(Callback, event)
            ]
            for event in EVENTS
        }

    @property
    def iteration(self) -> int:
        """Optimizer steps taken in the whole run (all epochs)."""
        return self.epoch * len(self.loader) + self.step

    def agree(self, value: int) -> int:
        """The largest ``value`` over the run's processes (one process: ``value``).

        A callback that may stop the run on one process's view (a signal, a NaN)
        calls it at the same event on every process, so that all stop together.
        """
        return self.world.agree(value)

    def fit(self, epochs: int) -> None:
        """Train until ``epochs`` epochs are complete (from :attr:`epoch`, :attr:`step`)."""
        self.epochs = epochs
        try:
            try:
                self._event("before_fit")
                while self.epoch < epochs:
                    self._one_epoch()
            except CancelFit:
                pass
            self._event("after_fit")
        except TrainingInterrupted as stop:
            self.interrupted = stop
            self._event("on_interrupt")
            raise
        finally:
            self._event("teardown")

    def _one_epoch(self) -> None:
        self.model.train()
        self._event("before_epoch")
        for x, y in self.loader.epoch_batches(self.epoch, start_step=self.step):
            self.x, self.y = x.astype(self.dtype, copy=False), y
            self._event("before_batch")
            self._one_step()
            self.step += 1
            self._event("after_step")
        self.epoch, self.step = self.epoch + 1, 0
        self._event("after_epoch")

    def _one_step(self) -> None:
        # non-finite numbers are not warned about: the NaN guard names where they arose
        with np.errstate(all="ignore"):
            self.opt.zero_grad()
            self.logits = self.runner(self.x)  # forward
            self.loss = self.loss_fn(self.logits, self.y)
            self._event("after_loss")
            self.runner.backward(self.loss_fn.backward())  # dE/dlogits, layer by layer
            self._event("after_backward")
            self.opt.step()

    def _event(self, name: str) -> None:
        cancel = None
        for handler in self._handlers[name]:
            try:
                handler(self)
            except CancelFit as exc:  # the event's other callbacks still run
                cancel = exc
        if cancel is not None:
            raise cancel

    # -- resumable state -----------------------------------------------------------
    def callback_states(self) -> dict[str, dict[str, Any]]:
        """Every callback's :meth:`~Callback.state_dict` that is not empty, by name."""
        return {cb.name: s for cb in self.callbacks if (s := cb.state_dict())}

    def load_callback_states(self, states: dict[str, dict[str, Any]]) -> None:
        """Give each callback its saved state (callbacks without one keep theirs)."""
        for cb in self.callbacks:
            if cb.name in states:
                cb.load_state_dict(states[cb.name])
