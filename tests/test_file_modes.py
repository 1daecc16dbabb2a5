"""Files cnnlab writes get the permissions a plain ``open(path, "w")`` gives, under any umask.

The atomic writer writes a temporary file (``mkstemp``: mode 0600) and renames it; the
mode must be set on what the writer left there, which safetensors' ``save_file``
replaces with a new file. The umask is per process, so each case runs in a subprocess.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

SAVE = """
import os, sys
os.umask(int(sys.argv[1], 8))
import numpy as np
import cnnlab
from cnnlab import io
cnnlab.save(cnnlab.models.digits_cnn(), "model.safetensors")
io.write_file("checkpoint.safetensors", {"a": np.zeros(3)}, {"kind": "checkpoint"})
io.atomic_write_bytes("plain.bin", lambda tmp: open(tmp, "wb").write(b"x"))
with open("reference", "w"):  # what a plain open gives, the oracle
    pass
"""


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize(("umask", "expected"), [("022", 0o644), ("077", 0o600), ("002", 0o664)])
def test_saved_files_get_ordinary_permissions(umask, expected, tmp_path):
    subprocess.run([sys.executable, "-c", SAVE, umask], cwd=tmp_path, check=True, timeout=120)
    assert _mode(tmp_path / "reference") == expected
    for name in ("model.safetensors", "checkpoint.safetensors", "plain.bin"):
        assert _mode(tmp_path / name) == expected, (name, oct(_mode(tmp_path / name)))


def test_training_run_files_are_0644_under_umask_022(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "cnnlab", "train", "--epochs", "1", "--no-progress", "--out", "run"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=300,
        preexec_fn=lambda: os.umask(0o022),
    )
    files = {p.name: _mode(p) for p in (tmp_path / "run").iterdir()}
    assert {"model.safetensors", "checkpoint.safetensors", "metrics.csv"} <= set(files)
    assert files == dict.fromkeys(files, 0o644)
