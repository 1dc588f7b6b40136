"""The `dataops` command as a user runs it: exit codes, one-line errors, nothing half-loaded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dataops.sources.contract import SOURCE_TABLES

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
    result = dataops("run", "--scale", "0.1", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    for expected in (
        "load",
        "freshness",
        "build",
        "quality",
        "data quality score",
        "100.0%",
        "PASSED",
        "published v1 to dev",
    ):
        assert expected in result.stdout
    # One progress line per stage, and no stray line of a stage that never advanced.
    progress = [line.split()[0] for line in result.stdout.splitlines()[:7]]
    assert progress == ["load", "parse", "freshness", "build", "quality", "docs", "publish"], result.stdout
    assert "0/?" not in result.stdout

    # Piped (as here), a table keeps whole column names, however many columns.
    piped = dataops(
        "query",
        "select customer_id, customer_type, customer_name, email, lifetime_value, customer_segment, "
        "first_order_date, last_order_date, order_count from marts.customer_analytics limit 3",
        env=env,
    )
    assert piped.returncode == 0, piped.stderr
    header = piped.stdout.splitlines()[1]
    for column in ("customer_id", "customer_type", "lifetime_value", "customer_segment", "first_order_date"):
        assert column in header, piped.stdout
    assert "…" not in piped.stdout

    _assert_docs_are_served(env)
    _assert_the_run_is_in_the_history(env)


def _assert_the_run_is_in_the_history(env: dict[str, str]) -> None:
    listing = dataops("history", "--format", "json", env=env)
    assert listing.returncode == 0, listing.stderr
    document = json.loads(listing.stdout)
    assert document["format"] == "dataops.history/v1"
    [row] = document["runs"]
    assert (row["target"], row["trigger"], row["status"], row["models_built"], row["tests_failed"]) == (
        "dev",
        "cli",
        "passed",
        17,
        0,
    )
    shown = dataops("history", "show", row["run_id"], "--format", "json", env=env)
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["format"] == "dataops.run/v1" and record["run_id"] == row["run_id"]
    kinds = {node["kind"] for node in record["nodes"]}
    # dbt build reports the exposures too (a no-op each): the consumers of the marts.
    assert kinds == {"model", "test", "unit_test", "source", "expectation", "anomaly", "exposure"}
    table = dataops("history", "show", row["run_id"], env=env)
    assert table.returncode == 0 and row["run_id"] in table.stdout and "build" in table.stdout
    _assert_user_error(dataops("history", "show", "no-such-run", env=env), "no run no-such-run")

    query = dataops(
        "query",
        "select customer_segment, count(*) as customers from marts.customer_analytics group by 1 order by 1",
        "--format",
        "json",
        env=env,
    )
    assert query.returncode == 0, query.stderr
    segments = {row["customer_segment"] for row in json.loads(query.stdout)}
    assert segments <= {"High Value", "Medium Value", "Low Value"} and segments


def _assert_docs_are_served(env: dict[str, str]) -> None:
    """`dataops docs serve` on a free port serves the site and the JSON files its page fetches."""
    import urllib.request

    server = subprocess.Popen(
        [sys.executable, "-m", "dataops", "docs", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        url = line.split(" at ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:"), line
        with urllib.request.urlopen(url, timeout=10) as page:
            assert "<html" in page.read(4096).decode("utf-8", "replace").lower()
        with urllib.request.urlopen(url + "manifest.json", timeout=10) as manifest:
            nodes = json.load(manifest)["nodes"]
        assert "model.adventureworks.customer_analytics" in nodes
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(url + "run_results.json", timeout=10)
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_docs_serve_before_any_run_says_how_to_make_the_docs(env: dict[str, str]) -> None:
    _assert_user_error(dataops("docs", "serve", "--port", "0", env=env), "no dbt docs", "dataops run")


def test_a_selector_that_matches_nothing_is_a_usage_error_and_builds_nothing(env: dict[str, str]) -> None:
    result = dataops("run", "--scale", "0.02", "--select", "nosuchmodel", "--no-quality", "--no-docs", env=env)
    _assert_user_error(
        result, "--select nosuchmodel", "The selection criterion 'nosuchmodel' does not match any enabled nodes"
    )
    from dataops.history.store import HistoryStore

    record = HistoryStore().latest("dev")
    assert record is not None and (record.status, record.exit_code) == ("failed", 2)
    assert [(s.name, s.status) for s in record.stages] == [
        ("load", "ok"),
        ("parse", "ok"),
        ("freshness", "ok"),
        ("build", "failed"),
        ("publish", "skipped"),
    ]
    assert record.publish is not None
    assert (record.publish.status, record.publish.reason) == (
        "not published",
        "not published: stopped by the build stage",
    )
    assert not (Path(env["DATAOPS_WAREHOUSE_DIR"]) / "dev_published.duckdb").exists()
    assert not (Path(env["DATAOPS_WAREHOUSE_DIR"]) / "artifacts" / "dev" / "dbt" / "run_results.json").exists()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["run", "--scale", "abc"], ["--scale", "'abc' is not a valid float"]),
        (["run", "--target", "nowhere"], ["unknown target 'nowhere'"]),
        (["generate", "--scale", "-1"], ["--scale"]),
        (["load"], ["--from DIR", "--scale N"]),
        (["query", "drop table marts.customer_analytics"], ["only SELECT"]),
        (["frobnicate"], ["No such command"]),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(env: dict[str, str], args: list[str], fragments: list[str]) -> None:
    _assert_user_error(dataops(*args, env=env), *fragments)


def _loaded_counts(env: dict[str, str]) -> list[int]:
    sql = " union all ".join(
        f'select {i} as i, count(*) as n from "{t.schema}"."{t.name}"' for i, t in enumerate(SOURCE_TABLES)
    )
    result = dataops("query", f"select n from ({sql}) order by i", "--format", "csv", env=env)
    assert result.returncode == 0, result.stderr
    return [int(n) for n in result.stdout.split()[1:]]


def test_bad_source_folders_are_refused_and_nothing_is_half_loaded(env: dict[str, str], tmp_path: Path) -> None:
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
    _assert_user_error(dataops("run", "--data", str(wrong_header), env=env), "Sales.SalesOrderHeader.csv", "line 1")

    _assert_user_error(dataops("load", "--from", str(tmp_path / "nowhere"), env=env), "nowhere")
    assert _loaded_counts(env) == before
