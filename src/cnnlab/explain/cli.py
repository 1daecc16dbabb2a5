"""``cnnlab explain``'s options and what it prints."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_cli_arguments", "run_cli"]


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Write out the convolution layer's backward pass for a small case, with 1-based "
        "indices as in the lesson: the forward sums, dE/da and dE/dw as sums of terms, the "
        "matrix form (zero-insert, pad, rot180, cross-correlate), and a numeric check "
        "against nn.Conv2d."
    )
    parser.add_argument("--input", default="3x3", help="input size HxW (default 3x3)")
    parser.add_argument("--kernel", default="2x2", help="kernel size KHxKW (default 2x2)")
    parser.add_argument("--stride", default="1", help="stride S or SHxSW")
    parser.add_argument("--padding", default="0", help="zero padding P or PHxPW")
    parser.add_argument("--dilation", default="1", help="dilation R or RHxRW")
    parser.add_argument("--depth", default="1", help="input channels D")
    parser.add_argument("--filters", default="1", help="number of filters N")
    parser.add_argument("--seed", default="0", help="seed of the numeric example")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="the term lists as JSON")
    fmt.add_argument("--latex", action="store_true", help="a LaTeX fragment")
    parser.add_argument("--figures", metavar="DIR", help="also write PNG and SVG figures to DIR")


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--{name} must be an integer, got {text!r}") from None


def run_cli(args: argparse.Namespace) -> int:
    from cnnlab.explain import explain

    e = explain(
        input=args.input,
        kernel=args.kernel,
        stride=args.stride,
        padding=args.padding,
        depth=_int(args.depth, "depth"),
        filters=_int(args.filters, "filters"),
        dilation=args.dilation,
        seed=_int(args.seed, "seed"),
    )
    if args.json:
        print(json.dumps(e.to_json()))
    elif args.latex:
        print(e.to_latex(), end="")
    else:
        print(e.to_text(), end="")
    if args.figures:
        paths = e.save_figures(args.figures)
        print(
            f"figures: {', '.join(str(p) for p in paths[:2])} and {len(paths) - 2} more",
            file=sys.stderr,
        )
    return 0 if e.verification.passed else 1
