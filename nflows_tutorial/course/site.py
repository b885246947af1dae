"""The course website: a home page on the course, the notebooks with their stored outputs, the decks
(and, on request, their PDF handouts), the course pages, a page for developers and the API.

``python -m nflows_tutorial site --out DIR`` stages the sources into one folder that mirrors the
repository and runs Sphinx (myst-nb, sphinx-book-theme) on it with warnings as errors. The result is a
static folder that needs no network: MathJax is the package's vendored copy. It needs the ``site``
extra (``pip install -e ".[site]"``) and a clone of the repository, since the notebooks are not
installed with the package.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import shutil
import tempfile
from pathlib import Path

from ..io.paths import CHECKOUT, course_notebooks
from .outputs import output_folder, write_outputs
from .slides import course_decks

__all__ = [
    "SITE_SOURCES",
    "SITE_PAGES",
    "REPOSITORY_PAGES",
    "SiteBuildError",
    "api_page",
    "build_site",
    "course_pages",
]

ROOT = CHECKOUT
NOTEBOOKS = ROOT / "notebooks"
SITE_SOURCES = NOTEBOOKS / "site"
#: Pages written for the website, in ``notebooks/site/``, staged at the root of the site.
SITE_PAGES = ("index.md", "developers.md")
#: Pages of the repository shown on the website as they are, by their path in the repository.
REPOSITORY_PAGES = ("docs/performance.md",)
#: Folder of the staged sources whose contents Sphinx copies to the site's root as they are (conf.py).
AS_IS = "_as_is"
#: Folder of the site that holds the decks and their assets.
DECKS = "slides"
PACKAGE = __name__.partition(".")[0]
NEEDED = ("sphinx", "myst_nb", "sphinx_book_theme")


class SiteBuildError(RuntimeError):
    """The website could not be built; the message says what is missing or which warnings stopped it."""


def course_pages(notebooks: Path = NOTEBOOKS) -> list[Path]:
    """The files that become pages of the course: the numbered notebooks and the Markdown pages beside them."""
    notebook_files = course_notebooks(notebooks)
    markdown_pages = sorted(p for p in notebooks.glob("*.md") if p.name != "README.md")
    return notebook_files + markdown_pages


def _module_tree(package: str) -> dict[str, bool]:
    """Each public module of ``package`` (no name part starting with an underscore): is it a package?"""
    found = {package: True}
    for info in pkgutil.walk_packages(importlib.import_module(package).__path__, prefix=f"{package}."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            found[info.name] = info.ispkg
    return dict(sorted(found.items()))


def api_page(package: str = PACKAGE) -> str:
    """The Markdown of the API reference: one section per public module, its members from the docstrings.

    Packages show only their own docstring: the classes they re-export are documented once, in the
    module that defines them.
    """
    lines = ["# API reference", "", f"The `{package}` package, module by module, as its docstrings describe it.", ""]
    for name, is_package in _module_tree(package).items():
        # Docstrings are reStructuredText, so autodoc's output is parsed as such, not as Markdown.
        lines += [f"## `{name}`", "", "```{eval-rst}", f".. automodule:: {name}"]
        if not is_package:
            lines.append("   :members:")
        lines += ["```", ""]
    return "\n".join(lines)


def _stage(into: Path) -> None:
    """Copy the site's sources into ``into``, laid out as in the repository (the site's own pages at its root)."""
    needed = [SITE_SOURCES / "conf.py", *(SITE_SOURCES / name for name in SITE_PAGES), ROOT / "README.md"]
    for source in needed + [ROOT / name for name in REPOSITORY_PAGES]:
        if not source.is_file():
            raise SiteBuildError(
                f"{source} not found: the website is built from a clone of the repository "
                "(the notebooks and the site's sources are not installed with the package)"
            )
    for name in SITE_PAGES:
        shutil.copy2(SITE_SOURCES / name, into / name)
    # Not a page: a link to it from a course page goes to the home page (see repository_links.py).
    shutil.copy2(ROOT / "README.md", into / "README.md")
    for name in REPOSITORY_PAGES:
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, into / name)
    (into / "api.md").write_text(api_page(), encoding="utf-8")
    (into / "notebooks").mkdir()
    for page in course_pages():
        shutil.copy2(page, into / "notebooks" / page.name)


def _stage_decks(into: Path, pdf: bool) -> None:
    """Put the decks (and with ``pdf`` their PDFs) where Sphinx copies them to the site's ``slides/`` folder."""
    for name, content in course_decks(pdf=pdf).files.items():
        target = into / AS_IS / DECKS / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_bytes(content)


def build_site(out: Path, quiet: bool = True, force: bool = False, pdf: bool = False) -> Path:
    """Build the website into ``out`` (created if missing) and return the path of its landing page.

    The site carries each notebook's deck in ``slides/``, linked from the home page; with ``pdf``, its
    PDF handout too (printed by Chromium: see :mod:`nflows_tutorial.course.handouts`).

    Sphinx builds into a temporary folder; only a complete build is copied into ``out``, and files
    there that this command did not write are never overwritten unless ``force`` (see
    :mod:`nflows_tutorial.course.outputs`). Any Sphinx warning fails the build with
    :class:`SiteBuildError`; the warnings themselves are printed on standard error.
    """
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise SiteBuildError(
            f"building the website needs {', '.join(missing)}: install the site extra with "
            '`pip install -e ".[site]"` from the repository root'
        )
    from sphinx.cmd.build import build_main

    out = output_folder(Path(out).resolve())
    with tempfile.TemporaryDirectory(prefix="nflows-site-") as work:
        sources, doctrees, html = Path(work) / "src", Path(work) / "doctrees", Path(work) / "html"
        sources.mkdir()
        _stage(sources)
        _stage_decks(sources, pdf)
        options = ["-b", "html", "-W", "--keep-going", "-c", str(SITE_SOURCES), "-d", str(doctrees)]
        status = build_main([*options, *(["-q"] if quiet else []), str(sources), str(html)])
        if status != 0:
            raise SiteBuildError(f"Sphinx stopped with status {status}: the warnings printed above are errors")
        built = {path.relative_to(html).as_posix(): path for path in sorted(html.rglob("*")) if path.is_file()}
        write_outputs(out, built, "site", force)
    return out / "index.html"
