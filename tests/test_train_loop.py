"""The loop and its callbacks, alone and in ``fit``: events, control flow, resumable
callback state, the validation split, keep-best and the NaN guard's state check."""

from __future__ import annotations

import csv
import json
import os
import signal
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors.numpy import load_file

from cnnlab import nn, optim
from cnnlab.data import DataLoader, load_dataset, split_validation
from cnnlab.errors import TrainingError, TrainingInterrupted
from cnnlab.train import Callback, CancelFit, TrainConfig, Trainer, fit
from cnnlab.train.loop import EVENTS


def _tiny(seed=0, n=10, batch=4):
    rng = np.random.default_rng(seed)
    data = SimpleNamespace(
        images=rng.standard_normal((n, 1, 2, 3)).astype(np.float64),
        labels=rng.integers(0, 3, n),
    )
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 3, dtype=np.float64, rng=rng))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, opt, DataLoader(data, batch_size=batch, seed=seed)


class Log(Callback):
    def __init__(self, order=0, tag=""):
        self.order, self.tag, self.events = order, tag, []

    def __getattribute__(self, name):
        if name in EVENTS:
            return lambda t: self.events.append((self.tag, name, t.epoch, t.step))
        return super().__getattribute__(name)


# __getattribute__ hides the overrides from the Trainer's "is it overridden?" test
for _event in EVENTS:
    setattr(Log, _event, lambda self, t: None)


def test_the_loop_is_the_lessons_cycle_and_fires_its_events_in_order():
    model, opt, loader = _tiny()
    log = Log()
    Trainer(model, nn.CrossEntropyLoss(), opt, loader, [log]).fit(2)

    # the oracle: the cycle written out by hand on a twin
    twin, twin_opt, _ = _tiny()
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(2):
        for x, y in loader.epoch_batches(epoch):
            twin_opt.zero_grad()
            loss_fn(twin(x), y)
            twin.backward(loss_fn.backward())
            twin_opt.step()
    for (name, p), (_, q) in zip(model.named_parameters(), twin.named_parameters()):
        assert np.array_equal(p.data, q.data), name

    names = [e[1] for e in log.events]
    batch = ["before_batch", "after_loss", "after_backward", "after_step"]
    epoch = ["before_epoch", *batch * 3, "after_epoch"]  # 10 samples, batches of 4
    assert names == ["before_fit", *epoch, *epoch, "after_fit", "teardown"]
    assert [e[2:] for e in log.events if e[1] == "after_step"][:3] == [(0, 1), (0, 2), (0, 3)]
    assert [e[2:] for e in log.events if e[1] == "after_epoch"] == [(1, 0), (2, 0)]


def test_callbacks_run_by_order_then_as_given():
    model, opt, loader = _tiny()
    cbs = [Log(5, "late"), Log(-5, "early"), Log(0, "a"), Log(0, "b")]
    seen = []
    for cb in cbs:
        cb.events = seen
    Trainer(model, nn.CrossEntropyLoss(), opt, loader, cbs).fit(1)
    assert [tag for tag, name, *_ in seen if name == "before_fit"] == ["early", "a", "b", "late"]


class StopAt(Callback):
    def __init__(self, step, error):
        self.step, self.error, self.seen = step, error, []

    def after_step(self, t):
        if t.step == self.step:
            raise self.error

    def after_fit(self, t):
        self.seen.append("after_fit")

    def on_interrupt(self, t):
        self.seen.append(("on_interrupt", t.interrupted))

    def teardown(self, t):
        self.seen.append("teardown")


def test_cancel_fit_ends_training_and_after_fit_still_runs():
    model, opt, loader = _tiny()
    stop = StopAt(2, CancelFit())
    trainer = Trainer(model, nn.CrossEntropyLoss(), opt, loader, [stop])
    trainer.fit(3)
    assert (trainer.epoch, trainer.step) == (0, 2)
    assert stop.seen == ["after_fit", "teardown"]


def test_an_interruption_reaches_on_interrupt_then_propagates():
    model, opt, loader = _tiny()
    error = TrainingInterrupted("stop", "", signal.SIGTERM)
    stop = StopAt(1, error)
    with pytest.raises(TrainingInterrupted):
        Trainer(model, nn.CrossEntropyLoss(), opt, loader, [stop]).fit(3)
    assert stop.seen == [("on_interrupt", error), "teardown"]
    error.checkpoint = "run/checkpoint.safetensors"
    assert str(error) == "stop; checkpoint written to run/checkpoint.safetensors"


class CancelAt(Callback):
    """Cancel after epoch ``epoch`` or, with ``step``, after that step of it (1-based)."""

    def __init__(self, epoch, step=None):
        self.epoch, self.step = epoch, step

    def after_step(self, t):
        if self.step is not None and (t.epoch + 1, t.step) == (self.epoch, self.step):
            raise CancelFit

    def after_epoch(self, t):
        if self.step is None and t.epoch == self.epoch:
            raise CancelFit


