"""Fixtures of the integration tests that validate compose files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def isolated_env(tmp_path: Path) -> dict[str, str]:
    """Only PATH from the caller: a developer's own variables or Docker config cannot leak in."""
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path)}


@pytest.fixture
def empty_env_file(tmp_path: Path) -> Path:
    """Passed as --env-file so that a developer's own .env in the project is never read."""
    path = tmp_path / "empty.env"
    path.write_text("", encoding="utf-8")
    return path
