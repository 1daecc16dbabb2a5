"""Every kind of user error, through the CLI: one clear line, the right exit code, no
traceback, and nothing written earlier is harmed."""

from __future__ import annotations

import gzip
import shutil
import struct

import numpy as np
import pytest

from clihelp import assert_clean_error, cnnlab, digest
from cnnlab.data.idx import write_idx


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished one-epoch digits run whose files must survive every error below."""
    root = tmp_path_factory.mktemp("cli")
    proc = cnnlab("train", "--epochs", "1", "--out", "run", "--no-progress", cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root / "run"


@pytest.fixture()
def intact(run_dir):
    """Check after the test that the run's files are byte-for-byte unchanged."""
    files = sorted(p for p in run_dir.iterdir() if p.is_file())
    before = {p.name: digest(p) for p in files}
    yield run_dir
    assert {p.name: digest(p) for p in files} == before


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("train", "--bogus"), "unrecognized arguments: --bogus"),
        (("train", "--epochs", "0"), "--epochs must be >= 1"),
        (("train", "--lr", "-1"), "--lr must be > 0"),
        (("train", "--batch-size", "x"), "--batch-size must be an integer"),
        (("train", "--dataset", "cifar"), "invalid choice: 'cifar'"),
        (("train", "--model", "lenet5"), "takes images of shape (1, 28, 28)"),
        (("eval",), "--checkpoint"),
    ],
)
def test_usage_errors_exit_2(intact, args, fragment):
    assert_clean_error(cnnlab(*args, cwd=intact.parent), 2, fragment)


def _mnist_dir(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_corrupt_data_files_are_named(intact, mnist_like_dir, tmp_path):
    cases = {}
    d = _mnist_dir(mnist_like_dir, tmp_path / "truncated")
    p = d / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:5000])
    cases["truncated"] = (d, p.name, "corrupt or truncated")
    d = _mnist_dir(mnist_like_dir, tmp_path / "magic")
    p = d / "t10k-labels-idx1-ubyte.gz"
    p.write_bytes(gzip.compress(b"\x12\x34\x08\x01" + struct.pack(">I", 2) + b"\x01\x02"))
    cases["magic"] = (d, p.name, "not an IDX file")
    d = _mnist_dir(mnist_like_dir, tmp_path / "counts")
    write_idx(d / "t10k-labels-idx1-ubyte.gz", np.zeros(1999, dtype=np.uint8))
    cases["counts"] = (d, "t10k-labels-idx1-ubyte.gz", "1999 labels but")
    d = _mnist_dir(mnist_like_dir, tmp_path / "missing")
    (d / "t10k-images-idx3-ubyte.gz").unlink()
    cases["missing"] = (d, "t10k-images-idx3-ubyte.gz", "file not found")
    d = _mnist_dir(mnist_like_dir, tmp_path / "dims")
    write_idx(d / "t10k-images-idx3-ubyte.gz", np.zeros((2000, 27, 28), dtype=np.uint8))
    cases["dims"] = (d, "t10k-images-idx3-ubyte.gz", "shape (N, 28, 28)")
    import cnnlab as pkg

    model = pkg.save(pkg.models.lenet5(), tmp_path / "lenet.safetensors")
    for folder, filename, fragment in cases.values():
        proc = cnnlab(
            "eval",
            "--checkpoint",
            str(model),
            "--dataset",
            "mnist",
            "--data-dir",
            str(folder),
            cwd=tmp_path,
        )
        assert_clean_error(proc, 1, filename, fragment)


def test_eval_on_a_data_set_of_another_image_size(intact, mnist_like_dir):
    proc = cnnlab(
        "eval",
        "--checkpoint",
        str(intact / "model.safetensors"),
        "--dataset",
        "mnist",
        "--data-dir",
        str(mnist_like_dir),
        cwd=intact.parent,
    )
    assert_clean_error(proc, 2, "takes images of shape (1, 8, 8)")


def test_training_on_corrupt_data_reports_the_file(intact, mnist_like_dir, tmp_path):
    d = _mnist_dir(mnist_like_dir, tmp_path / "bad")
    p = d / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-1000])
    proc = cnnlab(
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        str(d),
        "--out",
        "x",
        "--no-progress",
        cwd=tmp_path,
    )
    assert_clean_error(proc, 1, "train-images-idx3-ubyte.gz")


def test_predict_on_bad_images(intact, tmp_path):
    model = str(intact / "model.safetensors")
    notes = tmp_path / "notes.png"
    notes.write_text("this is not a picture")
    assert_clean_error(
        cnnlab("predict", "--checkpoint", model, str(notes), cwd=tmp_path),
        1,
        "notes.png",
        "not a readable image",
    )
    missing = tmp_path / "nope.jpg"
    assert_clean_error(
        cnnlab("predict", "--checkpoint", model, str(missing), cwd=tmp_path), 1, "nope.jpg"
    )


def test_bad_checkpoints(intact, tmp_path):
    good = intact / "model.safetensors"
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-64])
    tampered = tmp_path / "tampered.safetensors"
    raw = bytearray(good.read_bytes())
    raw[-5] ^= 0x55
    tampered.write_bytes(bytes(raw))
    for path, fragment in (
        (truncated, "truncated or corrupt"),
        (tampered, "checksum mismatch"),
        (tmp_path / "absent.safetensors", "no such file"),
    ):
        proc = cnnlab("eval", "--checkpoint", str(path), cwd=tmp_path)
        assert_clean_error(proc, 1, path.name, fragment)


def test_nan_during_training_names_step_and_layer(intact, tmp_path):
    proc = cnnlab("train", "--lr", "1e30", "--out", "nan", "--no-progress", cwd=tmp_path)
    assert_clean_error(proc, 1, "epoch 1, step", "layer", "lower --lr")
    # an existing run continued with a diverging setting keeps its last checkpoint
    run = tmp_path / "copy"
    shutil.copytree(intact, run)
    before = digest(run / "checkpoint.safetensors")
    proc = cnnlab(
        "train", "--out", str(run), "--overwrite", "--lr", "1e30", "--no-progress", cwd=tmp_path
    )
    assert_clean_error(proc, 1, "is kept")
    assert digest(run / "checkpoint.safetensors") == before


def test_unwritable_out_is_reported_before_training(intact, tmp_path):
    blocker = tmp_path / "plain-file"
    blocker.write_text("not a directory")
    proc = cnnlab("train", "--out", str(blocker / "run"), cwd=tmp_path)
    assert_clean_error(proc, 2, "cannot write to the output directory", "choose another --out")
    assert "epoch" not in proc.stderr  # no progress bar: training never started


def test_existing_run_is_not_overwritten_by_accident(intact):
    proc = cnnlab("train", "--out", str(intact), "--no-progress", cwd=intact.parent)
    assert_clean_error(proc, 2, "already holds a training run", "--resume")


def test_debug_shows_the_traceback(intact, tmp_path):
    proc = cnnlab("--debug", "eval", "--checkpoint", str(tmp_path / "x.safetensors"), cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
