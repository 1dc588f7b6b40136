"""The monitoring configuration, checked by the tools that run it, and the alerting path end to end.

First what promtool and amtool say of monitoring/: the configs are valid, every alert rule's
promtool tests pass (monitoring/tests/*.test.yml), each severity reaches its Slack receiver, every
alert names its runbook and the page exists.

Then for real, everything on 127.0.0.1 on free ports, one stack for the module: `dataops exporter`
over the run history of real `dataops run`s, the real Prometheus with the repository's
alert-rules.yml (a copy of prometheus.yml with the targets rewritten to the local ports and
one-second intervals), the real Alertmanager with the repository's alertmanager.yml (only its
route timers shortened), and a webhook receiver standing in for Slack: a run with a failing test
makes DBTTestFailure arrive naming the test, with the unpublished run's warning inhibited, and the
clean run after it resolves it. The exporter's counters are the same scraped twice and after a
restart; a failed Airflow DAG run (StatsD lines through monitoring/statsd/mapping.yml, served as
statsd-exporter would) pages too; a critical alert holds back the warnings of its own target or DAG
only; and every Grafana panel's query returns data from that Prometheus.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from dataops.core.config import PROJECT_ROOT

pytestmark = pytest.mark.integration

MONITORING = PROJECT_ROOT / "monitoring"
RULES = MONITORING / "alert-rules.yml"
PROMETHEUS_CONFIG = MONITORING / "prometheus.yml"
ALERTMANAGER_CONFIG = MONITORING / "alertmanager.yml"
ROUTE_CASES = MONITORING / "tests" / "alertmanager-routes.yml"
RUNBOOKS = PROJECT_ROOT / "docs" / "runbooks"
DASHBOARDS = MONITORING / "grafana" / "dashboards"
# The incident playbooks beside the per-alert pages (docs/runbooks/README.md, Playbooks).
PLAYBOOKS = ("data-quality-issue.md", "pipeline-failure.md", "stale-source.md", "failed-deploy.md", "rollback.md")

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
AMTOOL = "/usr/bin/amtool"

NOT_PUBLISHED = "DataOpsRunNotPublished"
FAULT, FAILING_TEST = "negative_total", "assert_no_negative_revenue"  # faults.py: caught_by
TARGET = "dev"
SCALE = "0.1"
WAIT = 60.0  # seconds for anything the stack does; one-second intervals make it seconds in practice


def _tool(path: str) -> str:
    if not Path(path).exists():
        pytest.skip(
            f"{path} is not installed (Debian packages prometheus and prometheus-alertmanager; .ci/run installs them)"
        )
    return path


def _run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def _alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


# ---------------------------------------------------------------------------------------------
# The configuration, as the tools see it
# ---------------------------------------------------------------------------------------------


def test_promtool_accepts_the_prometheus_config_and_its_rules() -> None:
    promtool = _tool(PROMTOOL)
    config = _run(promtool, "check", "config", str(PROMETHEUS_CONFIG))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "1 rule files found" in config.stdout  # the config really loads alert-rules.yml
    rules = _run(promtool, "check", "rules", str(RULES))
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_promtool_rule_tests_pass() -> None:
    promtool = _tool(PROMTOOL)
    files = sorted((MONITORING / "tests").glob("*.test.yml"))
    assert files, "no promtool rule tests in monitoring/tests"
    result = _run(promtool, "test", "rules", *(path.name for path in files), cwd=MONITORING / "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_two_promtool_cases_at_least() -> None:
    """A case is an `alert_rule_test` entry of the alert: one where it fires, one where it does not."""
    firing: dict[str, int] = {}
    silent: dict[str, int] = {}
    for path in (MONITORING / "tests").glob("*.test.yml"):
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in test.get("alert_rule_test", []):
                counts = firing if case.get("exp_alerts") else silent
                counts[case["alertname"]] = counts.get(case["alertname"], 0) + 1
    alerts = [rule["alert"] for rule in _alert_rules()]
    assert [name for name in alerts if not firing.get(name) or not silent.get(name)] == []


def test_amtool_accepts_the_alertmanager_config() -> None:
    amtool = _tool(AMTOOL)
    result = _run(amtool, "check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_severity_reaches_its_receiver() -> None:
    amtool = _tool(AMTOOL)
    cases = yaml.safe_load(ROUTE_CASES.read_text(encoding="utf-8"))["cases"]
    assert {case["labels"].get("severity") for case in cases} >= {"critical", "warning"}
    wrong = []
    for case in cases:
        labels = [f"{name}={value}" for name, value in case["labels"].items()]
        result = _run(
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={ALERTMANAGER_CONFIG}",
            f"--verify.receivers={case['receiver']}",
            *labels,
        )
        if result.returncode != 0:
            wrong.append((case["labels"], case["receiver"], result.stdout.strip()))
    assert wrong == []
    # And the route is not one catch-all: a critical alert never lands in the warning channel.
    result = _run(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        "--verify.receivers=slack-warning",
        "severity=critical",
        "alertname=DBTTestFailure",
    )
    assert result.returncode != 0, result.stdout


def test_every_alert_has_a_severity_a_summary_a_description_and_its_runbook() -> None:
    problems = []
    for rule in _alert_rules():
        name, annotations = rule["alert"], rule.get("annotations", {})
        if rule.get("labels", {}).get("severity") not in {"critical", "warning"}:
            problems.append(f"{name}: severity")
        if not annotations.get("summary") or not annotations.get("description"):
            problems.append(f"{name}: summary or description")
        if annotations.get("runbook_url") != f"docs/runbooks/{name}.md":
            problems.append(f"{name}: runbook_url {annotations.get('runbook_url')!r}")
        elif not (PROJECT_ROOT / annotations["runbook_url"]).is_file():
            problems.append(f"{name}: no page {annotations['runbook_url']}")
    # Every relative link of every runbook reaches a file, and every page is in the index.
    pages = sorted(RUNBOOKS.glob("*.md"))
    for page in pages:
        for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" not in link and not (page.parent / link).exists():
                problems.append(f"{page.name}: a link to {link}, which does not exist")
    indexed = set(re.findall(r"\]\(([^)#\s]+\.md)\)", (RUNBOOKS / "README.md").read_text(encoding="utf-8")))
    problems += [
        f"{page.name}: not in docs/runbooks/README.md" for page in pages if page.name not in indexed | {"README.md"}
    ]
    problems += [f"{playbook}: no such playbook" for playbook in PLAYBOOKS if not (RUNBOOKS / playbook).is_file()]
    assert problems == []


# ---------------------------------------------------------------------------------------------
# End to end: exporter, Prometheus, Alertmanager, a Slack stand-in
# ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bytes(response.read())


def _wait_for(what: str, probe: Callable[[], Any], timeout: float = WAIT, logs: tuple[Path, ...] = ()) -> Any:
    """`probe()`'s first truthy value within `timeout` seconds, else the test fails saying what."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            tails = "".join(
                f"\n--- {log.name}\n" + log.read_text(errors="replace")[-2000:] for log in logs if log.exists()
            )
            pytest.fail(f"within {timeout:.0f}s: {what}{tails}", pytrace=False)
        time.sleep(0.25)


