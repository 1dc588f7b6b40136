"""`dataops incident new|resolve|list` on a history built by real deployments and runs, in a copy of
the project (its own git repository, found through DATAOPS_PROJECT_ROOT) on a DuckDB `ci` warehouse
of scale-0.1 data: a good deployment at the first commit; a second commit; the sources loaded
again with one injected fault (negative_total, which assert_no_negative_revenue must catch); a
deployment of the second commit that fails on it and notifies a real webhook receiver; a plain run
that fails too. The report drafted from that history must name the failing check, its downstream
models and exposures, the last good run, the deployment before the failure and the commit between
them, and show a sample of the rows the failing test found (captured by the run, since the
candidate it read is gone when the incident is drafted). Each step is the CLI in a process of its
own, as an operator runs it."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest

import background  # tests/background.py, loaded by tests/conftest.py
from dataops.history.records import SAMPLE_ROWS, IncidentRecord, RunRecord
from dataops.sources.readers import read_source_folder
from project_copy import ProjectCopy, copy_project  # tests/project_copy.py
from webhook_receiver import serve

JOB = "incidents-history"
pytestmark = [pytest.mark.integration, pytest.mark.background(JOB)]

FAULT, FAILING_TEST = "negative_total", "assert_no_negative_revenue"  # faults.py: caught_by
# The models the test reads, and the exposures (dbt/models/marts/_marts__exposures.yml) reading them.
TESTED = {"fct_orders", "fct_order_lines"}
REACHED = {"sales_report", "product_performance"}
NOT_REACHED = {"customer_dashboard", "customer_segments_export"}  # customer_analytics is not downstream
SECOND_COMMIT = "fix(models): say why fct_orders keeps cancelled orders"


@dataclass
class Project(ProjectCopy):
    """The copy: the CLI runs in it, and its run history is read directly."""

    def step(self, *args: str, expect: int, extra_env: dict[str, str] | None = None) -> RunRecord:
        done = self.dataops(*args, extra_env=extra_env)
        assert done.returncode == expect, done.stdout[-3000:] + done.stderr
        latest = self.history.latest("ci")
        assert latest is not None
        return latest


@dataclass
class History(Project):
    good_deploy: RunRecord
    failed_deploy: RunRecord
    later_run: RunRecord
    first_commit: str
    second_commit: str


@background.job(JOB)
def _build_history(root: Path) -> background.Run:
    """The copy is made now, with the environment the session started with; its commands run in
    the background (tests/background.py), beside the other tests."""
    project = Project(**vars(copy_project(root, "Dana Deployer", "dana@example.com")))

    def build() -> History:
        first_commit = project.git("rev-parse", "HEAD")
        assert project.dataops("load", "--scale", "0.1", "--target", "ci").returncode == 0
        good = project.step("deploy", "--target", "ci", expect=0)
        model = root / "dbt" / "models" / "marts" / "fct_orders.sql"
        model.write_text(model.read_text(encoding="utf-8") + "-- cancelled orders stay: revenue is net of them\n")
        project.git("commit", "-q", "-am", SECOND_COMMIT)
        faulty = root / "faulty"
        made = project.dataops("generate", "--scale", "0.1", "--inject", FAULT, "--out", str(faulty))
        assert made.returncode == 0, made.stderr
        assert project.dataops("load", "--from", str(faulty), "--target", "ci").returncode == 0
        with serve() as receiver:
            webhook = {"DATAOPS_WEBHOOK_URL": receiver.url}
            failed = project.step("deploy", "--target", "ci", expect=1, extra_env=webhook)
        later = project.step("run", "--target", "ci", expect=1)
        return History(root, project.env, good, failed, later, first_commit, project.git("rev-parse", "HEAD"))

    return build


@pytest.fixture(scope="module")
def history(background_jobs: Any) -> History:
    return background_jobs.result(JOB)


@pytest.fixture(scope="module")
def opened(history: History) -> tuple[subprocess.CompletedProcess[str], str]:
    """`dataops incident new` on that history, into the default folder (incidents/ of the project)."""
    done = history.dataops("incident", "new", "--target", "ci")
    assert done.returncode == 0, done.stdout + done.stderr
    [report] = sorted((history.root / "incidents").glob("*.md"))
    return done, report.read_text(encoding="utf-8")


def _fault_rows(history: History) -> set[tuple[str, int]]:
    """What assert_no_negative_revenue must find, from the data negative_total wrote (faults.py):
    the one order it made negative, and that order's lines."""
    tables = read_source_folder(history.root / "faulty")
    header, detail = tables["Sales.SalesOrderHeader"], tables["Sales.SalesOrderDetail"]
    [order] = header.filter(pc.less(header["TotalDue"], 0))["SalesOrderID"].to_pylist()
    lines = detail.filter(pc.equal(detail["SalesOrderID"], order))["SalesOrderDetailID"].to_pylist()
    return {("order", order), *(("order line", line) for line in lines)}


