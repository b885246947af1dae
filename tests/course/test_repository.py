"""Opening the course in Colab: one repository URL, links that point at real notebooks, a safe install cell."""

from __future__ import annotations

import ast
import re
import runpy
from pathlib import Path

import jupytext
import pytest

from nflows_tutorial.course.repository import BRANCH, REPO_URL

from support.repository import colab_url, github_parts

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.py"))
COLAB_LINK = re.compile(
    r"https://colab\.research\.google\.com/github/([^/\s]+)/([^/\s]+)/blob/([^/\s]+)/([^\s)`'\"<>]+)"
)
REPO_URL_LINE = re.compile(r'^REPO_URL = "([^"]*)"$', re.MULTILINE)
# Texts a reader follows to Colab: the README, the notebooks' sources, the course's Markdown pages.
LINKING_TEXTS = [ROOT / "README.md", *sorted((ROOT / "notebooks").glob("*.md")), *NOTEBOOKS]


def _first_code_cell(source: Path) -> str:
    return next(c.source for c in jupytext.read(source).cells if c.cell_type == "code")


def test_repository_url_is_a_github_repository():
    assert github_parts() == tuple(REPO_URL.removeprefix("https://github.com/").split("/"))
    with pytest.raises(ValueError, match="GitHub"):
        github_parts("https://gitlab.com/someone/fork")


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_installs_from_the_packages_repository_url(source):
    found = REPO_URL_LINE.findall(_first_code_cell(source))
    assert found == [REPO_URL], (
        f"{source.name}'s first code cell sets REPO_URL to {found}; it must repeat "
        f"nflows_tutorial.repository.REPO_URL ({REPO_URL!r}), the one place the repository is named"
    )


def test_readme_names_the_packages_repository_url():
    assert REPO_URL_LINE.findall((ROOT / "README.md").read_text(encoding="utf-8")) == [REPO_URL]


def test_every_colab_link_opens_a_notebook_of_this_repository():
    links = [(text, m) for text in LINKING_TEXTS for m in COLAB_LINK.finditer(text.read_text(encoding="utf-8"))]
    assert links, "no Colab link in the README or the notebooks: readers need one to open the course there"
    owner, name = github_parts()
    for text, match in links:
        where = f"{text.relative_to(ROOT)}: {match.group(0)}"
        assert (match.group(1), match.group(2), match.group(3)) == (owner, name, BRANCH), (
            f"{where} is not {REPO_URL}@{BRANCH}"
        )
        path = match.group(4)
        assert path.endswith(".ipynb") and (ROOT / path).is_file(), f"{where} points at {path}, not a notebook here"


def test_the_website_builds_its_colab_links_from_the_repository_url():
    conf = runpy.run_path(str(ROOT / "notebooks" / "site" / "conf.py"))
    options = conf["html_theme_options"]
    assert (options["repository_url"], options["repository_branch"]) == (REPO_URL, BRANCH)
    # The site's sources mirror the repository root, so the theme's link for page P is colab_url(P.ipynb).
    assert (
        options["path_to_docs"] == "" and options["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    )
    for source in NOTEBOOKS:
        path = source.relative_to(ROOT).with_suffix(".ipynb").as_posix()
        assert (ROOT / path).is_file()
        assert (
            colab_url(path)
            == f"https://colab.research.google.com/github/{'/'.join(github_parts())}/blob/{BRANCH}/{path}"
        )


def _pip_arguments(call: ast.Call) -> list[str]:
    """The string pieces of a ``subprocess.run([...])`` argument list, f-strings' literal parts included."""
    if not call.args:
        return []
    return [n.value for n in ast.walk(call.args[0]) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_cell_installs_the_package_only_when_missing_and_keeps_colabs_torch(source):
    tree = ast.parse(_first_code_cell(source))
    guards = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Try)
        and any(isinstance(s, ast.Import) and any(a.name == "nflows_tutorial" for a in s.names) for s in node.body)
    ]
    assert len(guards) == 1, f"{source.name}: the first code cell must try `import nflows_tutorial` before installing"
    handlers = guards[0].handlers
    caught = {h.type.id for h in handlers if isinstance(h.type, ast.Name)}
    assert caught & {"ImportError", "ModuleNotFoundError"} and len(handlers) == 1, (
        f"{source.name}: install only on ImportError, so a present package (a local clone, a rerun) is kept"
    )
    installs = [n for n in ast.walk(handlers[0]) if isinstance(n, ast.Call) and "pip" in _pip_arguments(n)]
    assert len(installs) == 1, f"{source.name}: the ImportError branch must run one pip install"
    arguments = _pip_arguments(installs[0])
    assert "install" in arguments
    replacing = {"-U", "--upgrade", "--force-reinstall", "--ignore-installed", "-I"} & set(arguments)
    assert not replacing, f"{source.name}: {replacing} would replace Colab's torch"
    assert not any(re.match(r"torch\b", a.strip()) for a in arguments), f"{source.name}: installs torch itself"
    names = {n.id for n in ast.walk(installs[0].args[0]) if isinstance(n, ast.Name)}
    assert "REPO_URL" in names, f"{source.name}: pip must install from REPO_URL"
    outside = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and "pip" in _pip_arguments(n)]
    assert outside == installs, f"{source.name}: pip runs outside the ImportError branch"


def test_torch_requirement_accepts_colabs_torch():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    torch_lines = re.findall(r'"(torch(?:vision)?\b[^"]*)"', text)
    assert torch_lines, "pyproject.toml declares no torch requirement"
    for requirement in torch_lines:
        assert "<" not in requirement and "==" not in requirement, (
            f"{requirement!r} caps torch: pip would replace Colab's newer torch when installing the course"
        )
