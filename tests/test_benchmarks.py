"""The benchmark harness runs end to end (a smoke run; speed is never asserted here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.mark.slow
def test_quick_benchmark_prints_ratio_rows():
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick"], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "allocator (both sides)" in out and "threads: 2" in out
    rows = [ln for ln in out.splitlines() if ln.startswith("| (")]
    assert len(rows) == 6 and all("float" in r for r in rows)  # conv 4, floor 2
    assert "| train | 64 | float32 |" in out and "| infer | 256 | float32 |" in out
    assert "cnnlab kernels:" in out and "NumPy path" in out
    assert "| peak RSS |" in out
    assert "| LeNet conv1 |" in out
