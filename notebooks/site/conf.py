"""Sphinx configuration of the course website (built by ``python -m nflows_tutorial site --out DIR``).

The builder stages the sources into one folder that mirrors the repository (``index.md`` from here,
``api.md`` generated from the package's modules, ``README.md``, ``notebooks/*.ipynb`` and the
course's Markdown pages), so the relative links between README, notebooks and pages resolve as they
do on GitHub. The notebooks are shown with their stored outputs and never executed: nbval already
checks that those outputs are what the committed code produces.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nflows_tutorial
from nflows_tutorial.course.repository import BRANCH, REPO_URL

STATIC = Path(nflows_tutorial.__file__).resolve().parent / "course" / "static"

project = "Deep normalizing flows on MNIST"
author = "the nflows-tutorial authors"
copyright = author
release = nflows_tutorial.__version__
html_title = project

sys.path.insert(0, str(Path(__file__).resolve().parent))  # this folder's own extension
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax", "repository_links"]
root_doc = "index"
# README.md is shown through index.md's include, not as a page of its own.
exclude_patterns = ["README.md", "_build", "**.ipynb_checkpoints"]

# Notebooks: stored outputs only, and no widget JavaScript from a CDN.
nb_execution_mode = "off"
nb_ipywidgets_js: dict[str, dict[str, str]] = {}
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

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


def setup(app) -> None:
    app.connect("build-finished", _copy_mathjax)
