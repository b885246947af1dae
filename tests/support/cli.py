"""Running the command line as a user does: ``python -m nflows_tutorial ...`` in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m nflows_tutorial ARGS`` in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "nflows_tutorial", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=1200,
    )


def start_cli(*args: str, log: Path) -> subprocess.Popen:
    """Start ``python -m nflows_tutorial ARGS`` without waiting for it; its output goes to ``log``."""
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "nflows_tutorial", *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
