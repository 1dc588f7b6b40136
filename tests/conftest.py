"""Shared fixtures: every test gets its own warehouse folder, so no test touches the user's. And
the order of the session: the slow jobs whose outcome some tests only read (tests/background.py)
start with the session and run beside the other tests; the tests that read them run after all
the others, and the tests that need the machine to themselves last of all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataops.core.config import PROJECT_ROOT, Settings, load_settings

REAL_DATA_DIR = PROJECT_ROOT.parent / "shared" / "adventureworks"


def _helper(name: str) -> Any:
    """tests/<name>.py, loaded by its path: tests/ is no package, and this works in every pytest
    import mode without touching sys.path. Test modules import it by its name."""
    import importlib.util
    import sys

    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before exec: dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


# Before any test module is collected: they register their jobs in it at import.
background = _helper("background")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "background(name): the test reads the outcome of the background job `name` (tests/background.py)"
    )
    config.addinivalue_line(
        "markers", "alone: the test needs the machine to itself; it runs last, after the background jobs"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every other test first, then those that read a background job's outcome, so that the jobs
    run beside the others; the tests marked `alone` last. Otherwise the order is pytest's."""

    def rank(item: pytest.Item) -> int:
        return 2 if item.get_closest_marker("alone") else 1 if item.get_closest_marker("background") else 0

    items.sort(key=rank)


def _background_jobs_of(items: list[pytest.Item]) -> list[str]:
    """The jobs the tests of the session read, in the order they will ask for them."""
    names: dict[str, None] = {}
    for item in items:
        for marker in item.iter_markers("background"):
            names.update(dict.fromkeys(marker.args))
    return list(names)


@pytest.fixture(scope="session")
def background_jobs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The background jobs the session's tests read, each with a folder of its own."""
    jobs = background.Background(_background_jobs_of(request.session.items), tmp_path_factory.mktemp)
    try:
        yield jobs
    finally:
        jobs.close()


@pytest.fixture(scope="session", autouse=True)
def _start_the_background_jobs(request: pytest.FixtureRequest) -> None:
    """Before the first test of the session, whatever it is, with the environment as it started."""
    if _background_jobs_of(request.session.items):
        request.getfixturevalue("background_jobs")


@pytest.fixture
def background_outcome(request: pytest.FixtureRequest, background_jobs: Any) -> Any:
    """The outcome of the background job the test's marker names (the job's exception, if it raised)."""
    marker = request.node.get_closest_marker("background")
    assert marker is not None and len(marker.args) == 1, "mark the test @pytest.mark.background(name)"
    return background_jobs.result(marker.args[0])


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
    return _helper("postgres_server")


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
def postgres_settings(postgres_env: dict[str, str], warehouse_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The `postgres` target on the session's server, with an empty `adventureworks` database."""
    for name, value in postgres_env.items():
        monkeypatch.setenv(name, value)
    _postgres_server_helper().recreate_database(postgres_env)
    return load_settings("postgres")
