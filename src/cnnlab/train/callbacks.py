"""The training loop's callbacks: each a small class with one job.

Data (first):         :class:`Augment` (-40), :class:`AugmentPreview`
Bookkeeping (early):  :class:`NaNGuard` (-30), :class:`Recorder` (-20),
                      :class:`Validate` (-10)
Yours (0):            e.g. :class:`OnStep`
Output (after):       :class:`AnnounceRanks`, :class:`ProgressBar`, :class:`KeepBest`,
                      :class:`ModelFile`, :class:`MetricsCSV`, :class:`CurvesPlot`,
                      :class:`EpochSummary`, :class:`Checkpointer` (30)
Schedule:             :class:`ScheduleStep` (50)
Control (last):       :class:`InterruptOnSignal` (100)

:func:`~cnnlab.train.fit` assembles them from a :class:`~cnnlab.train.TrainConfig`;
see :mod:`cnnlab.train.loop` for the events.
"""

from __future__ import annotations

import csv
import io as _io
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab import init, io
from cnnlab.checkpoint import save_checkpoint
from cnnlab.errors import TrainingError, TrainingInterrupted
from cnnlab.evaluate import evaluate
from cnnlab.faults import SignalCatcher, first_nonfinite, first_nonfinite_state, kept
from cnnlab.nn.module import Module
from cnnlab.train.loop import Callback, Trainer

__all__ = [
    "AnnounceCompile",
    "AnnounceRanks",
    "Augment",
    "AugmentPreview",
    "Checkpointer",
    "CurvesPlot",
    "EpochSummary",
    "InterruptOnSignal",
    "KeepBest",
    "MetricsCSV",
    "ModelFile",
    "NaNGuard",
    "OnStep",
    "ProgressBar",
    "Recorder",
    "ScheduleStep",
    "Validate",
    "write_atomic_text",
]

#: metrics.csv's leading columns, in this order (other keys follow)
COLUMNS = (
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "seconds",
    "images_per_s",
)


