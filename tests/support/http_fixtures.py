"""A real HTTP server on 127.0.0.1, in a thread, that serves files or misbehaves on request."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["LoopbackServer", "FAULTS"]

# What a route can do instead of answering normally:
#   "close": send the headers (full Content-Length) and half the body, then hang up;
#   "stall": send the headers and half the body, then go silent until the server stops;
#   "mute":  accept the request and send nothing at all until the server stops;
#   "503":   answer 503 Service Unavailable, as an overloaded server does;
#   "trickle": send the headers, then the body one byte every 0.1 s;
#   "endless": send no Content-Length and the body over and over, until the client hangs up.
FAULTS = ("close", "stall", "mute", "503", "trickle", "endless")


@dataclass
class _Route:
    body: bytes
    fault: str | None
    faults_left: int | None  # how many more requests get the fault; None: every one


class LoopbackServer:
    """Serve byte strings under ``<url><name>``; unknown names get 404. Use as a context manager.

    ``requests`` lists the names asked for, in order. ``gate(n)`` makes every answer wait until
    ``n`` requests are in flight at once (``max_in_flight`` records the most seen), which forces
    downloads from several processes to overlap.
    """

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.max_in_flight = 0
        self._routes: dict[str, _Route] = {}
        self._lock = threading.Lock()
        self._in_flight = 0
        self._barrier: threading.Barrier | None = None
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        """Base URL, ending in a slash."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def add(self, name: str, body: bytes | Path, fault: str | None = None, times: int | None = None) -> None:
        """Serve ``body`` (bytes, or a file's content) as ``name``; the first ``times`` requests
        (all, if ``None``) get ``fault`` instead, one of :data:`FAULTS`."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose one of {FAULTS}")
        data = body.read_bytes() if isinstance(body, Path) else body
        self._routes[name] = _Route(data, fault, times)

    def gate(self, parties: int, timeout: float = 60.0) -> None:
        """Hold each answer until ``parties`` requests have arrived (or ``timeout`` passes)."""
        self._barrier = threading.Barrier(parties, timeout=timeout)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopping.set()  # frees stalled handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def _next_fault(self, route: _Route) -> str | None:
        with self._lock:
            if route.fault is None or route.faults_left == 0:
                return None
            if route.faults_left is not None:
                route.faults_left -= 1
            return route.fault

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                with server._lock:
                    server.requests.append(name)
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                try:
                    self._answer(server._routes.get(name))
                except (BrokenPipeError, ConnectionResetError):  # the client gave up first
                    pass
                finally:
                    with server._lock:
                        server._in_flight -= 1

            def _answer(self, route: _Route | None) -> None:
                if server._barrier is not None:
                    # answer anyway; the test sees it in max_in_flight
                    with contextlib.suppress(threading.BrokenBarrierError):
                        server._barrier.wait()
                if route is None:
                    self.send_error(404)
                    return
                fault = server._next_fault(route)
                if fault == "mute":
                    server._stopping.wait()
                    return
                if fault == "503":
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if fault != "endless":
                    self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                if fault == "endless":
                    while not server._stopping.is_set():
                        self.wfile.write(route.body)
                    return
                if fault == "trickle":
                    for i in range(len(route.body)):
                        if server._stopping.wait(0.1):
                            return
                        self.wfile.write(route.body[i : i + 1])
                        self.wfile.flush()
                    return
                if fault is None:
                    self.wfile.write(route.body)
                    return
                self.wfile.write(route.body[: len(route.body) // 2])
                self.wfile.flush()
                if fault == "stall":
                    server._stopping.wait()
                self.close_connection = True

        return Handler
