"""Fetch a file over HTTP(S) into place atomically: streamed, timed out, retried, and verified first."""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from tqdm import tqdm

__all__ = [
    "DownloadError",
    "download_file",
    "sha256_of",
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "RETRIES",
    "BACKOFF",
    "STALE_PART_AGE",
    "MIN_RATE",
    "STALL_WINDOW",
    "DEADLINE_BASE",
]

# Defaults read when download_file() is called (not when it is defined), so a test or a lecturer
# on a slow link can change them for the whole session by assigning to the module attribute.
CONNECT_TIMEOUT = 15.0  # seconds to open the connection (TCP and TLS handshake)
READ_TIMEOUT = 30.0  # seconds of silence tolerated while waiting for the answer or the next block
RETRIES = 3  # further attempts after a network fault
BACKOFF = 0.5  # pause before the first retry, in seconds; it doubles for each later one
STALE_PART_AGE = 600.0  # a temporary file untouched this long (seconds) was left by a process that died
MIN_RATE = 1024.0  # bytes per second: a transfer slower than this over STALL_WINDOW seconds has stalled
STALL_WINDOW = 60.0  # seconds over which MIN_RATE is judged
DEADLINE_BASE = 300.0  # seconds every download may take, all attempts together, before its size is counted

CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A download failed for good, after the retries that made sense.

    ``url`` is what was requested, ``reason`` a one-line account of what went wrong.
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, reason)  # both in args, so the error survives pickling between processes
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return f"downloading {self.url} failed: {self.reason}"


class _Permanent(Exception):
    """Trying again would get the same answer (a 4xx status, the wrong bytes, a missing local file)."""


# Faults of the network or the server that a later attempt may not meet. Local disk errors are
# plain OSErrors outside this tuple: retrying a full disk would only waste the student's time.
_TRANSIENT = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, ssl.SSLError)


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class _ReadTimeoutConnection(http.client.HTTPConnection):
    """Opened within the connect timeout; once open, every read waits up to ``read_timeout`` seconds."""

    read_timeout: float | None = None

    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(self.read_timeout)


class _ReadTimeoutHTTPSConnection(_ReadTimeoutConnection, http.client.HTTPSConnection):
    """The same over TLS: ``HTTPSConnection.connect`` (the handshake included) runs under the connect timeout."""


class _ReadTimeout(urllib.request.AbstractHTTPHandler):
    """Handler mixin: the connect timeout covers opening the connection, then reads get their own."""

    def __init__(self, read_timeout: float) -> None:
        super().__init__()
        self.read_timeout = read_timeout

    def do_open(self, http_class: object, req: urllib.request.Request, **kwargs: Any) -> http.client.HTTPResponse:
        # urllib passes HTTPConnection for http:// and HTTPSConnection for https://.
        tls = isinstance(http_class, type) and issubclass(http_class, http.client.HTTPSConnection)
        connection_class = _ReadTimeoutHTTPSConnection if tls else _ReadTimeoutConnection
        read_timeout = self.read_timeout

        def connection(*args: Any, **conn_kwargs: Any) -> _ReadTimeoutConnection:
            conn = connection_class(*args, **conn_kwargs)
            conn.read_timeout = read_timeout
            return conn

        return super().do_open(connection, req, **kwargs)


class _HTTPHandler(_ReadTimeout, urllib.request.HTTPHandler):
    pass


class _HTTPSHandler(_ReadTimeout, urllib.request.HTTPSHandler):
    pass


def _describe(err: BaseException, connect_timeout: float, read_timeout: float) -> str:
    """One line a student can act on, instead of urllib's nested exception text."""
    if isinstance(err, urllib.error.HTTPError):
        return f"the server answered HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        reason = err.reason
        if isinstance(reason, socket.gaierror):
            return f"cannot look up the server's address ({reason.strerror}): this machine seems to be offline"
        if isinstance(reason, ConnectionRefusedError):
            return "the server refused the connection"
        if isinstance(reason, TimeoutError):
            return f"no connection within {connect_timeout:g} s (connect timeout)"
        return f"cannot reach the server ({getattr(reason, 'strerror', None) or reason})"
    if isinstance(err, _Stalled):
        return str(err)
    if isinstance(err, TimeoutError):
        return f"the server sent nothing for {read_timeout:g} s (read timeout)"
    return str(err) or type(err).__name__


_HOST = socket.gethostname().replace(".", "_").replace("-", "_")


def _open_part(dest: Path) -> tuple[Path, BinaryIO]:
    """Create a private temporary file beside ``dest``; its name says which host and process write it."""
    part = dest.with_name(f".{dest.name}.{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.part")
    return part, open(part, "xb")  # "x": never share a file with another downloader


def _writer_is_gone(part: Path, dest: Path) -> bool:
    """Whether the process named in ``part`` ran on this host and has ended (so it will never finish the file)."""
    tag = part.name[len(dest.name) + 2 : -len(".part")]
    host, _, rest = tag.partition("-")
    pid = rest.partition("-")[0]
    if host != _HOST or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, but someone else's
        return False
    return False


