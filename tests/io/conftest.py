"""Fixtures of the download and checkpoint tests: short timeouts, the cache, a loopback mirror."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nflows_tutorial.environment import URL_VARIABLE
from nflows_tutorial.io import download

from support.http_fixtures import LoopbackServer


@pytest.fixture
def short_timeouts(monkeypatch) -> None:
    """Short timeouts and no back-off pauses, so every failure is met within seconds;
    loopback requests bypass any proxy the machine is configured with."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(download, "CONNECT_TIMEOUT", 5.0)
    monkeypatch.setattr(download, "READ_TIMEOUT", 5.0)  # the stall tests lower it; a busy CI box needs slack
    monkeypatch.setattr(download, "RETRIES", 1)
    monkeypatch.setattr(download, "BACKOFF", 0.0)


@pytest.fixture
def cache() -> Path:
    """The checkpoint cache the autouse conftest fixture set up for this test."""
    return Path(os.environ["PATH_CHECKPOINT"])


@pytest.fixture
def server(monkeypatch) -> Iterator[LoopbackServer]:
    """A loopback server that the package uses as its checkpoint mirror."""
    with LoopbackServer() as srv:
        monkeypatch.setenv(URL_VARIABLE, srv.url)
        yield srv


@pytest.fixture
def files_in() -> Callable[[Path], list[str]]:
    """Lists every entry of a folder, hidden temporary files included (none for a missing folder)."""

    def listing(folder: Path) -> list[str]:
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []

    return listing
