"""Data-parallel training over MPI: ``mpiexec -n 2 cnnlab train`` on this machine (two
ranks over loopback) against a one-process run of the same settings.

The oracle is the one-process run (the loop of ``test_train.py``, itself checked
against PyTorch elsewhere): two ranks must end with its float64 weights within 1e-9
(summation order is the only difference) and its float32 weights within float
rounding. A signal to one rank must stop both after the same step with one message
and a checkpoint, a rank killed outright must end the job with mpiexec's report,
and both runs, resumed (with another number of ranks too), must end where the
uninterrupted run ends. ``mpiexec`` comes with the ``mpich`` wheel of the test extra;
without it these tests fail (they are not skipped).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from cnnlab.distributed import LOCAL, env_rank, env_world_size, shard_bounds, world
from cnnlab.train import TrainConfig, fit

#: float64: two ranks add the same products in another order (measured: ~1e-16)
F64_TOLERANCE = 1e-9
#: float32 after one epoch of 36 steps: rounding of the sums (measured: ~1e-7)
F32_TOLERANCE = 1e-5

SETTINGS = {
    "dataset": "digits",
    "epochs": 2,
    "batch_size": 45,  # 23 + 22 images on two ranks: uneven shards
    "seed": 5,
    "augment": True,
    "schedule": "onecycle",
    "label_smoothing": 0.1,
}


def _args(**overrides):
    settings = {**SETTINGS, **overrides}
    args = ["--no-progress"]
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        args += [flag] if value is True else [flag, str(value)]
    return args


def _mpiexec() -> str:
    """MPICH's mpiexec, installed beside this Python by the ``mpich`` wheel."""
    path = Path(sys.executable).parent / "mpiexec"
    if not path.is_file():
        pytest.fail(
            f"no mpiexec at {path}: the MPI tests need the mpich wheel of the test "
            "extra (pip install -e '.[test]', or pip install 'cnnlab[mpi]')"
        )
    return str(path)