class _Webhook(ThreadingHTTPServer):
    """Slack's side of Alertmanager's slack_configs: every POSTed JSON message, with its path."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _WebhookHandler)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def messages(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [message for where, message in self.received if where == path]


class _WebhookHandler(BaseHTTPRequestHandler):
    server: _Webhook

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.received.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")  # what Slack answers

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _AirflowMetrics(ThreadingHTTPServer):
    """statsd-exporter's /metrics for the Airflow panels: StatsD lines as Airflow 3 sends them, put
    through monitoring/statsd/mapping.yml by the mapper tests/integration/test_airflow_statsd.py
    checks against real Airflow packets. The statsd-exporter binary cannot be installed here; the
    Airflow metric names themselves are proven from real packets by the StatsD tests."""

    def __init__(self) -> None:
        from statsd_mapping import MAPPING_FILE, Mapper  # tests/statsd_mapping.py

        self.mapper = Mapper.from_file(MAPPING_FILE)
        self.values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _AirflowHandler)

    def send(self, *lines: str) -> None:
        from statsd_mapping import parse_datagram

        with self.lock:
            for event in parse_datagram("\n".join(lines)):
                series = self.mapper.map(event)
                assert series is not None and series.mapped, f"{event.name} is not mapped by mapping.yml"
                if series.kind in {"histogram", "summary"}:  # timers in ms, observed in seconds
                    self._add(f"{series.name}_count", series.labels, 1)
                    self._add(f"{series.name}_sum", series.labels, event.value / 1000)
                elif series.kind == "counter":
                    self._add(series.name, series.labels, event.value)
                else:
                    self.values[(series.name, series.labels)] = event.value

    def _add(self, name: str, labels: tuple[tuple[str, str], ...], value: float) -> None:
        self.values[(name, labels)] = self.values.get((name, labels), 0.0) + value

    def exposition(self) -> bytes:
        with self.lock:
            lines = [
                name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else "") + f" {value}"
                for (name, labels), value in sorted(self.values.items())
            ]
        return ("\n".join(lines) + "\n").encode()


class _AirflowHandler(BaseHTTPRequestHandler):
    server: _AirflowMetrics

    def do_GET(self) -> None:
        body = self.server.exposition()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@dataclass
class Stack:
    folder: Path
    env: dict[str, str]
    webhook: _Webhook
    airflow: _AirflowMetrics
    exporter_url: str = ""
    prometheus_url: str = ""
    alertmanager_url: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def start(self, name: str, *command: str, cwd: Path | None = None) -> None:
        log = self.folder / f"{name}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.processes.append(
                subprocess.Popen(command, cwd=cwd or self.folder, env=self.env, stdout=out, stderr=subprocess.STDOUT)
            )

    @staticmethod
    def dataops_command(*arguments: str) -> list[str]:
        """The `dataops` of this virtualenv, as a user runs it."""
        return [str(Path(sys.executable).parent / "dataops"), *arguments]

    def dataops(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.dataops_command(*arguments),
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def query(self, expression: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        answer = json.loads(_get(url))
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def alertmanager_alerts(self) -> list[dict[str, Any]]:
        return list(json.loads(_get(f"{self.alertmanager_url}/api/v2/alerts")))

    def wait(self, what: str, probe: Callable[[], Any]) -> Any:
        return _wait_for(what, probe, logs=tuple(self.logs))

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.webhook.shutdown()
        self.airflow.shutdown()


def _test_alertmanager_config(folder: Path, webhook: _Webhook) -> Path:
    """The repository's alertmanager.yml with only the route's timers shortened (a resolved alert
    is notified at the next group_interval: minutes in production) and its webhook URL files in
    `folder` (the deployment mounts them in /etc/alertmanager/secrets), each pointing at the Slack
    stand-in's path of its receiver."""
    document = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    document["route"].update(group_wait="1s", group_interval="2s")
    for receiver in document["receivers"]:
        for slack in receiver["slack_configs"]:
            url_file = folder / "secrets" / Path(slack["api_url_file"]).name
            url_file.parent.mkdir(parents=True, exist_ok=True)
            url_file.write_text(webhook.url(f"/{receiver['name']}"), encoding="utf-8")
            slack["api_url_file"] = str(url_file)
    config = folder / "alertmanager.yml"
    config.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return config


