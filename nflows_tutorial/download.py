"""Fetch a file over HTTP(S) into place atomically: streamed, timed out, retried, and verified first."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

__all__ = ["DownloadError", "download_file", "sha256_of"]

CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A download failed for good (after the retries that made sense)."""


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class _Permanent(Exception):
    """Raised inside a try: retrying would not help (404, wrong bytes)."""


def _fetch_once(url: str, out, connect_timeout: float, read_timeout: float, progress: bool) -> int:
    """Stream ``url`` into the open file ``out``; return the byte count."""
    try:
        response = urllib.request.urlopen(url, timeout=connect_timeout)
    except urllib.error.HTTPError as err:
        if 400 <= err.code < 500 and err.code not in (408, 429):
            raise _Permanent(f"the server answered HTTP {err.code} ({err.reason})") from None
        raise
    with response:
        sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
        if sock is not None:  # urllib has one timeout; give the body its own
            sock.settimeout(read_timeout)
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        from tqdm.auto import tqdm

        received = 0
        with tqdm(
            total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=Path(url).name,
            disable=not progress, file=sys.stderr, leave=False,
        ) as bar:
            while block := response.read(CHUNK):
                out.write(block)
                received += len(block)
                bar.update(len(block))
    if total is not None and received != total:
        raise ConnectionError(f"the connection closed after {received:,} of {total:,} bytes")
    return received


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    size: int | None = None,
    verify: Callable[[Path], None] | None = None,
    connect_timeout: float = 15.0,
    read_timeout: float = 60.0,
    retries: int = 3,
    backoff: float = 1.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    The bytes go to a private temporary file beside ``dest``; it is renamed onto ``dest`` only after
    the size, the SHA-256 and ``verify(temp_path)`` (which raises to reject) all pass. Concurrent
    callers each write their own temporary file, so ``dest`` is always absent or complete.
    Network faults are retried ``retries`` times with exponential back-off; a 4xx answer or wrong
    bytes are not. Raises :class:`DownloadError` naming the URL and the cause.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    last_error = "no attempt made"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                received = _fetch_once(url, out, connect_timeout, read_timeout, progress)
            if size is not None and received != size:
                raise _Permanent(f"expected {size:,} bytes, received {received:,}")
            if sha256 is not None and (found := sha256_of(tmp)) != sha256:
                raise _Permanent(f"SHA-256 mismatch: expected {sha256}, got {found}")
            if verify is not None:
                verify(tmp)
            os.replace(tmp, dest)
            return dest
        except _Permanent as err:
            raise DownloadError(f"downloading {url} failed: {err}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError, socket.timeout) as err:
            reason = getattr(err, "reason", None) or err
            last_error = f"{type(err).__name__}: {reason}"
        finally:
            tmp.unlink(missing_ok=True)
    raise DownloadError(f"downloading {url} failed after {retries + 1} attempts ({last_error})")
