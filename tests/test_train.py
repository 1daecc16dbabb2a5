"""The training loop: files, determinism, resume (between and within epochs), NaN, signals."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
from safetensors.numpy import load_file

from cnnlab.errors import TrainingError, TrainingInterrupted
from cnnlab.train import TrainConfig, fit


def _weights(run_dir):
    return load_file(str(run_dir / "model.safetensors"))


def _same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), k


def _cfg(out, **kw):
    base = {
        "dataset": "digits",
        "epochs": 2,
        "batch_size": 32,
        "seed": 3,
        "out": str(out),
        "progress": False,
    }
    base.update(kw)
    return TrainConfig(**base)


def test_one_epoch_writes_every_file(tmp_path):
    result = fit(_cfg(tmp_path / "run", epochs=1))
    for name in (
        "model.safetensors",
        "checkpoint.safetensors",
        "metrics.csv",
        "curves.png",
        "confusion.png",
        "summary.json",
    ):
        path = tmp_path / "run" / name
        assert path.is_file() and path.stat().st_size > 0, name
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert rows[0] == "epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds,images_per_s"
    assert len(rows) == 2
    assert 0 < result.final.accuracy <= 1 and result.final.n == 359
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test_accuracy"] == result.final.accuracy and summary["test_images"] == 359


def test_resume_after_an_epoch_equals_a_straight_run(tmp_path):
    fit(_cfg(tmp_path / "straight", epochs=2))
    fit(_cfg(tmp_path / "split", epochs=1))
    fit(_cfg(tmp_path / "split", epochs=2, resume=True))
    _same_weights(tmp_path / "straight", tmp_path / "split")


def test_interruption_mid_epoch_then_resume_equals_a_straight_run(tmp_path):
    def interrupt(epoch, step, model):
        if epoch == 1 and step == 17:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as info:
        fit(_cfg(tmp_path / "cut"), on_step=interrupt)
    assert info.value.signal_number == signal.SIGINT
    assert not (tmp_path / "cut" / "model.safetensors").exists()  # no epoch finished
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    fit(_cfg(tmp_path / "cut", resume=True))
    fit(_cfg(tmp_path / "whole"))
    _same_weights(tmp_path / "cut", tmp_path / "whole")


def test_nan_stops_with_step_and_layer_and_keeps_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    fit(_cfg(run, epochs=1))
    before = (run / "checkpoint.safetensors").read_bytes()
    model_before = (run / "model.safetensors").read_bytes()

    def poison(epoch, step, model):  # a weight of the second convolution turns NaN
        if epoch == 2 and step == 3:
            model[3].weight.data[0, 0, 0, 0] = np.nan

    with pytest.raises(TrainingError, match=r"epoch 2, step 4.*layer 3 \(Conv2d\)"):
        fit(_cfg(run, epochs=3, resume=True), on_step=poison)
    assert (run / "checkpoint.safetensors").read_bytes() == before
    assert (run / "model.safetensors").read_bytes() == model_before


def test_configuration_errors_come_before_training(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        fit(_cfg(tmp_path / "a", dataset="cifar"))
    with pytest.raises(ValueError, match="takes images of shape"):
        fit(_cfg(tmp_path / "a", model="lenet5"))
    with pytest.raises(ValueError, match="nothing to resume"):
        fit(_cfg(tmp_path / "a", resume=True))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="cannot write to the output directory"):
        fit(_cfg(blocker / "run"))
    fit(_cfg(tmp_path / "b", epochs=1))
    with pytest.raises(ValueError, match="already holds a training run"):
        fit(_cfg(tmp_path / "b", epochs=1))
    with pytest.raises(ValueError, match="batch_size: checkpoint 32 vs now 16"):
        fit(_cfg(tmp_path / "b", epochs=2, batch_size=16, resume=True))