def _remove_stale_parts(dest: Path) -> None:
    """Delete temporary files that a killed process left beside ``dest``.

    A file is stale when the process named in it has ended on this host, or, for a writer this host
    cannot check (another machine sharing the folder), when it is older than ``STALE_PART_AGE``: a
    live download writes every few seconds or gives up within ``STALL_WINDOW``.
    """
    now = time.time()
    for part in dest.parent.glob(f".{dest.name}.*.part"):
        try:
            if _writer_is_gone(part, dest) or now - part.stat().st_mtime > STALE_PART_AGE:
                part.unlink()
        except OSError:  # another process removed or renamed it first
            pass


class _Stalled(TimeoutError):
    """The transfer went on, but too slowly to finish (a trickle is not silence, so no read timeout fires)."""


class _TooLong(Exception):
    """The download as a whole ran past its deadline."""


@dataclass(frozen=True)
class _Settings:
    """The timeouts and retries of one :func:`download_file` call."""

    connect_timeout: float
    read_timeout: float
    retries: int
    backoff: float

    @classmethod
    def resolve(
        cls, connect_timeout: float | None, read_timeout: float | None, retries: int | None, backoff: float | None
    ) -> _Settings:
        """The settings given, with the module default (read now, so an assignment to it counts) for each ``None``."""
        settings = cls(
            CONNECT_TIMEOUT if connect_timeout is None else connect_timeout,
            READ_TIMEOUT if read_timeout is None else read_timeout,
            RETRIES if retries is None else retries,
            BACKOFF if backoff is None else backoff,
        )
        if settings.retries < 0:
            raise ValueError(f"retries must be 0 or more, got {settings.retries}")
        return settings


@dataclass(frozen=True)
class _Limits:
    """How large the body may be, and how long all attempts together may take."""

    size: int | None  # the exact size, where known
    cap: int | None  # the most bytes the body may have: ``size`` where known, else the caller's ``max_size``
    allowed: float  # seconds, all attempts together
    deadline: float  # the time.monotonic() value at which ``allowed`` runs out

    @classmethod
    def starting_now(cls, size: int | None, max_size: int | None) -> _Limits:
        """``DEADLINE_BASE`` seconds from now, plus one second per ``MIN_RATE`` bytes of the expected size."""
        allowed = DEADLINE_BASE + (size or max_size or 0) / MIN_RATE
        return cls(size, size if size is not None else max_size, allowed, time.monotonic() + allowed)


def _open(opener: urllib.request.OpenerDirector, url: str, connect_timeout: float) -> http.client.HTTPResponse:
    """Request ``url``; an answer that trying again cannot change is raised as :class:`_Permanent`."""
    try:
        return opener.open(url, timeout=connect_timeout)
    except urllib.error.HTTPError as err:
        err.close()
        if 400 <= err.code < 500 and err.code not in (408, 429):
            raise _Permanent(f"the server answered HTTP {err.code} {err.reason}") from None
        raise
    except urllib.error.URLError as err:
        if isinstance(err.reason, FileNotFoundError):  # a file:// mirror without the file
            raise _Permanent(f"no such file ({err.reason.filename or err.reason})") from None
        if isinstance(err.reason, ssl.SSLCertVerificationError):
            raise _Permanent(
                f"the server's TLS certificate was not accepted ({err.reason.verify_message}); this Python may "
                "lack root certificates (python.org builds on macOS: run 'Install Certificates.command')"
            ) from None
        raise


def _copy(
    response: http.client.HTTPResponse, out: BinaryIO, limits: _Limits, label: str, progress: bool
) -> tuple[int, str]:
    """Copy the body of ``response`` into ``out``; return the byte count and its SHA-256.

    Gives up when the body would exceed ``limits.cap`` (refused by its Content-Length where it has one),
    when fewer than ``MIN_RATE * STALL_WINDOW`` bytes arrive in any ``STALL_WINDOW`` seconds, at
    ``limits.deadline``, or when the connection closes early. With ``progress`` a bar named ``label``
    shows the transfer on stderr.
    """
    length = response.headers.get("Content-Length")
    announced = int(length) if length and length.isdigit() else None
    if announced is not None and limits.size is not None and announced != limits.size:
        raise _Permanent(f"the server offers {announced:,} bytes, the expected file has {limits.size:,}")
    if announced is not None and limits.cap is not None and announced > limits.cap:
        raise _Permanent(f"the server offers {announced:,} bytes, more than the {limits.cap:,} this file can have")
    expected = announced if announced is not None else limits.size
    digest = hashlib.sha256()
    received = 0
    window_start, window_bytes = time.monotonic(), 0
    # read1: return what has arrived rather than wait for a whole block, so a trickle is measured.
    read = getattr(response, "read1", response.read)
    bar = tqdm(
        total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not progress, file=sys.stderr
    )
    with bar:
        while block := read(CHUNK):
            received += len(block)
            if limits.cap is not None and received > limits.cap:
                raise _Permanent(f"the server sent more than the {limits.cap:,} bytes this file can have")
            out.write(block)
            digest.update(block)
            bar.update(len(block))
            now = time.monotonic()
            if now > limits.deadline:
                raise _TooLong()
            window_bytes += len(block)
            if now - window_start >= STALL_WINDOW:
                if window_bytes < MIN_RATE * STALL_WINDOW:
                    raise _Stalled(
                        f"the transfer stalled: {window_bytes:,} bytes in {now - window_start:.0f} s, "
                        f"under {MIN_RATE / 1024:g} KiB/s"
                    )
                window_start, window_bytes = now, 0
    if expected is not None and received < expected:
        raise ConnectionError(f"the connection closed after {received:,} of {expected:,} bytes")
    return received, digest.hexdigest()


