"""Targets come from environments.yml; a wrong one is a clear user error."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataops.config import load_settings
from dataops.errors import DataOpsError


def test_default_target_is_dev_and_warehouse_is_a_file_per_target(warehouse_dir: Path) -> None:
    settings = load_settings()
    assert settings.target == "dev"
    assert settings.duckdb_path == warehouse_dir.resolve() / "dev.duckdb"
    assert load_settings("ci").duckdb_path.name == "ci.duckdb"


def test_target_from_environment_variable(warehouse_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAOPS_TARGET", "ci")
    assert load_settings().target == "ci"


def test_duckdb_path_override(warehouse_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATAOPS_DUCKDB_PATH", str(tmp_path / "elsewhere.duckdb"))
    settings = load_settings("dev")
    assert settings.duckdb_path == tmp_path / "elsewhere.duckdb"
    assert settings.dbt_env["DATAOPS_DUCKDB_PATH"] == str(tmp_path / "elsewhere.duckdb")


def test_dev_tolerates_stale_data(warehouse_dir: Path) -> None:
    assert load_settings("dev").stale_data == "warn"


def test_unknown_target_names_the_known_ones(warehouse_dir: Path) -> None:
    with pytest.raises(DataOpsError, match=r"unknown target 'prod-typo': choose one of ci, dev"):
        load_settings("prod-typo")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("environments: [", "not valid YAML"),
        ("something: else\n", "no 'environments:' mapping"),
        ("environments:\n  dev:\n    stale_data: maybe\n", "use 'warn' or 'error'"),
    ],
)
def test_malformed_environments_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "environments.yml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataOpsError, match=message):
        load_settings("dev", environments_file=path)


def test_missing_environments_file(tmp_path: Path) -> None:
    with pytest.raises(DataOpsError, match="is missing"):
        load_settings("dev", environments_file=tmp_path / "environments.yml")
