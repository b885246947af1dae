"""Handouts: the lecture decks printed to PDF, one page per slide, by a headless Chromium, offline.

reveal.js lays a deck out for print (``?print-pdf``) and Playwright prints it at the deck's own size;
with notes, reveal.js puts a page of speaker notes after each slide that has them. A slide taller than
the stage, which scrolls on screen, is zoomed out to fit its page.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["CHROMIUM_NAMES", "PdfExportError", "Stage", "pdf_name", "page_count", "print_decks"]

#: Browsers Playwright may drive, looked up on PATH in this order (Debian's package first).
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_PRINT_TIMEOUT_MS = 120_000

#: A deck's stage: width and height in CSS pixels, and reveal.js's margin as a fraction of them.
Stage = tuple[int, int, float]


class PdfExportError(RuntimeError):
    """The decks could not be printed; the message says what is missing and how to install it."""


def pdf_name(deck: str) -> str:
    """The PDF's file name for the deck file ``deck``."""
    return deck.removesuffix(".html") + ".pdf"


def page_count(data: bytes) -> int:
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


def _print_files(folder: Path, names: list[str], stage: Stage, notes: bool) -> dict[str, bytes]:
    """Print the decks ``names`` of ``folder`` with Playwright's sync API, which needs a thread with no event loop."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    query = "?print-pdf" + ("&showNotes=separate-page" if notes else "")
    # reveal.js's page size: the stage and its margin, rounded down.
    stage_width, stage_height, margin = stage
    width, height = f"{int(stage_width * (1 + margin))}px", f"{int(stage_height * (1 + margin))}px"
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
                page = browser.new_page(viewport={"width": stage_width, "height": stage_height})
                try:
                    page.goto((folder / name).as_uri() + query, wait_until="load")
                    page.wait_for_function(_READY_TO_PRINT, timeout=_PRINT_TIMEOUT_MS)
                    page.evaluate("document.fonts.ready.then(() => true)")
                    pdfs[pdf_name(name)] = page.pdf(
                        width=width, height=height, print_background=True, prefer_css_page_size=True
                    )
                except PlaywrightError as err:
                    raise PdfExportError(f"{name} could not be printed: {_first_line(err)}") from None
                finally:
                    page.close()
        finally:
            browser.close()
    return pdfs


def print_decks(
    decks: Mapping[str, bytes], assets: Mapping[str, Path], stage: Stage, notes: bool = False
) -> dict[str, bytes]:
    """Print each deck (file name: HTML) to a PDF, one page per slide; returns the PDFs by file name.

    ``assets`` are the files the decks load (path relative to the decks: file), ``stage`` the deck's
    width, height and margin.
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
        for name, asset in assets.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(asset, folder / name)
        for name, html in decks.items():
            (folder / name).write_bytes(html)
        # Playwright's sync API refuses to run in a thread with a running event loop (a notebook's kernel has one).
        with ThreadPoolExecutor(max_workers=1) as printer:
            return printer.submit(_print_files, folder, list(decks), stage, notes).result()
