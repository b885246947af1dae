"""The documentation names files that exist: every repository path a Markdown page quotes is there.

A path in backticks under one of the repository's own folders (``tests/course/test_site.py``,
``nflows_tutorial/course/repository.py``, ``notebooks/grading.md``) must name a file or folder of the
checkout, and a ``path::test_name`` a test defined in that file. Moving a module then fails here until
the pages that send a reader to it are updated.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("tests", "nflows_tutorial", "notebooks", "benchmarks", "docs", ".ci")
QUOTED = re.compile(rf"`((?:{'|'.join(re.escape(f) for f in FOLDERS)})/[A-Za-z0-9_./-]+)(?:::(\w+))?")


def _pages() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: the documentation's pages are the tracked Markdown files")
    # The vendored front-end assets' own READMEs speak of their upstream repositories.
    return [ROOT / name for name in listed.stdout.split() if "/static/" not in name]


def test_quoted_repository_paths_exist():
    missing = []
    quoted = 0
    for page in _pages():
        for match in QUOTED.finditer(page.read_text(encoding="utf-8")):
            quoted += 1
            path, test = (ROOT / match.group(1).rstrip(".")), match.group(2)
            where = f"{page.relative_to(ROOT)}: {match.group(0)}`"
            if not path.exists():
                missing.append(f"{where} (no such file)")
            elif test and not re.search(rf"^def {test}\(", path.read_text(encoding="utf-8"), re.MULTILINE):
                missing.append(f"{where} (no test {test} in {match.group(1)})")
    assert quoted > 20, f"only {quoted} repository paths quoted in the pages: is the pattern still right?"
    assert not missing, "pages name files that are not there:\n" + "\n".join(missing)