def write_atomic_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`cnnlab.io.atomic_write_bytes`)."""
    data = text.encode()
    io.atomic_write_bytes(path, lambda tmp: Path(tmp).write_bytes(data))
    return path


#: first entropy word of the augmentation's generators, apart from the loader's
AUGMENT_STREAM = 0xA06


class Augment(Callback):
    """Augment each training batch: ``trainer.x = transform(trainer.x, rng)``.

    The generator of a batch is made from ``(seed, epoch, step)``, so the batch a step
    sees does not depend on what ran before it in this process: a run resumed mid-epoch
    augments exactly as an uninterrupted one.
    """

    order = -40

    def __init__(
        self, transform: Callable[[np.ndarray, np.random.Generator], np.ndarray], seed: int
    ) -> None:
        self.transform, self.seed = transform, seed

    def before_batch(self, t: Trainer) -> None:
        rng = np.random.default_rng([AUGMENT_STREAM, self.seed, t.epoch, t.step])
        t.x = self.transform(t.x, rng)


class AugmentPreview(Callback):
    """``augment.png``: some training images and what the augmentation makes of them,
    written when a run starts (so a user sees what the model sees)."""

    def __init__(
        self,
        path: Path,
        transform: Callable[[np.ndarray, np.random.Generator], np.ndarray],
        images: np.ndarray,
        labels: list[str] | None = None,
        seed: int = 0,
    ) -> None:
        self.path, self.transform, self.images = Path(path), transform, images
        self.labels, self.seed = labels, seed

    def before_fit(self, t: Trainer) -> None:
        if (t.epoch, t.step) != (0, 0) and self.path.exists():
            return
        from cnnlab.plots import save_augment_grid

        save_augment_grid(self.images, self.path, self.transform, rng=self.seed, labels=self.labels)


class ScheduleStep(Callback):
    """Step a learning-rate schedule after every optimizer step (per batch).

    The schedule's position is resumable state. It runs after the bookkeeping (the
    epoch's ``lr`` is the rate its last step used) and before the signal check, so a
    checkpoint written at an interruption holds the schedule of the next step.
    """

    order = 50

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def after_step(self, t: Trainer) -> None:
        self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return dict(self.scheduler.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


class NaNGuard(Callback):
    """Stop with a :class:`~cnnlab.errors.TrainingError` at the first NaN/Inf.

    Checks the loss (naming the first layer whose output is not finite), every
    gradient, and after each optimizer step the parameters and the optimizer's state
    (an Adam moment can overflow while the loss still looks fine). The message names
    epoch, step and where, and says whether the last good checkpoint is kept. Under
    MPI every check is a vote, so all ranks stop at the same step.
    """

    order = -30

    def __init__(self, checkpoint: Path | None = None) -> None:
        self.checkpoint = checkpoint

    def _stop(self, t: Trainer, step: int, what: str) -> None:
        where = kept(self.checkpoint) if self.checkpoint else "nothing was saved"
        raise TrainingError(
            f"epoch {t.epoch + 1}, step {step}: {what}; lower --lr (now {t.opt.lr:g}); {where}"
        )

    def after_loss(self, t: Trainer) -> None:
        if t.agree(not math.isfinite(t.loss)):
            layer = first_nonfinite(t.model, t.x)
            self._stop(t, t.step + 1, f"the loss is {t.loss} — first non-finite output in {layer}")

    def after_backward(self, t: Trainer) -> None:
        bad = next((n for n, p in t.model.named_parameters() if not np.isfinite(p.grad).all()), "")
        if t.agree(bool(bad)):
            self._stop(t, t.step + 1, f"NaN/Inf in the gradient of {bad or 'a parameter'}")

    def after_step(self, t: Trainer) -> None:
        bad = first_nonfinite_state(t.model, t.opt)
        if t.agree(bad is not None):
            self._stop(t, t.step, f"NaN/Inf in {bad or 'the state'} after the optimizer step")


class AnnounceRanks(Callback):
    """One line on stderr when a data-parallel run starts: how many MPI ranks, and
    what happens if one of them dies."""

    def __init__(self, ranks: int, stream: Any = None) -> None:
        self.ranks, self.stream = ranks, stream

    def before_fit(self, t: Trainer) -> None:
        size = t.loader.batch_size
        print(
            f"cnnlab: data-parallel on {self.ranks} MPI ranks, {size} images per step "
            f"(about {size // self.ranks} per rank); if a rank dies, mpiexec ends the "
            "job and the last checkpoint (written after every epoch) resumes it",
            file=self.stream or sys.stderr,
            flush=True,
        )


class AnnounceCompile(Callback):
    """One line on stderr before the first step when the compiled kernels are not yet
    cached on this machine: the first batch then waits for numba to compile them."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream

    def before_fit(self, t: Trainer) -> None:
        print(
            "cnnlab: compiling the numba kernels for this machine, once (under a minute; "
            "later runs load them in a second). CNNLAB_KERNELS=numpy runs without them.",
            file=self.stream or sys.stderr,
            flush=True,
        )


