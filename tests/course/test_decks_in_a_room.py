"""Decks made for a room: Chromium shows every slide of every course deck on the 1280x720 stage, and each
fits it (no overflow, nothing scrolls), shows at most 45 words of prose and 12 lines of code, a large
figure when it has one, and has speaker notes when it carries prose; the speaker view opens offline.

The decks are built from the committed notebooks into a temporary folder and served on the loopback
interface. Each slide is measured after MathJax has typeset the formulas and reveal.js has laid the slide
out; a screenshot of each goes to the artifacts folder (``slides/``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nflows_tutorial.course.slides import HEIGHT, SLIDE_CODE_LINES, SLIDE_WORDS, WIDTH, Deck, write_decks

from support.browser import artifacts_dir, launched_chromium, serve

pytestmark = pytest.mark.browser

#: A figure is large when it takes this share of the stage's height or of its width.
LARGE_HEIGHT, LARGE_WIDTH = 0.4, 0.7
#: Of the slides that carry prose, this share at least has speaker notes.
NOTED_SHARE = 0.9

# Measures the slide on screen, in stage pixels. Prose is the text outside code, outputs, formulas and notes.
MEASURE_JS = """(slide) => {
  const {width, height} = Reveal.getConfig();
  const box = slide.getBoundingClientRect();
  const scale = box.width / slide.offsetWidth;
  const shown = e => !e.closest('aside.notes');
  const outside = [], scrolls = [];
  for (const e of slide.querySelectorAll('*')) {
    if (!shown(e)) continue;
    const r = e.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;  // MathJax keeps empty glyph boxes for stretched delimiters
    const bottom = (r.bottom - box.top) / scale, right = (r.right - box.left) / scale;
    if (r.top < box.top - 1 || r.left < box.left - 1 || bottom > height + 1 || right > width + 1)
      outside.push(`${e.tagName.toLowerCase()}.${e.className} reaches ${Math.round(right)}x${Math.round(bottom)}`);
    if (e.closest('mjx-container')) continue;
    const style = getComputedStyle(e);
    if ((style.overflowY !== 'visible' && e.scrollHeight > e.clientHeight + 1) ||
        (style.overflowX !== 'visible' && e.scrollWidth > e.clientWidth + 1))
      scrolls.push(`${e.tagName.toLowerCase()}.${e.className} holds ${e.scrollWidth}x${e.scrollHeight} in ${e.clientWidth}x${e.clientHeight}`);
  }
  const prose = slide.cloneNode(true);
  prose.querySelectorAll('aside.notes, pre, code, mjx-container, .jp-OutputArea, .jp-CodeCell .jp-InputArea')
    .forEach(e => e.remove());
  const code = [...slide.querySelectorAll('pre')].filter(p => shown(p) && !p.closest('.jp-OutputArea'));
  return {
    tall: slide.scrollHeight, wide: slide.scrollWidth, outside, scrolls,
    words: prose.textContent.split(/\\s+/).filter(w => /[\\p{L}\\p{N}]/u.test(w)).length,
    code: code.reduce((n, p) => n + p.textContent.replace(/\\n+$/, '').split('\\n').length, 0),
    notes: [...slide.querySelectorAll('aside.notes')].map(a => a.textContent.trim()).join(' ').length,
    title: (slide.querySelector('h1, h2, h3') || {textContent: ''}).textContent.replace('\u00b6', '').trim(),
    figures: [...slide.querySelectorAll('img')].filter(shown).map(i => {
      const r = i.getBoundingClientRect();
      return [r.width / scale, r.height / scale];
    }),
  };
}"""

READY_JS = """async () => {
  await MathJax.startup.promise;
  await Promise.all([...document.images].map(i => i.decode().catch(() => null)));
  Reveal.configure({transition: 'none', backgroundTransition: 'none'});
  return Reveal.getSlides().length;
}"""


@pytest.fixture(scope="module")
def decks(tmp_path_factory) -> list[Deck]:
    return write_decks(tmp_path_factory.mktemp("room"))


@pytest.fixture(scope="module")
def measured(decks) -> dict[str, list[dict]]:
    """Each deck's slides as Chromium shows them at 1280x720, by deck name; prints the counts."""
    shots = artifacts_dir() / "slides"
    shots.mkdir(exist_ok=True)
    measured = {}
    with serve(decks[0].path.parent) as url, launched_chromium() as browser:
        for deck in decks:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            errors: list[str] = []
            page.on("pageerror", lambda error, errors=errors: errors.append(str(error)))
            page.goto(f"{url}{deck.path.name}", wait_until="load")
            page.wait_for_function("window.Reveal && Reveal.isReady()", timeout=30_000)
            assert page.evaluate(READY_JS) == deck.slides
            slides = []
            for number in range(deck.slides):
                page.evaluate("(n) => Reveal.slide(...Object.values(Reveal.getIndices(Reveal.getSlides()[n])))", number)
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
                slides.append(page.evaluate(MEASURE_JS, page.evaluate_handle("Reveal.getCurrentSlide()")))
                page.screenshot(path=str(shots / f"{deck.path.name.split('.')[0][:2]}-{number + 1:02d}.png"))
            page.close()
            assert not errors, errors
            measured[deck.path.name] = slides
    for name, slides in measured.items():
        prose = [s for s in slides if s["words"]]
        print(
            f"{name}: {len(slides)} slides; at most {max(s['words'] for s in slides)} words and "
            f"{max(s['code'] for s in slides)} lines of code; "
            f"{sum(bool(s['outside'] or s['scrolls']) for s in slides)} overflowing; "
            f"{len(prose)} with prose, {sum(bool(s['notes']) for s in prose)} of them with notes"
        )
    return measured


