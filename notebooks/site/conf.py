"""Sphinx configuration of the course website (built by ``python -m nflows_tutorial site --out DIR``).

The builder stages the sources into one folder that mirrors the repository: the home page
``index.md`` and ``developers.md`` from here at its root, ``api.md`` generated from the package's
modules, ``notebooks/*.ipynb`` and the course's Markdown pages, ``docs/performance.md``, the
README (not a page), and under ``_as_is/`` the decks (and PDFs), copied to the site as they are. Links between pages are written as between the files of the repository. The
notebooks are shown with their stored outputs and never executed: nbval already checks that those
outputs are what the committed code produces.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nflows_tutorial
from nflows_tutorial.course.handouts import pdf_name
from nflows_tutorial.course.repository import BRANCH, REPO_URL
from nflows_tutorial.course.site import AS_IS, DECKS, NOTEBOOKS
from nflows_tutorial.io.paths import course_notebooks

STATIC = Path(nflows_tutorial.__file__).resolve().parent / "course" / "static"

project = "Deep normalizing flows on MNIST"
author = "the nflows-tutorial authors"
copyright = author
release = nflows_tutorial.__version__
html_title = project
html_favicon = "favicon.svg"

sys.path.insert(0, str(Path(__file__).resolve().parent))  # this folder's own extension
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax", "repository_links"]
root_doc = "index"
# The README is the repository's front page, not one of the site's: index.md is the course's.
exclude_patterns = ["README.md", "_build", "**.ipynb_checkpoints", AS_IS]

# Notebooks: stored outputs only, and no widget JavaScript from a CDN.
nb_execution_mode = "off"
nb_ipywidgets_js: dict[str, dict[str, str]] = {}
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "substitution"]
myst_heading_anchors = 3


def _colab_link(notebook: Path) -> str:
    owner_and_name = REPO_URL.removeprefix("https://github.com/")
    return f"[Colab](https://colab.research.google.com/github/{owner_and_name}/blob/{BRANCH}/notebooks/{notebook.name})"


# The home page's "Open in Colab" links ({{ colab_01 }}, ...), built from the one repository URL.
myst_substitutions = {f"colab_{notebook.name[:2]}": _colab_link(notebook) for notebook in course_notebooks(NOTEBOOKS)}

# API reference: signatures with their type hints, members in source order. The docstrings use
# "Arguments:" / "Example:" sections (napoleon's Google style). A method without a docstring of its
# own shows none, rather than the docstring of the Lightning method it overrides.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_inherit_docstrings = False
napoleon_numpy_docstring = False

# MathJax from the package's vendored copy, copied into _static/mathjax after the build.
mathjax_path = "mathjax/tex-chtml-full.js"

html_theme = "sphinx_book_theme"
html_theme_options = {
    "repository_url": REPO_URL,
    "repository_branch": BRANCH,
    # The staged sources mirror the repository root, so a page's name is its path in the repository.
    "path_to_docs": "",
    "use_repository_button": True,
    "use_download_button": True,
    "launch_buttons": {"colab_url": "https://colab.research.google.com"},
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
}
# Figures in the notebooks are drawn for a light background.
html_context = {"default_mode": "light"}
html_last_updated_fmt = None
html_show_sphinx = False


def _copy_mathjax(app, exception) -> None:
    """Put the vendored MathJax (script and fonts) where ``mathjax_path`` points."""
    if exception is None and app.builder.format == "html":
        shutil.copytree(STATIC / "mathjax", Path(app.outdir) / "_static" / "mathjax", dirs_exist_ok=True)


def _deck_links(app, config) -> None:
    """Ship the staged decks, and link them from the home page ({{ slides_01 }}, ...): the deck, and its PDF if printed."""
    staged = Path(app.srcdir) / AS_IS
    if staged.is_dir():
        config.html_extra_path = [str(staged)]
    for notebook in course_notebooks(NOTEBOOKS):
        deck = f"{DECKS}/{notebook.stem}.slides.html"
        built = [(path, kind) for path, kind in ((deck, "deck"), (pdf_name(deck), "PDF")) if (staged / path).is_file()]
        links = " · ".join(f'<a href="{path}">{kind}</a>' for path, kind in built)
        config.myst_substitutions[f"slides_{notebook.name[:2]}"] = links or "(not built)"


def setup(app) -> None:
    app.connect("config-inited", _deck_links)
    app.connect("build-finished", _copy_mathjax)