def _section(report: str, title: str) -> str:
    return report.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _the_incident(history: History) -> IncidentRecord:
    [incident] = history.history.incidents("ci")
    return incident


def test_the_history_is_what_the_report_is_drafted_from(history: History) -> None:
    assert (history.good_deploy.kind, history.good_deploy.status) == ("deploy", "passed")
    assert (history.failed_deploy.kind, history.failed_deploy.status) == ("deploy", "failed")
    assert history.failed_deploy.deployment is not None
    assert history.failed_deploy.deployment.git_commit == history.second_commit
    assert history.failed_deploy.deployment.notification == "sent"
    assert (history.later_run.kind, history.later_run.status) == ("run", "failed")
    failing = {n.name for n in history.failed_deploy.nodes if n.level == "error"}
    assert failing == {FAILING_TEST}


def test_each_failing_run_kept_a_sample_of_the_rows_its_test_found(history: History) -> None:
    """Captured when the test ran, by the deploy and by the plain run: the candidate is gone later."""
    expected = _fault_rows(history)
    for run in (history.failed_deploy, history.later_run):
        [failed] = [n for n in run.nodes if n.name == FAILING_TEST]
        assert failed.sample is not None and failed.sample.unavailable == "", failed.sample
        assert failed.sample.columns == ["grain", "id", "amount"]
        # The slim deploy rebuilds fct_orders only (fct_order_lines is the published copy): fewer rows.
        assert failed.failures and len(failed.sample.rows) == min(SAMPLE_ROWS, failed.failures)
        assert {(grain, key) for grain, key, _ in failed.sample.rows} <= expected
        assert all(isinstance(amount, str) and amount.startswith("-") for *_, amount in failed.sample.rows)
    passing = [n for n in history.good_deploy.nodes if n.sample is not None]
    assert passing == []  # nothing failed: nothing sampled


def test_the_report_names_the_failing_check_its_models_and_exposures(
    history: History, opened: tuple[subprocess.CompletedProcess[str], str]
) -> None:
    done, report = opened
    impact = _section(report, "Impact")
    [failed] = [n for n in history.failed_deploy.nodes if n.name == FAILING_TEST]
    assert failed.failures and f"`{FAILING_TEST}` (test on `fct_orders`, `fct_order_lines`, fail)" in impact
    assert f"{failed.failures:,} failing rows" in impact and "consumer-facing" in impact
    assert failed.sample is not None
    assert "| grain | id | amount |" in impact
    for grain, key, amount in failed.sample.rows:
        assert f"| {grain} | {key} | {amount} |" in impact
    downstream = impact.split("Downstream of the failing checks:", 1)[1]
    for model in TESTED:
        assert f"`{model}`" in downstream, model
    assert {name for name in REACHED | NOT_REACHED if f"exposure `{name}`" in downstream} == REACHED
    assert "owner Sales Operations <sales-ops@example.com>" in downstream
    assert "Nothing bad was published: consumers kept v1" in impact
    assert "**Severity:** critical" in report and "**Status:** Open" in report
    assert "Weekly sales report" in done.stdout and "report: incidents/" in done.stdout


