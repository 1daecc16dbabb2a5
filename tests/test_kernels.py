"""The compiled kernels (numba) against the NumPy reference and against PyTorch.

Every kernel runs on the hard configurations (padding >= kernel, non-square, strides
that do not divide, dilation, groups, overlapping pooling windows) and is compared with
PyTorch in float64 (max error <= 1e-10 · max(1, max |torch|)) and with the NumPy path
of the same function (same tolerance: the sums are the same, only their order may
differ). The rest of the suite runs on whichever engine is in use; CI runs the parity
and fuzz tests a second time with ``CNNLAB_KERNELS=numpy``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

pytest.importorskip("numba")

from cnnlab import functional as F
from cnnlab import models, nn, optim
from cnnlab.functional import kernels

#: PyTorch notes that it pads a copy for the asymmetric 'same' case (small inputs here too)
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")

TOL64 = 1e-10

#: (N, C, H, W, F, kh, kw, stride, padding, dilation, groups)
CONV_CASES = [
    (2, 3, 7, 5, 4, 3, 2, (2, 3), (4, 1), (1, 2), 1),  # padding >= kernel, non-square
    (1, 4, 9, 8, 6, 3, 3, 2, 1, 1, 2),  # groups, stride 2 on an odd size
    (3, 2, 10, 7, 3, 2, 3, 3, 0, 2, 1),  # stride 3 does not divide, dilation
    (2, 6, 6, 6, 6, 3, 3, 1, 5, 1, 6),  # depthwise, padding > k_eff - 1 (a crop in E3)
    (2, 1, 28, 28, 6, 5, 5, 1, 2, 1, 1),  # LeNet conv1
    (2, 6, 14, 14, 16, 5, 5, 1, 0, 1, 1),  # LeNet conv2
    (1, 3, 4, 3, 2, 2, 2, 2, 0, 1, 1),  # a 4×3 input with stride 2
    (1, 2, 3, 3, 2, 3, 3, 4, 6, 1, 1),  # stride > kernel: input cells no tap reaches
    (2, 2, 9, 7, 3, 3, 2, (1, 2), 1, (2, 3), 1),  # dilation across stride phases
    (2, 2, 5, 6, 3, 4, 3, 1, "same", (1, 2), 1),  # 'same': the extra row/column after
    (1, 1, 1, 1, 2, 1, 2, 1, (0, 50), (1, 100), 1),  # padding beyond every tap's reach
]
#: (N, C, H, W, kernel, stride, padding)
POOL_CASES = [
    (2, 3, 8, 8, 2, 2, 0),
    (2, 3, 9, 7, 3, 2, 1),  # overlapping, padded, odd sizes
    (1, 2, 7, 10, (3, 2), (1, 2), (1, 1)),  # stride 1 overlapping, non-square
    (1, 1, 5, 5, 5, 1, 2),  # windows mostly in the padding
]


def assert_close(name, ours, ref, tol=TOL64):
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != {ref.shape}"
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    err = float(np.abs(ours.astype(np.float64) - ref).max(initial=0.0))
    assert err <= tol * scale, f"{name}: max error {err:.3e}\nours:\n{ours}\nreference:\n{ref}"


def conv_both(case, dtype, seed=0):
    """(numba, numpy) results of forward + backward: lists [y, dx, dw, db]."""
    n, c, h, w_, f, kh, kw, stride, padding, dilation, groups = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w_)).astype(dtype)
    w = rng.standard_normal((f, c // groups, kh, kw)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    results = []
    for engine in ("numba", "numpy"):
        with kernels.use(engine):
            y, cache = F.conv2d_forward(x, w, b, stride, padding, dilation, groups)
            dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(dtype)
            results.append([y, *F.conv2d_backward(dy, cache)])
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    wt = torch.tensor(w.astype(np.float64), requires_grad=True)
    bt = torch.tensor(b.astype(np.float64), requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride, padding, dilation, groups)
    yt.backward(torch.tensor(dy.astype(np.float64)))
    torch_result = [yt.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()]
    return results[0], results[1], torch_result


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("unpadded_min", [0, 1 << 40])  # padding read as zeros, or made
def test_conv_kernels_match_torch_and_the_numpy_path(case, unpadded_min, monkeypatch):
    monkeypatch.setattr(kernels, "UNPADDED_MIN_BYTES", unpadded_min)
    compiled, reference, torch_result = conv_both(case, np.float64)
    for name, ours, ref, theirs in zip(("y", "dx", "dw", "db"), compiled, reference, torch_result):
        assert_close(f"{name} vs torch", ours, theirs)
        assert_close(f"{name} vs numpy path", ours, ref)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_kernels_input_error_straight_into_dx(case, monkeypatch):
    """Wide output rows scatter the input gradient straight into dx (no phase planes)."""
    monkeypatch.setattr(kernels, "PHASE_MAX_WIDTH", 0)
    monkeypatch.setattr(kernels, "UNPADDED_MIN_BYTES", 0)
    compiled, reference, torch_result = conv_both(case, np.float64)
    for name, ours, ref, theirs in zip(("y", "dx", "dw", "db"), compiled, reference, torch_result):
        assert_close(f"{name} vs torch", ours, theirs)
        assert_close(f"{name} vs numpy path", ours, ref)


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("phase_max_width", [0, 64])
@pytest.mark.parametrize("unpadded_min", [0, 1 << 40])
def test_conv_kernels_in_bands_of_output_rows(case, phase_max_width, unpadded_min, monkeypatch):
    """Large planes are done a band of output rows at a time: here one row per band."""
    monkeypatch.setattr(kernels, "BAND_BYTES", 1)
    monkeypatch.setattr(kernels, "PHASE_MAX_WIDTH", phase_max_width)
    monkeypatch.setattr(kernels, "UNPADDED_MIN_BYTES", unpadded_min)
    compiled, reference, torch_result = conv_both(case, np.float64)
    for name, ours, ref, theirs in zip(("y", "dx", "dw", "db"), compiled, reference, torch_result):
        assert_close(f"{name} vs torch", ours, theirs)
        assert_close(f"{name} vs numpy path", ours, ref)


@pytest.mark.parametrize("case", [CONV_CASES[1], CONV_CASES[5]])  # both dW orientations
def test_conv_kernels_without_a_bias(case):
    """No bias: nothing added in the forward product, no bias gradient summed."""
    n, c, h, w_, f, kh, kw, stride, padding, dilation, groups = case
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, c, h, w_))
    w = rng.standard_normal((f, c // groups, kh, kw))
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, None, stride, padding, dilation, groups)
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dy))
    with kernels.use("numba"):
        y, cache = F.conv2d_forward(x, w, None, stride, padding, dilation, groups)
        dx, dw, db = F.conv2d_backward(dy, cache)
    assert db is None
    for name, ours, theirs in (("y", y, yt), ("dx", dx, xt.grad), ("dw", dw, wt.grad)):
        assert_close(name, ours, theirs.detach().numpy())


@pytest.mark.parametrize("engines", [("numba", "numpy"), ("numpy", "numba")])
def test_conv_engine_switched_between_forward_and_backward(engines, monkeypatch):
    """The compiled forward keeps the input unpadded; either backward must read it right."""
    monkeypatch.setattr(kernels, "UNPADDED_MIN_BYTES", 0)
    case = CONV_CASES[0]  # padding >= kernel, non-square, stride and dilation
    *_, torch_result = conv_both(case, np.float64)  # same seeds as below
    n, c, h, w_, f, kh, kw, stride, padding, dilation, groups = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w_))
    w = rng.standard_normal((f, c // groups, kh, kw))
    b = rng.standard_normal(f)
    with kernels.use(engines[0]):
        y, cache = F.conv2d_forward(x, w, b, stride, padding, dilation, groups)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    with kernels.use(engines[1]):
        result = [y, *F.conv2d_backward(dy, cache)]
    for name, ours, theirs in zip(("y", "dx", "dw", "db"), result, torch_result):
        assert_close(name, ours, theirs)


@pytest.mark.parametrize("case", CONV_CASES[:3])
@pytest.mark.parametrize("unpadded_min", [0, 1 << 40])
def test_conv_kernels_float32(case, unpadded_min, monkeypatch):
    monkeypatch.setattr(kernels, "UNPADDED_MIN_BYTES", unpadded_min)
    compiled, reference, torch_result = conv_both(case, np.float32)
    for name, ours, ref, theirs in zip(("y", "dx", "dw", "db"), compiled, reference, torch_result):
        assert ours.dtype == np.float32, name
        assert_close(f"{name} vs torch", ours, theirs, 1e-4)
        assert_close(f"{name} vs numpy path", ours, ref, 1e-4)


@pytest.mark.parametrize(
    ("padding", "pads"),
    [(1, ((1, 1), (1, 1))), ((2, 3), ((2, 2), (3, 3))), (((1, 4), (0, 2)), ((1, 4), (0, 2)))],
)
def test_pad_kernel(padding, pads):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    with kernels.use("numba"):
        ours = F.pad2d(x, padding)
    np.testing.assert_array_equal(ours, np.pad(x, ((0, 0), (0, 0), *pads)))


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_max_pool_kernels_match_torch_and_the_numpy_path(case, dtype):
    n, c, h, w, kernel, stride, padding = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    x[0, 0, :2, :2] = 0.5  # ties: the first maximum takes the error
    results = []
    for engine in ("numba", "numpy"):
        with kernels.use(engine):
            y, cache = F.max_pool2d_forward(x, kernel, stride, padding)
            dy = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
            results.append((y, cache.argmax, F.max_pool2d_backward(dy, cache)))
    (y, argmax, dx), (y_ref, argmax_ref, dx_ref) = results
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    assert argmax.dtype == argmax_ref.dtype
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, kernel, stride, padding)
    yt.backward(torch.tensor(dy.astype(np.float64)))
    assert_close("y vs torch", y, yt.detach().numpy())
    assert_close("dx vs torch", dx, xt.grad.numpy(), TOL64 if dtype == np.float64 else 1e-5)
    assert_close("dx vs numpy path", dx, dx_ref, TOL64 if dtype == np.float64 else 1e-5)


def test_max_pool_kernel_nan_is_the_maximum():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 1, 0] = np.nan  # a later NaN in the same window takes over, as in PyTorch
    results = []
    for engine in ("numba", "numpy"):
        with kernels.use(engine):
            y, cache = F.max_pool2d_forward(x, 2)
            results.append((y, cache.argmax))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("size", [7, 300_007])  # the serial and the parallel variant
def test_relu_kernels(size):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(size)
    x[:3] = (np.nan, 0.0, -0.0)
    dy = rng.standard_normal(size)
    with kernels.use("numba"):
        y = F.relu(x)
        dx = F.relu_backward(dy, y)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.relu(xt)
    yt.backward(torch.tensor(dy))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(dx[1:], xt.grad.numpy()[1:])  # torch's NaN grad differs
    np.testing.assert_array_equal(dx, dy * (np.maximum(x, 0) > 0))


@pytest.mark.parametrize("name", ["adam", "adamw"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adam_kernel_equals_the_numpy_path_bit_for_bit(name, dtype):
    def run(engine):
        with kernels.use(engine):
            model = models.lenet5(dtype=dtype, rng=np.random.default_rng(0))
            opt = optim.build(name, model.parameters(), lr=1e-2, weight_decay=0.1)
            rng = np.random.default_rng(1)
            for _ in range(3):
                for p in model.parameters():
                    p.grad[...] = rng.standard_normal(p.grad.shape)
                opt.step()
            return [p.data.copy() for p in model.parameters()], opt.state_dict()

    (params, state), (params_ref, state_ref) = run("numba"), run("numpy")
    for a, b in zip(params, params_ref):
        np.testing.assert_array_equal(a, b)
    for key in state_ref:
        np.testing.assert_array_equal(state[key], state_ref[key])


def test_adam_kernel_matches_torch():
    rng = np.random.default_rng(0)
    p = nn.Parameter(rng.standard_normal((50, 40)))
    tp = torch.tensor(p.data.copy(), requires_grad=True)
    with kernels.use("numba"):
        opt = optim.Adam([p], lr=1e-2, weight_decay=0.05)
        topt = torch.optim.Adam([tp], lr=1e-2, weight_decay=0.05)
        for _ in range(5):
            g = rng.standard_normal(p.data.shape)
            p.grad[...] = g
            tp.grad = torch.tensor(g)
            opt.step()
            topt.step()
    assert_close("p vs torch", p.data, tp.detach().numpy(), 1e-12)


def test_results_do_not_depend_on_the_thread_count(monkeypatch):
    """No reduction runs across threads: 1 and 2 threads give the same bits."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6, 14, 14)).astype(np.float32)
    w = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    dy = rng.standard_normal((64, 16, 10, 10)).astype(np.float32)
    runs = []
    monkeypatch.setattr(kernels, "BAND_BYTES", 6 * 25 * 14 * 4 * 3)  # 3-row bands
    with kernels.use("numba"):
        for n in (1, 2):
            with kernels.threads(n):
                y, cache = F.conv2d_forward(x, w, None, 1, 2)
                dy = rng.standard_normal(y.shape).astype(np.float32) if not runs else dy
                dx, dw, _ = F.conv2d_backward(dy, cache)
                y2, pool_cache = F.max_pool2d_forward(F.relu(y), 2)
                runs.append((y, dx, dw, y2, F.max_pool2d_backward(y2, pool_cache)))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


