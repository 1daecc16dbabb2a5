"""What ``cnnlab train``, ``eval`` and ``predict`` do, given parsed arguments."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cnnlab.nn.module import Module


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def cmd_train(args: argparse.Namespace) -> int:
    from cnnlab.train import TrainConfig, fit

    config = TrainConfig(
        dataset=args.dataset,
        model=args.model,
        data_dir=args.data_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        momentum=args.momentum,
        seed=args.seed,
        dtype=args.dtype,
        val_fraction=args.val_fraction,
        keep=args.keep,
        augment=args.augment,
        schedule=args.schedule,
        warmup=args.warmup,
        label_smoothing=args.label_smoothing,
        out=args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    result = fit(config)
    final = result.final
    if final is None:  # an MPI rank other than 0: rank 0 reports
        return 0
    cfg = result.config
    total = len(result.history)
    if result.epochs_trained == 0:
        print(f"{result.out} is already complete at {_count(total, 'epoch')}; nothing was trained")
    done = _count(total, "epoch")
    if cfg.resume and 0 < result.epochs_trained < total:
        done += f" ({result.epochs_trained} in this run)"
    kept = ""
    if cfg.keep == "best":
        best = max(result.history, key=lambda r: (r["val_acc"], -r["val_loss"]))
        kept = f"; kept epoch {best['epoch']} (best validation accuracy {best['val_acc']:.2%})"
    print(
        f"{cfg.model} on {cfg.dataset}: test accuracy {final.accuracy:.2%} "
        f"({final.n} images) after {done}, {result.seconds:.1f} s{kept}"
    )
    print(
        f"run directory: {result.out}  (model.safetensors, checkpoint.safetensors, "
        "metrics.csv, curves.png, confusion.png, summary.json"
        + (", augment.png)" if cfg.augment else ")")
    )
    return 0


def _model_and_dataset(args: argparse.Namespace) -> tuple[Module, str, dict[str, str]]:
    """The model in ``--checkpoint`` (any file ``cnnlab.load`` rebuilds), its data set and
    the file's metadata.

    The model must take the data set's images and give one logit per class: checked
    against the input shape the file records, and by one image through the model.
    """
    import cnnlab.io as cio
    from cnnlab.data import dataset_info

    path = Path(args.checkpoint)
    if path.suffix.lower() == ".onnx":  # an ONNX graph, read by cnnlab.onnx
        from cnnlab.onnx import cli_model_and_dataset

        onnx_model, onnx_dataset = cli_model_and_dataset(path, getattr(args, "dataset", None))
        return onnx_model, onnx_dataset, {}  # no data folder recorded in ONNX files
    model, metadata = cio.load_with_metadata(path)
    dataset = getattr(args, "dataset", None) or metadata.get("dataset")
    if not dataset or dataset == "None":
        raise ValueError(
            f"{path} does not record its data set; pass --dataset digits|mnist|fashion-mnist"
        )
    info = dataset_info(dataset)
    expected = cio.input_shape(metadata)
    if expected is not None and expected != info.image_shape:
        raise ValueError(
            f"the model in {path} takes images of shape {expected}, data set {dataset!r} "
            f"has {info.image_shape}; choose the data set the model was trained on"
        )
    was_training = model.training
    model.eval()
    try:
        logits = model(np.zeros((1, *info.image_shape), dtype=model.dtype))
    except ValueError as exc:
        raise ValueError(
            f"the model in {path} does not take {dataset!r} images of shape "
            f"{info.image_shape}: {exc}"
        ) from None
    finally:
        model.train(was_training)
    k = len(info.classes)
    if not isinstance(logits, np.ndarray) or logits.shape != (1, k):
        got = getattr(logits, "shape", type(logits).__name__)
        raise ValueError(
            f"the model in {path} gives outputs of shape {got} for one image; data set "
            f"{dataset!r} needs one logit per class, (1, {k})"
        )
    return model, dataset, metadata


def _eval_data_dir(args: argparse.Namespace, dataset: str, metadata: dict[str, str]) -> str | None:
    """``--data-dir``, else the folder recorded in the model (for its own data set)."""
    from cnnlab.errors import DataError

    if dataset == "digits":
        if args.data_dir is not None:
            raise ValueError(
                "the digits data set is bundled (scikit-learn) and reads no files; drop "
                "--data-dir, or pass --dataset mnist or fashion-mnist"
            )
        return None
    if args.data_dir is not None:
        return str(args.data_dir)
    recorded = metadata.get("data_dir")
    if recorded is None or dataset != metadata.get("dataset"):
        return None  # the system copy or the download cache
    if not Path(recorded).is_dir():
        raise DataError(
            f"{recorded}, the {dataset} folder {args.checkpoint} was trained from (recorded "
            "in the model), no longer exists; pass --data-dir DIR"
        )
    return recorded


def cmd_eval(args: argparse.Namespace) -> int:
    from cnnlab.data import load_dataset
    from cnnlab.train import evaluate

    model, dataset, metadata = _model_and_dataset(args)
    test = load_dataset(dataset, "test", _eval_data_dir(args, dataset, metadata))
    result = evaluate(model, test)
    if args.json:
        print(json.dumps({**result.to_json(), "dataset": dataset}))
        return 0
    print(
        f"{dataset} test split: accuracy {result.accuracy:.2%} on {result.n} images, "
        f"mean loss {result.loss:.4f}"
    )
    width = max(len(c) for c in result.classes)
    print("per-class accuracy:")
    for name, acc in result.per_class_accuracy.items():
        print(f"  {name:>{width}}  {acc:6.2%}")
    print("confusion matrix (rows: true, columns: predicted):")
    cell = max(4, len(str(int(result.confusion.max()))) + 1)
    print(" " * (width + 2) + "".join(f"{i:>{cell}}" for i in range(len(result.classes))))
    for i, name in enumerate(result.classes):
        row = "".join(f"{int(v):>{cell}}" for v in result.confusion[i])
        print(f"  {name:>{width}}{row}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from cnnlab.data import dataset_info
    from cnnlab.data.images import load_image
    from cnnlab.functional.activations import softmax

    model, dataset, _ = _model_and_dataset(args)
    classes = dataset_info(dataset).classes
    model.eval()
    top = min(args.top, len(classes))
    for image in args.images:
        x = load_image(image, dataset).astype(model.dtype)
        probs = softmax(model(x))[0]
        order = np.argsort(-probs, kind="stable")[:top]
        if args.json:
            print(
                json.dumps(
                    {
                        "image": str(image),
                        "prediction": classes[order[0]],
                        "top": [
                            {"class": classes[i], "probability": float(probs[i])} for i in order
                        ],
                    }
                )
            )
        else:
            ranked = ", ".join(f"{classes[i]} {probs[i]:.1%}" for i in order)
            print(f"{image}: {classes[order[0]]}  ({ranked})")
    return 0
