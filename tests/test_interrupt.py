"""Ctrl-C at any early moment of a command: one line, exit code 130, never a traceback.

The command is started under ``python -X importtime``, which reports every import as it
finishes; the SIGINT is sent at fixed delays after ``cnnlab.errors`` is imported (the
first thing ``main()`` does), so the moments fall on the parser being built, NumPy,
Matplotlib and the data set being imported and the run starting — the ~0.15 s in which
a Ctrl-C used to end in a ``KeyboardInterrupt`` traceback. Nothing can cover the
interpreter's own start-up before any cnnlab code runs; a signal sent before Python has
installed its handler kills it by the default action (no traceback either; the shell
shows 130 for that too), which the test at delay "start" checks.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TRAIN = ["train", "--no-progress", "--out", "run"]  # 30 epochs: still running at 0.2 s

# pip's console-script template (what the installed ``cnnlab`` command runs)
CONSOLE_SCRIPT = """\
import re
import sys
from cnnlab.cli import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""


def _entry(kind: str, tmp_path: Path) -> list[str]:
    if kind == "python -m cnnlab":
        return ["-m", "cnnlab"]
    installed = Path(sys.executable).with_name("cnnlab")
    if installed.is_file():
        return [str(installed)]
    script = tmp_path / "cnnlab-script"
    script.write_text(CONSOLE_SCRIPT)
    return [str(script)]


def _interrupt(entry: list[str], args: list[str], delay: float | None, cwd: Path):
    """Run ``python -X importtime ENTRY ARGS``; SIGINT ``delay`` s after main() began
    (None: at once, while the interpreter starts). Returns (returncode, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", *entry, *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    try:
        if delay is not None:
            assert proc.stderr is not None
            for line in proc.stderr:
                seen.append(line)
                if line.rsplit("|", 1)[-1].strip() == "cnnlab.errors":
                    break
            else:
                pytest.fail(
                    "the command ended before main() imported cnnlab.errors:\n" + "".join(seen)
                )
            time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = "".join(seen) + rest
    messages = [ln for ln in stderr.splitlines() if not ln.startswith("import time:")]
    return proc.returncode, "\n".join(messages)


@pytest.mark.parametrize("kind", ["python -m cnnlab", "console script"])
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.1, 0.2])
def test_early_ctrl_c_is_one_line_and_130(kind, delay, tmp_path):
    code, stderr = _interrupt(_entry(kind, tmp_path), TRAIN, delay, tmp_path)
    assert "Traceback" not in stderr, stderr
    assert code == 130, (code, stderr)
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert lines and all(ln.startswith("cnnlab: ") for ln in lines), stderr
    assert "interrupted" in lines[0], stderr


@pytest.mark.parametrize("kind", ["python -m cnnlab", "console script"])
def test_ctrl_c_while_the_interpreter_starts(kind, tmp_path):
    code, stderr = _interrupt(_entry(kind, tmp_path), TRAIN, None, tmp_path)
    assert "Traceback" not in stderr, stderr
    assert code in (130, -signal.SIGINT), (code, stderr)


def test_import_cnnlab_and_help_import_no_numpy(tmp_path):
    """The submodules load on first use: ``import cnnlab`` and ``cnnlab --help`` stay light."""
    check = (
        "import sys, cnnlab; assert 'numpy' not in sys.modules, 'numpy imported'; "
        "from cnnlab import nn; import cnnlab.gradcheck as g; "
        "assert cnnlab.nn.Conv2d is nn.Conv2d and g is cnnlab.gradcheck and callable(g); "
        "assert cnnlab.save is cnnlab.io.save and cnnlab.load is cnnlab.io.load; "
        "assert 'models' in dir(cnnlab)"
    )
    subprocess.run([sys.executable, "-c", check], check=True, cwd=tmp_path, timeout=120)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cnnlab", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0 and "COMMAND" in proc.stdout, proc.stderr
    imported = {ln.rsplit("|", 1)[-1].strip() for ln in proc.stderr.splitlines()}
    assert "numpy" not in imported and "matplotlib" not in imported


# An interrupt can land where Python cannot raise it (a weakref callback or __del__:
# "Exception ignored", and the program runs on), or in C code that turns it into
# another exception (NumPy's start-up: ImportError). Both still end the command.
SWALLOWED = """
import os, signal, sys, time, weakref
import cnnlab.cli

class Thing:
    pass

def command(args):
    thing = Thing()
    ref = weakref.ref(thing, lambda ref: (os.kill(os.getpid(), signal.SIGINT), sum(range(9))))
    del thing  # the interrupt arrives inside the callback
    start = time.monotonic()
    while time.monotonic() - start < 30:
        pass
    return 0

def converted(args):
    try:
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(9))
    except KeyboardInterrupt:
        raise ImportError("numpy: PyCapsule_Import could not import module datetime") from None
    return 0

run = {"swallowed": command, "converted": converted}[sys.argv[1]]
cnnlab.cli._handler = lambda module, function: run  # every command runs `run`
sys.exit(cnnlab.cli.main(["train"]))
"""


@pytest.mark.parametrize("how", ["swallowed", "converted"])
def test_interrupt_that_python_would_lose_still_ends_the_command(how, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", SWALLOWED, how],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 130, (proc.returncode, proc.stderr)
    assert proc.stderr == "cnnlab: interrupted\n"
