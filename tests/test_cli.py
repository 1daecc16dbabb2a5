"""The command line, driven as a user would: train, eval, predict, help."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from clihelp import cnnlab


def test_help_and_version(tmp_path):
    proc = cnnlab("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for command in ("train", "eval", "predict", "gradcheck", "explain", "download"):
        assert command in proc.stdout
        sub = cnnlab(command, "--help", cwd=tmp_path)
        assert sub.returncode == 0, (command, sub.stderr)
    import cnnlab as pkg

    assert cnnlab("--version", cwd=tmp_path).stdout.strip() == f"cnnlab {pkg.__version__}"


def test_console_script_is_installed(tmp_path):
    exe = Path(sys.executable).with_name("cnnlab")
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("cnnlab ")


def _draw_digit(path, size=(90, 130)):
    img = Image.new("L", size, color=255)
    draw = ImageDraw.Draw(img)
    w, h = size
    draw.line([(w * 0.5, h * 0.15), (w * 0.5, h * 0.85)], fill=0, width=max(3, w // 9))
    img.save(path)


def test_default_train_reaches_97_percent_then_eval_and_predict(tmp_path):
    """The README's main job: `cnnlab train` with no options (< 60 s, >= 97 %)."""
    proc = cnnlab("train", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "runs" / "digits-digits_cnn"
    with open(run / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"]) / 5  # it learns
    assert float(rows[-1]["val_acc"]) >= 0.9  # the held-out tenth of the training split
    assert sum(float(r["seconds"]) for r in rows) < 60
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_accuracy"] >= 0.97 and summary["test_images"] == 359
    assert f"test accuracy {summary['test_accuracy']:.2%}" in proc.stdout

    ev = cnnlab("eval", "--checkpoint", str(run / "model.safetensors"), "--json", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    report = json.loads(ev.stdout)
    assert report["n"] == 359 and report["dataset"] == "digits"
    assert abs(report["accuracy"] - summary["test_accuracy"]) < 1e-12
    confusion = np.array(report["confusion"])
    assert confusion.sum() == 359 and np.trace(confusion) / 359 == report["accuracy"]

    text = cnnlab("eval", "--checkpoint", str(run / "model.safetensors"), cwd=tmp_path)
    assert "per-class accuracy" in text.stdout and "confusion matrix" in text.stdout

    _draw_digit(tmp_path / "one.png")
    pred = cnnlab(
        "predict",
        "--checkpoint",
        str(run / "model.safetensors"),
        str(tmp_path / "one.png"),
        "--json",
        cwd=tmp_path,
    )
    assert pred.returncode == 0, pred.stderr
    answer = json.loads(pred.stdout)
    assert answer["prediction"] in [str(i) for i in range(10)]
    assert abs(sum(t["probability"] for t in answer["top"]) - 1) < 0.5  # top-3 of 10


def test_resume_through_the_cli_gives_the_straight_run(tmp_path):
    common = ("--no-progress", "--seed", "5", "--batch-size", "128")
    assert cnnlab("train", "--epochs", "2", "--out", "a", *common, cwd=tmp_path).returncode == 0
    assert cnnlab("train", "--epochs", "1", "--out", "b", *common, cwd=tmp_path).returncode == 0
    proc = cnnlab("train", "--epochs", "2", "--out", "b", "--resume", *common, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    from safetensors.numpy import load_file

    a = load_file(str(tmp_path / "a" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_gradcheck_command_for_every_layer(tmp_path):
    for layer in ("conv", "linear", "maxpool", "avgpool"):
        proc = cnnlab("gradcheck", "--layer", layer, "--stride", "2", cwd=tmp_path)
        assert proc.returncode == 0, (layer, proc.stdout, proc.stderr)
        assert "PASSED" in proc.stdout
    proc = cnnlab(
        "gradcheck",
        "--layer",
        "conv",
        "--input",
        "5x7",
        "--kernel",
        "3x2",
        "--stride",
        "2",
        "--padding",
        "3",
        "--dilation",
        "2",
        cwd=tmp_path,
    )
    assert proc.returncode == 0 and "PASSED" in proc.stdout, proc.stdout + proc.stderr
