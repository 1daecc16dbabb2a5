"""The recipes that generalise: ``cnnlab train`` with no options but the data set.

Slow: each trains for real. Times are asserted against 60 s on this 2-core machine,
scaled by its load (with L busy processes a process gets about 2/L of the CPU), and
printed with the load, so a shared machine does not fail an honest run.
"""

from __future__ import annotations

import gzip
import json
import os
import time

import numpy as np
import pytest

import cnnlab
from clihelp import cnnlab as run

FASHION = "/usr/share/datasets/fashion-mnist"


def _train(tmp_path, name, *args):
    start = time.perf_counter()
    proc = run("train", *args, "--out", name, "--no-progress", cwd=tmp_path, timeout=1800)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / name / "summary.json").read_text())
    return summary, wall


@pytest.mark.slow
def test_mnist_sample_recipe_reaches_98_5_percent_within_a_minute(tmp_path, mnist_sample_dir):
    accuracies = []
    for seed in (0, 1, 2):
        summary, wall = _train(
            tmp_path, f"s{seed}", "--model", "lenet5", "--dataset", "mnist",
            "--data-dir", str(mnist_sample_dir), "--seed", str(seed),
        )  # fmt: skip
        load = os.getloadavg()[0]
        print(
            f"mnist-sample recipe, seed {seed}: t10k {summary['test_accuracy']:.2%} "
            f"in {wall:.1f} s (epochs {summary['train_seconds']:.1f} s), load {load:.1f}"
        )
        assert summary["test_images"] == 2000
        assert wall <= 60 * max(1.0, load / 2), (wall, load)
        accuracies.append(summary["test_accuracy"])
    print(f"mean t10k accuracy {np.mean(accuracies):.2%}")
    assert np.mean(accuracies) >= 0.985
    _predicts_real_digits_drawn_as_photos(
        cnnlab.load(tmp_path / "s0" / "model.safetensors"), mnist_sample_dir, tmp_path
    )


def _predicts_real_digits_drawn_as_photos(model, data_dir, tmp_path):
    """Test digits saved as dark-on-white PNGs of another size still read right."""
    from PIL import Image

    from cnnlab.data.images import load_image

    raw = gzip.decompress((data_dir / "t10k-images-idx3-ubyte.gz").read_bytes())
    images = np.frombuffer(raw[16:], np.uint8).reshape(-1, 28, 28)[:50]
    raw = gzip.decompress((data_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    labels = np.frombuffer(raw[8:], np.uint8)[:50]
    model.eval()
    right = 0
    for i, (image, label) in enumerate(zip(images, labels)):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(255 - image).resize((120, 90)).save(path)
        right += int(model(load_image(path, "mnist")).argmax() == label)
    assert right >= 45, f"{right}/50 photos of test digits recognised"


@pytest.mark.slow
def test_fashion_mnist_recipe_reaches_91_percent(tmp_path):
    assert os.path.isdir(FASHION), "install it: apt-get install -y dataset-fashion-mnist"
    results = {}
    for model in ("lenet5", "lenet5_bn"):
        summary, wall = _train(tmp_path, model, "--dataset", "fashion-mnist", "--model", model)
        results[model] = summary["test_accuracy"]
        print(
            f"fashion-mnist recipe, {model}: test {summary['test_accuracy']:.2%} "
            f"({summary['test_images']} images) in {wall:.0f} s, "
            f"load {os.getloadavg()[0]:.1f}"
        )
        assert summary["test_images"] == 10000
    assert max(results.values()) >= 0.91, results
