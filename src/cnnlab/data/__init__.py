"""Data: IDX files, the data sets, reproducible mini-batches, augmentation (``transforms``),
images for ``predict``."""

from cnnlab.data import transforms
from cnnlab.data.datasets import (
    DATASETS,
    Dataset,
    DatasetInfo,
    dataset_info,
    find_data_dir,
    load_dataset,
    split_validation,
)
from cnnlab.data.idx import read_idx, write_idx
from cnnlab.data.loader import DataLoader

__all__ = [
    "DATASETS",
    "DataLoader",
    "Dataset",
    "DatasetInfo",
    "dataset_info",
    "find_data_dir",
    "load_dataset",
    "read_idx",
    "split_validation",
    "transforms",
    "write_idx",
]
