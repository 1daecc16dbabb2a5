"""The recipes: what ``cnnlab train`` does for each data set unless told otherwise.

Light on purpose (no NumPy until :func:`augmentation` is called), so ``cnnlab train
--help`` can list the recipes without loading the numerical stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_LR", "RECIPES", "SCHEDULES", "Recipe", "augmentation"]

#: the learning rate of an optimizer other than the recipe's
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3}
SCHEDULES = ("none", "step", "cosine", "onecycle")


@dataclass(frozen=True)
class Recipe:
    """A data set's default training settings: what ``cnnlab train`` does unasked.

    ``lr`` is for ``optimizer`` (another optimizer gets its :data:`DEFAULT_LR`), and
    ``warmup`` (epochs of linear warm-up) for ``schedule`` (another gets none); a run
    of other than ``epochs`` epochs warms up for the same share of its length.
    ``augment`` switches on the data set's :func:`augmentation`.
    """

    epochs: int
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    augment: bool = False
    schedule: str = "none"
    warmup: float = 0.0
    label_smoothing: float = 0.0


RECIPES: dict[str, Recipe] = {
    "digits": Recipe(epochs=30),
    # chosen on the validation split of the 6,000-digit sample (README, "Recipes")
    "mnist": Recipe(epochs=15, lr=3e-3, augment=True, schedule="cosine", warmup=1),
    "fashion-mnist": Recipe(epochs=15, lr=3e-3, augment=True, schedule="cosine", warmup=1),
}


def augmentation(dataset: str) -> Any:
    """The augmentation ``--augment`` applies to a data set's (normalised) batches.

    Digits (MNIST, the 8×8 digits): random affine motions that keep a digit what it
    is — rotations up to 10°, shifts up to a tenth of the side, scalings by 0.9–1.1,
    shears up to 10° — the uncovered background filled with the data set's normalised
    black. Fashion-MNIST: mirror images only (a mirrored shoe is still a shoe, a
    mirrored 2 is not a 2); the validation split preferred them to any affine motion
    (README, "Recipes").
    """
    from cnnlab.data import dataset_info
    from cnnlab.data.transforms import RandomAffine, RandomHorizontalFlip

    if dataset == "fashion-mnist":
        return RandomHorizontalFlip()
    info = dataset_info(dataset)
    black = -info.mean / info.std
    return RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=10, fill=black)