def _each(measured: dict[str, list[dict]]):
    for name, slides in measured.items():
        for number, slide in enumerate(slides, 1):
            yield f"{name} slide {number} ({slide['title'] or 'untitled'})", slide


def test_every_slide_fits_the_stage(measured):
    overflowing = [
        f"{where}: {slide['outside'][:2]} {slide['scrolls'][:2]}"
        for where, slide in _each(measured)
        if slide["outside"] or slide["scrolls"] or slide["tall"] > HEIGHT + 1 or slide["wide"] > WIDTH + 1
    ]
    assert not overflowing, "\n".join(overflowing)


def test_slides_show_at_most_45_words_of_prose_and_12_lines_of_code(measured):
    wordy = [f"{where}: {slide['words']} words" for where, slide in _each(measured) if slide["words"] > SLIDE_WORDS]
    coded = [f"{where}: {slide['code']} lines" for where, slide in _each(measured) if slide["code"] > SLIDE_CODE_LINES]
    assert not wordy and not coded, "\n".join(wordy + coded)


def test_slides_with_prose_have_speaker_notes(measured):
    for name, slides in measured.items():
        prose = [slide for slide in slides if slide["words"]]
        noted = [slide for slide in prose if slide["notes"]]
        assert len(noted) >= NOTED_SHARE * len(prose), (
            f"{name}: notes on {len(noted)} of {len(prose)} slides with prose; without: "
            f"{[slide['title'] for slide in prose if not slide['notes']]}"
        )


def test_figures_are_drawn_large(measured):
    small = [
        f"{where}: a figure drawn {width:.0f}x{height:.0f}"
        for where, slide in _each(measured)
        for width, height in slide["figures"]
        if height < LARGE_HEIGHT * HEIGHT and width < LARGE_WIDTH * WIDTH
    ]
    assert not small, "\n".join(small)
    assert any(slide["figures"] for _, slide in _each(measured))


def test_speaker_view_opens_offline_with_the_notes(decks):
    """``s`` opens reveal.js's speaker view, whose notes are the reading text of the slide's notebook cell."""
    deck: Path = decks[0].path
    with serve(deck.parent) as url, launched_chromium() as browser:
        page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        outside: list[str] = []
        page.context.on(
            "request",
            lambda request: request.url.startswith((url, "data:", "about:")) or outside.append(request.url),
        )
        page.goto(f"{url}{deck.name}#/1", wait_until="load")
        page.wait_for_function("window.Reveal && Reveal.isReady()", timeout=30_000)
        page.evaluate("MathJax.startup.promise")
        with page.expect_popup() as opened:
            page.keyboard.press("s")
        speaker = opened.value
        notes = ".speaker-controls-notes .value"
        speaker.wait_for_function(
            f"() => (document.querySelector('{notes}') || {{textContent: ''}}).textContent.trim().length > 100",
            timeout=30_000,
        )
        text = speaker.evaluate(f"document.querySelector('{notes}').innerText")
        speaker.screenshot(path=str(artifacts_dir() / "speaker-view.png"))
    assert "A generative model of images should let us" in text, text[:300]
    assert not outside, f"the speaker view asked for {outside}"