def _launch(tmp_path, ranks, out, *extra, tag="", **overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_"))}
    env["CNNLAB_TEST_TAG"] = tag
    command = [_mpiexec(), "-n", str(ranks), sys.executable, "-m", "cnnlab", "train"]
    command += [*_args(**overrides), "--out", str(out), *extra]
    return subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _run(tmp_path, ranks, out, *extra, **overrides):
    proc = _launch(tmp_path, ranks, out, *extra, **overrides)
    stdout, stderr = proc.communicate(timeout=300)
    return proc.returncode, stdout, stderr


def _rank_pid(tag: str, rank: int, timeout: float = 60) -> int:
    """The process id of ``rank`` of the job whose environment carries ``tag``."""
    deadline = time.monotonic() + timeout
    wanted = {f"CNNLAB_TEST_TAG={tag}".encode(), f"PMI_RANK={rank}".encode()}
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = set((entry / "environ").read_bytes().split(b"\0"))
            except OSError:  # gone, or not ours
                continue
            if wanted <= environ:
                return int(entry.name)
        time.sleep(0.05)
    raise AssertionError(f"rank {rank} of the MPI job never appeared")


def _wait_for(path: Path, proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} was never written"
        time.sleep(0.02)


def _weights(run_dir: Path) -> dict[str, np.ndarray]:
    return load_file(str(run_dir / "model.safetensors"))


def _max_difference(a: Path, b: Path) -> float:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    return max(float(np.abs(wa[k].astype(np.float64) - wb[k]).max()) for k in wa)


def _fit(out: Path, **overrides):
    return fit(TrainConfig(**{**SETTINGS, **overrides}, out=str(out), progress=False))


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The oracle: the same settings trained in this process (no MPI)."""
    out = tmp_path_factory.mktemp("one") / "run"
    result = _fit(out, dtype="float64")
    assert "mpi4py" not in sys.modules  # a one-process run does not need it
    return out, result


# -- without MPI -------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("batch", [0, 1, 2, 5, 45, 64])
def test_shards_are_array_split_slices(batch, size):
    expected = np.array_split(np.arange(batch), size)
    for rank in range(size):
        lo, hi = shard_bounds(batch, size, rank)
        assert np.array_equal(np.arange(batch)[lo:hi], expected[rank]), (batch, size, rank)


def test_one_process_is_the_local_world(monkeypatch):
    for name in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert (env_world_size(), env_rank()) == (1, 0)
    assert world() is LOCAL and (LOCAL.rank, LOCAL.size, LOCAL.agree(7)) == (0, 1, 7)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "3")
    assert (env_world_size(), env_rank()) == (4, 3)


# -- one step through ShardedModel, several ranks -------------------------------------

STEP = Path(__file__).resolve().parent / "mpi_step.py"


def _sharded_step(tmp_path, ranks: int, model: str, batch: int) -> dict[str, np.ndarray]:
    out = tmp_path / f"{model}-{ranks}.npz"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_"))}
    command = [_mpiexec(), "-n", str(ranks), sys.executable, str(STEP), model, str(batch)]
    proc = subprocess.run(
        [*command, str(out)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with np.load(out) as saved:
        return dict(saved)


def _one_process_step(model_name: str, x, y, shards):
    """The reference: each shard through its own copy of the model in this process
    (BatchNorm: the shard's own statistics), the loss of the whole batch, the
    gradients summed and the running statistics averaged by shard size."""
    from cnnlab import init, models, nn

    copies, logits = [], []
    for lo, hi in shards:
        init.manual_seed(0)
        copy = models.build(model_name, dtype="float64")
        copy.zero_grad()
        copies.append(copy)
        logits.append(copy(x[lo:hi]))
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(np.concatenate(logits), y)
    delta = loss_fn.backward()
    for copy, (lo, hi) in zip(copies, shards, strict=True):
        copy.backward(delta[lo:hi])
    grads = {
        k: sum(dict(c.named_parameters())[k].grad for c in copies)
        for k, _ in copies[0].named_parameters()
    }
    weights = [(hi - lo) / len(x) for lo, hi in shards]
    states = {
        k: sum(w * c.state_dict()[k] for w, c in zip(weights, copies, strict=True))
        for k in copies[0].state_dict()
    }
    return loss, grads, states


@pytest.mark.parametrize(
    "model,ranks,batch",
    [
        ("lenet5", 3, 7),  # shards of 3, 2, 2
        ("lenet5", 3, 2),  # the third rank's shard is empty
        ("lenet5_bn", 2, 9),  # per-shard statistics, running statistics averaged
    ],
)
def test_a_sharded_step_sums_the_shards_gradients(tmp_path, model, ranks, batch):
    saved = _sharded_step(tmp_path, ranks, model, batch)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((batch, 1, 28, 28)), rng.integers(0, 10, batch)
    shards = [shard_bounds(batch, ranks, r) for r in range(ranks)]
    shards = [(lo, hi) for lo, hi in shards if hi > lo]
    loss, grads, states = _one_process_step(model, x, y, shards)
    assert abs(float(saved["loss"]) - loss) < 1e-12
    for k, g in grads.items():
        assert np.abs(saved["grad." + k] - g).max() < 1e-12, k
    for k, v in states.items():
        assert np.abs(saved["state." + k] - v).max() < 1e-12, k


# -- two ranks over loopback ---------------------------------------------------------


def test_two_ranks_end_with_the_one_process_weights_float64(tmp_path, one_process):
    reference, result = one_process
    code, stdout, stderr = _run(tmp_path, 2, tmp_path / "two", dtype="float64")
    assert code == 0, stderr
    difference = _max_difference(tmp_path / "two", reference)
    assert difference < F64_TOLERANCE, difference
    # rank 0 alone reports and writes
    assert stdout.count("test accuracy") == 1 and stderr.count("epoch 2/2") == 1, stderr
    assert stderr.count("data-parallel on 2 MPI ranks, 45 images per step") == 1
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["test_accuracy"] == result.final.accuracy
    assert len((tmp_path / "two" / "metrics.csv").read_text().splitlines()) == 1 + 2


def test_two_ranks_float32_within_rounding(tmp_path):
    _fit(tmp_path / "one", dtype="float32", epochs=1, schedule="none")
    code, _, stderr = _run(tmp_path, 2, tmp_path / "two", epochs=1, schedule="none")
    assert code == 0, stderr
    difference = _max_difference(tmp_path / "two", tmp_path / "one")
    assert 0 <= difference < F32_TOLERANCE, difference


def test_a_signal_to_one_rank_stops_both_and_one_process_resumes(tmp_path, one_process):
    reference, _ = one_process
    tag = uuid.uuid4().hex
    proc = _launch(tmp_path, 2, tmp_path / "cut", tag=tag, dtype="float64")
    rank1 = _rank_pid(tag, 1)
    ckpt = tmp_path / "cut" / "checkpoint.safetensors"
    _wait_for(ckpt, proc)  # the first epoch's: we are in the second now
    os.kill(rank1, signal.SIGTERM)  # rank 1 only: rank 0 learns it by the vote
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.count("cnnlab: interrupted at epoch") == 1, stderr  # one message
    assert "resume with: mpiexec -n 2 cnnlab train" in stderr and "Traceback" not in stderr
    assert "BAD TERMINATION" not in stderr  # every rank ended by itself
    with safe_open(str(ckpt), "np") as fh:
        meta = fh.metadata()
    assert (int(meta["epoch"]), int(meta["step"])) > (1, 0), meta  # after the signal

    resumed = _fit(tmp_path / "cut", dtype="float64", resume=True)  # one process now
    assert resumed.epochs_trained >= 1
    difference = _max_difference(tmp_path / "cut", reference)
    assert difference < F64_TOLERANCE, difference


def test_a_killed_rank_ends_the_job_and_the_checkpoint_resumes(tmp_path, one_process):
    reference, _ = one_process
    tag = uuid.uuid4().hex
    proc = _launch(tmp_path, 2, tmp_path / "cut", tag=tag, dtype="float64")
    rank1 = _rank_pid(tag, 1)
    _wait_for(tmp_path / "cut" / "checkpoint.safetensors", proc)
    os.kill(rank1, signal.SIGKILL)  # no handler, no vote: mpiexec must end rank 0
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0
    report = stdout + stderr  # mpiexec's own report goes to stdout
    assert "BAD TERMINATION" in report and "KILLED" in report.upper(), report
    assert "if a rank dies, mpiexec ends the job" in stderr  # said when the run began

    code, stdout, stderr = _run(tmp_path, 2, tmp_path / "cut", "--resume", dtype="float64")
    assert code == 0, stderr
    assert stdout.count("test accuracy") == 1
    difference = _max_difference(tmp_path / "cut", reference)
    assert difference < F64_TOLERANCE, difference


def test_nan_stops_every_rank_with_one_message(tmp_path):
    code, _, stderr = _run(tmp_path, 2, tmp_path / "nan", "--lr", "1e6", "--optimizer", "sgd")
    assert code == 1, stderr
    assert stderr.count("cnnlab: error: epoch 1, step") == 1 and "the loss is nan" in stderr
    assert "Traceback" not in stderr and "BAD TERMINATION" not in stderr


FAIL = Path(__file__).resolve().parent / "mpi_fail.py"


@pytest.mark.parametrize("when", ["setup", "step"])
def test_an_error_of_one_rank_ends_the_job(tmp_path, when):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_"))}
    command = [_mpiexec(), "-n", "2", sys.executable, str(FAIL), when, str(tmp_path / "run")]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    if when == "setup":  # both ranks learn it before training; each raises
        assert "error on MPI rank 1: the data cannot be read on this host" in proc.stderr
        assert "another MPI rank could not start training" in proc.stderr, proc.stderr
    else:  # rank 0 waits in the next Allreduce: rank 1 must end the job
        assert "error on MPI rank 1: a bug met by this rank only; ending" in proc.stderr
        assert "MPI_Abort" in proc.stdout + proc.stderr


def test_settings_errors_are_printed_once(tmp_path):
    code, _, stderr = _run(tmp_path, 2, tmp_path / "x", "--model", "lenet5")
    assert code == 2 and stderr.count("cnnlab: error:") == 1, stderr
    assert "BAD TERMINATION" not in stderr
