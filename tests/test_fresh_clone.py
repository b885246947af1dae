"""A clone of the repository with nothing beside it runs its tests: what needs nothing passes, what needs
MNIST or the checkpoints is skipped with one line saying how to provide them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Tests that need nothing, tests that need MNIST, tests that need the published checkpoints.
SUBSET = [
    "tests/flows/test_masks_and_conditioner.py",
    "tests/io/test_mnist.py",
    "tests/flows/test_model.py::test_wrong_checkpoint_names_model_and_first_key",
]


@pytest.mark.subprocess
def test_a_bare_clone_passes_or_names_what_is_missing(tmp_path):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (or no git command): nothing to clone")
    clone = tmp_path / "empty" / "nflows-tutorial"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, capture_output=True, timeout=120)
    # No course variables at all, and no network: the loopback port 9 refuses, DNS is not consulted.
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PYTHONPATH": str(clone),
        "PATH_DATASETS": str(tmp_path / "no-data"),
        "NFLOWS_TUTORIAL_CHECKPOINT_URL": "http://127.0.0.1:9/",
    }
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:nbval", "-o", "addopts=-p no:cacheprovider", "-q", *SUBSET],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    summary = run.stdout.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary)[1])
    assert passed >= 5, summary  # the mask and network tests need nothing
    # One line per missing resource, each naming what provides it.
    skips = [line for line in run.stdout.splitlines() if re.match(r" *\d+ skipped: ", line)]
    reasons = [line.split("skipped: ", 1)[1] for line in skips]
    assert len(reasons) == 2, run.stdout
    assert any(r.startswith("MNIST unavailable") and "PATH_DATASETS" in r for r in reasons), reasons
    assert any(
        r.startswith("published checkpoints unavailable") and "NFLOWS_TUTORIAL_CHECKPOINT_URL" in r for r in reasons
    ), reasons
    assert str(ROOT.parent / "shared") not in run.stdout
