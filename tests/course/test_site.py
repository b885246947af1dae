"""The course website, built once and read in a real browser (chromium through Playwright).

The site is built with warnings as errors, served from a loopback HTTP server, and crawled from its
home page: every page it links must load with no console error, no failed or outside request,
typeset formulas and loaded images; every internal link and anchor must resolve; the search finds
the squeeze layer. The home page is the course's (its title, the three notebooks with their Colab
links and their decks, the course's favicon), not the repository's README. The decks the site carries
are those of ``slides``, and open as reveal.js decks; where Chromium can print, the site is built
with the PDF handouts too, one page per slide. Screenshots of the home page and of notebook 2's
squeeze section go to the artifacts folder.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import pytest

from support.browser import VIEWPORT, artifacts_dir, can_print, launched_chromium, need_modules, serve
from support.repository import colab_url
from support.site_modules import public_modules

# The theme, myst-parser and napoleon still use Sphinx APIs that Sphinx 11 removes; theirs to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*Check CHANGES for Sphinx API modifications"),
    pytest.mark.filterwarnings("ignore:.*will be removed in Sphinx 11"),
]

ROOT = Path(__file__).resolve().parents[2]
SQUEEZE_NOTEBOOK = "02_coupling_and_multiscale"

# Text of a page outside code, API signatures (whose default values may be matplotlib labels such as
# "$x$") and typeset maths, and the TeX delimiters that must not survive in it.
VISIBLE_TEXT_JS = """() => {
  const root = (document.querySelector('main') || document.body).cloneNode(true);
  root.querySelectorAll('pre, code, script, style, textarea, mjx-container, .highlight, .sig').forEach(e => e.remove());
  return root.textContent;
}"""
RAW_TEX = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\$[^\s$][^$\n]{0,80}?\$")

PAGE_FACTS_JS = """() => ({
  mathElements: document.querySelectorAll('.math').length,
  untypeset: Array.from(document.querySelectorAll('.math')).filter(e => !e.querySelector('mjx-container')).length,
  typeset: document.querySelectorAll('mjx-container').length,
  brokenImages: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
  images: document.images.length,
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  ids: Array.from(document.querySelectorAll('[id], a[name]')).map(e => e.id || e.getAttribute('name')),
})"""

WAIT_FOR_MATHJAX_JS = """async () => {
  if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
    await window.MathJax.startup.promise;
  }
}"""


@dataclass
class Visit:
    """What one page showed in the browser."""

    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    raw_tex: list[str] = field(default_factory=list)
    facts: dict = field(default_factory=dict)


@dataclass
class Site:
    """The built site, its server, the browser page, and what crawling it found."""

    folder: Path
    base: str
    page: object
    build_seconds: float
    visits: dict[str, Visit] = field(default_factory=dict)
    outside_requests: list[str] = field(default_factory=list)
    linked: set[str] = field(default_factory=set)

    def url(self, relative: str) -> str:
        return self.base + relative


def _page_of(url: str) -> str:
    """The page a URL addresses, without fragment or query."""
    return urldefrag(url)[0].split("?")[0]


def _visit(site: Site, url: str) -> Visit:
    visit = Visit()
    page = site.page
    listeners = {
        "console": lambda msg: msg.type == "error" and visit.console_errors.append(f"{msg.text} ({msg.location})"),
        "pageerror": lambda err: visit.console_errors.append(f"uncaught: {err}"),
        "requestfailed": lambda req: visit.failed_requests.append(f"{req.url}: {req.failure}"),
        "response": lambda res: res.status >= 400 and visit.failed_requests.append(f"{res.url}: HTTP {res.status}"),
    }
    for event, listener in listeners.items():
        page.on(event, listener)
    try:
        page.goto(url, wait_until="load")
        page.evaluate(WAIT_FOR_MATHJAX_JS)
        page.wait_for_load_state("networkidle")  # MathJax fetches its fonts after typesetting
        visit.facts = page.evaluate(PAGE_FACTS_JS)
        visit.raw_tex = [m.group(0) for m in RAW_TEX.finditer(page.evaluate(VISIBLE_TEXT_JS))]
    finally:
        for event, listener in listeners.items():
            page.remove_listener(event, listener)
    return visit


def _crawl(site: Site) -> None:
    """Visit every HTML page reachable from the landing page through internal links, then the rest on disk.

    ``Site.linked`` records the pages the first pass reached: those a reader can navigate to.
    """
    queue = deque([site.url("index.html")])
    while queue:
        url = queue.popleft()
        if url in site.visits:
            continue
        site.visits[url] = visit = _visit(site, url)
        for link in visit.facts["links"]:
            target = _page_of(link)
            if target.startswith(site.base) and target.endswith(".html") and target not in site.visits:
                queue.append(target)
    site.linked = set(site.visits)
    for path in sorted(site.folder.rglob("*.html")):
        url = site.url(path.relative_to(site.folder).as_posix())
        if "_static" not in path.parts and url not in site.visits:  # _static holds theme templates, not pages
            site.visits[url] = _visit(site, url)


@dataclass
class Built:
    """The website, built once for the module: its folder, the seconds the build took, whether with PDFs."""

    folder: Path
    seconds: float
    pdf: bool


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    need_modules("sphinx", "myst_nb", "sphinx_book_theme", extra="site")
    from nflows_tutorial.course.site import build_site

    folder, pdf = tmp_path_factory.mktemp("site"), can_print()
    start = time.perf_counter()
    build_site(folder, pdf=pdf)
    return Built(folder, time.perf_counter() - start, pdf)


@pytest.fixture(scope="module")
def site(built) -> Site:
    folder, build_seconds = built.folder, built.seconds
    with serve(folder) as base, launched_chromium() as browser:
        context = browser.new_context(viewport=VIEWPORT)
        crawled = Site(folder=folder, base=base, page=context.new_page(), build_seconds=build_seconds)
        host = urlparse(base).netloc

        def only_loopback(route) -> None:
            if urlparse(route.request.url).netloc == host:
                route.continue_()
            else:
                crawled.outside_requests.append(route.request.url)
                route.abort()

        context.route("**/*", only_loopback)
        _crawl(crawled)
        yield crawled
        context.close()


def _notebook_pages() -> list[str]:
    return sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9]*.ipynb"))


COURSE_TITLE = "Deep normalizing flows on MNIST"


class _HomePage(HTMLParser):
    """The first ``h1``'s text, the links and the ``link rel="icon"`` of a built page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.icons: list[str] = []
        self.h1: str | None = None
        self._in_h1 = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        found = dict(attrs)
        if tag == "a" and found.get("href"):
            self.links.append(found["href"])
        elif tag == "link" and found.get("rel") == "icon":
            self.icons.append(found["href"])
        elif tag == "h1" and self.h1 is None:
            self._in_h1, self.h1 = True, ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "h1":
            self._in_h1 = False

    def handle_data(self, data: str) -> None:
        if self._in_h1:
            self.h1 = (self.h1 or "") + data


