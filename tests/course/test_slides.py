"""Lecture decks: built offline from the notebooks, shown by a real browser with every formula and image, and
printed to PDF handouts with one page per slide.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import threading
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from nflows_tutorial.cli import main
from nflows_tutorial.course import handouts
from nflows_tutorial.course.slides import (
    ASSETS,
    HEIGHT,
    MARGIN,
    SLIDE_CODE_LINES,
    SLIDE_WORDS,
    WIDTH,
    deck_cells,
    prose_words,
    slide_count,
    write_decks,
)

from support.browser import chromium_path, need_modules

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
STEMS = [path.stem for path in NOTEBOOKS]
ARTIFACTS = Path(os.environ.get("NFLOWS_TUTORIAL_ARTIFACTS", ROOT / "build" / "test-artifacts"))


@pytest.fixture(scope="module")
def decks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("slides")
    write_decks(out)
    return out


def deck_html(decks: Path, stem: str) -> str:
    return (decks / f"{stem}.slides.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("stem", STEMS)
def test_deck_loads_only_files_beside_it(decks, stem):
    html = deck_html(decks, stem)
    # What the deck loads (scripts, images, stylesheets); hyperlinks a reader may follow are not loads.
    links = re.findall(r'src="([^"#][^"]*)"', html) + re.findall(r'<link[^>]*href="([^"#][^"]*)"', html)
    local = [link for link in links if not link.startswith("data:")]
    assert any(link.endswith("reveal.js/dist/reveal.js") for link in local)
    assert any(link.endswith("mathjax/tex-chtml-full.js") for link in local)
    assert any(link.endswith("reveal.js/plugin/notes/notes.js") for link in local), "no speaker notes plugin"
    for link in local:
        assert "//" not in link, f"{stem} deck loads {link} from the network"
        assert (decks / link).is_file(), f"{stem} deck refers to {link}, which was not written"
    assert "require.js" not in html and "MathJax.Hub" not in html, "nbconvert's CDN scripts must be replaced"


@pytest.mark.parametrize("stem", STEMS)
def test_deck_leaves_out_exercises_and_listings(decks, stem):
    html = deck_html(decks, stem)
    assert "# Exercise 1" not in html and "Exercise 5" not in html and "<summary>Answer</summary>" not in html
    assert "show_source(" not in html and "REPO_URL" not in html


# The lecture plan ----------------------------------------------------------------------------------------------
PLAN_ROW = re.compile(r"^\| (\d+)-(\d+) \| (\d): .*\| ([\d-]+) \|$", re.MULTILINE)
IN_CLASS = re.compile(r"in class: Exercise \d+\*\* \([^)]*?(\d+) min")


def test_lecture_plan_names_every_slide_and_gives_each_its_minutes():
    """The plan's rows cover each deck's slides in order, and a deck's talk leaves 1.5 to 3 minutes a slide."""
    plan = (ROOT / "notebooks" / "lecture-plan.md").read_text(encoding="utf-8")
    rows = list(PLAN_ROW.finditer(plan))
    assert rows, "no row of the 90 minutes names its slides"
    named: dict[int, list[int]] = {}
    minutes: dict[int, int] = {}
    for row in rows:
        start, end, deck, slides = int(row[1]), int(row[2]), int(row[3]), row[4]
        first, _, last = slides.partition("-")
        named.setdefault(deck, []).extend(range(int(first), int(last or first) + 1))
        in_class = sum(int(m) for m in IN_CLASS.findall(row[0]))
        minutes[deck] = minutes.get(deck, 0) + end - start - in_class
    counts = {int(path.stem[:2]): slide_count(nbformat.read(path, as_version=4)) for path in NOTEBOOKS}
    for deck, count in counts.items():
        assert named.get(deck) == list(range(1, count + 1)), f"deck {deck}: the plan names slides {named.get(deck)}"
        assert 1.5 <= minutes[deck] / count <= 3, f"deck {deck}: {count} slides in {minutes[deck]} minutes"
        print(f"deck {deck}: {count} slides, {minutes[deck]} minutes of talk, {minutes[deck] / count:.1f} a slide")


