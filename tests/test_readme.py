"""The README's Python examples run and their assertions hold."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_examples_run(tmp_path, monkeypatch):
    runnable = [b for b in BLOCKS if "import" in b]
    assert len(runnable) >= 2
    monkeypatch.chdir(tmp_path)
    for block in runnable:
        exec(compile(block, str(README), "exec"), {})
    assert (tmp_path / "lenet.safetensors").is_file()
