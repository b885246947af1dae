"""Test-suite settings shared by the unit tests and the notebooks that nbval runs.

Quick mode is the suite's default, so ``python -m pytest`` never starts full-length notebook runs
by surprise; ``NFLOWS_TUTORIAL_QUICK=0 python -m pytest`` runs the notebooks in full. MNIST comes
from ``$PATH_DATASETS`` (downloaded there by the package when missing), as it does for a user;
where it cannot be had, whatever needs it is skipped with one line saying how to provide it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

# Set before any notebook kernel starts: kernels inherit this process's environment.
if "NFLOWS_TUTORIAL_QUICK" not in os.environ:
    os.environ["NFLOWS_TUTORIAL_QUICK"] = "1"


@functools.cache
def mnist_or_reason() -> Path | str:
    """The folder holding ``MNIST/raw`` (fetched through the package if missing), or why there is none."""
    from nflows_tutorial.io.mnist import DataUnavailableError, load_mnist
    from nflows_tutorial.io.paths import dataset_root

    try:
        load_mnist("train")  # reads (and if need be downloads) all four files, checking their contents
        load_mnist("test")
    except DataUnavailableError as err:
        return f"MNIST unavailable: {err}"
    return dataset_root().resolve()


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """Folder holding ``MNIST/raw``, as the package finds it; skips the test when MNIST cannot be had."""
    found = mnist_or_reason()
    if isinstance(found, str):
        pytest.skip(found)
    return found


@functools.cache
def _reads_mnist(notebook: Path) -> bool:
    return "load_mnist" in notebook.read_text(encoding="utf-8")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip the cells of a notebook that loads MNIST where MNIST cannot be had (before its kernel starts)."""
    if item.path.suffix == ".ipynb" and _reads_mnist(item.path) and isinstance(found := mnist_or_reason(), str):
        pytest.skip(found)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """One line per reason for skipping, however many tests it skipped (what is missing, and how to provide it)."""
    counts: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        if isinstance(report.longrepr, tuple):
            reason = report.longrepr[2].removeprefix("Skipped: ")
            counts[reason] = counts.get(reason, 0) + 1
    if counts:
        terminalreporter.section("why tests were skipped")
        for reason, count in counts.items():
            terminalreporter.write_line(f"{count:4d} skipped: {reason}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """nbval's cells are notebook runs too, so ``-m "not notebook"`` leaves them out with the other notebook tests."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.notebook)
