"""Lecture decks: built offline from the notebooks, and shown by a real browser with every formula and image."""

from __future__ import annotations

import functools
import os
import re
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import pytest

from nflows_tutorial.cli import main
from nflows_tutorial.course.slides import ASSETS, slide_count, write_decks

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
    for link in local:
        assert "//" not in link, f"{stem} deck loads {link} from the network"
        assert (decks / link).is_file(), f"{stem} deck refers to {link}, which was not written"
    assert "require.js" not in html and "MathJax.Hub" not in html, "nbconvert's CDN scripts must be replaced"


@pytest.mark.parametrize("stem", STEMS)
def test_deck_leaves_out_exercises_and_listings(decks, stem):
    html = deck_html(decks, stem)
    assert "# Exercise 1" not in html and "Exercise 5" not in html and "<summary>Answer</summary>" not in html
    assert "show_source(" not in html and "REPO_URL" not in html


def test_slide_counts_fit_a_90_minute_lecture():
    counts = [slide_count(nbformat.read(path, as_version=4)) for path in NOTEBOOKS]
    assert all(count >= 10 for count in counts) and 45 <= sum(counts) <= 75, counts


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
