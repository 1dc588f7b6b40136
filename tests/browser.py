"""Headless Chromium for the tests that open a page the project writes: with every network request
refused, the page's DOM after its load, what its console said, and optionally a screenshot."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


def chromium() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs it when it runs as root)")
    return browser


@dataclass(frozen=True)
class Shown:
    dom: str
    console: list[str]  # console messages and refused requests: a page that works offline has none


def open_offline(page: Path, profile: Path, screenshot: Path | None = None) -> Shown:
    common = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--enable-logging=stderr",
        "--v=0",
    ]
    shown = subprocess.run(
        [*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True
    )
    console = [line for line in shown.stderr.splitlines() if "CONSOLE" in line or "net::ERR" in line]
    if screenshot is not None:
        subprocess.run(
            [*common, f"--screenshot={screenshot}", "--window-size=1600,4000", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    return Shown(shown.stdout, console)
