"""Shared fixtures: every test gets its own warehouse folder, so no test touches the user's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataops.core.config import PROJECT_ROOT, Settings, load_settings

REAL_DATA_DIR = PROJECT_ROOT.parent / "shared" / "adventureworks"


@pytest.fixture
def warehouse_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "warehouse"
    monkeypatch.setenv("DATAOPS_WAREHOUSE_DIR", str(folder))
    monkeypatch.delenv("DATAOPS_DUCKDB_PATH", raising=False)
    monkeypatch.delenv("DATAOPS_TARGET", raising=False)
    monkeypatch.delenv("DATAOPS_HISTORY_URL", raising=False)  # the run history beside the warehouse
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
    from dataops.project.runner import DbtProject

    patch = pytest.MonkeyPatch()
    patch.setenv("DATAOPS_WAREHOUSE_DIR", str(tmp_path_factory.mktemp("manifest")))
    try:
        yield DbtProject(load_settings("dev")).manifest_dict()
    finally:
        patch.undo()


def _postgres_server_helper() -> Any:
    """tests/postgres_server.py, loaded by its path: tests/ is no package, and this works in every
    pytest import mode without touching sys.path."""
    import importlib.util
    import sys

    name = "postgres_server"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before exec: dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def postgres_env() -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL server for the session; yields the PG* variables that reach it.
    A server that cannot start fails the tests that need it: CI must never skip them silently."""
    helper = _postgres_server_helper()
    try:
        server = helper.start_server()
    except Exception as error:
        pytest.fail(f"cannot start the test PostgreSQL server: {error}", pytrace=False)
    try:
        yield dict(server.env)
    finally:
        server.stop()


@pytest.fixture
def postgres_settings(
    postgres_env: dict[str, str], warehouse_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The `postgres` target on the session's server, with an empty `adventureworks` database."""
    for name, value in postgres_env.items():
        monkeypatch.setenv(name, value)
    _postgres_server_helper().recreate_database(postgres_env)
    return load_settings("postgres")
