"""Lecture slides: one reveal.js deck per course notebook, built with nbconvert, that opens with no network.

Slide breaks come from the notebooks' cell metadata (``slideshow.slide_type``: ``slide`` for a new
slide, ``subslide`` for one below it, ``fragment`` for a step). Cells tagged ``no-slides``, and the
exercise and check cells, stay out of the decks. The decks are rendered from the stored outputs (nothing
is executed) and load reveal.js and MathJax 3 from the copy of ``nflows_tutorial/static`` written next
to them, never from a CDN.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat

from .exercises import CHECK_TAG, EXERCISE_TAG, read_course_notebooks
from .outputs import output_folder, write_outputs

__all__ = ["EXCLUDED_TAGS", "Deck", "slide_count", "build_deck", "write_decks"]

EXCLUDED_TAGS = frozenset({"no-slides", EXERCISE_TAG, CHECK_TAG})
STATIC = Path(__file__).resolve().parent / "static"
ASSETS = "static"  # folder, next to the decks, that holds reveal.js and MathJax
_STARTS = ("slide", "subslide")

# nbconvert's reveal template loads jQuery, require.js, mermaid and reveal.js from CDNs and configures
# MathJax 2. This template keeps its slide markup and replaces every script by the local files.
_TEMPLATE = r"""
{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}
<script>
window.MathJax = {
  tex: {inlineMath: [['$', '$'], ['\\(', '\\)']], displayMath: [['$$', '$$'], ['\\[', '\\]']], processEscapes: true},
  options: {ignoreHtmlClass: 'jp-CodeCell|highlight', processHtmlClass: 'jp-MarkdownCell'}
};
</script>
<script defer src="{{ resources.course_assets }}/mathjax/tex-chtml-full.js"></script>
<style>
.reveal .slides section.course-scroll { height: 100%; overflow-y: auto; }
.reveal pre, .reveal code { font-size: 0.8em; }
</style>
{%- endblock html_head_js_mathjax -%}
{%- block footer_js -%}
<script src="{{ reveal_url_prefix }}/dist/reveal.js"></script>
<script>
// A slide taller than the stage scrolls instead of spilling over the next one.
function markTallSlides() {
  const stage = document.querySelector('.reveal').getBoundingClientRect().height;
  document.querySelectorAll('.reveal .slides section section').forEach(function (s) {
    s.classList.toggle('course-scroll', s.scrollHeight > stage * 0.95);
  });
}
Reveal.initialize({
  controls: true, progress: true, history: true, hash: true,
  transition: "{{ reveal_transition }}", slideNumber: "c/t",
  width: {{ reveal_width }}, height: {{ reveal_height }}, margin: 0.04
}).then(markTallSlides);
Reveal.on('slidechanged', markTallSlides);
</script>
{%- endblock footer_js -%}
"""


@dataclass(frozen=True)
class Deck:
    """One written deck: its file and the number of slides (horizontal and vertical) it holds."""

    path: Path
    slides: int


def _kept(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if not EXCLUDED_TAGS & set(c.get("metadata", {}).get("tags", []))]


def _slide_type(cell: nbformat.NotebookNode) -> str:
    return cell.get("metadata", {}).get("slideshow", {}).get("slide_type", "-")


def slide_count(nb: nbformat.NotebookNode) -> int:
    """How many slides (horizontal and vertical, as reveal.js counts them) the deck of ``nb`` holds."""
    kept = [c for c in _kept(nb) if _slide_type(c) not in ("skip", "notes")]
    if not kept:
        return 0
    # nbconvert opens a slide at the first visible cell whatever its type.
    return 1 + sum(_slide_type(c) in _STARTS for c in kept[1:])


def build_deck(nb: nbformat.NotebookNode, title: str, assets: str = ASSETS) -> str:
    """The HTML of the reveal.js deck of ``nb``; ``assets`` is the URL of the static folder, relative to the deck."""
    from jinja2 import DictLoader
    from nbconvert import SlidesExporter
    from traitlets.config import Config

    config = Config()
    config.TagRemovePreprocessor.enabled = True
    config.TagRemovePreprocessor.remove_cell_tags = set(EXCLUDED_TAGS)
    exporter = SlidesExporter(
        config=config,
        extra_loaders=[DictLoader({"course_slides.html.j2": _TEMPLATE})],
        template_file="course_slides.html.j2",
        reveal_url_prefix=f"{assets}/reveal.js",
        reveal_theme="white",
        reveal_width="1200",
        reveal_height="800",
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    nb = nbformat.from_dict(nb)
    nb.metadata["title"] = title
    html, _ = exporter.from_notebook_node(nb, resources={"course_assets": assets})
    return html


def _title(nb: nbformat.NotebookNode, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def _assets() -> dict[str, Path]:
    """The vendored files the decks load, by their path relative to the decks' folder."""
    return {
        f"{ASSETS}/{path.relative_to(STATIC).as_posix()}": path
        for folder in ("reveal.js", "mathjax")
        for path in sorted((STATIC / folder).rglob("*"))
        if path.is_file()
    }


def write_decks(out: Path, notebooks: Path | None = None, force: bool = False) -> list[Deck]:
    """Write ``NN_name.slides.html`` for each course notebook into ``out``, with the assets beside them.

    Every notebook is read and every deck built before anything is written; files in ``out`` that
    this command did not write are never overwritten unless ``force``: see
    :mod:`nflows_tutorial.course.outputs`.
    """
    out = output_folder(out)
    sources = read_course_notebooks(notebooks)
    files: dict[str, bytes | Path] = {}
    decks = []
    for source, nb in sources:
        name = f"{source.stem}.slides.html"
        files[name] = build_deck(nb, _title(nb, source.stem)).encode("utf-8")
        decks.append(Deck(out / name, slide_count(nb)))
    write_outputs(out, {**_assets(), **files}, "slides", force)
    return decks
