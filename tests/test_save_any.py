"""Saving any model: nested Sequentials of every layer rebuilt from the file's JSON spec,
custom Module subclasses through ``model=``, files of cnnlab 0.2.0 still read, and the
command line on a saved custom model."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from safetensors.numpy import load_file

import cnnlab
from clihelp import assert_clean_error
from clihelp import cnnlab as run_cnnlab
from cnnlab import models, nn
from cnnlab.errors import CheckpointError
from cnnlab.nn.spec import NotBuildableError, build_module, module_spec

DATA = Path(__file__).resolve().parent / "data"


def nested_model(dtype=np.float32, seed=0):
    """Every layer type, each with non-default arguments, Sequential inside Sequential.

    Takes ``(N, 1, 8, 8)`` (the bundled digits), gives 10 logits.
    """
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding="same", bias=False, dtype=dtype, rng=rng),  # 4×8×8
        nn.LeakyReLU(0.2),
        nn.Sequential(
            # H: 8 + 2·2 - 2·(3-1) - 1 + 1 = 8; W: 8 + 2 - 1 = 9
            nn.Conv2d(
                4, 6, (3, 2), padding=(2, 1), dilation=(2, 1), groups=2, dtype=dtype, rng=rng
            ),
            nn.Tanh(),
            nn.MaxPool2d(3, stride=2, padding=1),  # 6×4×5
            nn.Sequential(
                nn.Sigmoid(),
                nn.AvgPool2d((2, 3), stride=1, padding=(1, 1), count_include_pad=False),
            ),  # 6×5×5
            nn.Conv2d(6, 6, 2, stride=(2, 1), padding=1, dtype=dtype, rng=rng),  # 6×3×6
        ),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Flatten(start_dim=1),
        nn.Linear(6 * 3 * 6, 16, dtype=dtype, rng=rng),
        nn.Dropout(p=0.1),
        nn.Linear(16, 10, bias=False, dtype=dtype, rng=rng),
    )


def _layers(model):
    return [(name, type(m)) for name, m in model.named_modules()]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nested_model_round_trip_equals_the_original(tmp_path, dtype):
    model = nested_model(dtype)
    path = cnnlab.save(model, tmp_path / "m.safetensors")
    loaded = cnnlab.load(path)

    assert _layers(loaded) == _layers(model)
    for (name, a), (_, b) in zip(model.named_modules(), loaded.named_modules()):
        if hasattr(a, "config"):
            assert a.config() == b.config(), name
    raw = load_file(str(path))  # the file itself, read by safetensors alone
    original, rebuilt = model.state_dict(), loaded.state_dict()
    assert list(rebuilt) == list(original)
    assert set(raw) == set(original)
    for key, value in original.items():
        assert rebuilt[key].dtype == value.dtype == np.dtype(dtype), key
        assert np.array_equal(rebuilt[key], value), key
        assert np.array_equal(raw[key], value), key
    x = np.random.default_rng(1).standard_normal((5, 1, 8, 8)).astype(dtype)
    model.eval()
    loaded.eval()
    assert np.array_equal(loaded(x), model(x))
    assert loaded.dtype == np.dtype(dtype)


def test_the_spec_is_json_of_layer_names_and_arguments(tmp_path):
    path = cnnlab.save(nested_model(np.float64), tmp_path / "m.safetensors")
    meta = cnnlab.io.load_metadata(path)
    assert meta["format_version"] == "2"
    spec = json.loads(meta["architecture"])
    assert spec["type"] == "Sequential"
    conv = spec["layers"][0]
    assert conv == {
        "type": "Conv2d",
        "config": {
            "in_channels": 1,
            "out_channels": 4,
            "kernel_size": [3, 3],
            "stride": [1, 1],
            "padding": "same",
            "dilation": [1, 1],
            "groups": 1,
            "bias": False,
            "dtype": "float64",
        },
    }
    inner = spec["layers"][2]
    assert [s["type"] for s in inner["layers"]] == [
        "Conv2d",
        "Tanh",
        "MaxPool2d",
        "Sequential",
        "Conv2d",
    ]
    assert inner["layers"][3]["layers"][1]["config"] == {
        "kernel_size": [2, 3],
        "stride": [1, 1],
        "padding": [1, 1],
        "count_include_pad": False,
    }
    assert spec["layers"][1]["config"] == {"negative_slope": 0.2}
    assert spec["layers"][4]["config"] == {"p": 0.3}
    assert "model" not in meta and "input_shape" not in meta  # not a model by name


def test_every_layer_class_of_cnnlab_nn_can_describe_itself():
    layer_classes = [
        obj
        for obj in vars(nn).values()
        if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj not in (nn.Module,)
    ]
    assert len(layer_classes) >= 11
    missing = [
        c.__name__ for c in layer_classes if c is not nn.Sequential and not hasattr(c, "config")
    ]
    assert not missing, f"give these layers config() so cnnlab.save can rebuild them: {missing}"


def test_config_rebuilds_each_layer():
    model = nested_model(np.float64)
    for name, layer in model.named_modules():
        if isinstance(layer, nn.Sequential):
            continue
        again = type(layer)(**json.loads(json.dumps(layer.config())))
        assert again.config() == layer.config(), name
        assert repr(again) == repr(layer), name


def test_models_by_name_keep_their_name_and_input_shape(tmp_path):
    path = cnnlab.save(models.digits_cnn(num_classes=7), tmp_path / "m.safetensors")
    meta = cnnlab.io.load_metadata(path)
    assert json.loads(meta["model"]) == {"name": "digits_cnn", "kwargs": {"num_classes": 7}}
    assert json.loads(meta["input_shape"]) == [1, 8, 8]
    loaded = cnnlab.load(path)
    assert models.spec(loaded) == {"name": "digits_cnn", "kwargs": {"num_classes": 7}}
    # a custom model records the input shape its caller gives
    path = cnnlab.save(nested_model(), tmp_path / "c.safetensors", input_shape=(1, 8, 8))
    assert cnnlab.io.input_shape(cnnlab.io.load_metadata(path)) == (1, 8, 8)
    # and the loaded model knows it: a batch of another size is refused by name
    assert cnnlab.load(path).input_shape == (1, 8, 8)
    bn = cnnlab.load(cnnlab.save(models.lenet5_bn(), tmp_path / "bn.safetensors"))
    with pytest.raises(ValueError, match=r"lenet5_bn expects input of shape \(N, 1, 28, 28\)"):
        bn(np.zeros((2, 1, 8, 8), np.float32))
    # a Sequential given an input shape records it without being told again
    custom = nested_model()
    custom.input_shape = (1, 8, 8)
    path = cnnlab.save(custom, tmp_path / "d.safetensors")
    assert cnnlab.io.input_shape(cnnlab.io.load_metadata(path)) == (1, 8, 8)


def test_bad_save_arguments(tmp_path):
    with pytest.raises(ValueError, match="input_shape must be"):
        cnnlab.save(nested_model(), tmp_path / "m.safetensors", input_shape=(1, 0, 8))
    with pytest.raises(ValueError, match=r"'model' is written by cnnlab\.save"):
        cnnlab.save(nested_model(), tmp_path / "m.safetensors", metadata={"model": "x"})
    with pytest.raises(ValueError, match="pass input_shape"):
        cnnlab.save(nested_model(), tmp_path / "m.safetensors", metadata={"input_shape": "x"})
    assert not list(tmp_path.iterdir())


class TwoBranch(nn.Module):
    """A custom model: named children, a Sequential inside, a buffer of its own."""

    def __init__(self, dtype=np.float64):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, dtype=dtype)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * 6 * 6, 3, dtype=dtype))
        self.register_buffer("scale", np.array([1.5], dtype=dtype))

    def forward(self, x):
        return self.head(self.conv1(x) * self.scale)


def test_a_custom_module_saves_and_loads_into_an_instance(tmp_path):
    model = TwoBranch()
    model.scale[...] = 3.0
    path = cnnlab.save(model, tmp_path / "custom.safetensors")
    meta = cnnlab.io.load_metadata(path)
    assert "architecture" not in meta
    assert meta["class"] == f"{__name__}.TwoBranch"
    assert set(load_file(str(path))) == {
        "scale",
        "conv1.weight",
        "conv1.bias",
        "head.1.weight",
        "head.1.bias",
    }

    with pytest.raises(CheckpointError, match=r"cnnlab\.load\(path, model=TwoBranch\(") as err:
        cnnlab.load(path)
    assert str(path) in str(err.value) and "custom Module" in str(err.value)

    fresh = TwoBranch()
    assert cnnlab.load(path, model=fresh) is fresh
    for key, value in model.state_dict().items():
        assert np.array_equal(fresh.state_dict()[key], value), key
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8))
    assert np.array_equal(fresh(x), model(x))


def test_a_custom_layer_anywhere_makes_the_whole_model_custom(tmp_path):
    class Scale(nn.Module):
        def forward(self, x):
            return 2 * x

    class MySequential(nn.Sequential):
        pass

    with pytest.raises(NotBuildableError, match=r"layer '1\.0' is a .*Scale"):
        module_spec(nn.Sequential(nn.ReLU(), nn.Sequential(Scale())))
    for model in (nn.Sequential(nn.ReLU(), nn.Sequential(Scale())), MySequential(nn.ReLU())):
        path = cnnlab.save(model, tmp_path / "m.safetensors")
        with pytest.raises(CheckpointError, match="model="):
            cnnlab.load(path)


def test_a_spec_builds_only_cnnlab_layers():
    for bad, message in (
        ({"type": "Module", "config": {}}, "unknown layer type 'Module'"),
        ({"type": "Parameter", "config": {}}, "unknown layer type 'Parameter'"),
        ({"type": "CrossEntropyLoss", "config": {}}, "unknown layer type"),
        ({"type": "os.system", "config": {}}, "unknown layer type"),
        ({"type": "_Pool2d", "config": {}}, "unknown layer type"),
        ({"type": "Sequential", "layers": [{"type": "Conv2d", "config": {"x": 1}}]}, "layer '0'"),
        ({"type": "Linear", "config": [1, 2]}, "must be a dict"),
        ({"config": {}}, "must be a dict with a 'type'"),
    ):
        with pytest.raises(ValueError, match=message):
            build_module(bad)


def test_a_version_1_file_of_cnnlab_0_2_0_still_loads():
    path = DATA / "v1-digits_cnn.safetensors"  # written by cnnlab 0.2.0 (tests/data/README.md)
    meta = cnnlab.io.load_metadata(path)
    assert meta["format_version"] == "1" and "architecture" not in meta
    model = cnnlab.load(path)
    raw = load_file(str(path))
    assert set(raw) == set(model.state_dict())
    for key, value in raw.items():
        assert model.state_dict()[key].dtype == value.dtype
        assert np.array_equal(model.state_dict()[key], value), key
    reference = models.digits_cnn()
    reference.load_state_dict(raw)
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    assert np.array_equal(model(x), reference(x))
    assert models.spec(model)["name"] == "digits_cnn"
    assert cnnlab.io.input_shape(meta) == (1, 8, 8)


def test_an_altered_version_1_file_is_refused(tmp_path):
    raw = bytearray((DATA / "v1-digits_cnn.safetensors").read_bytes())
    raw[-5] ^= 0x01
    path = tmp_path / "v1.safetensors"
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        cnnlab.load(path)


def test_a_file_from_a_newer_format_is_refused(tmp_path):
    path = cnnlab.save(nested_model(), tmp_path / "m.safetensors")
    tensors = load_file(str(path))
    from safetensors.numpy import save_file

    meta = cnnlab.io.load_metadata(path)
    meta["format_version"] = "3"
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match=r"version '3' is not supported.*upgrade"):
        cnnlab.load(path)


def _draw_one(path):
    img = Image.new("L", (60, 90), color=255)
    ImageDraw.Draw(img).line([(30, 10), (30, 80)], fill=0, width=8)
    img.save(path)


def test_eval_and_predict_take_a_saved_custom_sequential(tmp_path):
    from cnnlab.data import load_dataset

    model = nested_model(np.float64)
    path = cnnlab.save(model, tmp_path / "custom.safetensors", metadata={"dataset": "digits"})
    _draw_one(tmp_path / "one.png")

    proc = run_cnnlab("eval", "--checkpoint", str(path), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    test = load_dataset("digits", "test")
    model.eval()
    predicted = model(test.images.astype(np.float64)).argmax(axis=1)
    assert result["n"] == len(test.labels)
    assert result["accuracy"] == pytest.approx(np.mean(predicted == test.labels), abs=1e-12)

    proc = run_cnnlab("predict", "--checkpoint", str(path), str(tmp_path / "one.png"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{tmp_path / 'one.png'}: ")

    # the wrong data set is refused in one line: by the recorded shape, or by a trial image
    lenet = cnnlab.save(
        models.lenet5(), tmp_path / "lenet.safetensors", metadata={"dataset": "digits"}
    )
    proc = run_cnnlab("eval", "--checkpoint", str(lenet), cwd=tmp_path)
    assert_clean_error(proc, 2, "takes images of shape (1, 28, 28)", "'digits' has (1, 8, 8)")
    flat = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    flat_path = cnnlab.save(flat, tmp_path / "flat.safetensors", metadata={"dataset": "digits"})
    proc = run_cnnlab(
        "predict", "--checkpoint", str(flat_path), str(tmp_path / "one.png"), cwd=tmp_path
    )
    assert_clean_error(proc, 2, "does not take 'digits' images of shape (1, 8, 8)")
    proc = run_cnnlab("eval", "--checkpoint", str(tmp_path / "x.safetensors"), cwd=tmp_path)
    assert_clean_error(proc, 1, "no such file")
    custom = cnnlab.save(TwoBranch(), tmp_path / "tb.safetensors", metadata={"dataset": "digits"})
    proc = run_cnnlab("eval", "--checkpoint", str(custom), cwd=tmp_path)
    assert_clean_error(proc, 1, "custom Module", "model=TwoBranch(")