def test_home_page_is_the_course_with_its_favicon(built):
    folder = built.folder
    home = _HomePage()
    home.feed((folder / "index.html").read_text(encoding="utf-8"))
    assert (home.h1 or "").strip().rstrip("#").strip() == COURSE_TITLE, f"the home page's title is {home.h1!r}"
    for stem in _notebook_pages():
        assert f"notebooks/{stem}.html" in home.links, f"the home page does not link notebook {stem}"
        assert colab_url(f"notebooks/{stem}.ipynb") in home.links, f"the home page has no Colab link for {stem}"
        assert f"slides/{stem}.slides.html" in home.links, f"the home page does not link the deck of {stem}"
        pdf_linked = f"slides/{stem}.slides.pdf" in home.links
        assert pdf_linked == built.pdf, f"{stem}: PDF linked {pdf_linked}, built with PDFs {built.pdf}"
    assert "developers.html" in home.links and "api.html" in home.links
    assert home.icons == ["_static/favicon.svg"], f"favicon links: {home.icons}"
    icon = (folder / "_static" / "favicon.svg").read_bytes()
    assert icon == (ROOT / "notebooks" / "site" / "favicon.svg").read_bytes() and b"<svg" in icon


@pytest.mark.browser
def test_home_page_in_the_browser(site):
    page = site.page
    page.goto(site.url("index.html"))
    assert page.locator("main h1").first.inner_text().strip().rstrip("#").strip() == COURSE_TITLE
    assert COURSE_TITLE in page.title()
    links = site.visits[site.url("index.html")].facts["links"]
    for stem in _notebook_pages():
        assert site.url(f"notebooks/{stem}.html") in links, f"the home page does not link notebook {stem}"
    icon = page.evaluate("document.querySelector('link[rel=icon]').href")
    assert icon == site.url("_static/favicon.svg")
    with urllib.request.urlopen(icon, timeout=10) as response:
        assert response.status == 200 and response.headers.get_content_type() == "image/svg+xml"
    assert "nflows-tutorial" not in page.locator("main h1").all_inner_texts(), "the home page is the README"


