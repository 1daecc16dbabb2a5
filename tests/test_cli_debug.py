"""``--debug`` is accepted before and after the subcommand, for every subcommand."""

from __future__ import annotations

import pytest

from clihelp import cnnlab
from cnnlab.cli import build_parser

# the least each subcommand needs to parse
COMMANDS = {
    "train": ["train"],
    "eval": ["eval", "--checkpoint", "m.safetensors"],
    "predict": ["predict", "--checkpoint", "m.safetensors", "a.png"],
    "gradcheck": ["gradcheck"],
    "explain": ["explain"],
    "download": ["download", "mnist"],
}


def test_every_subcommand_takes_debug():
    subparsers = build_parser()._subparsers._group_actions[0].choices  # argparse's own record
    assert set(COMMANDS) <= set(subparsers)
    for name, sub in subparsers.items():
        assert "--debug" in sub._option_string_actions, name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_debug_before_or_after_the_subcommand(name):
    args = COMMANDS[name]
    assert build_parser().parse_args(args).debug is False
    assert build_parser().parse_args(["--debug", *args]).debug is True
    assert build_parser().parse_args([*args, "--debug"]).debug is True
    assert build_parser().parse_args([args[0], "--debug", *args[1:]]).debug is True


def test_eval_debug_shows_the_traceback(tmp_path):
    missing = str(tmp_path / "x.safetensors")
    for argv in (
        ["eval", "--debug", "--checkpoint", missing],
        ["--debug", "eval", "--checkpoint", missing],
    ):
        proc = cnnlab(*argv, cwd=tmp_path)
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" in proc.stderr and "CheckpointError" in proc.stderr, proc.stderr
    proc = cnnlab("eval", "--checkpoint", missing, cwd=tmp_path)  # without: one line
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
