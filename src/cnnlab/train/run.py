""":func:`fit`: a :class:`~cnnlab.train.TrainConfig` made into data, model, optimizer and
callbacks, run by the :class:`~cnnlab.train.loop.Trainer`, then tested once.

The run directory (``config.out``) receives:

``model.safetensors``       the kept model (recipe, data set and data folder in its metadata)
``checkpoint.safetensors``  everything needed to resume (see :mod:`cnnlab.checkpoint`)
``metrics.csv``             one row per epoch: train and validation loss/accuracy, lr, time
``curves.png``              those curves
``augment.png``             training images as the augmentation shows them (``augment``)
``confusion.png``           the test split's confusion matrix
``summary.json``            the settings and the test result of the kept model

Runs are deterministic: the initial weights come from ``cnnlab.init.manual_seed(seed)``
and the order of the samples is a function of ``(seed, epoch)``, so a run resumed from
its checkpoint (after ``epochs`` grew, or after an interruption mid-epoch) ends with
exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cnnlab import init, models, optim
from cnnlab.checkpoint import Checkpoint, load_checkpoint
from cnnlab.distributed import LOCAL, ShardedModel, World, share_cores
from cnnlab.distributed import world as mpi_world
from cnnlab.errors import TrainingError, TrainingInterrupted
from cnnlab.evaluate import evaluate
from cnnlab.functional import kernels
from cnnlab.nn.losses import CrossEntropyLoss
from cnnlab.nn.module import Module
from cnnlab.train.callbacks import (
    AnnounceCompile,
    AnnounceRanks,
    Augment,
    AugmentPreview,
    Checkpointer,
    CurvesPlot,
    EpochSummary,
    InterruptOnSignal,
    KeepBest,
    MetricsCSV,
    ModelFile,
    NaNGuard,
    OnStep,
    ProgressBar,
    Recorder,
    ScheduleStep,
    Validate,
    write_atomic_text,
)
from cnnlab.train.config import TrainConfig, TrainResult, augmentation, prepare_out_dir
from cnnlab.train.loop import Callback, Trainer

__all__ = ["VAL_SPLIT_SEED", "fit", "standard_callbacks"]

#: the validation split is the same for every ``seed``, so runs of different seeds
#: are compared on the same images
VAL_SPLIT_SEED = 0
FILES = (
    "model.safetensors",
    "checkpoint.safetensors",
    "metrics.csv",
    "curves.png",
    "confusion.png",
    "summary.json",
    "augment.png",
)


def fit(
    config: TrainConfig,
    *,
    callbacks: Iterable[Callback] = (),
    on_step: Callable[[int, int, Module], None] | None = None,
) -> TrainResult:
    """Train as ``config`` says; returns the kept model, the history and its test result.

    ``callbacks`` join the standard ones (see :func:`standard_callbacks`);
    ``on_step(epoch, step, model)`` is a shortcut for a callback called after every
    optimizer step (1-based epoch, steps done in it).

    Started by ``mpiexec -n N`` (N > 1), the run is data-parallel over the N ranks
    (:mod:`cnnlab.distributed`): every rank calls ``fit`` with the same ``config``;
    rank 0 writes the run directory and returns the test result, the others return
    ``final=None``.

    Raises
    ------
    ValueError
        Bad configuration, unwritable ``out``, resume mismatch (before any training).
    TrainingError
        NaN/Inf in the loss, a gradient, a parameter or the optimizer's state (the
        last good checkpoint is kept).
    TrainingInterrupted
        SIGINT/SIGTERM: a checkpoint of the current step was written; resume with
        ``resume=True``.
    """
    world = mpi_world()
    cfg = config.resolved()
    assert cfg.out is not None and cfg.epochs is not None and cfg.model is not None
    error: Exception | None = None
    try:
        run = _assemble(cfg, world, callbacks, on_step)
    except Exception as exc:  # under MPI: first agreed on (below), then raised
        error = exc
    _agree_on_start(world, error)
    assert error is None
    trainer, test_set, metadata, data_dir = run
    first_epoch = trainer.epoch
    started = time.perf_counter()
    with _runner(trainer.model, world) as trainer.runner, _one_rank_errors_end_all(world):
        trainer.fit(cfg.epochs)
    seconds = time.perf_counter() - started
    out = Path(cfg.out)
    final = None
    if world.rank == 0:  # the others have nothing to write: they are done
        if cfg.keep == "best" and (out / "model.safetensors").exists():
            from cnnlab import io

            trainer.model.load_state_dict(io.load(out / "model.safetensors").state_dict())
        final = evaluate(trainer.model, test_set)
        _write_results(out, cfg, trainer, final, metadata.get("data_dir"))
    return TrainResult(
        model=trainer.model,
        config=cfg,
        history=trainer.history,
        final=final,
        out=out,
        seconds=seconds,
        files={name: out / name for name in FILES if (out / name).exists()},
        epochs_trained=trainer.epoch - first_epoch,
        data_dir=data_dir,
    )


def _assemble(
    cfg: TrainConfig,
    world: World,
    callbacks: Iterable[Callback],
    on_step: Callable[[int, int, Module], None] | None,
) -> tuple[Trainer, Any, dict[str, Any], Path | None]:
    """The trainer of a run (restored from its checkpoint when resuming), the test
    split, the model file's metadata and the data folder."""
    assert cfg.out is not None and cfg.epochs is not None and cfg.model is not None
    assert cfg.dataset is not None and cfg.lr is not None and cfg.optimizer is not None
    assert cfg.label_smoothing is not None and cfg.batch_size is not None
    out = Path(cfg.out)
    saved = _saved_run(cfg, out)
    if world.rank == 0:
        prepare_out_dir(out)
    train_set, val_set, test_set, data_dir = _load_data(cfg)

    init.manual_seed(cfg.seed)
    model = models.build(cfg.model, dtype=cfg.dtype, num_classes=len(test_set.classes))
    opt_kwargs: dict[str, Any] = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.optimizer == "sgd":
        opt_kwargs["momentum"] = cfg.momentum
    opt = optim.build(cfg.optimizer, model.parameters(), **opt_kwargs)
    from cnnlab.data import DataLoader

    # BatchNorm cannot normalise a shard of one sample: skip a last batch that has one
    batch_statistics = _has_batch_statistics(model)
    if batch_statistics and cfg.batch_size // world.size < 2:
        raise ValueError(
            f"model {cfg.model!r} normalises each rank's shard of the batch with the "
            f"shard's own statistics, and --batch-size {cfg.batch_size} over {world.size} "
            f"ranks gives shards of fewer than 2 samples; give --batch-size "
            f"{2 * world.size} or more"
        )
    last = len(train_set) % cfg.batch_size
    lone = batch_statistics and 0 < last and last // world.size < 2
    loader = DataLoader(
        train_set, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed, drop_last=lone
    )
    metadata = {"dataset": cfg.dataset}
    if data_dir is not None:
        metadata["data_dir"] = str(data_dir)
    extra = recipe_callbacks(cfg, opt, loader, train_set, world.rank)
    extra += [*callbacks, *([OnStep(on_step)] if on_step is not None else [])]
    trainer = Trainer(
        model,
        CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
        opt,
        loader,
        [*standard_callbacks(cfg, val_set, metadata, world), *extra],
        world=world,
    )
    if saved is not None:
        _restore(trainer, saved)
    return trainer, test_set, metadata, data_dir


