"""DataParallel: the batch split over processes gives PyTorch's results, step after step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab import models, nn, optim
from cnnlab.parallel import DataParallel
from test_models import _torch_lenet5


def _twins(seed=0):
    rng = np.random.default_rng(seed)
    model = models.lenet5(dtype=np.float64, rng=rng)
    twin = _torch_lenet5()
    twin.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    return model, twin


@pytest.mark.parametrize("workers,batch", [(2, 6), (3, 7), (4, 3), (2, 1)])
def test_forward_backward_equal_torch_for_any_split(workers, batch):
    model, twin = _twins()
    runner = DataParallel(model, workers)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, 1, 28, 28))
    dy = rng.standard_normal((batch, 10))
    tx = torch.tensor(x, requires_grad=True)
    ty = twin(tx)
    ty.backward(torch.tensor(dy))
    model.zero_grad()
    y = runner(x)
    dx = runner.backward(dy)
    assert np.abs(y - ty.detach().numpy()).max() < 1e-12
    assert dx is not None and np.abs(dx - tx.grad.numpy()).max() < 1e-12
    for name, p in model.named_parameters():
        ref = dict(twin.named_parameters())[name].grad.numpy()
        assert np.abs(p.grad - ref).max() <= 1e-11 * max(1, np.abs(ref).max()), name


def test_training_steps_follow_torch_and_the_first_layer_may_skip_dx():
    model, twin = _twins(seed=2)
    model[0].needs_input_grad = False
    runner = DataParallel(model, 2)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    topt = torch.optim.Adam(twin.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(3)
    for _ in range(4):  # the replicas must see every update of the shared weights
        x, y = rng.standard_normal((9, 1, 28, 28)), rng.integers(0, 10, 9)
        model.zero_grad()
        loss = loss_fn(runner(x), y)
        assert runner.backward(loss_fn.backward()) is None
        opt.step()
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(twin(torch.tensor(x)), torch.tensor(y))
        tloss.backward()
        topt.step()
        assert abs(loss - tloss.item()) < 1e-12
    for name, p in model.named_parameters():
        ref = dict(twin.named_parameters())[name].detach().numpy()
        assert np.abs(p.data - ref).max() < 1e-10, name


def test_a_model_converted_between_steps_and_a_growing_batch_still_match():
    model = models.lenet5(dtype=np.float32)
    runner = DataParallel(model, 2)
    rng = np.random.default_rng(5)
    runner(rng.standard_normal((4, 1, 28, 28)).astype(np.float32))
    model.astype(np.float64)  # new parameter arrays, twice the bytes: new shared blocks
    twin = _torch_lenet5()
    twin.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    x, dy = rng.standard_normal((10, 1, 28, 28)), rng.standard_normal((10, 10))
    model.zero_grad()
    y = runner(x)
    runner.backward(dy)
    tx = torch.tensor(x)
    ty = twin(tx)
    ty.backward(torch.tensor(dy))
    assert np.abs(y - ty.detach().numpy()).max() < 1e-12
    for name, p in model.named_parameters():
        ref = dict(twin.named_parameters())[name].grad.numpy()
        assert np.abs(p.grad - ref).max() <= 1e-11 * max(1, np.abs(ref).max()), name
    runner.close()


def test_eval_mode_and_dropout_are_reproducible():
    def run():
        rng = np.random.default_rng(4)
        model = nn.Sequential(
            nn.Flatten(), nn.Linear(4, 8, dtype=np.float64, rng=rng), nn.Dropout(0.5, rng=rng)
        )
        runner = DataParallel(model, 2)
        x = np.ones((6, 4))
        train_out = runner(x)
        model.eval()
        return train_out, runner(x), model(x)

    first, second = run(), run()
    np.testing.assert_array_equal(first[0], second[0])  # same seeds, same masks
    assert not np.array_equal(first[0][:3], first[0][3:])  # each slice its own mask
    np.testing.assert_array_equal(first[1], first[2])  # eval: no dropout, same as model


def test_workers_end_with_close_and_a_dead_worker_is_reported():
    model = models.lenet5(dtype=np.float64)
    x = np.zeros((4, 1, 28, 28))
    with DataParallel(model, 2) as runner:
        runner(x)
        (worker,) = runner._processes
        assert worker.is_alive()
    worker.join(timeout=10)
    assert not worker.is_alive()
    runner = DataParallel(model, 2)
    runner(x)
    runner._processes[0].kill()
    runner._processes[0].join(timeout=10)
    with pytest.raises(RuntimeError, match="worker process ended unexpectedly"):
        runner(x)
    runner.close()


def test_bad_use_is_refused():
    model = models.lenet5(dtype=np.float64)
    with pytest.raises(ValueError, match="workers"):
        DataParallel(model, 0)
    with pytest.raises(ValueError, match="Module"):
        DataParallel(lambda x: x)  # type: ignore[arg-type]
    runner = DataParallel(model, 2)
    with pytest.raises(ValueError, match="before forward"):
        runner.backward(np.zeros((2, 10)))
    runner(np.zeros((4, 1, 28, 28)))
    with pytest.raises(ValueError, match="batch size of the last forward pass"):
        runner.backward(np.zeros((3, 10)))
    with pytest.raises(ValueError, match="channels"):  # a worker's error reaches the caller
        runner(np.zeros((4, 2, 28, 28)))


def test_batchnorm_in_training_is_refused_and_runs_in_parallel_in_eval_mode():
    model = models.lenet5_bn(dtype=np.float64, rng=np.random.default_rng(6))
    with pytest.raises(ValueError, match=r"layer 1 \(BatchNorm2d\).*--workers 1"):
        DataParallel(model, 2)  # refused before any worker starts
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 1, 28, 28))
    single = DataParallel(model, 1)  # one process: the model itself, batch statistics
    single(x)
    single.backward(np.ones((5, 10)))
    assert int(model[1].num_batches_tracked) == 1
    model.eval()  # running statistics: every sample on its own, as any layer
    runner = DataParallel(model, 2)
    np.testing.assert_allclose(runner(x), model(x), rtol=0, atol=1e-12)
    model.train()
    model(x)  # the running statistics move after the worker was forked...
    model.eval()
    np.testing.assert_allclose(runner(x), model(x), rtol=0, atol=1e-12)  # ...and follow
    model.train()
    with pytest.raises(ValueError, match="batch's statistics"):
        runner(x)  # switched back to training after construction: refused too
    stateless = nn.Sequential(nn.BatchNorm1d(3, track_running_stats=False)).eval()
    with pytest.raises(ValueError, match=r"layer 0 \(BatchNorm1d\)"):
        DataParallel(stateless, 2)  # without running statistics eval uses the batch's too
    runner.close()
