"""Kill test: SIGINT/SIGTERM a training process mid-epoch, resume it, and compare the
final weights with an uninterrupted run of the same seed: identical — with data
augmentation (a generator per batch) and a OneCycle schedule (its position in the
checkpoint) switched on. (Several MPI ranks: ``test_distributed.py``.)"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

ARGS = (
    "--dataset",
    "mnist",
    "--epochs",
    "3",
    "--batch-size",
    "16",
    "--seed",
    "11",
    "--augment",
    "--schedule",
    "onecycle",
    "--label-smoothing",
    "0.1",
    "--no-progress",
)


def _train(cwd, data_dir, out, *extra):
    return [
        sys.executable,
        "-m",
        "cnnlab",
        "train",
        *ARGS,
        "--data-dir",
        str(data_dir),
        "--out",
        out,
        *extra,
    ]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_kill_mid_epoch_then_resume_is_bit_identical(tmp_path, mnist_like_dir, sig):
    def train(out, *extra):
        return _train(tmp_path, mnist_like_dir, out, *extra)

    proc = subprocess.Popen(train("cut"), cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "cut" / "checkpoint.safetensors"
    deadline = time.monotonic() + 240
    while not ckpt.exists():  # the first epoch's checkpoint: we are now in epoch 2
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)  # inside epoch 2 (an epoch of 375 steps takes longer)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    with safe_open(str(ckpt), "np") as fh:
        meta = fh.metadata()
    assert int(meta["epoch"]) >= 1 and int(meta["step"]) > 0, meta  # stopped mid-epoch
    assert len(json.loads(meta["history"])) == int(meta["epoch"])

    resumed = subprocess.run(
        train("cut", "--resume"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    whole = subprocess.run(
        train("whole"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert whole.returncode == 0, whole.stderr
    a = load_file(str(tmp_path / "cut" / "model.safetensors"))
    b = load_file(str(tmp_path / "whole" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    lr = [(tmp_path / run / "metrics.csv").read_text().splitlines() for run in ("cut", "whole")]
    assert [row.split(",")[5] for row in lr[0]] == [row.split(",")[5] for row in lr[1]]
    assert (tmp_path / "cut" / "augment.png").is_file()