def _same(weights, model):
    assert weights.keys() == model.state_dict().keys()
    for name, value in model.state_dict().items():
        assert np.array_equal(weights[name], value), name


def test_a_cancelled_run_keeps_its_files_in_step_and_can_be_resumed(tmp_path):
    # a callback that runs before the writers cancels after epoch 1: its files still come
    result = fit(_cfg(tmp_path / "a", epochs=3), callbacks=[CancelAt(1)])
    assert len(result.history) == 1
    assert len((tmp_path / "a" / "metrics.csv").read_text().splitlines()) == 2
    _same(load_file(str(tmp_path / "a" / "model.safetensors")), result.model)

    # cancelled in epoch 2: the files hold the model the run ended with, and resuming
    # from its checkpoint ends as an uninterrupted run
    result = fit(_cfg(tmp_path / "b"), callbacks=[CancelAt(2, step=5)])
    _same(load_file(str(tmp_path / "b" / "model.safetensors")), result.model)
    fit(_cfg(tmp_path / "b", resume=True))
    fit(_cfg(tmp_path / "c"))
    _same(
        load_file(str(tmp_path / "b" / "model.safetensors")),
        fit(_cfg(tmp_path / "c", resume=True)).model,
    )


def _cfg(out, **kw):
    base = {"epochs": 2, "batch_size": 32, "seed": 3, "out": str(out), "progress": False}
    base.update(kw, verbose=False)
    return TrainConfig(**base)


class StepCounter(Callback):
    """Counts the steps of the run: its count is resumable state."""

    def __init__(self):
        self.count = 0

    def after_step(self, t):
        self.count += 1

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"]


def test_a_callbacks_state_survives_an_interruption(tmp_path):
    def interrupt(epoch, step, model):
        if epoch == 2 and step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    first = StepCounter()
    with pytest.raises(TrainingInterrupted) as info:
        fit(_cfg(tmp_path / "run"), callbacks=[first], on_step=interrupt)
    assert "checkpoint written to" in str(info.value)
    steps = len(DataLoader(split_validation(load_dataset("digits"), 0.1)[0], 32))
    assert first.count == steps + 5
    second = StepCounter()
    result = fit(_cfg(tmp_path / "run", resume=True), callbacks=[second])
    assert second.count == 2 * steps  # it went on counting from the checkpoint
    assert result.epochs_trained == 1


def test_the_validation_split_is_stratified_disjoint_and_the_same_for_every_seed():
    whole = load_dataset("digits", "train")
    train, val = split_validation(whole, 0.1)
    for c in range(10):
        n_c = int((whole.labels == c).sum())
        assert int((val.labels == c).sum()) == round(0.1 * n_c)
    assert len(train) + len(val) == len(whole)
    rows = {r.tobytes() for r in whole.images}
    val_rows = {r.tobytes() for r in val.images}
    assert val_rows <= rows and not val_rows & {r.tobytes() for r in train.images}
    _, plain_val = split_validation(whole, 0.25, seed=1, stratify=False)
    assert len(plain_val) == round(0.25 * len(whole))
    for bad in (0, 1, 1.5):
        with pytest.raises(ValueError, match="validation fraction"):
            split_validation(whole, bad)


