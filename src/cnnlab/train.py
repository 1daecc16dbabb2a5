"""The training loop: mini-batch gradient descent with validation, logs, plots, checkpoints.

Each step is the lesson's cycle: ``zero_grad``, forward, loss, backward (every layer's
backward accumulates its gradients), optimizer step. After each epoch the model is
evaluated on the test split and the run directory is brought up to date:

``model.safetensors``       the latest model (recipe and data set in its metadata)
``checkpoint.safetensors``  everything needed to resume (see :mod:`cnnlab.checkpoint`)
``metrics.csv``             one row per epoch
``curves.png``, ``confusion.png``

Runs are deterministic: the initial weights come from ``cnnlab.init.manual_seed(seed)``
and the order of the samples is a function of ``(seed, epoch)``, so a run resumed from
its checkpoint (after ``--epochs`` grew, or after an interruption mid-epoch) ends with
exactly the weights of an uninterrupted run.

Faults: a NaN or Inf in the loss or a gradient stops the run with a
:class:`~cnnlab.errors.TrainingError` naming the step and layer, leaving the last good
checkpoint untouched. SIGINT/SIGTERM finish the current step, write a checkpoint and
raise :class:`~cnnlab.errors.TrainingInterrupted`.
"""

from __future__ import annotations

import csv
import io as _io
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab import init, io, models, optim
from cnnlab.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.errors import TrainingError, TrainingInterrupted
from cnnlab.evaluate import EvalResult, evaluate
from cnnlab.faults import SignalCatcher, first_nonfinite, kept
from cnnlab.nn.losses import CrossEntropyLoss
from cnnlab.nn.module import Module
from cnnlab.parallel import DataParallel

__all__ = ["EvalResult", "TrainConfig", "TrainResult", "evaluate", "fit"]

DEFAULT_EPOCHS = {"digits": 30, "mnist": 10, "fashion-mnist": 10}
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3}
#: settings that must not change when a run is resumed
RESUME_KEYS = (
    "model",
    "dataset",
    "batch_size",
    "optimizer",
    "lr",
    "weight_decay",
    "momentum",
    "seed",
    "dtype",
)


