"""The command line: ``cnnlab export``, and ``.onnx`` files for ``eval``/``predict``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cnnlab.nn.module import Module, Sequential
from cnnlab.onnx._common import MIN_OPSET
from cnnlab.onnx._export import export, layers_of
from cnnlab.onnx._load import read


def _shape_argument(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) not in (3, 4) or min(dims) < 1:
        raise argparse.ArgumentTypeError(
            f"--input-shape must be NxCxHxW or CxHxW of positive ints (e.g. 1x1x28x28), "
            f"got {text!r}"
        )
    return dims if len(dims) == 4 else (1, *dims)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``cnnlab export`` to ``parser``."""
    parser.description = (
        "Export a saved model as an ONNX inference graph (needs the onnx package: "
        "pip install 'cnnlab[onnx]')."
    )
    parser.add_argument("--checkpoint", required=True, help="model.safetensors (or a checkpoint)")
    parser.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the file to write")
    parser.add_argument(
        "--input-shape",
        type=_shape_argument,
        help="NxCxHxW or CxHxW (default: the model's, e.g. 1x1x28x28 for lenet5)",
    )
    parser.add_argument(
        "--opset",
        type=int,
        default=MIN_OPSET,
        help=f"ONNX opset version (default and minimum {MIN_OPSET})",
    )
    parser.add_argument(
        "--softmax", action="store_true", help="end with a Softmax: output probabilities"
    )
    parser.add_argument(
        "--static-batch",
        action="store_true",
        help="fix the batch size to the input shape's N (default: any batch size)",
    )


def _default_input_shape(model: Module, metadata: dict[str, str], path: Path) -> tuple[int, ...]:
    """The input shape a saved model records: by its name, its metadata or its data set."""
    from cnnlab.data import dataset_info
    from cnnlab.models import INPUT_SHAPES

    recipe = getattr(model, "spec", None)
    name = recipe.get("name") if isinstance(recipe, dict) else None
    if name in INPUT_SHAPES:
        return (1, *INPUT_SHAPES[name])
    try:
        recorded = tuple(int(d) for d in json.loads(metadata["input_shape"]))
        return recorded if len(recorded) == 4 else (1, *recorded)
    except (KeyError, TypeError, ValueError):
        pass
    if metadata.get("dataset") not in (None, "", "None"):
        return (1, *dataset_info(metadata["dataset"]).image_shape)
    raise ValueError(
        f"{path} does not record the model's input shape; pass --input-shape, e.g. 1x1x28x28"
    )


def run_cli(args: argparse.Namespace) -> int:
    """``cnnlab export``: a saved model (``--checkpoint``) to an ONNX file (``--onnx``)."""
    import cnnlab.io as cio

    source = Path(args.checkpoint)
    model, metadata = cio.load_with_metadata(source)
    shape = args.input_shape or _default_input_shape(model, metadata, source)
    extra = {}
    if metadata.get("dataset") not in (None, "", "None"):
        extra["dataset"] = metadata["dataset"]
    out = export(
        model,
        args.onnx,
        shape,
        opset=args.opset,
        softmax=args.softmax,
        dynamic_batch=not args.static_batch,
        metadata=extra,
    )
    batch = shape[0] if args.static_batch else "N"
    print(
        f"wrote {out}: opset {args.opset}, input {'x'.join(map(str, (batch, *shape[1:])))}, "
        f"{len(layers_of(model))} layers" + (", softmax output" if args.softmax else "")
    )
    return 0


def cli_model_and_dataset(path: Path, dataset: str | None) -> tuple[Sequential, str]:
    """The model of an ``.onnx`` file and the data set to run it on (for eval/predict):
    ``dataset`` if given, else the one recorded in the file's metadata."""
    from cnnlab.data import dataset_info

    loaded = read(path, drop_softmax=True)  # eval and predict apply softmax themselves
    dataset = dataset or loaded.metadata.get("dataset")
    if not dataset or dataset == "None":
        raise ValueError(
            f"{path} does not record its data set; pass --dataset digits|mnist|fashion-mnist"
        )
    expected = dataset_info(dataset).image_shape
    got = loaded.input_shape[1:] if loaded.input_shape is not None else None
    if got is not None and (
        len(got) != 3 or any(g is not None and g != e for g, e in zip(got, expected))
    ):
        shown = tuple("?" if g is None else g for g in got)
        raise ValueError(
            f"the model in {path} takes inputs of shape {shown}, data set {dataset!r} has "
            f"images of shape {expected}; choose the data set the model was trained on"
        )
    return loaded.model, dataset