class Recorder(Callback):
    """Each epoch's row of ``trainer.history``: train loss and accuracy (means over the
    epoch's batches), ``lr`` (of the epoch's last step), ``seconds`` and
    ``images_per_s``.

    An epoch resumed after an interruption keeps the sums and seconds of the part done
    before (they are in the checkpoint); its ``images_per_s`` counts only the images
    this process trained on, over this process's time.
    """

    order = -20

    def __init__(self) -> None:
        self.sums: dict[str, float] = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        self.started: float | None = None
        self.seen_here = 0
        self.lr: float | None = None

    def before_epoch(self, t: Trainer) -> None:
        self.started, self.seen_here = time.perf_counter(), 0

    def after_step(self, t: Trainer) -> None:
        n = len(t.y)
        self.sums["loss"] += t.loss * n
        self.sums["correct"] += int((t.logits.argmax(axis=1) == t.y).sum())
        self.sums["seen"] += n
        self.seen_here += n
        self.lr = float(t.opt.lr)

    def after_epoch(self, t: Trainer) -> None:
        here = time.perf_counter() - (self.started or time.perf_counter())
        seen = max(self.sums["seen"], 1)
        t.history.append(
            {
                "epoch": t.epoch,
                "train_loss": self.sums["loss"] / seen,
                "train_acc": self.sums["correct"] / seen,
                "lr": self.lr if self.lr is not None else float(t.opt.lr),
                "seconds": round(self.sums["seconds"] + here, 3),
                "images_per_s": round(self.seen_here / max(here, 1e-9), 1),
            }
        )
        self.sums = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        self.started = None

    def state_dict(self) -> dict[str, Any]:
        seconds = self.sums["seconds"]
        if self.started is not None:
            seconds += time.perf_counter() - self.started
        return {**self.sums, "seconds": seconds, "lr": self.lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lr = state.get("lr")
        self.sums = {k: state.get(k, 0) for k in ("loss", "correct", "seen", "seconds")}


class Validate(Callback):
    """Evaluate on the validation split after each epoch: ``val_loss``, ``val_acc``."""

    order = -10

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def after_epoch(self, t: Trainer) -> None:
        result = evaluate(t.model, self.dataset)
        t.history[-1].update(val_loss=result.loss, val_acc=result.accuracy)


class OnStep(Callback):
    """Call ``fn(epoch, step, model)`` after every optimizer step (1-based epoch)."""

    def __init__(self, fn: Callable[[int, int, Module], None]) -> None:
        self.fn = fn

    def after_step(self, t: Trainer) -> None:
        self.fn(t.epoch + 1, t.step, t.model)


class ProgressBar(Callback):
    """A tqdm bar per epoch (stderr): running loss, accuracy and images/s."""

    order = 5

    def __init__(self) -> None:
        self.bar: Any = None

    def before_epoch(self, t: Trainer) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=len(t.loader),
            initial=t.step,
            desc=f"epoch {t.epoch + 1}/{t.epochs}",
            unit="batch",
            leave=True,
            dynamic_ncols=True,
        )
        self.loss, self.correct, self.seen = 0.0, 0, 0
        self.started = time.perf_counter()

    def after_step(self, t: Trainer) -> None:
        n = len(t.y)
        self.loss += t.loss * n
        self.correct += int((t.logits.argmax(axis=1) == t.y).sum())
        self.seen += n
        self.bar.update(1)
        self.bar.set_postfix(
            loss=f"{self.loss / self.seen:.4f}",
            acc=f"{self.correct / self.seen:.3f}",
            img_s=f"{self.seen / max(time.perf_counter() - self.started, 1e-9):.0f}",
            refresh=False,
        )

    def after_epoch(self, t: Trainer) -> None:
        self.teardown(t)

    def teardown(self, t: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class EpochSummary(Callback):
    """One line per epoch on stderr: train and validation loss and accuracy, lr, time."""

    order = 15

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream

    def after_epoch(self, t: Trainer) -> None:
        from tqdm import tqdm

        row = t.history[-1]
        line = (
            f"epoch {t.epoch}/{t.epochs}: train loss {row['train_loss']:.4f} "
            f"acc {row['train_acc']:.2%}"
        )
        if row.get("val_loss") is not None:
            line += f" | val loss {row['val_loss']:.4f} acc {row['val_acc']:.2%}"
        line += f" | lr {row['lr']:.3g} | {row['seconds']:.1f} s"
        tqdm.write(line, file=self.stream or sys.stderr)


class MetricsCSV(Callback):
    """``metrics.csv``: the history, one row per epoch, rewritten atomically."""

    order = 10

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def after_epoch(self, t: Trainer) -> None:
        keys = [k for k in COLUMNS if any(k in row for row in t.history)]
        keys += [k for row in t.history for k in row if k not in keys]
        buf = _io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(keys)), restval="")
        writer.writeheader()
        writer.writerows(t.history)
        write_atomic_text(self.path, buf.getvalue())


class CurvesPlot(Callback):
    """``curves.png``: loss, accuracy and learning rate per epoch.

    Drawn at the end of the run (also an interrupted one) and after an epoch when the
    last drawing is ``interval`` seconds old: a drawing costs about 0.2 s, as much as
    several epochs of a small model.
    """

    order = 10

    def __init__(self, path: Path, interval: float = 30.0) -> None:
        self.path, self.interval = Path(path), interval
        self.drawn = time.perf_counter()

    def draw(self, t: Trainer) -> None:
        from cnnlab.plots import plot_curves

        if t.history:
            plot_curves(t.history, self.path)
        self.drawn = time.perf_counter()

    def after_epoch(self, t: Trainer) -> None:
        if time.perf_counter() - self.drawn >= self.interval:
            self.draw(t)

    def after_fit(self, t: Trainer) -> None:
        self.draw(t)

    def on_interrupt(self, t: Trainer) -> None:
        self.draw(t)