def _agree_on_start(world: World, error: Exception | None) -> None:
    """Under MPI, every rank learns whether every rank is ready to train, then the
    failed ranks raise their error; the others raise one naming them (printed on
    rank 0 only, as the command line prints: the error of rank 0 is every rank's when
    the settings are at fault).

    A rank's own error (e.g. its host lacks the data) is written to stderr here, with
    its rank, when rank 0 had none to print.
    """
    if world.size == 1:
        if error is not None:
            raise error
        return
    # 2: rank 0 failed (the others, with the same settings, almost surely alike);
    # 1: only some other rank failed
    vote = world.agree(0 if error is None else (2 if world.rank == 0 else 1))
    if error is not None:
        if vote == 1:
            import sys

            print(f"cnnlab: error on MPI rank {world.rank}: {error}", file=sys.stderr)
        raise error
    if vote:
        raise ValueError(
            "another MPI rank could not start training (its error is printed above); "
            "every rank needs the same files at the same paths"
        )


#: seconds an erring rank waits, after writing its report, before MPI_Abort
_ABORT_GRACE = 1.0


@contextmanager
def _one_rank_errors_end_all(world: World) -> Iterator[None]:
    """Under MPI, an error met by one rank alone (a full disk on rank 0, a bug) ends
    every rank at once (``MPI_Abort``): the others would wait for it forever. The
    stops all ranks agree on (the NaN guard, a signal) end each rank normally.
    """
    try:
        yield
    except (TrainingError, TrainingInterrupted):
        raise
    except Exception as exc:
        if world.size == 1:
            raise
        import sys
        import time
        import traceback

        # The one line that says what happened goes first: mpiexec forwards each
        # rank's output through a pipe and stops forwarding once MPI_Abort kills the
        # ranks, so whatever is still in flight then is lost.
        print(
            f"cnnlab: error on MPI rank {world.rank}: {exc}; ending every rank "
            "(the last checkpoint is kept: continue with --resume)",
            file=sys.stderr,
            flush=True,
        )
        traceback.print_exc()
        sys.stderr.flush()
        time.sleep(_ABORT_GRACE)  # lets mpiexec forward the lines above
        world.abort(1)
        raise


