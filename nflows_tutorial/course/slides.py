"""Lecture slides: one reveal.js deck per course notebook, built with nbconvert, that opens with no network.

Slide breaks come from the notebooks' cell metadata (``slideshow.slide_type``: ``slide`` for a new
slide, ``subslide`` for one below it, ``fragment`` for a step, ``notes`` for the speaker's notes of the
slide above). Cells tagged ``no-slides``, and the exercise and check cells, stay out of the decks. The
decks are rendered from the stored outputs (nothing is executed) and load reveal.js, its speaker-notes
plugin and MathJax 3 from the copy of ``nflows_tutorial/course/static`` written next to them, never
from a CDN.

A slide is made for a room from the notebook's own cells: the reading text of a Markdown cell is the
speaker notes of its slide (``s`` opens reveal.js's speaker view), and the slide shows the cell's
headings and the short Markdown in its metadata, ``slideshow.text``, which Jupyter never shows a reader
(a heading in it replaces the cell's; an empty text leaves the whole cell to the notes). A cell without
slide text is shown whole when it has at most :data:`SLIDE_WORDS` words of prose, and is notes
otherwise. What a cell that opens a slide says before its first heading is about the slide before, and
goes to that slide's notes. A code cell shows its stored output, its code too when that is at most
:data:`SLIDE_CODE_LINES` lines and ``slideshow.code`` is not false, and its ``slideshow.text`` above
it. Every slide is laid out on the :data:`WIDTH` x :data:`HEIGHT` stage, its figures scaled to the room
the text leaves them.

With ``pdf=True`` each deck is also printed to a PDF beside it, one page per slide (and, with
``notes=True``, pages of speaker notes): see :mod:`nflows_tutorial.course.handouts`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat.v4 import new_markdown_cell

from .exercises import CHECK_TAG, EXERCISE_TAG, read_course_notebooks
from .handouts import page_count, pdf_name, print_decks
from .outputs import output_folder, write_outputs

__all__ = [
    "EXCLUDED_TAGS",
    "WIDTH",
    "HEIGHT",
    "MARGIN",
    "SLIDE_WORDS",
    "SLIDE_CODE_LINES",
    "Deck",
    "DeckFiles",
    "prose_words",
    "deck_cells",
    "slide_count",
    "build_deck",
    "course_decks",
    "write_decks",
]

EXCLUDED_TAGS = frozenset({"no-slides", EXERCISE_TAG, CHECK_TAG})
STATIC = Path(__file__).resolve().parent / "static"
ASSETS = "static"  # folder, next to the decks, that holds reveal.js and MathJax
#: The stage every slide is laid out on, in CSS pixels (16:9, as projectors show it), and reveal.js's
#: margin around it, as a fraction of its size.
WIDTH, HEIGHT, MARGIN = 1280, 720, 0.04
#: The most words of prose a slide shows (outside code and formulas), and the most lines of code.
SLIDE_WORDS, SLIDE_CODE_LINES = 45, 12
#: How much larger than its stored size a figure may be drawn to fill its slide.
FIGURE_ZOOM = 1.5
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
/* Each slide is a column as tall as the stage: text keeps its size, figures take the room that is left. */
.reveal .slides > section > section, html.reveal-print .reveal .slides .pdf-page > section {
  height: {{ resources.course_height }}px; box-sizing: border-box; padding: 0 8px;
  flex-direction: column; justify-content: safe center; text-align: left;
}
html.reveal-print .reveal .slides .pdf-page > section { display: flex !important; }
.reveal .slides section > * { flex: none; }
.reveal .slides section .jp-Cell { padding: 2px 0; }
.reveal .slides section .jp-Cell:has(img),
.reveal .slides section .jp-Cell:has(img) .jp-Cell-outputWrapper,
.reveal .slides section .jp-Cell:has(img) .jp-OutputArea,
.reveal .slides section .jp-Cell:has(img) .jp-OutputArea-child:has(img),
.reveal .slides section .jp-Cell:has(img) .jp-OutputArea-output:has(img) {
  display: flex; flex-direction: column; flex: 1 1 0; min-height: 0; overflow: visible;
}
.reveal .slides section .jp-Cell:has(img) .jp-Cell-inputWrapper,
.reveal .slides section .jp-Cell:has(img) .jp-OutputArea-child:not(:has(img)) { flex: none; }
.reveal .slides section .jp-OutputArea-output img {
  flex: 1 1 0; min-height: 0; width: 100%; height: auto; max-width: 100%; max-height: 100%;
  object-fit: contain; margin: auto;
}
.reveal .slides section .jp-Cell .jp-OutputArea.course-figure-row { flex-direction: row; gap: 16px; }
.reveal .slides section .jp-Cell .jp-OutputArea.course-figure-row > .jp-OutputArea-child { min-width: 0; }
.reveal .slides section .jp-OutputArea-prompt, .reveal .slides section .jp-InputPrompt { display: none; }
.reveal .jp-MarkdownCell .jp-RenderedHTMLCommon { font-size: 30px; line-height: 1.35; padding-right: 0; }
.reveal .jp-MarkdownCell .jp-RenderedHTMLCommon :is(h1, h2, h3) { text-transform: none; line-height: 1.2; }
.reveal .jp-MarkdownCell .jp-RenderedHTMLCommon h1 { font-size: 1.55em; margin: 0 0 0.4em; }
.reveal .jp-MarkdownCell .jp-RenderedHTMLCommon h2 { font-size: 1.4em; margin: 0 0 0.4em; }
.reveal .jp-MarkdownCell .jp-RenderedHTMLCommon h3 { font-size: 1.15em; margin: 0 0 0.4em; }
.reveal .jp-MarkdownCell .jp-RenderedHTMLCommon li { margin-bottom: 0.25em; }
.reveal .jp-MarkdownCell .jp-RenderedHTMLCommon mjx-container[display="true"] { margin: 0.4em 0; }
.reveal .slides pre { width: auto; max-width: 100%; box-sizing: border-box; }
.reveal .jp-CodeCell .jp-InputArea pre { font-size: 20px; line-height: 1.3; white-space: pre-wrap; margin: 0; }
.reveal .jp-OutputArea-output pre { font-size: 19px; line-height: 1.25; white-space: pre-wrap; margin: 0; }
.reveal .jp-OutputArea-output table { font-size: 19px; }
.reveal .slides section.course-scroll { overflow-y: auto; }
/* Printed speaker notes are read at arm's length. */
.reveal .speaker-notes-pdf .jp-MarkdownCell .jp-RenderedHTMLCommon { font-size: 20px; line-height: 1.3; }
</style>
{%- endblock html_head_js_mathjax -%}
{%- block footer_js -%}
<script src="{{ reveal_url_prefix }}/dist/reveal.js"></script>
<script src="{{ reveal_url_prefix }}/plugin/notes/notes.js"></script>
<script>
const settings = {
  controls: true, progress: true, history: true, hash: true,
  transition: "{{ reveal_transition }}", slideNumber: "c/t", display: "flex", plugins: [RevealNotes],
  width: {{ reveal_width }}, height: {{ reveal_height }}, margin: {{ resources.course_margin }}
};
// A figure may grow to fill its slide, but not far beyond the size it was drawn at; a cell's figures
// stand side by side.
function capFigures() {
  document.querySelectorAll('.reveal .slides .jp-OutputArea-output img').forEach(function (img) {
    img.style.maxWidth = 'min(100%, ' + img.naturalWidth * {{ resources.course_zoom }} + 'px)';
    img.style.maxHeight = img.naturalHeight * {{ resources.course_zoom }} + 'px';
  });
  document.querySelectorAll('.reveal .slides .jp-OutputArea').forEach(function (area) {
    const outputs = [...area.children];
    area.classList.toggle('course-figure-row', outputs.length > 1 && outputs.every(o => o.querySelector('img')));
  });
}
// A slide whose content is taller than the stage scrolls instead of spilling over the next one.
function markTallSlides() {
  document.querySelectorAll('.reveal .slides section section').forEach(function (s) {
    s.classList.toggle('course-scroll', s.scrollHeight > s.clientHeight + 1);
  });
}
// Paper does not scroll: a slide taller than its page is zoomed out to fit it, centred across. Zoom, not
// a transform, so that the slide's box fits the page too and the printer does not cut it into pages.
function fitPrintedSlides() {
  document.querySelectorAll('.reveal .pdf-page').forEach(function (page) {
    const slide = page.querySelector('section');
    if (!slide || slide.scrollHeight <= page.clientHeight) return;
    const zoom = page.clientHeight / slide.scrollHeight;
    slide.style.top = '0px';
    slide.style.left = (page.clientWidth / zoom - slide.offsetWidth) / 2 + 'px';
    slide.style.zoom = zoom;
  });
  document.documentElement.dataset.coursePrintReady = 'true';
}
if (/print-pdf/i.test(window.location.search)) {
  // reveal.js measures each slide once to lay out the pages, so the formulas are typeset first; one
  // page per slide, every fragment shown.
  window.addEventListener('load', function () {
    capFigures();
    MathJax.startup.promise.then(function () {
      Reveal.on('pdf-ready', fitPrintedSlides);
      Reveal.initialize(Object.assign(settings, {pdfMaxPagesPerSlide: 1, pdfSeparateFragments: false}));
    });
  });
} else {
  window.addEventListener('load', capFigures);
  Reveal.initialize(settings).then(markTallSlides);
  Reveal.on('slidechanged', markTallSlides);
}
</script>
{%- endblock footer_js -%}
"""