# What a slide shows --------------------------------------------------------------------------------------------
def _cell(kind: str, source: str, slide_type: str = "-", **slideshow) -> nbformat.NotebookNode:
    metadata = {"slideshow": {"slide_type": slide_type, **slideshow}}
    if kind == "code":
        return new_code_cell(source, metadata=metadata, outputs=[new_output("stream", name="stdout", text="1\n")])
    return new_markdown_cell(source, metadata=metadata)


def _shown(cells: list) -> list[tuple[str, str, str, bool]]:
    """Each deck cell as (type, slide type, source, whether its source is shown)."""
    return [
        (c.cell_type, c.metadata.get("slideshow", {}).get("slide_type", "-"), c.source, "transient" not in c.metadata)
        for c in cells
    ]


LONG = " ".join(["word"] * (SLIDE_WORDS + 1))


def test_slide_text_is_shown_under_the_cells_headings_and_the_reading_text_becomes_notes():
    nb = new_notebook(cells=[_cell("markdown", f"## Title\n\n{LONG}", "slide", text="* one point")])
    assert _shown(deck_cells(nb)) == [
        ("markdown", "slide", "## Title\n\n* one point", True),
        ("markdown", "notes", LONG, True),
    ]


def test_a_cell_without_slide_text_is_shown_whole_only_when_short():
    short, long = _cell("markdown", "## Short\n\nA few words.", "slide"), _cell("markdown", f"### Long\n\n{LONG}")
    assert _shown(deck_cells(new_notebook(cells=[short, long]))) == [
        ("markdown", "slide", "## Short\n\nA few words.", True),
        ("markdown", "-", "### Long", True),
        ("markdown", "notes", LONG, True),
    ]


def test_slide_text_with_a_heading_replaces_the_cells_and_empty_text_leaves_all_to_the_notes():
    titled = _cell("markdown", f"## Long title\n\n{LONG}", "slide", text="### Short\n\nText.")
    silent = _cell("markdown", "## Aside\n\nSaid, not shown.", "subslide", text="")
    cells = deck_cells(new_notebook(cells=[titled, silent]))
    assert _shown(cells) == [
        ("markdown", "slide", "### Short\n\nText.", True),
        ("markdown", "notes", LONG, True),
        ("markdown", "subslide", "", True),
        ("markdown", "notes", "## Aside\n\nSaid, not shown.", True),
    ]
    assert slide_count(new_notebook(cells=[titled, silent])) == 2


def test_what_a_slide_opening_cell_says_before_its_heading_is_the_notes_of_the_slide_before():
    nb = new_notebook(
        cells=[_cell("markdown", f"About the figure above.\n\n## Next\n\n{LONG}", "slide", text="Point.")]
    )
    assert _shown(deck_cells(nb)) == [
        ("markdown", "notes", "About the figure above.", True),
        ("markdown", "slide", "## Next\n\nPoint.", True),
        ("markdown", "notes", LONG, True),
    ]


def test_code_is_shown_when_short_and_wanted_and_a_code_cells_text_opens_its_place():
    short = "\n".join(f"x{i} = {i}" for i in range(SLIDE_CODE_LINES))
    long = short + "\nx = 0"
    cells = [
        _cell("code", short, "slide"),
        _cell("code", long),
        _cell("code", short, code=False),
        _cell("code", "f()", "subslide", text="### A caption"),
    ]
    assert _shown(deck_cells(new_notebook(cells=cells))) == [
        ("code", "slide", short, True),
        ("code", "-", long, False),
        ("code", "-", short, False),
        ("markdown", "subslide", "### A caption", True),
        ("code", "-", "f()", True),
    ]


