"""save/load: round trip, and damaged, altered or foreign files refused with the path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import cnnlab
from cnnlab import models
from cnnlab.errors import CheckpointError

SRC = Path(__file__).resolve().parents[1] / "src"
PICKLE = (
    r"\bimport (c?pickle|dill|joblib)\b|\bpickle\.(loads?|dumps?|Unpickler)\b"
    r"|allow_pickle\s*=\s*True"
)


def test_round_trip_gives_identical_weights_and_outputs(tmp_path):
    model = models.lenet5(dtype=np.float64)
    path = cnnlab.save(model, tmp_path / "m.safetensors", metadata={"dataset": "mnist"})
    loaded = cnnlab.load(path)
    for k, v in model.state_dict().items():
        assert np.array_equal(v, loaded.state_dict()[k])
    assert loaded.dtype == np.float64
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28))
    assert np.array_equal(model(x), loaded(x))
    meta = cnnlab.io.load_metadata(path)
    assert json.loads(meta["model"]) == {"name": "lenet5", "kwargs": {"num_classes": 10}}
    assert meta["dataset"] == "mnist"
    assert not list(tmp_path.glob("*.tmp"))  # the temporary file was renamed


def test_truncated_file_is_refused(tmp_path):
    path = cnnlab.save(models.digits_cnn(), tmp_path / "m.safetensors")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        cnnlab.load(path)


def test_tampered_weights_are_refused(tmp_path):
    path = cnnlab.save(models.digits_cnn(), tmp_path / "m.safetensors")
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF  # flip bits inside the last array's data
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        cnnlab.load(path)


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = cnnlab.save(models.digits_cnn(), tmp_path / "m.safetensors")
    tensors, meta = cnnlab.io.read_file(path)
    meta["architecture"] = cnnlab.io.load_metadata(
        cnnlab.save(models.lenet5(), tmp_path / "lenet.safetensors")
    )["architecture"]
    for key in ("format", "format_version", "sha256"):
        meta.pop(key)
    cnnlab.io.write_file(path, tensors, meta)
    with pytest.raises(CheckpointError, match="do not fit the model's architecture"):
        cnnlab.load(path)
    with pytest.raises(
        CheckpointError, match=r"do not fit the Sequential given.*unexpected keys \['11\.bias'"
    ):
        cnnlab.load(tmp_path / "lenet.safetensors", model=models.digits_cnn())


def test_foreign_and_missing_files(tmp_path):
    foreign = tmp_path / "other.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a cnnlab file"):
        cnnlab.load(foreign)
    with pytest.raises(CheckpointError, match="no such file"):
        cnnlab.load(tmp_path / "missing.safetensors")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        cnnlab.load(text)


def test_no_pickle_anywhere_in_the_package():
    offenders = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        if re.search(PICKLE, text):
            offenders.append(str(path))
    assert not offenders, offenders