class ModelFile(Callback):
    """Save the model (with ``metadata``) after every epoch and at the end of the run
    (also one cancelled mid-epoch): the last one is kept."""

    order = 10

    def __init__(self, path: Path, metadata: dict[str, Any]) -> None:
        self.path, self.metadata = Path(path), metadata

    def after_epoch(self, t: Trainer) -> None:
        io.save(t.model, self.path, metadata={**self.metadata, "epoch": t.epoch})

    def after_fit(self, t: Trainer) -> None:
        if t.step:  # cancelled mid-epoch: the file holds the model the run ends with
            self.after_epoch(t)


class KeepBest(Callback):
    """Save the model only when its validation accuracy is the best so far (ties: the
    lower validation loss). The trainer's model stays the last one (the checkpoint
    continues from it); :func:`~cnnlab.train.fit` loads the kept file back at the end.

    Needs :class:`Validate` (the rows' ``val_acc``/``val_loss``). Its record (best
    epoch and scores) is resumable state.
    """

    order = 10

    def __init__(self, path: Path, metadata: dict[str, Any]) -> None:
        self.path, self.metadata = Path(path), metadata
        self.best: dict[str, Any] = {}

    def after_epoch(self, t: Trainer) -> None:
        row = t.history[-1]
        score = (row["val_acc"], -row["val_loss"])
        if not self.best or score > (self.best["val_acc"], -self.best["val_loss"]):
            self.best = {"epoch": t.epoch, "val_acc": row["val_acc"], "val_loss": row["val_loss"]}
            io.save(t.model, self.path, metadata={**self.metadata, "epoch": t.epoch})

    def state_dict(self) -> dict[str, Any]:
        return dict(self.best)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = dict(state)


class Checkpointer(Callback):
    """``checkpoint.safetensors`` after every epoch, at the end and at an interruption:
    weights, optimizer state, position, random state, history and every callback's
    state."""

    order = 30

    def __init__(self, path: Path, config: dict[str, Any]) -> None:
        self.path, self.config = Path(path), config

    def save(self, t: Trainer) -> Path:
        return save_checkpoint(
            self.path,
            t.model,
            t.opt,
            config=self.config,
            epoch=t.epoch,
            step=t.step,
            rng_state=dict(init.default_generator().bit_generator.state),
            history=t.history,
            callbacks=t.callback_states(),
        )

    def after_epoch(self, t: Trainer) -> None:
        self.save(t)

    def after_fit(self, t: Trainer) -> None:
        if t.step:  # cancelled mid-epoch: resumable from where it stopped
            self.save(t)

    def on_interrupt(self, t: Trainer) -> None:
        assert t.interrupted is not None
        t.interrupted.checkpoint = str(self.save(t))


class InterruptOnSignal(Callback):
    """SIGINT/SIGTERM finish the current step, then stop the run resumably.

    Under MPI a signal received by any rank stops every rank after the same step (a
    vote, :meth:`~cnnlab.train.loop.Trainer.agree`); rank 0 writes the checkpoint.
    The handlers are installed for the run (main thread only) and restored after it;
    a signal raises :class:`~cnnlab.errors.TrainingInterrupted` after the step, last
    of all ``after_step`` callbacks, so the checkpoint written on the interruption
    holds every callback's state of that step.
    """

    order = 100

    def before_fit(self, t: Trainer) -> None:
        self.signals = SignalCatcher().__enter__()

    def after_step(self, t: Trainer) -> None:
        received = t.agree(self.signals.received or 0)  # a signal to any rank stops all
        if received:
            raise TrainingInterrupted(
                f"interrupted at epoch {t.epoch + 1}, step {t.step}", "", received
            )

    def teardown(self, t: Trainer) -> None:
        if hasattr(self, "signals"):
            self.signals.__exit__(None, None, None)
            del self.signals