def test_prose_words_leave_out_code_formulas_and_markup():
    assert prose_words("Two words $x + y$ `code()` $$\\sum_i z_i$$ [link](http://x.y/z) <b>bold</b> - 7") == 5


def _slides(nb: nbformat.NotebookNode) -> list[list[nbformat.NotebookNode]]:
    """The visible cells of each slide of ``nb``'s deck."""
    slides: list[list[nbformat.NotebookNode]] = []
    for cell in deck_cells(nb):
        slide_type = cell.metadata.get("slideshow", {}).get("slide_type", "-")
        if slide_type in ("notes", "skip"):
            continue
        if not slides or slide_type in ("slide", "subslide"):
            slides.append([])
        slides[-1].append(cell)
    return slides


@pytest.mark.parametrize("path", NOTEBOOKS, ids=STEMS)
def test_course_slides_show_little_prose_and_code(path):
    """What each slide of the course shows, counted from the notebook (the browser test counts the rendered slides)."""
    for number, slide in enumerate(_slides(nbformat.read(path, as_version=4)), 1):
        words = sum(prose_words(c.source) for c in slide if c.cell_type == "markdown")
        code = sum(len(c.source.splitlines()) for c in slide if c.cell_type == "code" and "transient" not in c.metadata)
        assert words <= SLIDE_WORDS, f"slide {number}: {words} words of prose"
        assert code <= SLIDE_CODE_LINES, f"slide {number}: {code} lines of code"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=STEMS)
def test_cells_left_out_of_the_decks_are_skipped_by_a_live_slideshow_too(path):
    for cell in nbformat.read(path, as_version=4).cells:
        if "no-slides" in cell.metadata.get("tags", []):
            assert cell.metadata.get("slideshow", {}).get("slide_type") == "skip", cell.source[:60]


