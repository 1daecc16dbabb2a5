"""The MNIST recipe of ``cnnlab train`` beside the same recipe in PyTorch: time and accuracy.

    python benchmarks/recipe_torch.py --data-dir ../shared/data/mnist-sample [--seeds 0 1 2]

For each seed it runs, one after the other:

* cnnlab: ``cnnlab train --dataset mnist --model lenet5 --data-dir D`` with no other
  option (the data set's recipe), as a user would; its wall time (process start to
  exit, so also the interpreter's start and imports) and the time of its epochs
  (with their validation, from ``summary.json``);
* PyTorch (2 threads): the same recipe read from :data:`cnnlab.train.config.RECIPES`
  — the same training images (the same stratified validation split held out and
  evaluated every epoch), LeNet-5, optimizer, learning rate, per-batch schedule
  (``torch.optim.lr_scheduler``), label smoothing, batch size and epochs, and the same
  augmentation: each batch's affine matrices drawn by cnnlab's ``RandomAffine`` from a
  generator seeded as the training loop seeds it, applied with
  ``torch.nn.functional.affine_grid`` + ``grid_sample`` (bilinear, the background
  filled with normalised black). Its wall time covers data loading, the epochs with
  their validation and the test evaluation (not the interpreter start and imports),
  its epoch time the epochs with their validation.

Both report accuracy on the data folder's ``t10k`` split. The machine's load average
is printed beside each line: on a shared machine the times move with it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import THREADS, environment  # beside this script
from lenet_bench import torch_lenet5


def torch_schedule(name: str, opt: torch.optim.Optimizer, total: int, warmup: int) -> object:
    """``cnnlab.optim.lr_scheduler.build_schedule``'s schedules, in torch."""
    S = torch.optim.lr_scheduler
    main_steps = total - warmup
    if name == "onecycle":
        return S.OneCycleLR(opt, max_lr=opt.param_groups[0]["lr"], total_steps=total)
    if name == "cosine":
        main: object = S.CosineAnnealingLR(opt, T_max=main_steps)
    elif name == "step":
        marks = [warmup + round(main_steps * f) for f in (0.5, 0.75)]
        main = S.MultiStepLR(opt, milestones=[m - warmup for m in marks], gamma=0.1)
    else:
        main = S.ConstantLR(opt, factor=1.0, total_iters=0)
    if not warmup:
        return main
    warm = S.LinearLR(opt, start_factor=0.01, end_factor=1.0, total_iters=warmup)
    return S.SequentialLR(opt, [warm, main], milestones=[warmup])


def torch_run(data_dir: str, seed: int) -> dict[str, float]:
    """Train the recipe in PyTorch; returns seconds and test accuracy."""
    from cnnlab.data import dataset_info, load_dataset, split_validation
    from cnnlab.train.config import RECIPES, augmentation
    from cnnlab.train.run import VAL_SPLIT_SEED

    recipe = RECIPES["mnist"]
    torch.set_num_threads(THREADS)
    torch.manual_seed(seed)
    start = time.perf_counter()
    whole = load_dataset("mnist", "train", data_dir)
    test = load_dataset("mnist", "test", data_dir)
    train, val = split_validation(whole, 0.1, seed=VAL_SPLIT_SEED)
    x_train, y_train = torch.tensor(train.images), torch.tensor(train.labels)
    transform = augmentation("mnist") if recipe.augment else None
    info = dataset_info("mnist")
    black = -info.mean / info.std
    model = torch_lenet5()
    opt_class = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    opt = opt_class[recipe.optimizer](
        model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay
    )
    batch = recipe.batch_size
    steps = math.ceil(len(train) / batch)
    sched = torch_schedule(
        recipe.schedule, opt, recipe.epochs * steps, max(0, round(recipe.warmup * steps))
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)

    def accuracy(images: np.ndarray, labels: np.ndarray) -> float:
        model.eval()
        with torch.no_grad():
            predicted = model(torch.tensor(images)).argmax(1).numpy()
        model.train()
        return float((predicted == labels).mean())

    started = time.perf_counter()
    for epoch in range(recipe.epochs):
        order = torch.tensor(np.random.default_rng([seed, epoch]).permutation(len(train)))
        for step in range(steps):
            index = order[step * batch : (step + 1) * batch]
            x, y = x_train[index], y_train[index]
            if transform is not None:
                rng = np.random.default_rng([0xA06, seed, epoch, step])
                theta = torch.tensor(transform.sample_matrices(len(x), 28, 28, rng), dtype=x.dtype)
                grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
                x = torch.nn.functional.grid_sample(x - black, grid, align_corners=False) + black
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
            sched.step()  # type: ignore[attr-defined]
        accuracy(val.images, val.labels)  # as cnnlab validates each epoch
    train_seconds = time.perf_counter() - started
    acc = accuracy(test.images, test.labels)
    return {
        "seconds": time.perf_counter() - start,
        "train_seconds": train_seconds,
        "accuracy": acc,
    }


def cnnlab_run(data_dir: str, seed: int) -> dict[str, float]:
    """``cnnlab train`` with the recipe's defaults, timed as a user would time it."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        command = [sys.executable, "-m", "cnnlab", "train", "--dataset", "mnist"]
        command += ["--model", "lenet5", "--data-dir", data_dir, "--seed", str(seed)]
        command += ["--out", str(out), "--no-progress"]
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        summary = json.loads((out / "summary.json").read_text())
    return {
        "seconds": wall,
        "train_seconds": summary["train_seconds"],
        "accuracy": summary["test_accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(Path("../shared/data/mnist-sample")))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", choices=("cnnlab", "torch"), help="run one side only")
    args = parser.parse_args()
    data_dir = str(Path(args.data_dir).resolve())
    for line in environment():
        print(line)
    from cnnlab.train.config import RECIPES

    print(f"recipe: {RECIPES['mnist']}")
    print("| seed | side | wall s | train s | t10k accuracy | load (1 min) |")
    print("|---|---|---|---|---|---|")
    results: dict[str, list[dict[str, float]]] = {"cnnlab": [], "torch": []}
    for seed in args.seeds:
        for side, fn in (("cnnlab", cnnlab_run), ("torch", torch_run)):
            if args.only and side != args.only:
                continue
            time.sleep(0.3)
            r = fn(data_dir, seed)
            results[side].append(r)
            train_s = f"{r['train_seconds']:.1f}"
            print(
                f"| {seed} | {side} | {r['seconds']:.1f} | {train_s} | {r['accuracy']:.2%} | "
                f"{os.getloadavg()[0]:.1f} |",
                flush=True,
            )
    for side, rows in results.items():
        if rows:
            acc = np.mean([r["accuracy"] for r in rows])
            secs = np.mean([r["seconds"] for r in rows])
            print(f"{side}: mean t10k accuracy {acc:.2%}, mean wall time {secs:.1f} s")
    if results["cnnlab"] and results["torch"]:
        for key, what in (("seconds", "wall"), ("train_seconds", "epochs")):
            ratio = np.mean([r[key] for r in results["cnnlab"]]) / np.mean(
                [r[key] for r in results["torch"]]
            )
            print(f"time ratio cnnlab / PyTorch ({what}): {ratio:.2f}")


if __name__ == "__main__":
    main()
