"""What the browser tests share: the artifacts folder, chromium through Playwright, a loopback server.

A missing browser or Playwright skips a browser test with one line naming the missing piece, except
under ``NFLOWS_TUTORIAL_REQUIRE_BROWSER=1`` (set by ``.ci/run``), where it fails the test.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import os
import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUIRE_VARIABLE = "NFLOWS_TUTORIAL_REQUIRE_BROWSER"
VIEWPORT = {"width": 1280, "height": 900}


def artifacts_dir() -> Path:
    """``$NFLOWS_TUTORIAL_ARTIFACTS``, or ``build/test-artifacts`` in the checkout; created if missing."""
    folder = Path(os.environ.get("NFLOWS_TUTORIAL_ARTIFACTS", ROOT / "build" / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def need(available: bool, missing: str) -> None:
    """Skip the test (fail it under ``$NFLOWS_TUTORIAL_REQUIRE_BROWSER=1``) when a piece is missing."""
    if available:
        return
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{missing} ({REQUIRE_VARIABLE}=1 makes this a failure)")
    pytest.skip(missing)


def need_modules(*modules: str, extra: str) -> None:
    """Skip (or fail) unless every Python module is importable; the message names the extra to install."""
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    need(not absent, f'{", ".join(absent)} not installed: pip install -e ".[{extra}]"')


def chromium_path() -> str:
    """The system chromium (Debian's package), which Playwright drives instead of a downloaded browser."""
    need_modules("playwright", extra="test")
    found = _chromium_on_path()
    need(found is not None, "chromium not found on PATH: apt-get install chromium")
    return found


def can_print() -> bool:
    """Whether Playwright and chromium are here to print PDFs; always true under ``$NFLOWS_TUTORIAL_REQUIRE_BROWSER=1``,
    so that CI, which must have them, never leaves the printing untested."""
    present = importlib.util.find_spec("playwright") is not None and _chromium_on_path() is not None
    return present or os.environ.get(REQUIRE_VARIABLE) == "1"


def _chromium_on_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextlib.contextmanager
def launched_chromium() -> Iterator[object]:
    """A headless chromium browser (Playwright's ``Browser``), closed on exit."""
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser
        finally:
            browser.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # A browser that leaves a page drops the downloads still running; that is no server error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 in a background thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