def _test_prometheus_config(folder: Path, ports: dict[str, int]) -> Path:
    """The repository's prometheus.yml, every target on 127.0.0.1 (compose's service names do not
    resolve here), one-second intervals, and the repository's alert-rules.yml itself."""
    document = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    document["global"].update(scrape_interval="1s", evaluation_interval="1s")
    document["rule_files"] = [str(RULES)]
    document["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{ports['alertmanager']}"]}]
    jobs = {job["job_name"]: job for job in document["scrape_configs"]}
    assert set(jobs) == {"dataops-exporter", "airflow", "prometheus"}, jobs
    for name, port in (
        ("dataops-exporter", ports["exporter"]),
        ("airflow", ports["airflow"]),
        ("prometheus", ports["prometheus"]),
    ):
        jobs[name]["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    config = folder / "prometheus.yml"
    config.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return config


def _titled(messages: list[dict[str, Any]], alertname: str, status: str) -> list[dict[str, Any]]:
    """The Slack attachments of `alertname` in `status` (firing, resolved)."""
    return [
        attachment
        for message in messages
        for attachment in message.get("attachments", [])
        if alertname in attachment.get("title", "") and f"[{status.upper()}" in attachment.get("title", "")
    ]


@dataclass
class Observed:
    """What the alerting path did, gathered once for the tests that judge it."""

    clean_exit: int
    bad_exit: int
    bad_output: str
    fixed_exit: int
    firing: list[dict[str, Any]]
    firing_seconds: float
    not_published_in_alertmanager: dict[str, Any]
    warnings_while_firing: list[dict[str, Any]]
    resolved: list[dict[str, Any]]
    resolved_seconds: float
    exported: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus, alertmanager = _tool(PROMETHEUS), _tool(ALERTMANAGER)
    folder = tmp_path_factory.mktemp("monitoring-stack")
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DATAOPS_HISTORY_URL", "DATAOPS_TARGET", "DATAOPS_DUCKDB_PATH"}
    }
    env["DATAOPS_WAREHOUSE_DIR"] = str(folder / "warehouse")
    probe = subprocess.run(Stack.dataops_command("exporter", "--help"), env=env, capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("`dataops exporter` does not exist yet (src/dataops/ops/exporter.py)")
    stack = Stack(folder, env, _Webhook(), _AirflowMetrics())
    _serve(stack.webhook)
    _serve(stack.airflow)
    # A DAG run Airflow had before Prometheus first looks: the success rate has a base.
    stack.airflow.send(
        "airflow.dagrun.duration.success.adventureworks_pipeline:61000|ms",
        "airflow.ti_successes:9|c",
        "airflow.ti_failures:0|c",
    )
    ports = {
        "exporter": _free_port(),
        "prometheus": _free_port(),
        "alertmanager": _free_port(),
        "airflow": stack.airflow.server_address[1],
    }
    try:
        am_folder = folder / "alertmanager"
        am_folder.mkdir()
        am_config = _test_alertmanager_config(am_folder, stack.webhook)
        stack.start(
            "alertmanager",
            alertmanager,
            f"--config.file={am_config}",
            f"--storage.path={am_folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
            "--cluster.listen-address=",
            cwd=am_folder,
        )
        stack.start(
            "exporter", *stack.dataops_command("exporter", "--host", "127.0.0.1", "--port", str(ports["exporter"]))
        )
        stack.start(
            "prometheus",
            prometheus,
            f"--config.file={_test_prometheus_config(folder, ports)}",
            f"--storage.tsdb.path={folder / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
        )
        stack.exporter_url = f"http://127.0.0.1:{ports['exporter']}"
        stack.prometheus_url = f"http://127.0.0.1:{ports['prometheus']}"
        stack.alertmanager_url = f"http://127.0.0.1:{ports['alertmanager']}"
        for name, url in (("Alertmanager", stack.alertmanager_url), ("Prometheus", stack.prometheus_url)):
            stack.wait(f"{name} is ready", lambda url=url: _get(f"{url}/-/ready"))
        stack.wait("the exporter answers", lambda: _get(f"{stack.exporter_url}/metrics"))
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def observed(stack: Stack) -> Observed:
    clean = stack.dataops("run", "--scale", SCALE, "--no-docs")
    if clean.returncode != 0:  # the scenario needs it: say why at once, not as a timeout later
        pytest.fail(f"the first clean run exited {clean.returncode}:\n{clean.stdout[-3000:]}{clean.stderr[-3000:]}")
    stack.wait(
        "Prometheus has the clean run",
        lambda: stack.query(f'dataops_last_run_status{{target="{TARGET}",status="passed"}} == 1'),
    )
    bad_data = stack.folder / "bad-data"
    generated = stack.dataops("generate", "--scale", SCALE, "--inject", FAULT, "--out", str(bad_data))
    assert generated.returncode == 0, generated.stderr
    bad = stack.dataops("run", "--data", str(bad_data), "--no-docs")
    bad_ended = time.monotonic()
    if bad.returncode != 1 or FAILING_TEST not in bad.stdout:
        pytest.fail(
            f"the run with {FAULT} exited {bad.returncode} without naming {FAILING_TEST}:\n{bad.stdout[-3000:]}"
        )
    firing = stack.wait(
        "DBTTestFailure reaches the critical channel",
        lambda: _titled(stack.webhook.messages("/slack-critical"), "DBTTestFailure", "firing"),
    )
    firing_seconds = time.monotonic() - bad_ended
    not_published = stack.wait(
        "DataOpsRunNotPublished reaches Alertmanager",
        lambda: [
            alert
            for alert in stack.alertmanager_alerts()
            if alert["labels"]["alertname"] == NOT_PUBLISHED and alert["labels"].get("target") == TARGET
        ],
    )[0]
    time.sleep(3)  # a group_wait and a group_interval: a warning that was not held back would be here
    warnings = list(stack.webhook.messages("/slack-warning"))
    exported = _get(f"{stack.exporter_url}/metrics").decode()
    fixed = stack.dataops("run", "--scale", SCALE, "--no-docs")
    fixed_ended = time.monotonic()
    resolved = stack.wait(
        "the resolved DBTTestFailure reaches the critical channel",
        lambda: _titled(stack.webhook.messages("/slack-critical"), "DBTTestFailure", "resolved"),
    )
    return Observed(
        clean.returncode,
        bad.returncode,
        bad.stdout + bad.stderr,
        fixed.returncode,
        firing,
        firing_seconds,
        not_published,
        warnings,
        resolved,
        time.monotonic() - fixed_ended,
        exported,
    )


def test_the_runs_are_what_the_scenario_needs(observed: Observed) -> None:
    assert (observed.clean_exit, observed.bad_exit, observed.fixed_exit) == (0, 1, 0), observed.bad_output
    assert FAILING_TEST in observed.bad_output


def test_a_failing_test_reaches_slack_by_name_within_seconds(observed: Observed) -> None:
    [attachment] = observed.firing
    assert attachment["title"] == f"[FIRING:1] DBTTestFailure on {TARGET}"
    assert f"dbt test {FAILING_TEST} failed on {TARGET}" in attachment["text"]
    assert "runbook: docs/runbooks/DBTTestFailure.md" in attachment["text"]
    assert attachment["color"] == "danger"
    assert observed.firing_seconds < 30


def test_the_unpublished_run_warning_is_inhibited_by_the_failed_test(observed: Observed) -> None:
    alert = observed.not_published_in_alertmanager
    assert alert["labels"]["severity"] == "warning"
    assert alert["status"]["state"] == "suppressed" and alert["status"]["inhibitedBy"], alert["status"]
    assert _titled(observed.warnings_while_firing, "DataOpsRunNotPublished", "firing") == []


def test_the_clean_run_after_it_resolves_it(observed: Observed) -> None:
    [attachment] = observed.resolved
    assert attachment["title"] == f"[RESOLVED] DBTTestFailure on {TARGET}"
    assert FAILING_TEST in attachment["text"] and attachment["color"] == "good"
    assert observed.resolved_seconds < 30


def test_every_exporter_metric_the_rules_use_is_exported(observed: Observed) -> None:
    """A rule on a name the exporter does not produce would never fire: each name must be there."""
    exported = set(re.findall(r"^([a-z_]+?)(?:\{| )", observed.exported, re.M))
    used = {name for rule in _alert_rules() for name in re.findall(r"\b((?:dataops|dbt)_[a-z_]+)", rule["expr"])}
    assert sorted(used - exported) == []


def _counters(exposition: str) -> dict[str, str]:
    """Every counter sample of an exposition (`name{labels}` -> value), the `_created` ones aside."""
    counters = {
        line.split()[2] for line in exposition.splitlines() if line.startswith("# TYPE ") and line.endswith(" counter")
    }
    samples = {}
    for line in exposition.splitlines():
        name = re.split(r"[{ ]", line, maxsplit=1)[0]
        if not line.startswith("#") and (name in counters or name.removesuffix("_total") in counters):
            series, value = line.rsplit(" ", 1)
            samples[series] = value
    return samples


def test_counters_are_the_same_scraped_twice_and_after_a_restart(stack: Stack, observed: Observed) -> None:
    first = _counters(_get(f"{stack.exporter_url}/metrics").decode())
    second = _counters(_get(f"{stack.exporter_url}/metrics").decode())
    assert first and first == second
    assert first[f'dbt_test_failures_total{{target="{TARGET}",test="{FAILING_TEST}"}}'] == "1.0"
    port = _free_port()
    restarted = subprocess.Popen(
        Stack.dataops_command("exporter", "--port", str(port)),
        env=stack.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        again = _wait_for("the restarted exporter answers", lambda: _get(f"http://127.0.0.1:{port}/metrics"))
    finally:
        restarted.terminate()
        restarted.wait(timeout=10)
    assert _counters(again.decode()) == first


def _dashboard_queries() -> dict[str, list[str]]:
    dashboards = sorted(DASHBOARDS.glob("*.json"))
    if not dashboards:
        pytest.skip(f"no Grafana dashboard in {DASHBOARDS.relative_to(PROJECT_ROOT)} yet")
    from statsd_mapping import dashboard_queries  # tests/statsd_mapping.py

    queries: dict[str, list[str]] = {}
    for path in dashboards:
        for title, expressions in dashboard_queries(json.loads(path.read_text(encoding="utf-8"))).items():
            queries[f"{path.name}: {title}"] = [expression for expression in expressions if expression]
    return queries


_GRAFANA_VARIABLES = {
    "$target": TARGET,
    "${target}": TARGET,
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
}


@pytest.fixture(scope="module")
def airflow_runs(stack: Stack, observed: Observed) -> None:
    """A failed DAG run and a success after the base ones, scraped twice at least, so the Airflow
    panels' increases are real and the failure is news to Prometheus."""
    stack.airflow.send(
        "airflow.dagrun.duration.failed.adventureworks_pipeline:42000|ms",
        "airflow.dagrun.duration.success.adventureworks_pipeline:58000|ms",
        "airflow.ti_failures:1|c",
        "airflow.ti_successes:8|c",
    )
    stack.wait(
        "Prometheus has scraped the new Airflow runs twice",
        lambda: (
            stack.query("count_over_time(airflow_dagrun_duration_failed_count[1m]) >= 2")
            and stack.query("increase(airflow_dagrun_duration_success_count[1m]) > 0")
        ),
    )


def test_a_failed_dag_run_reaches_the_critical_channel(stack: Stack, airflow_runs: None) -> None:
    [attachment] = stack.wait(
        "AirflowDAGFailed reaches the critical channel",
        lambda: _titled(stack.webhook.messages("/slack-critical"), "AirflowDAGFailed", "firing"),
    )
    assert "Airflow DAG adventureworks_pipeline failed" in attachment["text"]


def test_every_grafana_panel_query_returns_data(stack: Stack, airflow_runs: None) -> None:
    queries = _dashboard_queries()
    empty = []
    for title, expressions in queries.items():
        for expression in expressions:
            for variable, value in _GRAFANA_VARIABLES.items():
                expression = expression.replace(variable, value)
            result = stack.query(expression)
            values = [float(sample["value"][1]) for sample in result]
            if not values or any(value != value for value in values):  # no series, or NaN
                empty.append((title, expression, result))
    assert empty == []


def test_a_critical_holds_back_the_warnings_of_its_own_target_and_dag_only(stack: Stack) -> None:
    """alertmanager.yml's inhibition, in the real Alertmanager: alerts posted to its API (names of
    their own, so the channels' other tests never see them)."""
    probes = [
        ("ProbeCritical", "critical", {"target": "prod"}),
        ("ProbeCritical", "critical", {"dag_id": "a"}),
        ("ProbeWarning", "warning", {"target": "prod"}),
        ("ProbeWarning", "warning", {"target": "staging"}),
        ("ProbeWarning", "warning", {"dag_id": "a"}),
        ("ProbeWarning", "warning", {"dag_id": "b"}),
    ]
    body = json.dumps(
        [{"labels": {"alertname": name, "severity": severity, **labels}} for name, severity, labels in probes]
    ).encode()
    request = urllib.request.Request(
        f"{stack.alertmanager_url}/api/v2/alerts",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200

    def warnings() -> dict[str, str]:
        found = {
            json.dumps({k: v for k, v in alert["labels"].items() if k in {"target", "dag_id"}}): alert["status"][
                "state"
            ]
            for alert in stack.alertmanager_alerts()
            if alert["labels"]["alertname"] == "ProbeWarning"
        }
        return found if len(found) == 4 else {}

    assert stack.wait("the probe warnings reach Alertmanager", warnings) == {
        '{"target": "prod"}': "suppressed",
        '{"target": "staging"}': "active",
        '{"dag_id": "a"}': "suppressed",
        '{"dag_id": "b"}': "active",
    }
