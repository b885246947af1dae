"""Sphinx extension of the course website: links to files of the repository that are not pages.

The course's Markdown may link to any file of the repository, as it would on GitHub: the README, a
notebook's ``.py`` source, ``execute.sh``, a module of the package. None of these is a page of the
website, so a link to the README goes to the home page (the course's own front page) and a link to
another file goes to the file on GitHub (at :data:`nflows_tutorial.repository.REPO_URL`) instead of
being reported as missing. Links to files the repository does not hold are left alone, so they still fail the build.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform

from nflows_tutorial.course.repository import BRANCH, REPO_URL
from nflows_tutorial.course.site import ROOT

README_DOC = "README"


class RepositoryFileLinks(SphinxPostTransform):
    """Point unresolved Markdown links at the home page (for the README) or at the file on GitHub."""

    default_priority = 8  # before myst-parser's resolver (9), which reports unresolved links

    def run(self, **kwargs: Any) -> None:
        for node in list(self.document.findall(addnodes.pending_xref)):
            if node.get("reftype") != "myst":
                continue
            if node.get("refdomain") == "doc" and node["reftarget"] == README_DOC:
                node["reftarget"] = self.config.root_doc
            elif node.get("refdomain") is None:
                self._to_github(node)

    def _to_github(self, node: addnodes.pending_xref) -> None:
        target, _, fragment = node["reftarget"].partition("#")
        relative, _ = self.env.relfn2path(target, node.get("refdoc", self.env.docname))
        path = (ROOT / relative).resolve()
        if not path.is_relative_to(ROOT) or not path.exists():
            return
        kind = "tree" if path.is_dir() else "blob"
        url = f"{REPO_URL}/{kind}/{BRANCH}/{path.relative_to(ROOT).as_posix()}" + (f"#{fragment}" if fragment else "")
        node.replace_self(nodes.reference("", "", *node.children, refuri=url, internal=False))


def setup(app: Sphinx) -> dict[str, bool]:
    app.add_post_transform(RepositoryFileLinks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