def test_the_timeline_has_the_last_good_run_the_deployment_before_and_the_runs_after(
    history: History, opened: tuple[subprocess.CompletedProcess[str], str]
) -> None:
    timeline = _section(opened[1], "Timeline")
    rows = [line for line in timeline.splitlines() if line.startswith("| 2")]
    good, failed, later = history.good_deploy.run_id, history.failed_deploy.run_id, history.later_run.run_id
    assert f"Last good run: deploy {good} (passed)" in timeline
    assert f"Deployment before the failure: {good}, commit {history.first_commit[:12]}" in timeline
    detected = next(row for row in rows if "(detected)" in row)
    assert f"deploy {failed} (failed)" in detected and "notification: sent" in detected
    assert f"Later run: run {later} (failed)" in timeline
    assert [row for row in rows if later in row] == rows[-1:]  # in time order, the later run last


def test_the_cause_names_the_commit_between_the_good_and_the_failing_deployment(
    history: History, opened: tuple[subprocess.CompletedProcess[str], str]
) -> None:
    cause = _section(opened[1], "Root Cause")
    assert f"git log {history.first_commit[:12]}..{history.second_commit[:12]}" in cause
    assert f"{history.second_commit[:12]} {SECOND_COMMIT} (Dana Deployer" in cause
    assert "feat(models): the project" not in cause
    actions = _section(opened[1], "Action Items")
    assert f"`{FAILING_TEST}`" in actions and "dataops run --target ci" in actions
    assert "sales-ops@example.com" in actions


def test_the_incident_is_kept_in_the_history_opened_at_the_first_failing_run(
    history: History, opened: tuple[subprocess.CompletedProcess[str], str]
) -> None:
    incident = _the_incident(history)
    assert incident.run_id == history.failed_deploy.run_id
    assert incident.opened_at == history.failed_deploy.started_at
    assert (incident.severity, incident.resolved_at) == ("critical", None)
    assert (
        incident.incident_id
        == f"{history.failed_deploy.started_at:%Y-%m-%d}-{FAILING_TEST.replace('_', '-')}-failed-on-ci"
    )
    assert incident.path == f"incidents/{incident.incident_id}.md"
    again = history.dataops("incident", "new", "--target", "ci")
    assert again.returncode == 2 and f"already opened incident {incident.incident_id}" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_errors_are_one_line_and_exit_2(history: History, tmp_path: Path) -> None:
    passed = history.dataops("incident", "new", "--target", "ci", "--run", history.good_deploy.run_id)
    assert passed.returncode == 2 and "an incident is opened from a failing run" in passed.stderr
    empty = history.dataops("incident", "new", "--target", "ci", extra_env={"DATAOPS_WAREHOUSE_DIR": str(tmp_path)})
    assert empty.returncode == 2 and "no run of ci failed in the run history" in empty.stderr
    unknown = history.dataops("incident", "resolve", "2020-01-01-nothing")
    assert unknown.returncode == 2 and "no incident 2020-01-01-nothing" in unknown.stderr
    for done in (passed, empty, unknown):
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_resolve_stamps_the_report_and_the_history_and_list_shows_the_duration(
    history: History, opened: tuple[subprocess.CompletedProcess[str], str]
) -> None:
    incident = _the_incident(history)
    listed = history.dataops("incident", "list", "--target", "ci")
    assert listed.returncode == 0 and incident.incident_id in listed.stdout and "open for" in listed.stdout
    done = history.dataops(
        "incident", "resolve", incident.incident_id, "--note", "fixed the order totals at the source"
    )
    assert done.returncode == 0, done.stderr
    resolved = _the_incident(history)
    assert resolved.resolved_at is not None and resolved.seconds_open is not None and resolved.seconds_open > 0
    assert resolved.resolution == "fixed the order totals at the source"
    report = (history.root / resolved.path).read_text(encoding="utf-8")
    assert "**Status:** Resolved" in report and "**Status:** Open" not in report
    assert "Resolved 20" in _section(report, "Resolution") and "fixed the order totals" in _section(
        report, "Resolution"
    )
    assert _section(report, "Impact") == _section(opened[1], "Impact")  # nothing else rewritten
    listed = history.dataops("incident", "list", "--target", "ci")
    assert "open for" not in listed.stdout and f"{resolved.resolved_at:%Y-%m-%d %H:%M}" in listed.stdout
    again = history.dataops("incident", "resolve", incident.incident_id)
    assert again.returncode == 2 and "resolved already" in again.stderr
