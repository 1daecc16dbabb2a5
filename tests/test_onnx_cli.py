"""``cnnlab export``, and ``cnnlab eval``/``predict`` on ``.onnx`` files.

The oracle is cnnlab itself on the safetensors file the ONNX file was exported from:
the same data set and images must give the same accuracy, loss and probabilities.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from PIL import Image

import cnnlab
from clihelp import assert_clean_error
from clihelp import cnnlab as run
from cnnlab.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A digits model saved with its data set, an image, and the model exported."""
    root = tmp_path_factory.mktemp("onnx-cli")
    model = cnnlab.models.digits_cnn(rng=np.random.default_rng(0))
    cnnlab.save(model, root / "digits.safetensors", metadata={"dataset": "digits"})
    pixels = np.random.default_rng(1).integers(0, 256, (12, 10), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "digit.png")
    proc = run("export", "--checkpoint", "digits.safetensors", "--onnx", "digits.onnx", cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert "wrote digits.onnx" in proc.stdout and "input Nx1x8x8" in proc.stdout
    return root


def _in_process(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_export_defaults_the_input_shape_and_records_the_data_set(files):
    proto = onnx.load(str(files / "digits.onnx"))
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 1, 8, 8]  # digits_cnn's, by its name
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["dataset"] == "digits" and props["model"] == "digits_cnn"


def test_eval_and_predict_on_onnx_equal_the_saved_model(files, capsys, monkeypatch):
    monkeypatch.chdir(files)
    proc = run("eval", "--checkpoint", "digits.onnx", "--json", cwd=files)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    code, out, _ = _in_process(capsys, "eval", "--checkpoint", "digits.safetensors", "--json")
    assert code == 0
    expected = json.loads(out)
    assert (got["dataset"], got["n"], got["accuracy"]) == (
        "digits",
        expected["n"],
        expected["accuracy"],
    )
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-6)

    proc = run("predict", "--checkpoint", "digits.onnx", "--json", "digit.png", cwd=files)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    code, out, _ = _in_process(
        capsys, "predict", "--checkpoint", "digits.safetensors", "--json", "digit.png"
    )
    expected = json.loads(out)
    assert got["prediction"] == expected["prediction"]
    for a, b in zip(got["top"], expected["top"]):
        assert a["class"] == b["class"] and a["probability"] == pytest.approx(b["probability"])


def test_a_softmax_export_outputs_probabilities_and_still_evaluates(files, capsys):
    out = files / "probs.onnx"
    code, stdout, err = _in_process(
        capsys, "export", "--checkpoint", str(files / "digits.safetensors"), "--onnx", str(out),
        "--input-shape", "1x8x8", "--softmax", "--static-batch",
    )  # fmt: skip
    assert code == 0, err
    assert "input 1x1x8x8" in stdout and "softmax output" in stdout
    x = np.random.default_rng(2).standard_normal((1, 1, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    probs = session.run(None, {"input": x})[0]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    # eval and predict read the model without its Softmax, and apply their own
    proc = run("eval", "--checkpoint", str(out), "--json", cwd=files)
    _, expected, _ = _in_process(
        capsys, "eval", "--checkpoint", str(files / "digits.safetensors"), "--json"
    )
    assert json.loads(proc.stdout)["accuracy"] == json.loads(expected)["accuracy"]


def test_cli_errors_are_one_line(files, tmp_path, capsys):
    bare = tmp_path / "bare.onnx"
    cnnlab.onnx.export(cnnlab.models.lenet5(), bare)  # records no data set
    absent = tmp_path / "absent.safetensors"
    abs_model = tmp_path / "abs.onnx"
    graph = helper.make_graph(
        [helper.make_node("Abs", ["x"], ["y"], name="odd")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(abs_model))
    saved = str(files / "digits.safetensors")
    cases = [
        (("eval", "--checkpoint", str(bare)), 2, "does not record its data set; pass --dataset"),
        (
            ("eval", "--checkpoint", str(bare), "--dataset", "digits"),
            2,
            "takes inputs of shape (1, 28, 28), data set 'digits' has images of shape (1, 8, 8)",
        ),
        (("eval", "--checkpoint", str(abs_model)), 1, "node 'odd' (Abs): unsupported operator"),
        (
            (
                "export",
                "--checkpoint",
                saved,
                "--onnx",
                str(tmp_path / "x.onnx"),
                "--input-shape",
                "1x1x12x12",
            ),
            2,
            "input_shape (1, 1, 12, 12) does not fit the model",
        ),
        (("export", "--checkpoint", str(absent), "--onnx", "x.onnx"), 1, "no such file"),
    ]
    for args, code, fragment in cases:
        got, _, err = _in_process(capsys, *args)
        assert got == code, (args, err)
        assert fragment in err and err.count("\n") == 1 and err.startswith("cnnlab: error:"), err
    assert not (tmp_path / "x.onnx").exists()


def test_bad_input_shape_is_a_usage_error(files):
    proc = run(
        "export", "--checkpoint", "digits.safetensors", "--onnx", "y.onnx", "--input-shape",
        "8x8", cwd=files,
    )  # fmt: skip
    assert_clean_error(proc, 2, "--input-shape must be NxCxHxW or CxHxW")


def test_export_is_listed_with_its_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0 and "export" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["export", "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    for option in ("--checkpoint", "--onnx", "--input-shape", "--opset", "--softmax"):
        assert option in out
