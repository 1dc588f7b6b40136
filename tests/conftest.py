"""Shared fixtures: every test gets its own warehouse folder, so no test touches the user's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataops.config import PROJECT_ROOT, Settings, load_settings

REAL_DATA_DIR = PROJECT_ROOT.parent / "shared" / "adventureworks"


@pytest.fixture
def warehouse_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "warehouse"
    monkeypatch.setenv("DATAOPS_WAREHOUSE_DIR", str(folder))
    monkeypatch.delenv("DATAOPS_DUCKDB_PATH", raising=False)
    monkeypatch.delenv("DATAOPS_TARGET", raising=False)
    return folder


@pytest.fixture
def settings(warehouse_dir: Path) -> Settings:
    return load_settings("dev")


@pytest.fixture
def real_data_dir() -> Path:
    if not (REAL_DATA_DIR / "Sales.Customer.csv").exists():
        pytest.skip(f"the real AdventureWorks CSVs are not at {REAL_DATA_DIR} (../shared/adventureworks)")
    return REAL_DATA_DIR


@pytest.fixture(scope="session")
def project_manifest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The real project's manifest, parsed once per test session."""
    from dataops.dbt_runner import DbtProject

    patch = pytest.MonkeyPatch()
    patch.setenv("DATAOPS_WAREHOUSE_DIR", str(tmp_path_factory.mktemp("manifest")))
    try:
        yield DbtProject(load_settings("dev")).manifest_dict()
    finally:
        patch.undo()