def test_site_carries_the_decks_of_slides_and_a_pdf_page_per_slide(built):
    from nflows_tutorial.course.handouts import page_count
    from nflows_tutorial.course.slides import course_decks

    decks = course_decks()
    for name, content in decks.files.items():
        shipped = built.folder / "slides" / name
        expected = content.read_bytes() if isinstance(content, Path) else content
        assert shipped.is_file() and shipped.read_bytes() == expected, f"slides/{name} is not what `slides` writes"
    for name, slides in decks.slides.items():
        pdf = built.folder / "slides" / name.replace(".html", ".pdf")
        assert pdf.is_file() == built.pdf, f"{pdf.name}: present {pdf.is_file()}, built with PDFs {built.pdf}"
        if built.pdf:
            assert page_count(pdf.read_bytes()) == slides, f"{pdf.name}: not one page per slide ({slides})"


@pytest.mark.browser
def test_decks_open_from_the_home_page(site):
    from nflows_tutorial.course.slides import course_decks

    page = site.page
    for name, slides in course_decks().slides.items():
        page.goto(site.url("index.html"))
        page.locator(f"main a[href='slides/{name}']").click()
        page.wait_for_function("window.Reveal && Reveal.isReady()", timeout=30_000)
        assert page.evaluate("Reveal.getSlides().length") == slides, f"{name} does not show its {slides} slides"
        visit = site.visits[site.url(f"slides/{name}")]
        assert visit.facts["typeset"] > 0, f"{name}: no formula typeset"


@pytest.mark.browser
def test_every_course_page_is_built_and_linked(site):
    from nflows_tutorial.course.site import REPOSITORY_PAGES, SITE_PAGES, course_pages

    own = {page.removesuffix(".md") + ".html" for page in (*SITE_PAGES, *REPOSITORY_PAGES)}
    expected = {"api.html", *own} | {f"notebooks/{p.stem}.html" for p in course_pages()}
    linked = {url.removeprefix(site.base) for url in site.linked}
    assert expected <= linked, f"pages missing or not linked from the landing page: {sorted(expected - linked)}"
    print(f"site built in {site.build_seconds:.1f} s; {len(site.visits)} pages loaded in the browser")


@pytest.mark.browser
def test_pages_load_without_errors_or_outside_requests(site):
    assert not site.outside_requests, f"the site asks the internet for {sorted(set(site.outside_requests))[:5]}"
    problems = {
        url: v.console_errors + v.failed_requests
        for url, v in site.visits.items()
        if v.console_errors or v.failed_requests
    }
    assert not problems, f"pages with console errors or failed requests: {problems}"


@pytest.mark.browser
def test_formulas_are_typeset(site):
    raw = {url: v.raw_tex[:5] for url, v in site.visits.items() if v.raw_tex}
    assert not raw, f"TeX left as text (MathJax did not typeset it): {raw}"
    untypeset = {url: v.facts["untypeset"] for url, v in site.visits.items() if v.facts["untypeset"]}
    assert not untypeset, f"maths elements without a typeset formula: {untypeset}"
    for stem in _notebook_pages()[:2]:  # the first two notebooks derive formulas throughout
        facts = site.visits[site.url(f"notebooks/{stem}.html")].facts
        assert facts["typeset"] >= 10, f"{stem}: only {facts['typeset']} typeset formulas"


@pytest.mark.browser
def test_every_image_loads(site):
    broken = {url: v.facts["brokenImages"] for url, v in site.visits.items() if v.facts["brokenImages"]}
    assert not broken, f"images with no natural width: {broken}"
    for stem in _notebook_pages():
        assert site.visits[site.url(f"notebooks/{stem}.html")].facts["images"] >= 2, f"{stem} shows no figures"


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.browser
def test_every_internal_link_resolves(site):
    ids = {url: set(v.facts["ids"]) for url, v in site.visits.items()}
    broken: list[str] = []
    checked: dict[str, int] = {}
    for url, visit in site.visits.items():
        for link in visit.facts["links"]:
            if not link.startswith(site.base):
                continue
            target, fragment = urldefrag(link)
            target = target.split("?")[0]
            if target not in ids:
                checked.setdefault(target, _status(target))
                if checked[target] != 200:
                    broken.append(f"{url} -> {link} (HTTP {checked[target]})")
            # A fragment starting with "/" is a reveal.js route in a deck (#/3 is its fourth slide), not an id.
            elif fragment and not fragment.startswith("/") and fragment not in ids[target]:
                broken.append(f"{url} -> {link} (no element with id {fragment!r})")
    assert not broken, f"{len(broken)} broken internal links, e.g. {broken[:5]}"


