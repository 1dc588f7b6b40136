"""A Slack-compatible webhook receiver on 127.0.0.1 for the tests: it records every POST and
answers with the statuses it is given. The URL is built at run time, with a random token in the
path like a real one, so that tests can prove it is never shown."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# The server stops itself after this long even if a test hangs, so a run can never block on it.
# Long enough for a whole deploy on a loaded 2-core machine (a deploy sends its message at the end).
SERVER_LIFETIME_SECONDS = 120


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookServer:
    """Answers each POST with the next status in `statuses` (200 once they run out)."""

    port: int
    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    token: str = field(default_factory=lambda: secrets.token_hex(12))

    @property
    def path(self) -> str:
        return f"/services/T0DATAOPS/B0TEST/{self.token}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


@contextmanager
def serve(lifetime_seconds: float = SERVER_LIFETIME_SECONDS) -> Iterator[WebhookServer]:
    """A webhook receiver on 127.0.0.1 (a free port) until the block ends, or `lifetime_seconds`."""
    state = WebhookServer(port=0)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                state.received.append(Received(self.path, dict(self.headers.items()), body))
                status = state.statuses.pop(0) if state.statuses else 200
            # Echo the path on errors, as some servers do: it must not reach an error message.
            answer = b"ok" if status < 400 else f"no_service for {self.path}".encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep pytest's output clean

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    watchdog = threading.Timer(lifetime_seconds, httpd.shutdown)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield state
    finally:
        watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
