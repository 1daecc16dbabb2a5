"""Running the ``cnnlab`` command as a user would, for the CLI tests."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path


def cnnlab(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m cnnlab ARGS`` in ``cwd``; returns the finished process (text output)."""
    return subprocess.run(
        [sys.executable, "-m", "cnnlab", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assert_clean_error(proc: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    """Exit code ``code``, a one-line ``cnnlab: error:`` message holding ``fragments``."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("cnnlab")]
    assert lines, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)