@pytest.mark.browser
def test_notebook_pages_link_to_colab_and_their_ipynb(site):
    for stem in _notebook_pages():
        links = site.visits[site.url(f"notebooks/{stem}.html")].facts["links"]
        assert colab_url(f"notebooks/{stem}.ipynb") in links, f"{stem}: no Open in Colab link"
        download = site.url(f"_sources/notebooks/{stem}.ipynb")
        assert download in links, f"{stem}: no .ipynb download link"
        with urllib.request.urlopen(download, timeout=10) as response:
            served = json.load(response)
        stored = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text(encoding="utf-8"))
        assert served["cells"] == stored["cells"], f"{stem}: the downloadable notebook is not the stored one"


@pytest.mark.browser
def test_api_reference_documents_every_public_module(site):
    ids = set(site.visits[site.url("api.html")].facts["ids"])
    modules = public_modules()
    missing = [m for m in modules if f"module-{m}" not in ids]
    assert not missing, f"API page lacks {missing}"
    members = [i for i in ids if i.startswith("nflows_tutorial.") and i.rsplit(".", 1)[0] in modules]
    assert len(members) > len(modules), f"only {len(members)} documented members for {len(modules)} modules"


@pytest.mark.browser
def test_search_box_finds_squeeze(site):
    page = site.page
    page.goto(site.url("index.html"))
    page.locator("button.search-button-field").first.click()
    box = page.locator("input[name='q']:visible").first
    box.fill("squeeze")
    box.press("Enter")
    page.wait_for_url(re.compile(r"search\.html\?q=squeeze"))
    results = page.locator("#search-results ul.search li a")
    results.first.wait_for(timeout=20_000)
    hrefs = results.evaluate_all("links => links.map(a => a.href)")
    assert any(f"notebooks/{SQUEEZE_NOTEBOOK}.html" in h for h in hrefs), f"search for 'squeeze' gave {hrefs[:5]}"


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


@pytest.mark.browser
def test_screenshots_of_home_page_and_squeeze_section(site):
    page, out = site.page, artifacts_dir()
    page.goto(site.url("index.html"))
    page.evaluate(WAIT_FOR_MATHJAX_JS)
    landing = out / "site-landing.png"
    page.screenshot(path=str(landing))

    page.goto(site.url(f"notebooks/{SQUEEZE_NOTEBOOK}.html"))
    page.evaluate(WAIT_FOR_MATHJAX_JS)
    heading = page.locator("main h2, main h3").filter(has_text=re.compile("squeeze", re.IGNORECASE)).first
    assert heading.count() == 1, f"notebook {SQUEEZE_NOTEBOOK} has no section heading about squeeze"
    heading.evaluate("h => { h.scrollIntoView({block: 'start'}); window.scrollBy(0, -80); }")
    page.wait_for_load_state("networkidle")
    squeeze = out / "site-squeeze-section.png"
    page.screenshot(path=str(squeeze))
    for shot in (landing, squeeze):
        assert _png_size(shot) == (VIEWPORT["width"], VIEWPORT["height"]), f"{shot} has the wrong size"


def test_site_command_names_the_missing_extra(monkeypatch, capsys, tmp_path):
    from nflows_tutorial.cli import main
    from nflows_tutorial.course import site as site_module

    monkeypatch.setattr(site_module, "NEEDED", ("sphinx", "no_such_sphinx_theme_here"))
    assert main(["site", "--out", str(tmp_path / "out")]) == 1
    message = capsys.readouterr().err
    assert "no_such_sphinx_theme_here" in message and 'pip install -e ".[site]"' in message
    assert not (tmp_path / "out").exists()


def test_site_pdf_without_chromium_names_the_fix_and_writes_nothing(monkeypatch, capsys, tmp_path):
    need_modules("sphinx", "myst_nb", "sphinx_book_theme", extra="site")
    need_modules("playwright", extra="test")
    from nflows_tutorial.cli import main
    from nflows_tutorial.course import handouts

    monkeypatch.setattr(handouts, "CHROMIUM_NAMES", ("no-such-chromium-here",))
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path / "no-browsers"))  # nor Playwright's own
    assert main(["site", "--out", str(tmp_path / "out"), "--pdf"]) == 1
    message = capsys.readouterr().err
    assert "apt-get install chromium" in message and "no-such-chromium-here" in message, message
    assert not (tmp_path / "out").exists(), "nothing is written when the PDFs cannot be printed"
