"""What defines a training run (:class:`TrainConfig`), what it returns (:class:`TrainResult`).

Both the loop's assembly (:mod:`cnnlab.train.run`) and the command line import these;
nothing here trains.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cnnlab import models
from cnnlab.evaluate import EvalResult
from cnnlab.nn.module import Module
from cnnlab.train.recipes import DEFAULT_LR, RECIPES, SCHEDULES, Recipe, augmentation

__all__ = [
    "DEFAULT_LR",
    "KEEP_CHOICES",
    "RECIPES",
    "RESUME_KEYS",
    "SCHEDULES",
    "Recipe",
    "TrainConfig",
    "TrainResult",
    "augmentation",
    "prepare_out_dir",
]

#: ``last``: the model after the last epoch; ``best``: the epoch of best validation
KEEP_CHOICES = ("last", "best")
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
    "val_fraction",
    "keep",
    "augment",
    "schedule",
    "warmup",
    "label_smoothing",
)


@dataclass
class TrainConfig:
    """Everything that defines a training run (``cnnlab train``'s options).

    ``dataset=None`` is the bundled ``digits`` (refused together with a ``data_dir``:
    MNIST and Fashion-MNIST files look alike, so the data set must be named).
    ``model=None`` picks the data set's default model; every other ``None`` takes the
    data set's :class:`Recipe` (:data:`RECIPES`). ``out=None`` is
    ``runs/<dataset>-<model>`` in the current directory.

    ``augment`` applies :func:`augmentation` to each training batch; ``schedule`` is
    a per-batch learning-rate schedule (``none``, ``step``, ``cosine``, ``onecycle``:
    :func:`cnnlab.optim.lr_scheduler.build_schedule`) after ``warmup`` epochs of linear
    warm-up; ``label_smoothing`` is the training loss's ε (PyTorch's).

    ``val_fraction`` of the training split (stratified, the same images for every
    seed) is held out and evaluated after each epoch; 0 trains on all of it and skips
    validation. The test split is evaluated once, at the end. ``keep="best"`` keeps
    the model of the epoch with the best validation accuracy as ``model.safetensors``
    (ties: the lower validation loss), ``"last"`` the final one.

    ``progress`` shows a progress bar per epoch, ``verbose`` one summary line per
    epoch (both on stderr).
    """

    dataset: str | None = None
    model: str | None = None
    data_dir: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float = 0.9
    seed: int = 0
    dtype: str = "float32"
    val_fraction: float = 0.1
    keep: str = "last"
    augment: bool | None = None
    schedule: str | None = None
    warmup: float | None = None
    label_smoothing: float | None = None
    out: str | None = None
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    verbose: bool = True

    def resolved(self) -> TrainConfig:
        """A copy with defaults filled in and every field validated (ValueError)."""
        from cnnlab.data import DATASETS, dataset_info

        c = TrainConfig(**asdict(self))
        if c.dataset is None:
            if c.data_dir is not None:
                raise ValueError(
                    f"--data-dir {c.data_dir} needs --dataset: MNIST and Fashion-MNIST "
                    "files are both 28x28 IDX and cannot be told apart; pass "
                    "--dataset mnist or --dataset fashion-mnist"
                )
            c.dataset = "digits"
        if c.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {c.dataset!r}; choose one of {sorted(DATASETS)}")
        if c.dataset == "digits" and c.data_dir is not None:
            raise ValueError(
                "the digits data set is bundled (scikit-learn) and reads no files; drop "
                "--data-dir, or choose --dataset mnist or fashion-mnist"
            )
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
        recipe = RECIPES[c.dataset]
        if c.optimizer is None:
            c.optimizer = recipe.optimizer
        if c.optimizer not in DEFAULT_LR:
            raise ValueError(
                f"unknown optimizer {c.optimizer!r}; choose one of {sorted(DEFAULT_LR)}"
            )
        if c.lr is None:
            c.lr = recipe.lr if c.optimizer == recipe.optimizer else DEFAULT_LR[c.optimizer]
        if c.schedule is None:
            c.schedule = recipe.schedule
        if c.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {c.schedule!r}; choose one of {SCHEDULES}")
        for name in ("epochs", "batch_size", "weight_decay", "augment", "label_smoothing"):
            if getattr(c, name) is None:
                setattr(c, name, getattr(recipe, name))
        if c.warmup is None:  # the recipe's share of the run, for the recipe's schedule
            share = recipe.warmup / recipe.epochs if c.schedule == recipe.schedule else 0.0
            c.warmup = share * c.epochs if isinstance(c.epochs, int) else 0.0
        for name, minimum in (("epochs", 1), ("batch_size", 1), ("seed", 0)):
            value = getattr(c, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        for name in ("lr", "weight_decay", "momentum", "warmup"):
            value = getattr(c, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if c.lr == 0:
            raise ValueError("lr must be > 0 (with lr 0 nothing would be learned)")
        if c.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {c.dtype!r}")
        v = c.val_fraction
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v < 1:
            raise ValueError(f"val_fraction must be a number in [0, 1), got {v!r}")
        if not isinstance(c.augment, bool):
            raise ValueError(f"augment must be True or False, got {c.augment!r}")
        ls = c.label_smoothing
        if not isinstance(ls, (int, float)) or isinstance(ls, bool) or not 0 <= ls < 1:
            raise ValueError(f"label_smoothing must be a number in [0, 1), got {ls!r}")
        assert c.warmup is not None and c.epochs is not None
        if c.warmup >= c.epochs:
            raise ValueError(
                f"a warm-up of {c.warmup:g} epochs leaves nothing of a {c.epochs}-epoch run; "
                "give --warmup fewer epochs than --epochs"
            )
        if c.schedule == "onecycle" and c.warmup:
            raise ValueError(
                "the onecycle schedule warms up by itself (its first 30 % of the steps); "
                "drop --warmup, or choose another --schedule"
            )
        if c.keep not in KEEP_CHOICES:
            raise ValueError(f"keep must be one of {KEEP_CHOICES}, got {c.keep!r}")
        if c.keep == "best" and c.val_fraction == 0:
            raise ValueError(
                "--keep best needs a validation split to tell the best epoch; "
                "give --val-fraction > 0 or use --keep last"
            )
        if c.out is None:
            c.out = str(Path("runs") / f"{c.dataset}-{c.model}")
        return c

    def resume_view(self) -> dict[str, Any]:
        """The settings a resumed run must share with its checkpoint."""
        return {k: getattr(self, k) for k in RESUME_KEYS}


@dataclass
class TrainResult:
    """What :func:`~cnnlab.train.fit` returns.

    ``model`` is the kept model (the best epoch's with ``keep="best"``), ``final`` its
    evaluation on the test split, ``history`` one row per epoch of the whole run (also
    the epochs of earlier, resumed-from processes), ``epochs_trained`` the epochs this
    call worked on (a resumed partial epoch counts), ``seconds`` this call's wall time.
    """

    model: Module
    config: TrainConfig
    history: list[dict[str, Any]]
    final: EvalResult | None
    out: Path
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)
    epochs_trained: int = 0
    data_dir: Path | None = None


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
