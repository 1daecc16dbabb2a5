"""The README's Python examples run, their assertions hold, and they do what they say."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

import cnnlab

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_examples_run(tmp_path, monkeypatch):
    runnable = [b for b in BLOCKS if "import" in b]
    assert len(runnable) >= 3
    monkeypatch.chdir(tmp_path)
    namespaces = []
    for block in runnable:
        namespace: dict = {}
        exec(compile(block, str(README), "exec"), namespace)
        namespaces.append(namespace)
    assert (tmp_path / "lenet.safetensors").is_file()

    # "Library": the last training step (after cnnlab.load) trains the model it loaded
    (library,) = [ns for b, ns in zip(runnable, namespaces) if '"lenet.safetensors"' in b]
    saved = cnnlab.load(tmp_path / "lenet.safetensors").state_dict()
    trained = library["model"].state_dict()
    changed = [k for k in saved if not np.array_equal(saved[k], trained[k])]
    assert changed == list(saved), f"only these weights changed: {changed}"

    # "Weights from and to PyTorch": the example really went through PyTorch's file
    (exchange,) = [ns for b, ns in zip(runnable, namespaces) if "torch_lenet" in b]
    assert (tmp_path / "torch_lenet.safetensors").is_file()
    assert exchange["key_map"]["fc1.weight"] == "7.weight"


ROOT = README.parent


def _setup_section() -> str:
    return README.read_text().split("\n## Set-up\n", 1)[1].split("\n## ", 1)[0]


def test_setup_says_where_the_pinned_cpu_torch_comes_from():
    pin = re.search(r'"torch==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pin, "pyproject.toml no longer pins torch in an extra"
    setup = _setup_section()
    index = "--index-url https://download.pytorch.org/whl/cpu"
    assert f"pip install torch=={pin[1]} {index}" in setup, setup
    assert "need nothing else" in setup


def test_ci_runs_the_readmes_two_commands_test_line():
    first_block = re.findall(r"```bash\n(.*?)```", _setup_section(), flags=re.S)[0]
    lines = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert len(lines) == 2 and lines[1].endswith("python -m pytest"), lines
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert f"python -m {lines[1]}" in ci_lines  # .ci/run calls pip through the venv's python