# -- the switch --------------------------------------------------------------------
def test_use_switches_and_restores():
    before = kernels.backend()
    with kernels.use("numpy") as engine:
        assert engine == "numpy" == kernels.backend()
        with kernels.use("numba"):
            assert kernels.backend() == "numba"
        assert kernels.backend() == "numpy"
    assert kernels.backend() == before


def test_bad_choice_is_named(monkeypatch):
    with pytest.raises(ValueError, match="CNNLAB_KERNELS must be one of auto, numba, numpy"):
        kernels.set_backend("fortran")


def test_numba_forced_without_numba_says_how_to_install(monkeypatch):
    monkeypatch.setattr(kernels, "_load", lambda: None)
    with pytest.raises(kernels.KernelsUnavailable, match=r"cnnlab\[fast\]"):
        with kernels.use("numba"):
            pass
    with kernels.use("auto") as engine:  # auto falls back to the NumPy reference
        assert engine == "numpy"


def test_environment_variable_picks_the_engine(monkeypatch):
    before = kernels.backend()
    try:
        monkeypatch.setenv(kernels.ENV_VAR, "numpy")
        assert kernels.set_backend(None) == "numpy"
        monkeypatch.setenv(kernels.ENV_VAR, "numba")
        assert kernels.set_backend(None) == "numba"
    finally:
        kernels.set_backend(before)


