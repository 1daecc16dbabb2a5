"""Project-wide test settings.

* Plots render off-screen (Agg), whatever the machine has.
* The default tests need nothing beside the repository: ``mnist_like_dir`` is made on
  the spot; the real MNIST sample (``mnist_sample_dir``) is for the slow checks.
* Under CI (``CI`` set), a skipped test fails the run: an oracle that could not be
  imported must never pass silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def mnist_sample_dir() -> Path:
    """The 8,000-digit MNIST sample carried in the repository (see tests/data/README.md)."""
    path = TEST_DATA / "mnist-sample"
    assert path.is_dir(), f"MNIST sample not found at {path}"
    return path


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that drive the browser are marked ``browser`` (they need Debian's chromium)."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def mnist_like_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder in MNIST's format (IDX, gzip) of random 28×28 "digits", as many as the
    sample (6,000 train, 2,000 test), made on the spot: for the default tests, which
    need the format, not real digits, and so nothing beside the repository."""
    import numpy as np

    from cnnlab.data.idx import write_idx

    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("mnist-like")
    for split, n in (("train", 6000), ("t10k", 2000)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)  # random: gzip cannot shrink it
        write_idx(path / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))
    return path


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        reporter.write_line(f"CI: {skipped} test(s) skipped; skipping is not allowed in CI")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
