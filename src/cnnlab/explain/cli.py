"""``cnnlab explain``'s options and what it prints."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

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
    parser.add_argument(
        "--seed", default="0", help="seed of the numeric example, 0 to 4294967295 (default 0)"
    )
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="the term lists and numbers as JSON")
    fmt.add_argument("--latex", action="store_true", help="a LaTeX fragment")
    fmt.add_argument(
        "--html",
        metavar="FILE",
        help="write an interactive page instead of the text: one self-contained file that "
        "works offline ('-' for standard output)",
    )
    parser.add_argument("--figures", metavar="DIR", help="also write PNG and SVG figures to DIR")


def _int(text: str, name: str, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"--{name} must be an integer, got {text!r}") from None
    if maximum is not None and not minimum <= value <= maximum:
        raise ValueError(f"--{name} must be between {minimum} and {maximum}, got {value}")
    if value < minimum:
        raise ValueError(f"--{name} must be >= {minimum}, got {value}")
    return value


def _figures_folder(text: str) -> Path:
    """Create the figures folder now, so a bad one fails before anything is printed."""
    folder = Path(text)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create the figures folder {folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write into the figures folder {folder}: permission denied")
    return folder


def run_cli(args: argparse.Namespace) -> int:
    from cnnlab.explain import explain
    from cnnlab.explain.config import HTML_LIMITS, JSON_LIMITS, TEXT_LIMITS, ExplainConfig
    from cnnlab.explain.instance import MAX_SEED

    cfg = ExplainConfig.make(
        args.input,
        args.kernel,
        args.stride,
        args.padding,
        _int(args.depth, "depth", 1),
        _int(args.filters, "filters", 1),
        args.dilation,
    )
    seed = _int(args.seed, "seed", 0, MAX_SEED)
    # everything that can be refused is refused before anything is computed or printed
    if args.json:
        cfg.check_size(JSON_LIMITS, "JSON")
    elif args.html:
        cfg.check_size(HTML_LIMITS, "an HTML page")
    else:
        cfg.check_size(TEXT_LIMITS, "LaTeX" if args.latex else "text")
    figures = None
    if args.figures:
        cfg.check_size(TEXT_LIMITS, "figures")
        figures = _figures_folder(args.figures)

    e = explain(
        cfg.input,
        cfg.kernel,
        cfg.stride,
        cfg.padding,
        cfg.depth,
        cfg.filters,
        cfg.dilation,
        seed=seed,
    )
    if args.json:
        print(json.dumps(e.to_json()))
    elif args.latex:
        print(e.to_latex(), end="")
    elif args.html == "-":
        sys.stdout.write(e.to_html())
    elif args.html:
        print(f"page: {e.save_html(args.html)}", file=sys.stderr)
    else:
        print(e.to_text(), end="")
    if figures is not None:
        paths = e.save_figures(figures)
        print(
            f"figures: {', '.join(str(p) for p in paths[:2])} and {len(paths) - 2} more",
            file=sys.stderr,
        )
    return 0 if e.verification.passed else 1