def test_validation_only_each_epoch_and_val_fraction_zero_trains_on_everything(tmp_path):
    result = fit(_cfg(tmp_path / "a", epochs=1, val_fraction=0.2))
    assert {"val_loss", "val_acc", "lr"} <= result.history[0].keys()
    assert "test_acc" not in result.history[0] and result.final.n == 359
    none = fit(_cfg(tmp_path / "b", epochs=1, val_fraction=0))
    assert "val_acc" not in none.history[0]
    header = (tmp_path / "b" / "metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,train_loss,train_acc,lr,seconds,images_per_s"
    with pytest.raises(ValueError, match="--keep best needs a validation split"):
        fit(_cfg(tmp_path / "c", val_fraction=0, keep="best"))


class Snapshots(Callback):
    """The weights after every epoch, as the oracle of what each epoch's model was."""

    def __init__(self):
        self.weights = {}

    def after_epoch(self, t):
        self.weights[t.epoch] = t.model.state_dict()


def test_keep_best_keeps_the_weights_of_the_best_validation_epoch(tmp_path):
    snapshots = Snapshots()
    result = fit(
        _cfg(tmp_path / "best", keep="best", epochs=6, lr=0.01, seed=1), callbacks=[snapshots]
    )
    with open(tmp_path / "best" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    scores = [(float(r["val_acc"]), -float(r["val_loss"])) for r in rows]
    best = 1 + scores.index(max(scores))
    assert best < 6, "pick settings where the last epoch is not the best"
    kept = load_file(str(tmp_path / "best" / "model.safetensors"))
    assert kept.keys() == snapshots.weights[best].keys()
    assert all(np.array_equal(kept[k], snapshots.weights[best][k]) for k in kept)
    for name, p in result.model.named_parameters():  # the returned model is the kept one
        assert np.array_equal(p.data, kept[name]), name
    summary = json.loads((tmp_path / "best" / "summary.json").read_text())
    assert summary["kept_epoch"] == best and summary["test_accuracy"] == result.final.accuracy


def test_a_resumed_epoch_counts_only_its_own_images_per_second(tmp_path):
    steps = len(DataLoader(split_validation(load_dataset("digits"), 0.1)[0], 32))

    def interrupt(epoch, step, model):
        if epoch == 1 and step == steps - 4:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted):
        fit(_cfg(tmp_path / "run"), on_step=interrupt)
    resumed, whole = fit(_cfg(tmp_path / "run", resume=True)).history
    # 4 steps in this process: counting the epoch's 41 would claim ~10x the speed
    assert resumed["images_per_s"] < 3 * whole["images_per_s"], (resumed, whole)


def test_non_finite_optimizer_state_stops_like_a_nan_loss(tmp_path):
    """Adam at lr 1e6: the squared gradients overflow the second moment while the loss
    stays finite; the run must stop, without a RuntimeWarning (pytest turns cnnlab's
    RuntimeWarnings into errors), and keep the last good checkpoint."""
    run = tmp_path / "run"
    fit(_cfg(run, epochs=1))
    before = (run / "checkpoint.safetensors").read_bytes()
    with pytest.raises(TrainingError) as info:
        fit(_cfg(run, epochs=1, lr=1e6, overwrite=True))
    message = str(info.value)
    assert "epoch 1, step" in message and "after the optimizer step" in message
    assert "parameter" in message and "lower --lr" in message and "is kept" in message
    assert (run / "checkpoint.safetensors").read_bytes() == before


def _idx_folder(path, n_train, n_test, seed=0):
    """A folder of 28x28 IDX files in MNIST's layout (random pixels and labels)."""
    from cnnlab.data.idx import write_idx

    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), np.uint8)
        write_idx(path / f"{stem}-images-idx3-ubyte.gz", images)
        write_idx(path / f"{stem}-labels-idx1-ubyte.gz", rng.integers(0, 10, n).astype(np.uint8))
    return path


def _recipe(out, data, **kw):
    """LeNet-5 with BatchNorm, augmentation, OneCycle and label smoothing."""
    return _cfg(
        out,
        **{
            "dataset": "mnist",
            "model": "lenet5_bn",
            "data_dir": str(data),
            "epochs": 3,
            "batch_size": 16,
            "augment": True,
            "schedule": "onecycle",
            "label_smoothing": 0.1,
            "lr": 3e-3,
            **kw,
        },
    )


def test_augmented_batchnorm_onecycle_run_resumes_bit_identically(tmp_path):
    data = _idx_folder(tmp_path / "data", 198, 20)  # 177 to train: a last batch of 1

    def interrupt(epoch, step, model):
        if epoch == 2 and step == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted):
        fit(_recipe(tmp_path / "cut", data), on_step=interrupt)
    cut = fit(_recipe(tmp_path / "cut", data, resume=True))
    whole = fit(_recipe(tmp_path / "whole", data))
    a = load_file(str(tmp_path / "cut" / "model.safetensors"))
    b = load_file(str(tmp_path / "whole" / "model.safetensors"))
    assert any("running_mean" in k for k in a)  # BatchNorm's buffers are compared too
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert [r["lr"] for r in cut.history] == [r["lr"] for r in whole.history]
    png = (tmp_path / "whole" / "augment.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_schedule_steps_every_batch_as_torchs_onecycle(tmp_path):
    import torch

    data = _idx_folder(tmp_path / "data", 100, 10)
    result = fit(_recipe(tmp_path / "run", data, model="lenet5", augment=False))
    steps = len(DataLoader(split_validation(load_dataset("mnist", "train", data), 0.1)[0], 16))
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.Adam([param], lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=3 * steps)
    used = []  # the rate each optimizer step ran at
    for _ in range(3 * steps):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [used[(e + 1) * steps - 1] for e in range(3)]  # each epoch's last step
    assert np.allclose([r["lr"] for r in result.history], expected, rtol=1e-12, atol=0)


def test_a_scheduled_run_resumes_only_to_its_own_length(tmp_path):
    fit(_cfg(tmp_path / "run", epochs=2, schedule="cosine"))
    with pytest.raises(ValueError, match=r"cosine learning-rate schedule .* spans its 2 epochs"):
        fit(_cfg(tmp_path / "run", epochs=3, schedule="cosine", resume=True))
    with pytest.raises(ValueError, match="schedule: checkpoint 'cosine' vs now 'none'"):
        fit(_cfg(tmp_path / "run", epochs=2, schedule="none", resume=True))
    with pytest.raises(ValueError, match="onecycle schedule warms up by itself"):
        fit(_cfg(tmp_path / "x", schedule="onecycle", warmup=1))
