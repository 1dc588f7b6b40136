"""The Grafana provisioning (monitoring/grafana/): the datasource's uid is the one every panel of
the dashboard names, the dashboard provider reads the folder Compose mounts the dashboards at, and
every panel has a query that promtool parses and that uses only metrics the dataops exporter
exports (the metric contract) or monitoring/statsd/mapping.yml produces. The checks are functions
run on broken copies too, so that a green run means they can fail. (Grafana cannot run here; the
queries run against a real Prometheus in the end-to-end monitoring test.)"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from statsd_mapping import DASHBOARD_FILE, dashboard_queries, declared_outputs, exposed  # tests/statsd_mapping.py

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "monitoring" / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "dataops.yml"
COMPOSE = ROOT / "docker-compose.monitoring.yml"
DATASOURCE_UID = "dataops-prometheus"
DASHBOARD_UID = "dataops-pipeline"

# The metric contract of the dataops exporter (counters as Prometheus stores them).
CONTRACT = {
    "dataops_history_up",
    "dataops_exporter_scrape_duration_seconds",
    "dataops_runs_total",
    "dataops_last_run_timestamp_seconds",
    "dataops_last_run_duration_seconds",
    "dataops_last_run_status",
    "dataops_last_success_timestamp_seconds",
    "dataops_quality_score",
    "dataops_published_version",
    "dataops_last_run_published",
    "dataops_runs_not_published_total",
    "dataops_mart_rows",
    "dataops_source_rows",
    "dataops_source_freshness_age_seconds",
    "dataops_anomaly",
    "dataops_anomaly_score",
    "dbt_models_total",
    "dbt_execution_time_seconds",
    "dbt_model_execution_time_seconds",
    "dbt_model_status",
    "dbt_model_failures_total",
    "dbt_test_failures_total",
    "dbt_source_freshness_error",
}
# The guide's panels, and ours, by title.
PANELS = {
    "dbt execution time",
    "Total models",
    "Model failures (24 h)",
    "Test failures (24 h)",
    "Airflow DAG success rate (24 h)",
    "Quality score",
    "Source freshness age",
    "Rows per mart",
    "Last run status",
    "Published version",
}
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}


def _load() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects: not functions, keywords, label matchers,
    grouping labels, ranges or strings."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expression)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for found in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", text):
        if found[2] is None and found[1].lower() not in PROMQL_WORDS:
            names.add(found[1])
    return names


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels, found = list(dashboard.get("panels", [])), []
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))
        found.append(panel)
    return found


def dashboard_problems(dashboard: dict[str, Any], known: set[str]) -> list[str]:
    """Everything that would break the dashboard once provisioned, one line each."""
    problems = []
    if dashboard.get("uid") != DASHBOARD_UID:
        problems.append(f"dashboard uid is {dashboard.get('uid')!r}, not {DASHBOARD_UID!r}")
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    if "target" not in variables:
        problems.append("no `target` template variable")
    for name, variable in variables.items():
        if (variable.get("datasource") or {}).get("uid") != DATASOURCE_UID:
            problems.append(f"variable {name} does not use datasource {DATASOURCE_UID}")
    ids = [panel.get("id") for panel in _panels(dashboard)]
    if len(ids) != len(set(ids)):
        problems.append(f"panel ids repeat: {ids}")
    for panel in _panels(dashboard):
        if panel.get("type") == "row":
            continue
        title = panel.get("title", "?")
        grid = panel.get("gridPos", {})
        if grid.get("x", 0) + grid.get("w", 0) > 24:
            problems.append(f"panel {title!r} is wider than the grid")
        if (panel.get("datasource") or {}).get("uid") != DATASOURCE_UID:
            problems.append(f"panel {title!r} does not use datasource {DATASOURCE_UID}")
        targets = panel.get("targets", [])
        if not targets or not all(t.get("expr", "").strip() for t in targets):
            problems.append(f"panel {title!r} has a target with no query")
        for target in targets:
            if (target.get("datasource") or {}).get("uid") != DATASOURCE_UID:
                problems.append(f"a query of panel {title!r} does not use datasource {DATASOURCE_UID}")
            expression = target.get("expr", "")
            unknown = metric_names(expression) - known
            if unknown:
                problems.append(f"panel {title!r} queries {sorted(unknown)}: neither the exporter's nor the mapping's")
            if any(name in CONTRACT for name in metric_names(expression)) and "$target" not in expression:
                problems.append(f"panel {title!r} ignores the target variable: {expression}")
    return problems


@pytest.fixture(scope="module")
def known() -> set[str]:
    return CONTRACT | exposed(declared_outputs())


def test_the_dashboard_has_the_guide_s_panels_and_ours_and_no_problem(known: set[str]) -> None:
    dashboard = _load()
    assert dashboard_problems(dashboard, known) == []
    assert set(dashboard_queries(dashboard)) >= PANELS, PANELS - set(dashboard_queries(dashboard))
    used = {name for exprs in dashboard_queries(dashboard).values() for e in exprs for name in metric_names(e)}
    # Both sources feed it: the run history and Airflow.
    assert {"dbt_models_total", "dataops_quality_score", "airflow_dagrun_duration_success_count"} <= used


def _expr(panel: int, expression: str) -> Any:
    return lambda d: d["panels"][panel]["targets"][0].update(expr=expression)


BREAKAGES = {
    "a misspelt metric": (
        _expr(0, 'dbt_model_failure_total{target="$target"}'),
        "neither the exporter's nor the mapping's",
    ),
    "an Airflow name the mapping does not produce": (
        _expr(0, "rate(airflow_dag_run_failed[1h])"),
        "airflow_dag_run_failed",
    ),
    "a panel on another datasource": (
        lambda d: d["panels"][1].update(datasource={"uid": "prometheus"}),
        "does not use datasource",
    ),
    "a query on the default datasource": (
        lambda d: d["panels"][2]["targets"][0].pop("datasource"),
        "does not use datasource",
    ),
    "a panel without a query": (lambda d: d["panels"][3].update(targets=[]), "has a target with no query"),
    "a query that ignores the target": (_expr(3, "dbt_models_total"), "ignores the target variable"),
    "no target variable": (lambda d: d["templating"].update(list=[]), "no `target` template variable"),
    "a new uid": (lambda d: d.update(uid="abc123"), "dashboard uid"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_each_breakage_is_caught(breakage: str, known: set[str]) -> None:
    broken = copy.deepcopy(_load())
    mutate, named = BREAKAGES[breakage]
    mutate(broken)
    problems = dashboard_problems(broken, known)
    assert any(named in problem for problem in problems), problems


def test_metric_names_are_the_selected_metrics_only() -> None:
    expression = (
        'sum by (dag_id) (increase(airflow_ti_failures{state="x"}[1h])) / '
        "on(target) (max(dataops_quality_score) or vector(0)) > bool 0.5"
    )
    assert metric_names(expression) == {"airflow_ti_failures", "dataops_quality_score"}


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus; .ci/run installs it)")
    # As recording rules, which `promtool check rules` parses; $target as Grafana fills it in.
    expressions = [e for exprs in dashboard_queries(_load()).values() for e in exprs]
    rules = [
        {"record": f"dashboard:query_{index}", "expr": e.replace("$target", "dev")}
        for index, e in enumerate(expressions)
    ]
    good, bad = tmp_path / "dashboard.yml", tmp_path / "broken.yml"
    good.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    bad.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "dashboard", "rules": [{**rules[0], "expr": "sum(increase(dbt_models_total[24h])"}]}]}
        ),
        encoding="utf-8",
    )
    result = subprocess.run([promtool, "check", "rules", str(good)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
    assert subprocess.run([promtool, "check", "rules", str(bad)], capture_output=True, timeout=60).returncode != 0


def test_the_provisioned_datasource_and_provider_are_the_ones_the_dashboard_and_compose_use() -> None:
    [datasource] = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    assert (datasource["uid"], datasource["type"]) == (DATASOURCE_UID, "prometheus")
    assert datasource["url"] == "http://prometheus:9090"
    [provider] = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))["providers"]
    assert provider["type"] == "file" and provider["allowUiUpdates"] is False
    # Compose mounts the provisioning where Grafana reads it, and the dashboards where the provider looks.
    grafana = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]["grafana"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in grafana["volumes"] if volume.startswith("./")}
    assert mounts["/etc/grafana/provisioning"] == "./monitoring/grafana/provisioning"
    assert mounts[provider["options"]["path"]] == "./monitoring/grafana/dashboards"
    assert (ROOT / mounts[provider["options"]["path"]] / DASHBOARD_FILE.name).is_file()
