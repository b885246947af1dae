"""Where the course is published: the repository URL and branch that links and installs are built from.

:data:`REPO_URL` is the one place to change for a fork or a course mirror. The notebooks' first cell
installs the package from the same URL (a notebook cannot import it before the package is there, so
it repeats the string; a test checks that the two agree), and the website builds its "Open in Colab"
links from it.
"""

from __future__ import annotations

__all__ = ["BRANCH", "REPO_URL"]

REPO_URL = "https://github.com/nflows-tutorial/nflows-tutorial"
BRANCH = "main"
