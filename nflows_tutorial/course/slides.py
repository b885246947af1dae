"""Lecture slides: one reveal.js deck per course notebook, built with nbconvert, that opens with no network.

Slide breaks come from the notebooks' cell metadata (``slideshow.slide_type``: ``slide`` for a new
slide, ``subslide`` for one below it, ``fragment`` for a step, ``notes`` for the speaker's notes of the
slide above). Cells tagged ``no-slides``, and the exercise and check cells, stay out of the decks. The
decks are rendered from the stored outputs (nothing is executed) and load reveal.js and MathJax 3 from
the copy of ``nflows_tutorial/course/static`` written next to them, never from a CDN.

With ``pdf=True`` each deck is also printed to a PDF beside it, one page per slide (and, with
``notes=True``, a page of speaker notes after each slide that has notes): reveal.js lays the deck out
for print (``?print-pdf``) in a headless Chromium driven by Playwright, which prints it at the deck's
own size. A slide taller than the stage, which scrolls on screen, is zoomed out to fit its page.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .exercises import CHECK_TAG, EXERCISE_TAG, read_course_notebooks
from .outputs import output_folder, write_outputs

__all__ = [
    "EXCLUDED_TAGS",
    "WIDTH",
    "HEIGHT",
    "MARGIN",
    "Deck",
    "PdfExportError",
    "slide_count",
    "build_deck",
    "print_decks",
    "write_decks",
]

EXCLUDED_TAGS = frozenset({"no-slides", EXERCISE_TAG, CHECK_TAG})
STATIC = Path(__file__).resolve().parent / "static"
ASSETS = "static"  # folder, next to the decks, that holds reveal.js and MathJax
#: The stage every slide is laid out on, in CSS pixels (16:9, as projectors show it), and reveal.js's
#: margin around it, as a fraction of its size.
WIDTH, HEIGHT, MARGIN = 1280, 720, 0.04
_STARTS = ("slide", "subslide")
#: Browsers Playwright may drive, looked up on PATH in this order (Debian's package first).
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_PRINT_TIMEOUT_MS = 120_000

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
const settings = {
  controls: true, progress: true, history: true, hash: true,
  transition: "{{ reveal_transition }}", slideNumber: "c/t",
  width: {{ reveal_width }}, height: {{ reveal_height }}, margin: {{ resources.course_margin }}
};
// A slide taller than the stage scrolls instead of spilling over the next one.
function markTallSlides() {
  const stage = document.querySelector('.reveal').getBoundingClientRect().height;
  document.querySelectorAll('.reveal .slides section section').forEach(function (s) {
    s.classList.toggle('course-scroll', s.scrollHeight > stage * 0.95);
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
    MathJax.startup.promise.then(function () {
      Reveal.on('pdf-ready', fitPrintedSlides);
      Reveal.initialize(Object.assign(settings, {pdfMaxPagesPerSlide: 1, pdfSeparateFragments: false}));
    });
  });
} else {
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


class PdfExportError(RuntimeError):
    """The decks could not be printed; the message says what is missing and how to install it."""


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
        reveal_width=str(WIDTH),
        reveal_height=str(HEIGHT),
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    nb = nbformat.from_dict(nb)
    nb.metadata["title"] = title
    html, _ = exporter.from_notebook_node(nb, resources={"course_assets": assets, "course_margin": MARGIN})
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


def _pdf_name(deck: str) -> str:
    return deck.removesuffix(".html") + ".pdf"


def _page_count(data: bytes) -> int:
    """How many pages the PDF ``data`` holds, from its page objects (Chromium writes them uncompressed)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", data))


def _chromium() -> str | None:
    """The first Chromium on PATH; ``None`` lets Playwright use a browser of its own, if it has one."""
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


_NO_CHROMIUM = (
    "printing the decks needs Chromium, and none was found ({names} on PATH, or Playwright's own): "
    "install it with `apt-get install chromium` (Debian, Ubuntu) or your system's package manager"
)


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


