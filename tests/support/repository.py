"""Links built from the course's repository URL, as the website's Colab buttons and the README spell them."""

from __future__ import annotations

from urllib.parse import urlparse

from nflows_tutorial.course.repository import BRANCH, REPO_URL


def github_parts(repo_url: str = REPO_URL) -> tuple[str, str]:
    """The ``(owner, name)`` of a ``https://github.com/OWNER/NAME`` repository URL."""
    parsed = urlparse(repo_url)
    parts = [p for p in parsed.path.strip("/").removesuffix(".git").split("/") if p]
    if parsed.scheme != "https" or parsed.netloc != "github.com" or len(parts) != 2:
        raise ValueError(
            f"repository URL {repo_url!r} is not of the form https://github.com/OWNER/NAME; "
            "Colab opens notebooks from GitHub only, so point REPO_URL at a GitHub repository"
        )
    return parts[0], parts[1]


def colab_url(notebook_path: str, repo_url: str = REPO_URL, branch: str = BRANCH) -> str:
    """The Colab address that opens ``notebook_path`` (relative to the repository root) from GitHub."""
    if not notebook_path.endswith(".ipynb") or notebook_path.startswith("/"):
        raise ValueError(f"{notebook_path!r} is not a repository-relative path to an .ipynb file")
    owner, name = github_parts(repo_url)
    return f"https://colab.research.google.com/github/{owner}/{name}/blob/{branch}/{notebook_path}"