@dataclass(frozen=True)
class Deck:
    """One written deck: its file, the number of slides (horizontal and vertical) it holds, and its PDF if printed."""

    path: Path
    slides: int
    pdf: Path | None = None
    pages: int | None = None


def _kept(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if not EXCLUDED_TAGS & set(c.get("metadata", {}).get("tags", []))]


def _slide_type(cell: nbformat.NotebookNode) -> str:
    return cell.get("metadata", {}).get("slideshow", {}).get("slide_type", "-")


_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_NOT_PROSE = re.compile(
    r"\$\$.*?\$\$|\\\[.*?\\\]|\$[^$\n]+\$|`[^`\n]*`|<[^>\n]*>|\]\([^)\n]*\)",
    re.DOTALL,
)
_HEADING = re.compile(r"^#{1,6}\s")


def prose_words(markdown: str) -> int:
    """How many words of prose ``markdown`` holds: code, formulas, HTML tags and link targets left out."""
    text = _NOT_PROSE.sub(" ", _FENCE.sub(" ", markdown))
    return sum(1 for word in text.split() if re.search(r"[^\W_]", word))


def _heading_lines(markdown: str) -> list[bool]:
    """For each line of ``markdown``: is it a heading (and not a line of a code block)?"""
    flags, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith(("```", "~~~")):
            fenced = not fenced
        flags.append(not fenced and bool(_HEADING.match(line)))
    return flags


