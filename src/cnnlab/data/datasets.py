"""The data sets: scikit-learn's 8×8 digits (bundled), MNIST and Fashion-MNIST (IDX files).

Images come out as float32 ``(N, 1, H, W)``, scaled to [0, 1] and then normalised with
fixed per-data-set constants (the training split's pixel mean and standard deviation),
so the same constants serve training, evaluation and ``predict``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.data.idx import read_idx
from cnnlab.errors import DataError

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetInfo",
    "dataset_info",
    "find_data_dir",
    "load_dataset",
    "split_validation",
]

DIGIT_CLASSES = tuple(str(i) for i in range(10))
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set looks like: image shape, classes, normalisation, default model."""

    name: str
    image_shape: tuple[int, int, int]
    classes: tuple[str, ...]
    mean: float
    std: float
    default_model: str


DATASETS: dict[str, DatasetInfo] = {
    # mean/std of the training split's pixels on the [0, 1] scale
    "digits": DatasetInfo("digits", (1, 8, 8), DIGIT_CLASSES, 0.3048, 0.3757, "digits_cnn"),
    "mnist": DatasetInfo("mnist", (1, 28, 28), DIGIT_CLASSES, 0.1307, 0.3081, "lenet5"),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", (1, 28, 28), FASHION_CLASSES, 0.2860, 0.3530, "lenet5"
    ),
}

#: where Debian's dataset-fashion-mnist package installs the files
SYSTEM_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class Dataset:
    """One split of a data set, ready for training.

    Shapes
    ------
    images: ``(N, 1, H, W)`` float32, normalised; labels: ``(N,)`` int64.
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name`` (ValueError listing the names if unknown)."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}") from None


def cache_dir(name: str) -> Path:
    """Where ``cnnlab download`` puts a data set: ``$CNNLAB_DATA`` or ``~/.cache/cnnlab``."""
    root = os.environ.get("CNNLAB_DATA") or Path.home() / ".cache" / "cnnlab"
    return Path(root) / name


def normalise(pixels01: np.ndarray, info: DatasetInfo) -> np.ndarray:
    """``(x - mean) / std`` in float32 for pixels already on the [0, 1] scale."""
    x = np.asarray(pixels01, dtype=np.float32)
    return (x - np.float32(info.mean)) / np.float32(info.std)


def _digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits, split 80/20 per class by a fixed permutation."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    labels = bunch.target.astype(np.int64)
    rng = np.random.default_rng(20240607)
    test_index = []
    for c in range(10):
        members = np.flatnonzero(labels == c)
        members = rng.permutation(members)
        test_index.append(members[: round(0.2 * len(members))])
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[np.concatenate(test_index)] = True
    keep = is_test if split == "test" else ~is_test
    return images[keep], labels[keep]


def _locate(directory: Path, stem: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{directory / (stem + '.gz')}: file not found (nor {stem} uncompressed); the folder "
        "needs the official IDX file names"
    )


def find_data_dir(name: str, data_dir: str | Path | None) -> Path:
    """The folder to read ``name`` from: ``data_dir``, a system copy, or the download cache."""
    if data_dir is not None:
        path = Path(data_dir)
        if not path.is_dir():
            raise DataError(
                f"{path}: no such directory; give --data-dir the folder of the IDX files"
            )
        return path
    looked = []
    for candidate in (SYSTEM_DIRS.get(name), cache_dir(name)):
        if candidate is None:
            continue
        looked.append(str(candidate))
        if candidate.is_dir():
            return candidate
    raise DataError(
        f"no {name} files found (looked in {', '.join(looked)}); pass --data-dir DIR, "
        f"or run: cnnlab download {name}"
    )


def _load_idx_split(name: str, split: str, directory: Path) -> tuple[np.ndarray, np.ndarray]:
    info = DATASETS[name]
    images_path = _locate(directory, FILES[split][0])
    labels_path = _locate(directory, FILES[split][1])
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    h, w = info.image_shape[1:]
    if images.ndim != 3 or images.shape[1:] != (h, w) or images.dtype != np.uint8:
        raise DataError(
            f"{images_path}: expected uint8 images of shape (N, {h}, {w}), "
            f"got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(f"{labels_path}: expected a 1-D uint8 label file, got {labels.shape}")
    if len(images) != len(labels):
        raise DataError(
            f"{labels_path}: {len(labels)} labels but {images_path.name} holds "
            f"{len(images)} images; the two files must come from the same set"
        )
    if len(labels) and labels.max() >= len(info.classes):
        raise DataError(
            f"{labels_path}: label {int(labels.max())} out of range 0..{len(info.classes) - 1}"
        )
    return images.astype(np.float32) / np.float32(255.0), labels.astype(np.int64)


def load_dataset(name: str, split: str = "train", data_dir: str | Path | None = None) -> Dataset:
    """Load one split (``"train"`` or ``"test"``) of a data set.

    ``digits`` needs no files. ``mnist``/``fashion-mnist`` read the official IDX files
    (``train-*`` for train, only ``t10k-*`` for test) from ``data_dir``, or else from
    ``/usr/share/datasets/fashion-mnist`` (Debian's package) or the download cache.

    Shapes
    ------
    ``images``: ``(N, 1, H, W)`` float32; ``labels``: ``(N,)`` int64.
    """
    info = dataset_info(name)
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if name == "digits":
        pixels, labels = _digits_split(split)
    else:
        pixels, labels = _load_idx_split(name, split, find_data_dir(name, data_dir))
    images = normalise(pixels, info)[:, None, :, :]
    return Dataset(name, split, np.ascontiguousarray(images), labels, info.classes)


def split_validation(
    dataset: Dataset, fraction: float, *, seed: int = 0, stratify: bool = True
) -> tuple[Dataset, Dataset]:
    """Carve a validation split out of a training split: ``(train, validation)``.

    With ``stratify`` (the default) every class gives ``round(fraction · n_class)`` of
    its ``n_class`` images, so the validation split has the class proportions of the
    whole and no class is missing from it even when the split is small (600 images of
    a 6,000-image sample: 60 per digit, where a plain random draw would give 45–75 and
    widen the noise of the per-epoch accuracy). Which images go is fixed by ``seed``;
    both parts keep the images' original order.

    Shapes
    ------
    ``dataset.images``: ``(N, C, H, W)``; the two parts ``(N - V, C, H, W)`` and
    ``(V, C, H, W)``, ``V ≈ fraction · N``.

    Raises
    ------
    ValueError
        ``fraction`` outside ``(0, 1)``, or a split that leaves either part empty.
    """
    if not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"the validation fraction must be in (0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    labels = dataset.labels
    if stratify:
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        chosen = [rng.permutation(g)[: round(fraction * len(g))] for g in groups]
        held = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    else:
        held = rng.permutation(len(labels))[: round(fraction * len(labels))]
    is_val = np.zeros(len(labels), dtype=bool)
    is_val[held] = True
    if is_val.all() or not is_val.any():
        raise ValueError(
            f"a validation fraction of {fraction} of {len(labels)} images leaves "
            f"{int(is_val.sum())} for validation and {int((~is_val).sum())} for training; "
            "choose a fraction that leaves some of each (or 0 for no validation)"
        )

    def part(mask: np.ndarray, split: str) -> Dataset:
        return Dataset(
            dataset.name,
            split,
            np.ascontiguousarray(dataset.images[mask]),
            labels[mask],
            dataset.classes,
        )

    return part(~is_val, dataset.split), part(is_val, "val")