@dataclass
class TrainConfig:
    """Everything that defines a training run (``cnnlab train``'s options).

    ``model=None`` picks the data set's default model, ``epochs=None`` and ``lr=None``
    the defaults for the data set and optimizer. ``out=None`` is
    ``runs/<dataset>-<model>`` in the current directory.
    """

    dataset: str = "digits"
    model: str | None = None
    data_dir: str | None = None
    epochs: int | None = None
    batch_size: int = 64
    workers: int = 1
    optimizer: str = "adam"
    lr: float | None = None
    weight_decay: float = 0.0
    momentum: float = 0.9
    seed: int = 0
    dtype: str = "float32"
    out: str | None = None
    resume: bool = False
    overwrite: bool = False
    progress: bool = True

    def resolved(self) -> TrainConfig:
        """A copy with defaults filled in and every field validated (ValueError)."""
        from cnnlab.data import DATASETS, dataset_info

        c = TrainConfig(**asdict(self))
        if c.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {c.dataset!r}; choose one of {sorted(DATASETS)}")
        if c.model is None:
            c.model = dataset_info(c.dataset).default_model
        if c.model not in models.MODELS:
            raise ValueError(f"unknown model {c.model!r}; choose one of {sorted(models.MODELS)}")
        expected = tuple(dataset_info(c.dataset).image_shape)
        if models.INPUT_SHAPES[c.model] != expected:
            raise ValueError(
                f"model {c.model!r} takes images of shape {models.INPUT_SHAPES[c.model]}, "
                f"data set {c.dataset!r} has {expected}; choose a matching --model"
            )
        if c.optimizer not in DEFAULT_LR:
            raise ValueError(
                f"unknown optimizer {c.optimizer!r}; choose one of {sorted(DEFAULT_LR)}"
            )
        if c.epochs is None:
            c.epochs = DEFAULT_EPOCHS.get(c.dataset, 10)
        if c.lr is None:
            c.lr = DEFAULT_LR[c.optimizer]
        for name, minimum in (("epochs", 1), ("batch_size", 1), ("workers", 1), ("seed", 0)):
            value = getattr(c, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        for name in ("lr", "weight_decay", "momentum"):
            value = getattr(c, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if c.lr == 0:
            raise ValueError("lr must be > 0 (with lr 0 nothing would be learned)")
        if c.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {c.dtype!r}")
        if c.out is None:
            c.out = str(Path("runs") / f"{c.dataset}-{c.model}")
        return c

    def resume_view(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in RESUME_KEYS}


@dataclass
class TrainResult:
    """What :func:`fit` returns."""

    model: Module
    config: TrainConfig
    history: list[dict[str, float]]
    final: EvalResult | None
    out: Path
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)


def prepare_out_dir(out: Path) -> None:
    """Create the run directory and prove it writable, before any training starts."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".cnnlab-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(
            f"cannot write to the output directory {out}: {exc.strerror or exc}; "
            "choose another --out"
        ) from None


def _write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    if not history:
        return
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    data = buf.getvalue().encode()
    io.atomic_write_bytes(path, lambda tmp: Path(tmp).write_bytes(data))


def fit(
    config: TrainConfig,
    *,
    on_step: Callable[[int, int, Module], None] | None = None,
) -> TrainResult:
    """Train as ``config`` says; returns the model, metrics history and final evaluation.

    ``on_step(epoch, step, model)`` is called after every optimizer step (1-based
    epoch, steps done in it), e.g. to log or to stop early.

    Raises
    ------
    ValueError
        Bad configuration, unwritable ``out``, resume mismatch (before any training).
    TrainingError
        NaN/Inf in the loss or a gradient (the last good checkpoint is kept).
    TrainingInterrupted
        SIGINT/SIGTERM: a checkpoint of the current step was written; resume with
        ``resume=True``.
    """
    from cnnlab.data import DataLoader, load_dataset
    from cnnlab.plots import plot_confusion, plot_curves

    cfg = config.resolved()
    assert cfg.out is not None and cfg.epochs is not None and cfg.lr is not None
    assert cfg.model is not None
    out = Path(cfg.out)
    ckpt_path, model_path = out / "checkpoint.safetensors", out / "model.safetensors"
    if not cfg.resume and not cfg.overwrite and ckpt_path.exists():
        raise ValueError(
            f"{out} already holds a training run; continue it with --resume, or choose "
            "another --out (or pass --overwrite to replace it)"
        )
    if cfg.resume and not ckpt_path.exists():
        raise ValueError(f"nothing to resume: no checkpoint at {ckpt_path}; drop --resume")
    prepare_out_dir(out)

    train_set = load_dataset(cfg.dataset, "train", cfg.data_dir)
    test_set = load_dataset(cfg.dataset, "test", cfg.data_dir)
    dtype = np.dtype(cfg.dtype)
    init.manual_seed(cfg.seed)
    model = models.build(cfg.model, dtype=dtype, num_classes=len(train_set.classes))
    opt_kwargs: dict[str, Any] = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.optimizer == "sgd":
        opt_kwargs["momentum"] = cfg.momentum
    opt = optim.build(cfg.optimizer, model.parameters(), **opt_kwargs)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed)

    epoch, step, sums, history = 0, 0, {"loss": 0.0, "correct": 0, "seen": 0}, []
    if cfg.resume:
        ck = load_checkpoint(ckpt_path)
        saved = TrainConfig(**{**asdict(cfg), **ck.config}).resume_view()
        changed = {k: (saved[k], v) for k, v in cfg.resume_view().items() if saved[k] != v}
        if changed:
            detail = ", ".join(
                f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in changed.items()
            )
            raise ValueError(f"cannot resume {out} with different settings ({detail})")
        model.load_state_dict(ck.model_state)
        opt.load_state_dict(ck.optim_state)
        init.default_generator().bit_generator.state = ck.rng_state
        epoch, step, sums, history = ck.epoch, ck.step, dict(ck.epoch_sums), list(ck.history)

    def checkpoint(ep: int, st: int) -> Path:
        return save_checkpoint(
            ckpt_path,
            model,
            opt,
            config=cfg.resume_view(),
            epoch=ep,
            step=st,
            rng_state=dict(init.default_generator().bit_generator.state),
            epoch_sums=sums,
            history=history,
        )

    first: Any = model[0] if len(model) else None
    skip_dx = first is not None and hasattr(first, "needs_input_grad")
    if skip_dx:
        first.needs_input_grad = False  # the image's error is never needed
    runner = DataParallel(model, cfg.workers)  # the batch split over processes, if > 1
    loss_fn = CrossEntropyLoss()
    started = time.perf_counter()
    final = None
    try:
        with SignalCatcher() as signals:
            while epoch < cfg.epochs:
                epoch_start = time.perf_counter()
                model.train()
                bar = _progress(cfg, epoch, len(loader), step)
                for x, y in loader.epoch_batches(epoch, start_step=step):
                    x = x.astype(dtype, copy=False)
                    model.zero_grad()
                    with np.errstate(all="ignore"):
                        logits = runner(x)
                        loss = loss_fn(logits, y)
                    if not math.isfinite(loss):
                        raise TrainingError(
                            f"epoch {epoch + 1}, step {step + 1}: the loss is {loss} — "
                            f"first non-finite output in {first_nonfinite(model, x)}; "
                            f"lower --lr (now {cfg.lr}); {kept(ckpt_path)}"
                        )
                    with np.errstate(all="ignore"):
                        runner.backward(loss_fn.backward())
                    for name, p in model.named_parameters():
                        if not np.isfinite(p.grad).all():
                            raise TrainingError(
                                f"epoch {epoch + 1}, step {step + 1}: NaN/Inf in the "
                                f"gradient of {name}; lower --lr (now {cfg.lr}); "
                                f"{kept(ckpt_path)}"
                            )
                    opt.step()
                    step += 1
                    sums["loss"] += loss * len(y)
                    sums["correct"] += int((logits.argmax(axis=1) == y).sum())
                    sums["seen"] += len(y)
                    if bar is not None:
                        bar.update(1)
                        elapsed = time.perf_counter() - epoch_start
                        bar.set_postfix(
                            loss=f"{sums['loss'] / sums['seen']:.4f}",
                            acc=f"{sums['correct'] / sums['seen']:.3f}",
                            img_s=f"{sums['seen'] / max(elapsed, 1e-9):.0f}",
                            refresh=False,
                        )
                    if on_step is not None:
                        on_step(epoch + 1, step, model)
                    if signals.received is not None:
                        if bar is not None:
                            bar.close()
                        path = checkpoint(epoch, step)
                        raise TrainingInterrupted(
                            f"interrupted at epoch {epoch + 1}, step {step}; "
                            f"checkpoint written to {path}",
                            str(path),
                            signals.received,
                        )
                if bar is not None:
                    bar.close()
                seconds = time.perf_counter() - epoch_start
                test = evaluate(model, test_set)
                history.append(
                    {
                        "epoch": epoch + 1,
                        "train_loss": sums["loss"] / max(sums["seen"], 1),
                        "train_acc": sums["correct"] / max(sums["seen"], 1),
                        "test_loss": test.loss,
                        "test_acc": test.accuracy,
                        "seconds": round(seconds, 3),
                        "images_per_s": round(sums["seen"] / max(seconds, 1e-9), 1),
                    }
                )
                epoch, step, sums = epoch + 1, 0, {"loss": 0.0, "correct": 0, "seen": 0}
                final = test
                if cfg.progress:
                    from tqdm import tqdm

                    last = history[-1]
                    tqdm.write(
                        f"epoch {epoch}/{cfg.epochs}: train loss {last['train_loss']:.4f} "
                        f"acc {last['train_acc']:.2%} | test loss {test.loss:.4f} "
                        f"acc {test.accuracy:.2%}",
                        file=sys.stderr,
                    )
                checkpoint(epoch, 0)
                io.save(model, model_path, metadata={"dataset": cfg.dataset})
                _write_metrics(out / "metrics.csv", history)
                plot_curves(history, out / "curves.png")
    finally:
        runner.close()
        if skip_dx:
            first.needs_input_grad = True
    if final is None:  # resumed a run that was already complete
        final = evaluate(model, test_set)
    plot_confusion(final.confusion, final.classes, out / "confusion.png")
    files = {
        name: out / name
        for name in (
            "model.safetensors",
            "checkpoint.safetensors",
            "metrics.csv",
            "curves.png",
            "confusion.png",
        )
    }
    return TrainResult(model, cfg, history, final, out, time.perf_counter() - started, files)


def _progress(cfg: TrainConfig, epoch: int, total: int, initial: int) -> Any:
    if not cfg.progress:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        unit="batch",
        leave=True,
        dynamic_ncols=True,
    )