def _attempt(
    opener: urllib.request.OpenerDirector,
    url: str,
    dest: Path,
    limits: _Limits,
    settings: _Settings,
    sha256: str | None,
    verify: Callable[[Path], None] | None,
    progress: bool,
) -> None:
    """Fetch ``url`` once into a temporary file, and rename it onto ``dest`` once every check passes."""
    part = None
    try:
        part, out = _open_part(dest)
        with out, _open(opener, url, settings.connect_timeout) as response:
            received, found = _copy(response, out, limits, url.rsplit("/", 1)[-1], progress)
        if limits.size is not None and received != limits.size:
            raise _Permanent(f"expected {limits.size:,} bytes, received {received:,}")
        if sha256 is not None and found != sha256:
            raise _Permanent(f"the bytes are not the expected file (SHA-256 {found}, expected {sha256})")
        if verify is not None:
            verify(part)
        os.replace(part, dest)
    finally:
        if part is not None:
            part.unlink(missing_ok=True)


def _make_folder(url: str, dest: Path) -> None:
    """Create the folder of ``dest`` and sweep the temporary files that killed downloads left in it."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(url, f"cannot create the folder {dest.parent} ({err.strerror or err})") from None
    _remove_stale_parts(dest)


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    size: int | None = None,
    verify: Callable[[Path], None] | None = None,
    max_size: int | None = None,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    retries: int | None = None,
    backoff: float | None = None,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``; ``dest`` is only ever absent or complete.

    The body goes to a temporary file beside ``dest`` that no other process shares. It is renamed
    onto ``dest`` only after the size, the SHA-256 and ``verify(temp_path)`` (which raises to
    reject the file) all pass, and it is removed on any failure. Network faults are retried
    ``retries`` times, pausing ``backoff`` seconds and then twice as long each time; a 4xx answer
    or wrong bytes are not retried. Timeouts and retry settings left as ``None`` take the module
    defaults (``CONNECT_TIMEOUT``, ``READ_TIMEOUT``, ``RETRIES``, ``BACKOFF``). A body larger than
    ``size`` (or, where the size is unknown, ``max_size``) is refused as it arrives; a transfer slower
    than ``MIN_RATE`` over ``STALL_WINDOW`` seconds counts as a network fault; all attempts together
    get ``DEADLINE_BASE`` seconds plus one second per ``MIN_RATE`` bytes of the expected size. With
    ``progress`` a bar on stderr shows the transfer and each retry is announced there.

    Raises :class:`DownloadError` naming the URL and the cause.
    """
    dest = Path(dest)
    settings = _Settings.resolve(connect_timeout, read_timeout, retries, backoff)
    _make_folder(url, dest)
    limits = _Limits.starting_now(size, max_size)
    opener = urllib.request.build_opener(_HTTPHandler(settings.read_timeout), _HTTPSHandler(settings.read_timeout))
    attempts = settings.retries + 1
    attempt = 0
    while True:
        attempt += 1
        try:
            _attempt(opener, url, dest, limits, settings, sha256, verify, progress)
            return dest
        except _Permanent as err:
            raise DownloadError(url, str(err)) from None
        except _TooLong:
            raise DownloadError(
                url, f"the download took longer than {limits.allowed:g} s (attempt {attempt})"
            ) from None
        except _TRANSIENT as err:
            reason = _describe(err, settings.connect_timeout, settings.read_timeout)
            pause = settings.backoff * 2 ** (attempt - 1)
            if attempt == attempts or time.monotonic() + pause > limits.deadline:
                tries = f"{attempt} attempts" if attempt > 1 else "1 attempt"
                raise DownloadError(url, f"{reason} (gave up after {tries})") from None
            if progress:
                print(f"Attempt {attempt} of {attempts} failed: {reason}; retrying in {pause:g} s", file=sys.stderr)
            time.sleep(pause)
        except OSError as err:
            raise DownloadError(url, f"cannot write into {dest.parent} ({err.strerror or err})") from None
