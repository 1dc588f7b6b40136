"""`dataops docs serve`: the dbt docs site of a target over HTTP, as `dbt docs serve` does. The
site's index.html fetches manifest.json and catalog.json, which browsers refuse from file://."""

from __future__ import annotations

import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from dataops.core.config import Settings
from dataops.core.errors import DataOpsError

# What the site reads; nothing else in dbt's target folder is served.
SITE_FILES = frozenset({"index.html", "manifest.json", "catalog.json"})


class _SiteHandler(SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        name = self.path.split("?", 1)[0].lstrip("/") or "index.html"
        if name not in SITE_FILES:
            self.send_error(404, "not part of the dbt docs site")
            return
        self.path = "/" + name
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would bury the URL the user needs


class DocsServer:
    """A server on `host:port` (port 0: any free one) for the docs of `settings`' target."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.target = settings.target
        site = settings.artifacts_dir / "dbt"
        missing = sorted(name for name in SITE_FILES if not (site / name).is_file())
        if missing:
            raise DataOpsError(
                f"no dbt docs for target '{settings.target}' in {site} (missing {', '.join(missing)}): "
                f"run `dataops run --target {settings.target}` first (its docs stage writes them)"
            )
        handler = functools.partial(_SiteHandler, directory=str(site))
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as error:
            raise DataOpsError(f"cannot listen on {host}:{port}: {error.strerror}; choose another --port") from error

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def shutdown(self) -> None:
        self._server.shutdown()

    def __enter__(self) -> DocsServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._server.server_close()