def test_threads_sets_both_pools():
    from threadpoolctl import threadpool_info

    with kernels.use("numba"), kernels.threads(1):
        assert kernels.num_threads() == 1
        assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
    with pytest.raises(ValueError, match="threads must be >= 1"):
        with kernels.threads(0):
            pass


def _child_result():
    x = np.random.default_rng(0).standard_normal((64, 6, 14, 14))
    w = np.random.default_rng(1).standard_normal((16, 6, 5, 5))
    y, _ = F.conv2d_forward(x, w)
    return kernels.backend(), y


def test_a_forked_child_runs_the_numpy_path():
    """GNU OpenMP does not survive a fork: the child computes on the NumPy path."""
    import multiprocessing

    with kernels.use("numba"):
        F.relu(np.ones(1 << 20))  # the parent's threads are running
        with multiprocessing.get_context("fork").Pool(1) as pool:
            engine, y = pool.apply(_child_result)
        expected = _child_result()[1]
    assert engine == "numpy"
    assert_close("y in the child", y, expected)


def test_cli_says_how_to_install_numba_when_it_is_forced_but_missing(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['numba'] = None\n")
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, CNNLAB_KERNELS="numba", PYTHONPATH=path)
    proc = subprocess.run(
        [sys.executable, "-m", "cnnlab", "train", "--epochs", "1", "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "cnnlab: error: CNNLAB_KERNELS=numba but numba does not import" in proc.stderr
    assert "pip install 'cnnlab[fast]'" in proc.stderr and "Traceback" not in proc.stderr


def test_cache_is_warm_reads_numbas_cache_folder(tmp_path, monkeypatch):
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6))
    with kernels.use("numba"):
        F.conv2d_forward(x, np.ones((2, 1, 3, 3)), None)  # loads (or compiles) the kernels
        folder = kernels._cache_dir()
        assert folder is not None and any(folder.glob("_numba_kernels.*.nbi")), folder
        assert kernels.cache_is_warm()
        monkeypatch.setattr(kernels, "_cache_dir", lambda: tmp_path)
        assert not kernels.cache_is_warm()  # an empty cache: the first convolution compiles
        entry = tmp_path / "_numba_kernels.correlate_parallel-1.py311.nbi"
        entry.write_bytes(b"")
        assert kernels.cache_is_warm()
        os.utime(entry, (0, 0))  # older than the kernels' source: numba recompiles
        assert not kernels.cache_is_warm()
    with kernels.use("numpy"):
        assert kernels.cache_is_warm()  # nothing to compile


@pytest.mark.parametrize("warm", [False, True])
def test_training_says_when_the_kernels_compile_first(tmp_path, monkeypatch, capsys, warm):
    from cnnlab.train import TrainConfig, fit

    monkeypatch.setattr(kernels, "cache_is_warm", lambda: warm)
    fit(TrainConfig(epochs=1, out=str(tmp_path / "run"), progress=False))
    said = "compiling the numba kernels for this machine, once" in capsys.readouterr().err
    assert said is not warm


def test_conv_kernels_on_an_empty_batch(monkeypatch):
    monkeypatch.setattr(kernels, "UNPADDED_MIN_BYTES", 0)
    w, b = np.ones((3, 2, 3, 3)), np.ones(3)
    with kernels.use("numba"):
        y, cache = F.conv2d_forward(np.zeros((0, 2, 5, 5)), w, b, 1, 1)
        dx, dw, db = F.conv2d_backward(np.zeros(y.shape), cache)
    assert y.shape == (0, 3, 5, 5) and dx.shape == (0, 2, 5, 5)
    assert not dw.any() and not db.any() and dw.shape == w.shape
