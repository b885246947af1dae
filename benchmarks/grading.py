"""How long nbgrader takes to autograde one student's whole submission (every notebook of the course).

Usage (from the checkout, its environment active)::

    python benchmarks/grading.py [--keep DIR] [--all-cells]

It writes the nbgrader course into a temporary folder (or ``DIR``), generates every assignment,
submits the solutions as one student, and times ``nbgrader autograde "*" --student bench``: the
kernel starts, the notebooks' imports, and every exercise's visible and hidden checks. Grading runs
as it does for a class: offline (no checkpoint mirror answers), without a GPU, in quick mode. MNIST and
the three models' checkpoints must already be on disk (see notebooks/grading.md). The target is 90 s
on a 2-core laptop CPU. ``--all-cells`` runs every cell of the notebooks, as grading does with
``c.GradingSlice.enabled = False``, for comparison.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nflows_tutorial.course.grading import missing_for_grading, write_nbgrader_course

STUDENT = "bench"


def nbgrader(root: Path, *args: str) -> float:
    """Run ``nbgrader ARGS`` on the course in ``root`` as a grader does; return its seconds (exit on failure)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env |= {"CUDA_VISIBLE_DEVICES": "", "NFLOWS_TUTORIAL_CHECKPOINT_URL": "http://127.0.0.1:9/offline/"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={root}"],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        sys.exit(f"nbgrader {' '.join(args)} failed:\n{(done.stdout + done.stderr)[-4000:]}")
    return time.perf_counter() - start


def score(root: Path) -> tuple[float, float]:
    """The student's score and the most it could be, over every assignment."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        submissions = [gradebook.find_submission(a.name, STUDENT) for a in gradebook.assignments]
        return sum(s.score for s in submissions), sum(s.max_score for s in submissions)


def main() -> int:
    """Build the course, submit the solutions, time their autograding and print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the course here and keep it (default: a temporary folder)")
    parser.add_argument("--all-cells", action="store_true", help="run every cell, not only what the exercises need")
    args = parser.parse_args()
    missing = missing_for_grading()
    if missing:
        sys.exit("grading would download: " + "; ".join(missing))
    root = args.keep or Path(tempfile.mkdtemp(prefix="nflows-grading-"))
    try:
        write_nbgrader_course(root)
        nbgrader(root, "generate_assignment", "*")
        for notebook in sorted((root / "source").glob("*/*.ipynb")):
            # The source version is a fully solved submission; autograding puts the hidden tests back anyway.
            folder = root / "submitted" / STUDENT / notebook.parent.name
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(notebook, folder / notebook.name)
        every = ["--GradingSlice.enabled=False"] if args.all_cells else []
        seconds = nbgrader(root, "autograde", "*", "--student", STUDENT, *every)
        points, most = score(root)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"autograded one student's submission ({points:g}/{most:g} points) in {seconds:.1f} s on {cpus} CPUs")
    return 0 if points == most else 1


if __name__ == "__main__":
    sys.exit(main())
