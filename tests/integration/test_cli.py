"""The `dataops` command as a user runs it: exit codes, one-line errors, nothing half-loaded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dataops.source_tables import SOURCE_TABLES

pytestmark = pytest.mark.integration


def dataops(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dataops", *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.fixture
def env(warehouse_dir: Path) -> dict[str, str]:
    return {**os.environ, "DATAOPS_WAREHOUSE_DIR": str(warehouse_dir)}


def _assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_run_generated_data_prints_a_summary_and_exits_0(env: dict[str, str]) -> None:
    result = dataops("run", "--scale", "0.1", "--no-docs", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    for expected in ("load", "freshness", "build", "quality", "data quality score", "100.0%", "PASSED"):
        assert expected in result.stdout

    query = dataops(
        "query", "select customer_segment, count(*) as customers from marts.customer_analytics "
        "group by 1 order by 1", "--format", "json", env=env,
    )
    assert query.returncode == 0, query.stderr
    segments = {row["customer_segment"] for row in json.loads(query.stdout)}
    assert segments <= {"High Value", "Medium Value", "Low Value"} and segments


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["run", "--scale", "abc"], ["--scale", "valid number"]),
        (["run", "--target", "nowhere"], ["unknown target 'nowhere'"]),
        (["generate", "--scale", "-1"], ["--scale"]),
        (["load"], ["--from DIR", "--scale N"]),
        (["query", "drop table marts.customer_analytics"], ["only SELECT"]),
        (["frobnicate"], ["No such command"]),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    env: dict[str, str], args: list[str], fragments: list[str]
) -> None:
    _assert_user_error(dataops(*args, env=env), *fragments)


def _loaded_counts(env: dict[str, str]) -> list[int]:
    sql = " union all ".join(
        f'select {i} as i, count(*) as n from "{t.schema}"."{t.name}"'
        for i, t in enumerate(SOURCE_TABLES)
    )
    result = dataops("query", f"select n from ({sql}) order by i", "--format", "csv", env=env)
    assert result.returncode == 0, result.stderr
    return [int(n) for n in result.stdout.split()[1:]]


def test_bad_source_folders_are_refused_and_nothing_is_half_loaded(
    env: dict[str, str], tmp_path: Path
) -> None:
    good = tmp_path / "good"
    generated = dataops("generate", "--scale", "0.02", "--format", "csv", "--out", str(good), env=env)
    assert generated.returncode == 0, generated.stderr
    assert dataops("load", "--from", str(good), env=env).returncode == 0
    before = _loaded_counts(env)

    missing = tmp_path / "missing"
    shutil.copytree(good, missing)
    (missing / "Sales.Store.csv").unlink()
    _assert_user_error(dataops("load", "--from", str(missing), env=env), "Sales.Store")

    wrong_header = tmp_path / "wrong_header"
    shutil.copytree(good, wrong_header)
    path = wrong_header / "Sales.SalesOrderHeader.csv"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("TotalDue", "Total_Due", 1), encoding="utf-8")
    _assert_user_error(
        dataops("run", "--data", str(wrong_header), env=env), "Sales.SalesOrderHeader.csv", "line 1"
    )

    _assert_user_error(dataops("load", "--from", str(tmp_path / "nowhere"), env=env), "nowhere")
    assert _loaded_counts(env) == before
