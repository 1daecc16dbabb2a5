"""Mini-batches in a reproducible order.

The order of an epoch is a pure function of ``(seed, epoch)``, so a run can be resumed
at any step of any epoch and see exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from cnnlab._validate import positive_int

__all__ = ["DataLoader"]


class DataLoader:
    """Batches ``(x, y)`` of a data set.

    Parameters
    ----------
    dataset
        Anything with ``images`` and ``labels`` arrays of equal length.
    batch_size : int
    shuffle : bool
        Reorder the samples every epoch (permutation seeded by ``(seed, epoch)``).
    seed : int
    drop_last : bool
        Skip the last, smaller batch.

    Shapes
    ------
    x: ``(B, C, H, W)`` (dtype of the images); y: ``(B,)`` int64.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 64,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        self.dataset = dataset
        self.batch_size = positive_int(batch_size, "batch_size")
        self.shuffle = bool(shuffle)
        self.seed = positive_int(seed, "seed", minimum=0)
        self.drop_last = bool(drop_last)
        self.n = len(dataset.labels)
        if self.n == 0:
            raise ValueError("the data set is empty; there is nothing to batch")

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def order(self, epoch: int) -> np.ndarray:
        """The sample order of ``epoch`` (identity without shuffling)."""
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def epoch_batches(
        self, epoch: int, start_step: int = 0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield the batches of ``epoch`` from batch number ``start_step`` on."""
        order = self.order(epoch)
        images, labels = self.dataset.images, self.dataset.labels
        for step in range(start_step, len(self)):
            index = order[step * self.batch_size : (step + 1) * self.batch_size]
            yield np.take(images, index, axis=0), np.take(labels, index, axis=0)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.epoch_batches(0)
