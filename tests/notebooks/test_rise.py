"""A lecturer presents a notebook live: JupyterLab with jupyterlab-rise shows it as reveal.js slides that run.

The test reuses the JupyterLab session of ``test_jupyterlab.py`` (a copy of the notebooks, a quick-mode
kernel, a free port), opens notebook 1 with its outputs cleared, starts RISE's slideshow with its own
command (``RISE:slideshow``, which opens the slideshow in a new tab), and steps through the cells with
Shift+Enter as a lecturer does, up to the first code cell that shows a result; that cell is run in place
with Ctrl+Enter. Its slide must be on screen with the output the kernel just produced. A screenshot of
that slide goes to the artifacts folder.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest
import test_jupyterlab  # the JupyterLab session fixture of the notebooks' browser test (same folder)

from nflows_tutorial.course.exercises import CHECK_TAG, EXERCISE_TAG

from support.browser import artifacts_dir, need_modules

pytestmark = [pytest.mark.browser, pytest.mark.notebook]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "01_flows_and_dequantization.ipynb"
LIVE = "live_lecture.ipynb"  # no .py beside it, so Jupytext has no pair to reconcile
STEP_TIMEOUT_MS = 30_000
RUN_TIMEOUT_MS = 180_000
# RISE's default reveal.js theme imports its web fonts from Google; offline the slides use local fonts.
THEME_FONTS = "fonts.googleapis.com"

lab = test_jupyterlab.lab

OPEN_JS = """async (path) => {
  const app = window.jupyterapp;
  await app.restored;
  const widget = await app.commands.execute('docmanager:open', {path, factory: 'Notebook'});
  await widget.context.ready;
  app.shell.activateById(widget.id);
  return {enabled: app.commands.isEnabled('RISE:slideshow'), id: widget.id};
}"""

# The notebook's toolbar is filled from the settings registry after the document opens, so its buttons
# may appear a moment later on a busy machine: wait for them instead of reading the toolbar once.
TOOLBAR_JS = """(id) => [...document.getElementById(id).querySelectorAll('.jp-Toolbar [data-command]')]
  .map(b => b.dataset.command)"""

ACTIVE_JS = "() => [...document.querySelectorAll('.jp-Cell')].findIndex(c => c.classList.contains('jp-mod-active'))"

CELL_JS = """(index) => {
  const cell = document.querySelectorAll('.jp-Cell')[index];
  const box = cell.getBoundingClientRect();
  const images = [...cell.querySelectorAll('.jp-OutputArea-output img')];
  return {
    onPresentSlide: cell.closest('section').classList.contains('present'),
    onScreen: box.top >= 0 && box.top < window.innerHeight,
    prompt: cell.querySelector('.jp-InputPrompt').textContent.trim(),
    source: cell.querySelector('.jp-InputArea-editor').textContent,
    outputText: [...cell.querySelectorAll('.jp-OutputArea-output')].map(o => o.textContent).join(''),
    images: images.filter(i => i.complete && i.naturalWidth > 0).length,
  };
}"""


@pytest.fixture(scope="module")
def rise_installed() -> None:
    need_modules("jupyterlab_rise", extra="lab")


def _first_result(nb: nbformat.NotebookNode) -> int:
    """The index of the first code cell of the deck whose stored run shows something (a figure, printed text)."""
    for index, cell in enumerate(nb.cells):
        tags = set(cell.metadata.get("tags", []))
        if cell.cell_type == "code" and cell.outputs and not tags & {"no-slides", EXERCISE_TAG, CHECK_TAG}:
            return index
    raise AssertionError(f"{NOTEBOOK} has no code cell with an output on its slides")


def _cleared_copy(folder: Path) -> tuple[nbformat.NotebookNode, int]:
    """Write the notebook with no outputs as ``LIVE``, so that every output shown comes from the live kernel."""
    nb = nbformat.read(ROOT / "notebooks" / NOTEBOOK, as_version=4)
    target = _first_result(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("jupytext", None)
    nbformat.write(nb, folder / LIVE)
    return nb, target


def test_notebook_presents_as_a_rise_slideshow_that_runs(rise_installed, lab):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page, folder = lab
    nb, target = _cleared_copy(folder)
    host = urlparse(page.url).netloc
    outside: list[str] = []

    def only_loopback(route) -> None:
        if urlparse(route.request.url).netloc == host:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.context.route("**/*", only_loopback)
    opened = page.evaluate(OPEN_JS, LIVE)
    assert opened["enabled"], "RISE:slideshow is not available for the open notebook (is jupyterlab-rise installed?)"
    button = page.locator(f"#{opened['id']} .jp-Toolbar [data-command='RISE:preview']")
    try:
        button.wait_for(state="attached", timeout=STEP_TIMEOUT_MS)
    except PlaywrightTimeout:
        toolbar = page.evaluate(TOOLBAR_JS, opened["id"])
        pytest.fail(f"no RISE button in the notebook's toolbar after {STEP_TIMEOUT_MS / 1000:.0f} s: {toolbar}")

    with page.context.expect_page() as new_tab:
        page.evaluate("() => window.jupyterapp.commands.execute('RISE:slideshow')")
    slides = new_tab.value
    try:
        assert urlparse(slides.url).path.endswith(f"/rise/{LIVE}"), slides.url
        first = slides.locator(".reveal .slides section.present").last
        first.wait_for(state="visible", timeout=RUN_TIMEOUT_MS)
        title = nb.cells[0].source.splitlines()[0].lstrip("# ")
        assert title in first.inner_text(), f"the first slide does not show the notebook's title {title!r}"

        # Step through as a lecturer: Shift+Enter runs a cell and moves on, the slideshow follows.
        slides.locator(".jp-Cell").first.click()
        slides.wait_for_function(f"() => ({ACTIVE_JS})() === 0", timeout=STEP_TIMEOUT_MS)
        for index in range(1, target + 1):
            slides.keyboard.press("Shift+Enter")
            slides.wait_for_function(f"() => ({ACTIVE_JS})() === {index}", timeout=STEP_TIMEOUT_MS)
        slides.keyboard.press("Control+Enter")
        slides.wait_for_function(
            """(i) => { const c = document.querySelectorAll('.jp-Cell')[i];
                        return c.querySelector('.jp-OutputArea-output') && !/\\*/.test(c.querySelector('.jp-InputPrompt').textContent); }""",
            arg=target,
            timeout=RUN_TIMEOUT_MS,
        )
        slides.wait_for_timeout(1000)  # the slide transition
        cell = slides.evaluate(CELL_JS, target)
        slides.screenshot(path=str(artifacts_dir() / "rise-slide.png"))
    finally:
        slides.close()
        page.context.unroute("**/*", only_loopback)

    print(f"RISE ran cell {target} ({cell['source'][:40]!r}): {cell['prompt']} {cell['images']} figure(s)")
    assert cell["source"].strip() == nb.cells[target].source.strip()
    assert cell["onPresentSlide"] and cell["onScreen"], f"the cell run is not on the slide shown: {cell}"
    assert cell["prompt"] not in ("[ ]:", "[*]:"), f"the cell did not run: prompt {cell['prompt']}"
    assert cell["images"] or cell["outputText"].strip(), f"the cell run shows no output: {cell}"
    assert "Error" not in cell["outputText"], cell["outputText"]
    stray = [url for url in outside if urlparse(url).netloc != THEME_FONTS]
    assert not stray, f"the slideshow asks the internet for {stray[:5]}"
