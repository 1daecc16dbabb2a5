"""Project-wide test settings.

* Plots render off-screen (Agg), whatever the machine has.
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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        reporter.write_line(f"CI: {skipped} test(s) skipped; skipping is not allowed in CI")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
