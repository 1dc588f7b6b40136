"""The monitoring overlay (docker-compose.monitoring.yml on docker-compose.airflow.yml), checked
without a Docker engine by Compose's own `config`, as the other compose files are: it is valid with
the required variables set and fails naming Grafana's password without it; every Airflow component
sends StatsD to statsd-exporter where it listens; every scrape target and the Alertmanager of
monitoring/prometheus.yml is a service of the stack on that port; the files each service reads are
mounted where its command looks; and no secret is written in it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_support import compose_binary, walk
from test_airflow_compose import COMMANDS, SECRET_KEY, placeholder, required_values

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FILES = ("docker-compose.airflow.yml", "docker-compose.monitoring.yml")
MONITORING = {"prometheus", "alertmanager", "grafana", "statsd-exporter", "dataops-exporter"}


def _config(env: dict[str, str], env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    files = [argument for name in FILES for argument in ("-f", str(ROOT / name))]
    return subprocess.run(
        [str(compose_binary()), "--env-file", str(env_file), *files, "config", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


@pytest.fixture(scope="module")
def values() -> dict[str, str]:
    return {**required_values(), "GRAFANA_ADMIN_PASSWORD": placeholder("GRAFANA_ADMIN_PASSWORD")}


@pytest.fixture
def merged(values: dict[str, str], isolated_env: dict[str, str], empty_env_file: Path) -> dict[str, Any]:
    result = _config({**isolated_env, **values}, empty_env_file, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_overlay_is_valid_and_requires_grafana_s_password(
    values: dict[str, str], isolated_env: dict[str, str], empty_env_file: Path
) -> None:
    result = _config({**isolated_env, **values}, empty_env_file, "-q")
    assert (result.returncode, result.stderr.strip()) == (0, "")
    without = {key: value for key, value in values.items() if key != "GRAFANA_ADMIN_PASSWORD"}
    result = _config({**isolated_env, **without}, empty_env_file, "-q")
    assert result.returncode != 0
    assert "required variable GRAFANA_ADMIN_PASSWORD is missing a value" in result.stderr


def test_every_airflow_component_sends_statsd_where_statsd_exporter_listens(merged: dict[str, Any]) -> None:
    services = merged["services"]
    assert set(services) >= MONITORING
    exporter = services["statsd-exporter"]
    listen = next(arg for arg in exporter["command"] if arg.startswith("--statsd.listen-udp="))
    port = listen.rpartition(":")[2]
    for name in COMMANDS:
        env = services[name]["environment"]
        assert env["AIRFLOW__METRICS__STATSD_ON"] == "True", name
        assert (env["AIRFLOW__METRICS__STATSD_HOST"], env["AIRFLOW__METRICS__STATSD_PORT"]) == ("statsd-exporter", port)
        assert env["AIRFLOW__METRICS__STATSD_PREFIX"] == "airflow"  # what mapping.yml's rules start with
        # The overlay adds to each component and takes nothing away from it.
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
    assert any(f"{port}/udp" in str(item) for item in exporter.get("expose", [])), exporter.get("expose")
    mapping = {v["target"]: v["source"] for v in exporter["volumes"]}
    config = next(arg for arg in exporter["command"] if arg.startswith("--statsd.mapping-config="))
    assert mapping[config.partition("=")[2]] == str(ROOT / "monitoring" / "statsd" / "mapping.yml")


def _port_of(service: dict[str, Any]) -> set[str]:
    """The ports a service both offers on the network and listens on by its command."""
    offered = {str(item).split("/")[0] for item in service.get("expose", [])}
    offered |= {str(port["target"]) for port in service.get("ports", [])}
    command = service.get("command") or []
    listening = {argument.rpartition(":")[2] for argument in command if "listen-address=" in argument}
    if "--port" in command:
        listening.add(command[command.index("--port") + 1])
    return offered & listening


def test_every_target_prometheus_scrapes_and_alerts_is_a_service_on_its_port(merged: dict[str, Any]) -> None:
    services = merged["services"]
    prometheus = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text(encoding="utf-8"))
    targets = [
        target
        for job in prometheus["scrape_configs"]
        for config in job.get("static_configs", [])
        for target in config["targets"]
    ]
    targets += [
        target
        for manager in prometheus["alerting"]["alertmanagers"]
        for config in manager["static_configs"]
        for target in config["targets"]
    ]
    assert {"dataops-exporter:9108", "statsd-exporter:9102", "alertmanager:9093", "prometheus:9090"} <= set(targets)
    for target in targets:
        host, _, port = target.partition(":")
        assert host in services, f"prometheus.yml names {host}, which is no service"
        assert port in _port_of(services[host]), (target, _port_of(services[host]))
    exporter = services["dataops-exporter"]
    assert exporter["command"] == ["dataops", "exporter", "--host", "0.0.0.0", "--port", "9108"]
    # It reads the same run history the DAGs record into.
    history = exporter["environment"]["DATAOPS_HISTORY_URL"]
    assert history == services["airflow-worker"]["environment"]["DATAOPS_HISTORY_URL"]


def test_each_service_reads_its_files_where_its_command_looks(merged: dict[str, Any]) -> None:
    services = merged["services"]
    mounts = {name: {v["target"]: v.get("source") for v in s.get("volumes", [])} for name, s in services.items()}
    monitoring = str(ROOT / "monitoring")
    assert mounts["prometheus"]["/etc/prometheus/prometheus.yml"] == f"{monitoring}/prometheus.yml"
    # rule_files are relative to prometheus.yml's folder.
    prometheus = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text(encoding="utf-8"))
    for rule_file in prometheus["rule_files"]:
        assert mounts["prometheus"][f"/etc/prometheus/{rule_file}"] == f"{monitoring}/{rule_file}"
    assert mounts["alertmanager"]["/etc/alertmanager/alertmanager.yml"] == f"{monitoring}/alertmanager.yml"
    assert mounts["grafana"]["/etc/grafana/provisioning"] == f"{monitoring}/grafana/provisioning"
    # Each webhook file alertmanager.yml reads is a Compose secret from the environment.
    alertmanager = yaml.safe_load((ROOT / "monitoring" / "alertmanager.yml").read_text(encoding="utf-8"))
    files = {value for path, value in walk(alertmanager) if path.endswith("api_url_file")}
    assert files
    secrets = {secret["target"]: secret["source"] for secret in services["alertmanager"]["secrets"]}
    for file in files:
        # Absolute: Alertmanager reads a relative api_url_file from its working directory.
        source = secrets[file]
        assert "environment" in merged["secrets"][source], source


def test_no_secret_is_written_in_the_overlay(values: dict[str, str]) -> None:
    document = yaml.safe_load((ROOT / "docker-compose.monitoring.yml").read_text(encoding="utf-8"))
    for path, value in walk(document):
        if SECRET_KEY.search(path.rsplit(".", 1)[-1]) and isinstance(value, str):
            assert value.startswith("${") and value.endswith("}"), f"{path} is written in the file"