def _headings_and_prose(markdown: str) -> tuple[list[str], str]:
    """The heading lines of ``markdown``, and the rest of it."""
    lines = markdown.splitlines()
    flags = _heading_lines(markdown)
    prose = "\n".join(line for line, heading in zip(lines, flags) if not heading)
    return [line for line, heading in zip(lines, flags) if heading], prose.strip()


def _derived(cell: nbformat.NotebookNode, part: str, markdown: str, slide_type: str) -> nbformat.NotebookNode:
    """A Markdown cell made from part of ``cell``, with an id drawn from ``cell``'s so that a deck is built the same each time."""
    return new_markdown_cell(
        markdown, id=f"{cell.get('id', 'cell')}-{part}", metadata={"slideshow": {"slide_type": slide_type}}
    )


def _markdown_slide(cell: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """A Markdown cell as its slide shows it: its headings and slide text, then its reading text as notes.

    A cell without ``slideshow.text`` is shown whole when it has at most :data:`SLIDE_WORDS` words of
    prose. A cell that shows nothing still marks where its slide starts. When a cell that opens a slide
    speaks of the slide before until its first heading, that part is the notes of the slide before.
    """
    text = cell.metadata.get("slideshow", {}).get("text")
    if text is None and prose_words(cell.source) <= SLIDE_WORDS:
        return [cell]
    lines, opens = cell.source.splitlines(), _slide_type(cell) in _STARTS
    first = next((n for n, heading in enumerate(_heading_lines(cell.source)) if heading), 0) if opens else 0
    lead, source = "\n".join(lines[:first]).strip(), "\n".join(lines[first:])
    cells = [_derived(cell, "lead", lead, "notes")] if lead else []
    headings, prose = _headings_and_prose(source)
    if text == "":
        headings, prose = [], source.strip()
    elif text and _headings_and_prose(text)[0]:
        headings = []  # the slide text brings its own title
    shown = nbformat.from_dict(cell)
    shown.source = "\n\n".join([*headings, *([text] if text else [])])
    cells.append(shown)
    if prose:
        cells.append(_derived(cell, "notes", prose, "notes"))
    return cells


def _code_slide(cell: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """A code cell as its slide shows it: its slide text above it, and its code unless too long or turned off."""
    slideshow = cell.metadata.get("slideshow", {})
    shown = nbformat.from_dict(cell)
    if len(cell.source.splitlines()) > SLIDE_CODE_LINES or not slideshow.get("code", True):
        shown.metadata["transient"] = {"remove_source": True}
    if not slideshow.get("text"):
        return [shown]
    # The text opens the cell's place in the deck, a new slide if the cell opens one.
    text = _derived(cell, "text", slideshow["text"], _slide_type(cell))
    shown.metadata["slideshow"] = {**slideshow, "slide_type": "-"}
    return [text, shown]


def deck_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The cells of ``nb``'s deck, in order: what each slide shows, and the speaker notes after it.

    The cells tagged with one of :data:`EXCLUDED_TAGS` are left out; a Markdown cell is split into
    what its slide shows and its notes (see :func:`_markdown_slide`); a code cell shows its slide text
    above it, and its code only when that is at most :data:`SLIDE_CODE_LINES` lines and its
    ``slideshow.code`` is not false.
    """
    cells = []
    for cell in _kept(nb):
        if _slide_type(cell) in ("skip", "notes"):
            cells.append(cell)
        elif cell.cell_type == "markdown":
            cells.extend(_markdown_slide(cell))
        elif cell.cell_type == "code":
            cells.extend(_code_slide(cell))
        else:
            cells.append(cell)
    return cells


def slide_count(nb: nbformat.NotebookNode) -> int:
    """How many slides (horizontal and vertical, as reveal.js counts them) the deck of ``nb`` holds."""
    shown = [c for c in deck_cells(nb) if _slide_type(c) not in ("skip", "notes")]
    if not shown:
        return 0
    # nbconvert opens a slide at the first visible cell whatever its type.
    return 1 + sum(_slide_type(c) in _STARTS for c in shown[1:])


def build_deck(nb: nbformat.NotebookNode, title: str, assets: str = ASSETS) -> str:
    """The HTML of the reveal.js deck of ``nb``; ``assets`` is the URL of the static folder, relative to the deck."""
    from jinja2 import DictLoader
    from nbconvert import SlidesExporter

    exporter = SlidesExporter(
        extra_loaders=[DictLoader({"course_slides.html.j2": _TEMPLATE})],
        template_file="course_slides.html.j2",
        reveal_url_prefix=f"{assets}/reveal.js",
        reveal_theme="white",
        reveal_width=str(WIDTH),
        reveal_height=str(HEIGHT),
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    deck = nbformat.from_dict(nb)
    deck.cells = deck_cells(nb)
    deck.metadata["title"] = title
    resources = {"course_assets": assets, "course_margin": MARGIN, "course_height": HEIGHT, "course_zoom": FIGURE_ZOOM}
    html, _ = exporter.from_notebook_node(deck, resources=resources)
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


@dataclass(frozen=True)
class DeckFiles:
    """The course's decks as files, by path relative to their folder: the decks, their PDFs if printed,
    and the vendored reveal.js and MathJax they load; with the slides of each deck and the pages of each PDF."""

    files: dict[str, bytes | Path]
    slides: dict[str, int]
    pages: dict[str, int]


def course_decks(notebooks: Path | None = None, pdf: bool = False, notes: bool = False) -> DeckFiles:
    """Build ``NN_name.slides.html`` for each course notebook, and with ``pdf`` print ``NN_name.slides.pdf``.

    With ``notes``, the PDFs include the speaker notes: see
    :func:`~nflows_tutorial.course.handouts.print_decks`. Nothing is written.
    """
    decks: dict[str, bytes] = {}
    slides: dict[str, int] = {}
    for source, nb in read_course_notebooks(notebooks):
        name = f"{source.stem}.slides.html"
        decks[name] = build_deck(nb, _title(nb, source.stem)).encode("utf-8")
        slides[name] = slide_count(nb)
    pdfs = print_decks(decks, _assets(), (WIDTH, HEIGHT, MARGIN), notes) if pdf else {}
    pages = {name: page_count(printed) for name, printed in pdfs.items()}
    return DeckFiles({**_assets(), **decks, **pdfs}, slides, pages)


def write_decks(
    out: Path, notebooks: Path | None = None, force: bool = False, pdf: bool = False, notes: bool = False
) -> list[Deck]:
    """Write the decks of :func:`course_decks` into ``out``, with the assets (and PDFs) beside them.

    Every notebook is read and every deck built (and printed) before anything is written; files in
    ``out`` that this command did not write are never overwritten unless ``force``: see
    :mod:`nflows_tutorial.course.outputs`.
    """
    out = output_folder(out)
    built = course_decks(notebooks, pdf, notes)
    write_outputs(out, built.files, "slides", force)
    decks = []
    for name, count in built.slides.items():
        printed = pdf_name(name)
        if printed in built.pages:
            decks.append(Deck(out / name, count, out / printed, built.pages[printed]))
        else:
            decks.append(Deck(out / name, count))
    return decks
