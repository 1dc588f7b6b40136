"""`dataops doctor` names what is missing, reaches the database for real, and never shows a secret."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PLANTED_PASSWORD = "Planted-Secret-7f3!kQ"  # pragma: allowlist secret


def doctor(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dataops", "doctor", *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture
def env(warehouse_dir: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DBT_", "PG", "DATAOPS_"))}
    return {**clean, "DATAOPS_WAREHOUSE_DIR": str(warehouse_dir), "COLUMNS": "200"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_dev_is_healthy(env: dict[str, str]) -> None:
    result = doctor(env=env)
    assert result.returncode == 0, result.stdout
    assert "All good" in result.stdout and "dbt-duckdb" in result.stdout


def test_names_each_missing_variable_and_never_shows_the_password(env: dict[str, str]) -> None:
    result = doctor("--target", "prod", env={**env, "DBT_PROD_PASSWORD": PLANTED_PASSWORD})
    output = result.stdout + result.stderr
    assert result.returncode == 2
    for variable in ("DBT_PROD_SERVER", "DBT_PROD_DATABASE", "DBT_PROD_USER"):
        assert f"<missing {variable}>" in output  # in the rendered profile
        assert f"│ {variable} " in output  # and as a failed check of its own
    assert "DBT_PROD_PASSWORD" in output and "****" in output
    assert PLANTED_PASSWORD not in output
    assert "Traceback" not in output


def test_an_unreachable_server_fails_with_its_own_error(env: dict[str, str]) -> None:
    port = _free_port()
    result = doctor(
        "--target",
        "postgres",
        env={**env, "PGHOST": "127.0.0.1", "PGPORT": str(port), "PGUSER": "analyst", "PGPASSWORD": PLANTED_PASSWORD},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert f"127.0.0.1:{port}" in output
    assert "Connection refused" in output or "connection refused" in output
    assert PLANTED_PASSWORD not in output


def test_sql_server_without_an_odbc_driver_says_how_to_install_it(env: dict[str, str]) -> None:
    result = doctor(
        "--target",
        "sqlserver_dev",
        env={
            **env,
            "DBT_SQLSERVER_DEV_DRIVER": "No Such ODBC Driver 99",
            "DBT_SQLSERVER_DEV_PASSWORD": PLANTED_PASSWORD,
        },
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert "msodbcsql18" in output and "unixodbc" in output.lower()
    assert PLANTED_PASSWORD not in output


def test_an_unset_optional_password_reads_not_set_and_the_server_says_it_needs_one(
    env: dict[str, str], postgres_env: dict[str, str]
) -> None:
    # PGPASSWORD is optional in profiles.yml (env_var('PGPASSWORD', '')): absent, it is "not set",
    # never a mask that would claim a value; the real server then refuses the login itself.
    reach = {name: value for name, value in postgres_env.items() if name != "PGPASSWORD"}
    result = doctor("--target", "postgres", env={**env, **reach})
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert re.search(r"│ profile password\s+│ not set\s+│", output), output
    assert "****" not in output
    assert re.search(r"│ PGPASSWORD\s+│ .*not set", output), output
    assert "no password supplied" in output or "password authentication failed" in output, output
    assert "Traceback" not in output


def test_a_password_set_empty_reads_set_empty(env: dict[str, str]) -> None:
    port = _free_port()
    result = doctor(
        "--target",
        "postgres",
        env={**env, "PGHOST": "127.0.0.1", "PGPORT": str(port), "PGUSER": "analyst", "PGPASSWORD": ""},
    )
    output = result.stdout + result.stderr
    assert re.search(r"│ profile password\s+│ set, empty\s+│", output), output
    assert re.search(r"│ PGPASSWORD\s+│ .*set, empty", output), output
    assert "****" not in output


def test_the_run_history_is_checked_without_being_created(env: dict[str, str], warehouse_dir: Path) -> None:
    store = warehouse_dir / "history.sqlite"
    fresh = doctor(env=env)
    assert fresh.returncode == 0, fresh.stdout
    assert re.search(r"run history\s+│\s+ok\s+│", fresh.stdout) and "no run recorded yet" in fresh.stdout, fresh.stdout
    assert not store.exists()  # looking at a store never creates it

    from dataops.history.store import HistoryStore

    HistoryStore(f"sqlite:///{store}").open_for_writing()
    upgraded = doctor(env=env).stdout
    assert re.search(r"run history\s+│\s+ok\s+│", upgraded) and re.search(r"schema v\d+, 0 runs", upgraded), upgraded

    store.write_bytes(b"not a database, whatever the name says\n" * 100)
    broken = doctor(env=env)
    assert broken.returncode == 2, broken.stdout
    assert re.search(r"run history\s+│\s+fail\s+│", broken.stdout) and "cannot be used" in broken.stdout, broken.stdout