#: settings of how a run is driven, not of what it learns
_RUN_FLAGS = ("out", "resume", "overwrite", "progress", "verbose")


def standard_callbacks(
    cfg: TrainConfig, val_set: Any, metadata: dict[str, Any], world: World = LOCAL
) -> list[Callback]:
    """The callbacks a run of ``cfg`` has, writing into ``cfg.out``.

    Under MPI, ranks other than 0 keep only those that steer the training (the NaN
    guard, the signal check): rank 0 alone records, validates, prints and writes.
    """
    assert cfg.out is not None
    out = Path(cfg.out)
    ckpt_path, model_path = out / "checkpoint.safetensors", out / "model.safetensors"
    if world.rank != 0:
        return [NaNGuard(ckpt_path), InterruptOnSignal()]
    cbs: list[Callback] = [NaNGuard(ckpt_path), Recorder()]
    if world.size > 1 and cfg.verbose:
        cbs.append(AnnounceRanks(world.size))
    if cfg.verbose and not kernels.cache_is_warm():
        cbs.append(AnnounceCompile())
    if val_set is not None:
        cbs.append(Validate(val_set))
    if cfg.progress:
        cbs.append(ProgressBar())
    if cfg.verbose:
        cbs.append(EpochSummary())
    keep = KeepBest if cfg.keep == "best" else ModelFile
    cbs += [
        keep(model_path, metadata),
        MetricsCSV(out / "metrics.csv"),
        CurvesPlot(out / "curves.png"),
        Checkpointer(ckpt_path, {**cfg.resume_view(), "epochs": cfg.epochs, **metadata}),
        InterruptOnSignal(),
    ]
    return cbs


def recipe_callbacks(
    cfg: TrainConfig, opt: Any, loader: Any, train_set: Any, rank: int = 0
) -> list[Callback]:
    """The callbacks of the recipe's options: the schedule and the augmentation (its
    preview on rank 0 only)."""
    cbs: list[Callback] = []
    assert cfg.schedule is not None and cfg.warmup is not None and cfg.epochs is not None
    if cfg.schedule != "none" or cfg.warmup:
        from cnnlab.optim.lr_scheduler import build_schedule

        schedule = build_schedule(
            cfg.schedule,
            opt,
            epochs=cfg.epochs,
            steps_per_epoch=len(loader),
            warmup_epochs=cfg.warmup,
        )
        cbs.append(ScheduleStep(schedule))
    if cfg.augment:
        assert cfg.dataset is not None and cfg.out is not None
        transform = augmentation(cfg.dataset)
        sample = _preview_sample(train_set)
        cbs.append(Augment(transform, cfg.seed))
        if rank != 0:
            return cbs
        cbs += [
            AugmentPreview(
                Path(cfg.out) / "augment.png",
                transform,
                train_set.images[sample],
                [train_set.classes[i] for i in train_set.labels[sample]],
                seed=cfg.seed,
            ),
        ]
    return cbs


def _write_results(
    out: Path, cfg: TrainConfig, trainer: Trainer, final: Any, data_dir: str | None
) -> None:
    """``confusion.png`` and ``summary.json`` of the test evaluation."""
    from cnnlab.plots import plot_confusion

    plot_confusion(final.confusion, final.classes, out / "confusion.png")
    summary = {
        "model": cfg.model,
        "dataset": cfg.dataset,
        "data_dir": data_dir,
        "epochs": trainer.epoch,
        "kept_epoch": _kept_epoch(trainer),
        "test_accuracy": final.accuracy,
        "test_loss": final.loss,
        "test_images": final.n,
        "train_seconds": round(sum(row["seconds"] for row in trainer.history), 3),
        "config": {k: v for k, v in asdict(cfg).items() if k not in _RUN_FLAGS},
    }
    write_atomic_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")


