"""``cnnlab train``/``eval`` as a newcomer meets them (issue "What a newcomer hit",
items 3–7): no silently ignored --data-dir, the data folder remembered, honest
resume messages, non-finite optimizer state stopped, --no-progress hides only the bar."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import cnnlab
from clihelp import assert_clean_error
from clihelp import cnnlab as run
from cnnlab.data.idx import write_idx


def _idx_folder(path, n_train, n_test, seed=0):
    """A folder of 28x28 IDX files in MNIST's layout (random pixels and labels)."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            path / f"{stem}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), np.uint8)
        )
        write_idx(path / f"{stem}-labels-idx1-ubyte.gz", rng.integers(0, 10, n).astype(np.uint8))
    return path


@pytest.fixture()
def env(tmp_path, monkeypatch):
    # no download cache to fall back on: a data folder must come from the run or --data-dir
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "empty-cache"))
    return tmp_path


def test_data_dir_without_dataset_is_refused_not_ignored(env):
    data = _idx_folder(env / "data", 64, 16)
    proc = run("train", "--data-dir", str(data), "--no-progress", cwd=env)
    assert_clean_error(proc, 2, "--dataset mnist", "--dataset fashion-mnist")
    assert not (env / "runs").exists()  # nothing was trained on the digits instead
    proc = run("train", "--dataset", "digits", "--data-dir", str(data), cwd=env)
    assert_clean_error(proc, 2, "digits data set is bundled", "drop --data-dir")

    digits_model = env / "digits.safetensors"
    cnnlab.save(cnnlab.models.digits_cnn(), digits_model, metadata={"dataset": "digits"})
    proc = run("eval", "--checkpoint", str(digits_model), "--data-dir", str(data), cwd=env)
    assert_clean_error(proc, 2, "digits data set is bundled", "drop --data-dir")


def test_eval_finds_the_data_the_model_was_trained_on(env):
    _idx_folder(env / "data", 96, 40)
    train = ("train", "--dataset", "mnist", "--model", "lenet5", "--epochs", "1")
    proc = run(*train, "--data-dir", "data", "--out", "run", "--no-progress", cwd=env)
    assert proc.returncode == 0, proc.stderr
    elsewhere = env / "elsewhere"
    elsewhere.mkdir()
    model = str(env / "run" / "model.safetensors")
    proc = run("eval", "--checkpoint", model, "--json", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n"] == 40  # the recorded folder's t10k
    ckpt = str(env / "run" / "checkpoint.safetensors")
    proc = run("eval", "--checkpoint", ckpt, "--json", cwd=elsewhere)
    assert proc.returncode == 0 and json.loads(proc.stdout)["n"] == 40, proc.stderr
    summary = json.loads((env / "run" / "summary.json").read_text())
    assert summary["data_dir"] == str((env / "data").resolve())
    assert summary["test_images"] == 40

    other = _idx_folder(env / "other", 8, 24, seed=1)
    proc = run("eval", "--checkpoint", model, "--data-dir", str(other), "--json", cwd=elsewhere)
    assert json.loads(proc.stdout)["n"] == 24  # an explicit --data-dir wins

    shutil.move(env / "data", env / "moved")
    proc = run("eval", "--checkpoint", model, cwd=elsewhere)
    assert_clean_error(proc, 1, str((env / "data").resolve()), "no longer exists", "--data-dir")


def test_resume_says_what_it_did(env):
    _idx_folder(env / "data", 96, 16)
    common = ("--dataset", "mnist", "--data-dir", "data", "--out", "run", "--no-progress")
    common += ("--schedule", "none")  # a scheduled run cannot grow: the schedule spans it
    proc = run("train", *common, "--epochs", "1", cwd=env)
    assert proc.returncode == 0, proc.stderr
    assert "after 1 epoch," in proc.stdout

    proc = run("train", *common, "--epochs", "2", "--resume", cwd=env)
    assert proc.returncode == 0, proc.stderr
    assert "after 2 epochs (1 in this run)," in proc.stdout

    proc = run("train", *common, "--epochs", "2", "--resume", cwd=env)
    assert proc.returncode == 0, proc.stderr
    assert "already complete at 2 epochs; nothing was trained" in proc.stdout
    assert proc.stderr == ""  # no epoch ran

    before = (env / "run" / "checkpoint.safetensors").read_bytes()
    proc = run("train", *common, "--epochs", "1", "--resume", cwd=env)
    assert_clean_error(proc, 2, "already holds 2 finished epochs", "--epochs 2 or more")
    assert (env / "run" / "checkpoint.safetensors").read_bytes() == before


def test_no_progress_hides_the_bar_not_the_line_per_epoch(env):
    _idx_folder(env / "data", 96, 16)
    args = ("--dataset", "mnist", "--data-dir", "data", "--epochs", "2", "--no-progress")
    proc = run("train", *args, cwd=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["epoch 1/2", "epoch 2/2"], proc.stderr
    assert all("train loss" in ln and "val loss" in ln for ln in lines)
    assert "batch/s" not in proc.stderr and "%|" not in proc.stderr


def test_adam_overflow_stops_the_run_without_a_raw_warning(env):
    proc = run("train", "--lr", "1e6", "--out", "big", "--no-progress", cwd=env)
    assert_clean_error(proc, 1, "epoch 1, step", "after the optimizer step", "lower --lr")
    assert "Warning" not in proc.stderr and "accuracy" not in proc.stdout


def test_recipe_flags(env):
    _idx_folder(env / "data", 96, 16)
    common = ("--dataset", "mnist", "--data-dir", "data", "--epochs", "2", "--no-progress")
    proc = run(
        "train", *common, "--augment", "--schedule", "cosine", "--warmup", "0.5",
        "--label-smoothing", "0.1", "--model", "lenet5_bn", "--out", "a", cwd=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (env / "a" / "augment.png").is_file() and "augment.png" in proc.stdout
    config = json.loads((env / "a" / "summary.json").read_text())["config"]
    assert (config["augment"], config["schedule"], config["warmup"]) == (True, "cosine", 0.5)
    assert (config["label_smoothing"], config["model"]) == (0.1, "lenet5_bn")
    proc = run("train", *common, "--no-augment", "--schedule", "none", "--out", "b", cwd=env)
    assert proc.returncode == 0 and not (env / "b" / "augment.png").exists(), proc.stderr
    for args, fragment in (
        (("--schedule", "onecycle", "--warmup", "1"), "warms up by itself"),
        (("--workers", "2"), "mpiexec -n N cnnlab train"),
        (("--label-smoothing", "1"), "--label-smoothing must be in [0, 1)"),
        (("--schedule", "linear"), "invalid choice: 'linear'"),
        (("--warmup", "2"), "leaves nothing of a 2-epoch run"),
    ):
        assert_clean_error(run("train", *common, *args, "--out", "c", cwd=env), 2, fragment)