def test_cli_lists_each_deck_with_its_slide_count(tmp_path, capsys):
    assert main(["slides", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(STEMS)
    for line, path in zip(printed, NOTEBOOKS):
        count = slide_count(nbformat.read(path, as_version=4))
        assert line.endswith(f"{path.stem}.slides.html  ({count} slides)")
    assert (
        tmp_path / ASSETS / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2" / "MathJax_Main-Regular.woff"
    ).is_file()


# The browser --------------------------------------------------------------------------------------------------
def _browser_or_skip():
    """Playwright's sync API and Debian's chromium, or a skip naming the missing piece (a failure under CI)."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing, sync_playwright = "playwright for Python is not installed (pip install playwright)", None
    chromium = shutil.which("chromium")
    if missing is None and chromium is None:
        missing = "no chromium on PATH (apt-get install chromium)"
    if missing:
        if os.environ.get("NFLOWS_TUTORIAL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser test required but {missing}")
        pytest.skip(missing)
    return sync_playwright, chromium


@pytest.fixture(scope="module")
def served(decks):
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(decks))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(served):
    sync_playwright, chromium = _browser_or_skip()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


SQUEEZE_SLIDE = """() => {
  const slide = [...document.querySelectorAll('.reveal .slides section section')]
    .find(s => s.textContent.includes('plot_squeeze(grid)'));
  if (!slide) return null;
  const at = Reveal.getIndices(slide);
  Reveal.slide(at.h, at.v);
  return at;
}"""


@pytest.mark.browser
@pytest.mark.parametrize("stem", STEMS)
def test_deck_in_a_browser(browser, served, stem):
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    requests, failed = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("requestfailed", lambda request: failed.append(f"{request.url}: {request.failure}"))
    page.on("response", lambda response: response.status >= 400 and failed.append(f"{response.url}: {response.status}"))
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{served}{stem}.slides.html", wait_until="networkidle")
    page.wait_for_function("window.Reveal && Reveal.isReady()", timeout=30_000)
    page.evaluate("MathJax.startup.promise")
    expected = slide_count(nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4))
    assert page.evaluate("Reveal.getTotalSlides()") == expected
    assert page.evaluate("document.querySelector('.reveal .slides').textContent.includes('$$')") is False, "raw $$ left"
    assert page.evaluate("document.querySelectorAll('.reveal .slides mjx-container').length") > 10
    images = page.evaluate(
        "[...document.querySelectorAll('.reveal .slides img')].map(i => [i.complete, i.naturalWidth])"
    )
    assert images and all(complete and width > 0 for complete, width in images), images
    if stem.startswith("02_"):
        assert page.evaluate(SQUEEZE_SLIDE) is not None, "no slide shows plot_squeeze(grid)"
        page.wait_for_timeout(1500)  # the slide transition
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "squeeze-slide.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
    page.close()
    assert not failed, failed
    assert not errors, errors
    outside = [url for url in requests if not url.startswith(served) and not url.startswith("data:")]
    assert not outside, f"requests left the deck's folder: {outside}"


# PDF handouts -------------------------------------------------------------------------------------------------
class _SlideCounter(HTMLParser):
    """Counts the slides of a reveal.js deck as reveal.js does: every ``section`` that holds no ``section``."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[bool] = []  # for each open section: has it a section inside?
        self.slides = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "section":
            if self.open:
                self.open[-1] = True
            self.open.append(False)

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self.slides += not self.open.pop()


def slides_in(html: str) -> int:
    counter = _SlideCounter()
    counter.feed(html)
    return counter.slides


def test_slides_in_counts_nested_sections_as_reveal_does():
    html = "<div class='slides'><section><section>a</section><section>b</section></section><section>c</section></div>"
    assert slides_in(html) == 3


def _pdf_reader():
    need_modules("pypdf", extra="test")
    import pypdf

    return pypdf.PdfReader


def _inked(page) -> bool:
    """Whether a PDF page shows anything: text, or an image drawn on it."""
    return bool(page.extract_text().strip()) or bool(page.images)


NOTE = "Ask the room which layer is cheapest to invert."


def _small_course(folder: Path) -> Path:
    """One notebook of three slides, the second with speaker notes and a formula, the third with a stored output."""
    nb = new_notebook(
        cells=[
            new_markdown_cell("# A small deck\n\nThe first slide.", metadata={"slideshow": {"slide_type": "slide"}}),
            new_markdown_cell(
                "## Change of variables\n\n$$\\log p(x) = \\log p_z(f(x)) + \\log|\\det J_f(x)|$$",
                metadata={"slideshow": {"slide_type": "slide"}},
            ),
            new_markdown_cell(NOTE, metadata={"slideshow": {"slide_type": "notes"}}),
            new_code_cell(
                "print(8.0)",
                metadata={"slideshow": {"slide_type": "subslide"}},
                outputs=[new_output("stream", name="stdout", text="8.0\n")],
                execution_count=1,
            ),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    folder.mkdir()
    nbformat.write(nb, folder / "01_small.ipynb")
    return folder


@pytest.fixture(scope="module")
def printed(tmp_path_factory) -> tuple[Path, list]:
    chromium_path()
    out = tmp_path_factory.mktemp("printed")
    return out, write_decks(out, pdf=True)


@pytest.mark.browser
def test_pdf_has_one_page_per_slide_and_none_blank(printed):
    reader = _pdf_reader()
    out, decks = printed
    assert [deck.path.name for deck in decks] == [f"{stem}.slides.html" for stem in STEMS]
    for deck, notebook in zip(decks, NOTEBOOKS):
        assert deck.pdf == out / f"{notebook.stem}.slides.pdf" and deck.pdf.is_file()
        pages = reader(deck.pdf).pages
        slides = slides_in(deck.path.read_text(encoding="utf-8"))
        assert len(pages) == slides == deck.slides == deck.pages == slide_count(nbformat.read(notebook, as_version=4))
        blank = [number for number, page in enumerate(pages, 1) if not _inked(page)]
        assert not blank, f"{deck.pdf.name}: blank pages {blank}"
        print(f"{deck.pdf.name}: {len(pages)} pages for {slides} slides")


@pytest.mark.browser
def test_pdf_pages_have_the_decks_size(printed):
    reader = _pdf_reader()
    _, decks = printed
    for deck in decks:
        for page in reader(deck.pdf).pages:
            # reveal.js prints the stage and its margin; PDF sizes are in points (3/4 of a CSS pixel).
            width, height = float(page.mediabox.width), float(page.mediabox.height)
            assert width == pytest.approx(int(WIDTH * (1 + MARGIN)) * 0.75, abs=1)
            assert height == pytest.approx(int(HEIGHT * (1 + MARGIN)) * 0.75, abs=1)


@pytest.mark.browser
def test_pdf_shows_formulas_typeset_and_slide_text(printed):
    reader = _pdf_reader()
    _, decks = printed
    text = "".join(page.extract_text() for page in reader(decks[0].pdf).pages)
    assert "$$" not in text and "\\frac" not in text, "TeX printed as text: MathJax had not typeset the deck"
    assert "bits per dimension" in text.lower()


@pytest.mark.browser
def test_speaker_notes_get_a_page_after_their_slide(tmp_path):
    chromium_path()
    reader = _pdf_reader()
    course = _small_course(tmp_path / "course")
    (plain,) = write_decks(tmp_path / "plain", course, pdf=True)
    (noted,) = write_decks(tmp_path / "noted", course, pdf=True, notes=True)
    assert plain.slides == noted.slides == 3
    plain_pages = [page.extract_text() for page in reader(plain.pdf).pages]
    noted_pages = [page.extract_text() for page in reader(noted.pdf).pages]
    assert len(plain_pages) == plain.pages == 3 and not any(NOTE in text for text in plain_pages)
    assert len(noted_pages) == noted.pages == 4
    assert [NOTE in text for text in noted_pages] == [False, False, True, False], noted_pages
    assert "change of variables" in noted_pages[1].lower()


@pytest.mark.browser
def test_cli_prints_pdfs_and_lists_their_pages(tmp_path, capsys):
    chromium_path()
    course = _small_course(tmp_path / "course")
    assert main(["slides", "--out", str(tmp_path / "out"), "--notebooks", str(course), "--pdf"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        f"{tmp_path / 'out' / '01_small.slides.html'}  (3 slides)",
        f"{tmp_path / 'out' / '01_small.slides.pdf'}  (3 pages)",
    ]


def test_notes_without_pdf_is_refused(tmp_path, capsys):
    assert main(["slides", "--out", str(tmp_path / "out"), "--notes"]) == 2
    assert "add --pdf" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_pdf_without_playwright_names_the_fix(tmp_path, monkeypatch, capsys):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "playwright" else real_find_spec(name, *a)
    )
    assert (
        main(["slides", "--out", str(tmp_path / "out"), "--notebooks", str(_small_course(tmp_path / "c")), "--pdf"])
        == 1
    )
    message = capsys.readouterr().err
    assert "pip install playwright" in message, message
    assert not (tmp_path / "out").exists(), "nothing is written when the PDFs cannot be printed"


def test_pdf_without_chromium_names_the_fix(tmp_path, monkeypatch, capsys):
    need_modules("playwright", extra="test")
    monkeypatch.setattr(handouts, "CHROMIUM_NAMES", ("no-such-chromium-here",))
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path / "no-browsers"))  # nor Playwright's own
    assert (
        main(["slides", "--out", str(tmp_path / "out"), "--notebooks", str(_small_course(tmp_path / "c")), "--pdf"])
        == 1
    )
    message = capsys.readouterr().err
    assert "apt-get install chromium" in message and "no-such-chromium-here" in message, message
    assert not (tmp_path / "out").exists()
