"""Targets come from environments.yml; a wrong one is a clear user error."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataops.core.config import load_settings
from dataops.core.errors import DataOpsError


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
    ],
)
def test_malformed_environments_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "environments.yml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataOpsError, match=message):
        load_settings("dev", environments_file=path)


# Each entry is a `dev:` environment's body as a user might mistype it, and the whole one-line
# message that names the file, the environment, the key and what it must be.
MALFORMED_ENTRIES = [
    ("\n    threads: four\n", "environment 'dev' has threads: 'four'; expected a positive whole number, e.g. 4"),
    ("\n    threads: 0\n", "environment 'dev' has threads: 0; expected a positive whole number, e.g. 4"),
    ("\n    threads: 2.5\n", "environment 'dev' has threads: 2.5; expected a positive whole number, e.g. 4"),
    ("\n    threads: yes\n", "environment 'dev' has threads: true; expected a positive whole number, e.g. 4"),
    ("\n    thread: 4\n", "environment 'dev' has an unknown key 'thread': did you mean 'threads'?"),
    (
        "\n    colour: blue\n",
        "environment 'dev' has an unknown key 'colour': the keys are engine, stale_data, "
        "threads, consumer_schema, source_database, keep_versions, max_row_change_percent, reader_role, anomalies",
    ),
    ("\n    engine: oracle\n", "environment 'dev' has engine: 'oracle'; expected one of duckdb, postgres, sqlserver"),
    ("\n    stale_data: maybe\n", "environment 'dev' has stale_data: 'maybe'; expected 'warn' or 'error'"),
    (
        "\n    consumer_schema: marts; drop table x\n",
        "environment 'dev' has consumer_schema: 'marts; drop table x'; "
        "expected a schema name of letters, digits and underscores, e.g. marts",
    ),
    (
        "\n    consumer_schema:\n",
        "environment 'dev' has consumer_schema: empty; "
        "expected a schema name of letters, digits and underscores, e.g. marts",
    ),
    (
        "\n    source_database: 2014\n",
        "environment 'dev' has source_database: 2014; expected the name of a database, e.g. AdventureWorks2014",
    ),
    (
        "\n    - engine: duckdb\n",
        "environment 'dev' is a list ([{'engine': 'duckdb'}]); expected a mapping of "
        "settings (engine, stale_data, threads, consumer_schema, source_database, keep_versions, "
        "max_row_change_percent, reader_role, anomalies), each on its own indented line",
    ),
    (
        " duckdb\n",
        "environment 'dev' is 'duckdb'; expected a mapping of settings (engine, stale_data, threads, "
        "consumer_schema, source_database, keep_versions, max_row_change_percent, reader_role, anomalies), "
        "each on its own indented line",
    ),
]


@pytest.mark.parametrize(("entry", "message"), MALFORMED_ENTRIES, ids=[e.strip() for e, _ in MALFORMED_ENTRIES])
def test_a_malformed_environment_entry_is_one_line_naming_file_environment_and_key(
    tmp_path: Path, entry: str, message: str
) -> None:
    path = tmp_path / "environments.yml"
    path.write_text(f"environments:\n  ci:\n    engine: duckdb\n  dev:{entry}", encoding="utf-8")
    with pytest.raises(DataOpsError) as raised:
        load_settings("ci", environments_file=path)  # any target: every environment is checked
    assert str(raised.value) == f"environments.yml: {message}"


def test_a_full_entry_is_read_as_written(tmp_path: Path) -> None:
    path = tmp_path / "environments.yml"
    path.write_text(
        "environments:\n  prod:\n    engine: sqlserver\n    stale_data: error\n    threads: 16\n"
        "    consumer_schema: reporting\n    source_database: AdventureWorks2014\n  empty:\n",
        encoding="utf-8",
    )
    settings = load_settings("prod", environments_file=path)
    assert (settings.engine, settings.stale_data, settings.threads) == ("sqlserver", "error", 16)
    assert (settings.consumer_schema, settings.source_database) == ("reporting", "AdventureWorks2014")
    # An empty entry takes every default.
    empty = load_settings("empty", environments_file=path)
    assert (empty.engine, empty.stale_data, empty.threads, empty.consumer_schema) == ("duckdb", "warn", 4, "marts")


def test_the_projects_own_environments_are_valid(warehouse_dir: Path) -> None:
    assert {load_settings(target).engine for target in ("dev", "ci", "postgres", "staging", "prod")} == {
        "duckdb",
        "postgres",
        "sqlserver",
    }


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "not set"), ("", "set, empty"), ("fake-pw", "****")],  # pragma: allowlist secret
)
def test_a_secret_is_masked_only_when_it_has_a_value(
    warehouse_dir: Path, monkeypatch: pytest.MonkeyPatch, value: str | None, shown: str
) -> None:
    # profiles.yml: password: "{{ env_var('PGPASSWORD', '') }}", optional with an empty default.
    if value is None:
        monkeypatch.delenv("PGPASSWORD", raising=False)
    else:
        monkeypatch.setenv("PGPASSWORD", value)
    monkeypatch.setenv("PGUSER", "analyst")
    described = dict(load_settings("postgres").described_profile("****"))
    assert described["password"] == shown
    assert described["user"] == "analyst"


def test_a_missing_required_secret_is_named(warehouse_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBT_PROD_PASSWORD", raising=False)
    assert dict(load_settings("prod").described_profile("****"))["password"] == "<missing DBT_PROD_PASSWORD>"


def test_missing_environments_file(tmp_path: Path) -> None:
    with pytest.raises(DataOpsError, match="is missing"):
        load_settings("dev", environments_file=tmp_path / "environments.yml")