_READY_TO_PRINT = "() => document.documentElement.dataset.coursePrintReady === 'true'"


def _print_files(folder: Path, names: list[str], notes: bool) -> dict[str, bytes]:
    """Print the decks ``names`` of ``folder`` with Playwright's sync API, which needs a thread with no event loop."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    query = "?print-pdf" + ("&showNotes=separate-page" if notes else "")
    # reveal.js's page size: the stage and its margin, rounded down.
    width, height = f"{int(WIDTH * (1 + MARGIN))}px", f"{int(HEIGHT * (1 + MARGIN))}px"
    executable = _chromium()
    pdfs = {}
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=executable)
        except PlaywrightError as err:
            if executable is None:
                raise PdfExportError(_NO_CHROMIUM.format(names=", ".join(CHROMIUM_NAMES))) from None
            raise PdfExportError(f"{executable} did not start: {_first_line(err)}") from None
        try:
            for name in names:
                page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
                try:
                    page.goto((folder / name).as_uri() + query, wait_until="load")
                    page.wait_for_function(_READY_TO_PRINT, timeout=_PRINT_TIMEOUT_MS)
                    page.evaluate("document.fonts.ready.then(() => true)")
                    pdfs[_pdf_name(name)] = page.pdf(
                        width=width, height=height, print_background=True, prefer_css_page_size=True
                    )
                except PlaywrightError as err:
                    raise PdfExportError(f"{name} could not be printed: {_first_line(err)}") from None
                finally:
                    page.close()
        finally:
            browser.close()
    return pdfs


def print_decks(decks: Mapping[str, bytes], notes: bool = False) -> dict[str, bytes]:
    """Print each deck (file name: HTML) to a PDF, one page per slide; returns the PDFs by file name.

    With ``notes``, the speaker notes of a slide follow it on a page of their own. Raises
    :class:`PdfExportError`, naming what to install, when Playwright or Chromium is missing.
    """
    if importlib.util.find_spec("playwright") is None:
        raise PdfExportError(
            "printing the decks needs Playwright for Python: install it with `pip install playwright` "
            "(it drives the system's Chromium; no browser download is needed)"
        )
    with tempfile.TemporaryDirectory(prefix="nflows-slides-") as work:
        folder = Path(work)
        for name, asset in _assets().items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(asset, folder / name)
        for name, html in decks.items():
            (folder / name).write_bytes(html)
        # Playwright's sync API refuses to run in a thread with a running event loop (a notebook's kernel has one).
        with ThreadPoolExecutor(max_workers=1) as printer:
            return printer.submit(_print_files, folder, list(decks), notes).result()


def write_decks(
    out: Path, notebooks: Path | None = None, force: bool = False, pdf: bool = False, notes: bool = False
) -> list[Deck]:
    """Write ``NN_name.slides.html`` for each course notebook into ``out``, with the assets beside them.

    With ``pdf``, ``NN_name.slides.pdf`` beside each deck too (with ``notes``, speaker notes included):
    see :func:`print_decks`. Every notebook is read and every deck built (and printed) before anything
    is written; files in ``out`` that this command did not write are never overwritten unless
    ``force``: see :mod:`nflows_tutorial.course.outputs`.
    """
    out = output_folder(out)
    sources = read_course_notebooks(notebooks)
    files: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    for source, nb in sources:
        name = f"{source.stem}.slides.html"
        files[name] = build_deck(nb, _title(nb, source.stem)).encode("utf-8")
        counts[name] = slide_count(nb)
    pdfs = print_decks(files, notes) if pdf else {}
    write_outputs(out, {**_assets(), **files, **pdfs}, "slides", force)
    decks = []
    for name, slides in counts.items():
        printed = pdfs.get(_pdf_name(name))
        if printed is None:
            decks.append(Deck(out / name, slides))
        else:
            decks.append(Deck(out / name, slides, out / _pdf_name(name), _page_count(printed)))
    return decks