def _saved_run(cfg: TrainConfig, out: Path) -> Checkpoint | None:
    """The checkpoint to resume from (None for a new run), or why not (ValueError)."""
    ckpt_path = out / "checkpoint.safetensors"
    if not cfg.resume:
        if not cfg.overwrite and ckpt_path.exists():
            raise ValueError(
                f"{out} already holds a training run; continue it with --resume, or "
                "choose another --out (or pass --overwrite to replace it)"
            )
        return None
    if not ckpt_path.exists():
        raise ValueError(f"nothing to resume: no checkpoint at {ckpt_path}; drop --resume")
    ck = load_checkpoint(ckpt_path)
    if "val_fraction" not in ck.config:
        raise ValueError(
            f"{ckpt_path} was written by cnnlab 0.2, which validated on the test split; "
            "this version cannot continue it: start a new run (--overwrite or another --out)"
        )
    done = ck.epoch + (1 if ck.step else 0)
    assert cfg.epochs is not None
    if cfg.epochs < done:
        raise ValueError(
            f"{out} already holds {ck.epoch} finished epochs"
            + (f" and part of epoch {ck.epoch + 1}" if ck.step else "")
            + f", more than --epochs {cfg.epochs}; give --epochs {done} or "
            "more to train it further (cnnlab eval tests it as it is)"
        )
    planned, schedule = ck.config.get("epochs", cfg.epochs), ck.config.get("schedule")
    if schedule not in (None, "none") and planned != cfg.epochs:
        raise ValueError(
            f"the {schedule} learning-rate schedule of {out} spans its {planned} "
            f"epoch{'' if planned == 1 else 's'} and cannot be stretched to {cfg.epochs}; "
            f"resume with --epochs {planned}, or start a new run"
        )
    now = cfg.resume_view()
    then = {**now, **ck.config}
    changed = {k: (then[k], v) for k, v in now.items() if then[k] != v}
    if changed:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in changed.items())
        raise ValueError(f"cannot resume {out} with different settings ({detail})")
    return ck


def _restore(trainer: Trainer, ck: Checkpoint) -> None:
    trainer.model.load_state_dict(ck.model_state)
    trainer.opt.load_state_dict(ck.optim_state)
    init.default_generator().bit_generator.state = ck.rng_state
    trainer.epoch, trainer.step, trainer.history = ck.epoch, ck.step, list(ck.history)
    trainer.load_callback_states(ck.callbacks)


def _load_data(cfg: TrainConfig) -> tuple[Any, Any, Any, Path | None]:
    """Train, validation (None without) and test splits, and the data folder used."""
    from cnnlab.data import find_data_dir, load_dataset, split_validation

    assert cfg.dataset is not None
    data_dir = None
    if cfg.dataset != "digits":
        data_dir = find_data_dir(cfg.dataset, cfg.data_dir).resolve()
    train = load_dataset(cfg.dataset, "train", data_dir)
    test = load_dataset(cfg.dataset, "test", data_dir)
    if not cfg.val_fraction:
        return train, None, test, data_dir
    train, val = split_validation(train, cfg.val_fraction, seed=VAL_SPLIT_SEED)
    return train, val, test, data_dir


def _has_batch_statistics(model: Module) -> bool:
    from cnnlab.nn import BatchNorm1d, BatchNorm2d

    return any(isinstance(m, (BatchNorm1d, BatchNorm2d)) for _, m in model.named_modules())


def _preview_sample(train_set: Any) -> Any:
    """The first training image of each class (a fixed choice, for the preview)."""
    import numpy as np

    firsts = [np.flatnonzero(train_set.labels == c)[:1] for c in range(len(train_set.classes))]
    return np.concatenate(firsts).astype(np.int64)


def _kept_epoch(trainer: Trainer) -> int:
    best = next((cb for cb in trainer.callbacks if isinstance(cb, KeepBest)), None)
    return int(best.best.get("epoch", trainer.epoch)) if best is not None else trainer.epoch


@contextmanager
def _runner(model: Module, world: World) -> Iterator[Any]:
    """What runs the passes: the model itself, or its shard under MPI
    (:class:`~cnnlab.distributed.ShardedModel`, BLAS on the rank's share of the
    cores), for the run's length.

    The first layer skips its input gradient meanwhile: the image's error is never
    needed.
    """
    first: Any = model[0] if len(model) else None  # type: ignore[arg-type,index]
    skip_dx = first is not None and hasattr(first, "needs_input_grad")
    if skip_dx:
        first.needs_input_grad = False
    try:
        with share_cores(world):
            yield model if world.size == 1 else ShardedModel(model, world)
    finally:
        if skip_dx:
            first.needs_input_grad = True
