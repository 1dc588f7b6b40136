"""`dataops incident`: open an incident from the run history, resolve it, list them.

`open_incident` drafts the report from what the platform already knows, never from dbt's files of
the moment: the runs of the target (the last good run, the first failing one of the streak, the
deployment before it, the runs after), the manifest kept with the failing run (its child_map gives
the downstream models and exposures of every failing node) and git (the commits between the code
of the last good run and that of the first failing one). The report is a file under `incidents/`
of the project (`DATAOPS_INCIDENTS_DIR` moves it) and the incident is kept in the run history, so
that `dataops metrics` can time the recovery."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dataops.core.config import PROJECT_ROOT, Settings
from dataops.core.errors import DataOpsError
from dataops.history.records import PIPELINE_KINDS, IncidentRecord, NodeRecord, RunRecord
from dataops.history.store import HistoryStore
from dataops.ops.incident_report import render_report, stamp_resolution

INCIDENTS_DIR_ENV_VAR = "DATAOPS_INCIDENTS_DIR"
GOOD_STATUSES = ("passed", "warned")
# How far back the history is read to find the last good run: months of daily runs.
_RUNS_READ = 2000


def incidents_dir() -> Path:
    return Path(os.environ.get(INCIDENTS_DIR_ENV_VAR) or PROJECT_ROOT / "incidents").resolve()


@dataclass(frozen=True)
class Consumer:
    """An exposure the failure reaches: who reads the data, and how much they rely on it."""

    unique_id: str
    label: str
    kind: str
    maturity: str
    owner: str
    url: str


@dataclass(frozen=True)
class FailedCheck:
    """A failing node of the first failing run, with what it reaches downstream."""

    node: NodeRecord
    tested: list[str]  # the models a test reads (empty for a model or a source)
    downstream_models: list[str]
    consumers: list[Consumer]
    consumer_facing: bool
    lineage_known: bool


@dataclass(frozen=True)
class Commit:
    sha: str
    author: str
    date: str
    subject: str


@dataclass(frozen=True)
class Timeline:
    last_good: RunRecord | None
    first_failing: RunRecord
    deployment_before: RunRecord | None
    later: list[RunRecord]


@dataclass(frozen=True)
class Incident:
    """Everything the report says, for `incident_report.render_report` to write down."""

    record: IncidentRecord
    settings: Settings
    timeline: Timeline
    failed: list[FailedCheck]
    stale_sources: list[NodeRecord]
    commits: list[Commit] | None  # None: the commits could not be compared (why in `commits_note`)
    commits_note: str
    manifest_note: str


def open_incident(
    settings: Settings,
    run_id: str | None = None,
    title: str | None = None,
    folder: Path | None = None,
    history: HistoryStore | None = None,
) -> Incident:
    """Draft the report of the failure `run_id` belongs to (default: the newest failing run of
    the target), write it and keep the incident in the history."""
    history = history or HistoryStore()
    timeline = _timeline(history, settings.target, run_id)
    first = timeline.first_failing
    for known in history.incidents(settings.target):
        if known.run_id == first.run_id:
            raise DataOpsError(
                f"run {first.run_id} already opened incident {known.incident_id} ({known.path}): "
                f"resolve it with `dataops incident resolve {known.incident_id}`"
            )
    manifest, manifest_note = _manifest(settings, first)
    failed = [_failed_check(node, manifest) for node in first.nodes if node.level == "error" and node.kind != "source"]
    stale = [node for node in first.nodes if node.kind == "source" and node.level == "error"]
    commits, commits_note = _commits_between(timeline.last_good, first)
    folder = folder or incidents_dir()
    title = title or _default_title(settings.target, first, failed, stale)
    incident_id = _free_id(folder, history, f"{first.started_at.astimezone(UTC):%Y-%m-%d}-{_slug(title)}")
    path = folder / f"{incident_id}.md"
    record = IncidentRecord(
        incident_id=incident_id,
        target=settings.target,
        title=title,
        severity=_severity(first, failed, stale),
        opened_at=first.started_at,
        run_id=first.run_id,
        path=_shown(path),
    )
    incident = Incident(record, settings, timeline, failed, stale, commits, commits_note, manifest_note)
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(incident), encoding="utf-8")
    history.record_incident(record)
    return incident


def resolve_incident(
    incident_id: str, note: str = "", folder: Path | None = None, history: HistoryStore | None = None
) -> IncidentRecord:
    """Stamp the resolution into the report and the history; an incident is resolved once."""
    history = history or HistoryStore()
    found = history.incident(incident_id)
    if found is None:
        raise DataOpsError(f"no incident {incident_id} in the run history: list them with `dataops incident list`")
    if found.resolved_at is not None:
        raise DataOpsError(f"incident {incident_id} was resolved already, at {found.resolved_at:%Y-%m-%d %H:%M} UTC")
    path = (folder or incidents_dir()) / f"{incident_id}.md"
    if not path.is_file():
        raise DataOpsError(
            f"the report of incident {incident_id} is not at {path}: restore it, or set {INCIDENTS_DIR_ENV_VAR}"
        )
    resolved = replace(found, resolved_at=datetime.now(UTC), resolution=note.strip() or "resolved")
    path.write_text(stamp_resolution(path.read_text(encoding="utf-8"), resolved), encoding="utf-8")
    history.record_incident(resolved)
    return resolved


def list_incidents(target: str | None = None, history: HistoryStore | None = None) -> list[IncidentRecord]:
    return (history or HistoryStore()).incidents(target)


# The runs ----------------------------------------------------------------------------------------


def _timeline(history: HistoryStore, target: str, run_id: str | None) -> Timeline:
    rows = list(reversed(history.runs(target, limit=_RUNS_READ, kind=PIPELINE_KINDS)))  # oldest first
    failing = [i for i, row in enumerate(rows) if row.status not in GOOD_STATUSES and row.seconds is not None]
    if run_id is not None:
        chosen = next((i for i, row in enumerate(rows) if row.run_id == run_id), None)
        if chosen is None:
            raise DataOpsError(f"no run {run_id} of {target} in the run history: list them with `dataops history`")
        if chosen not in failing:
            raise DataOpsError(f"run {run_id} {rows[chosen].status}: an incident is opened from a failing run")
    elif failing:
        chosen = failing[-1]
    else:
        raise DataOpsError(
            f"no run of {target} failed in the run history: nothing to open an incident for "
            f"(see `dataops history --target {target}`)"
        )
    first = chosen
    while first > 0 and rows[first - 1].status not in GOOD_STATUSES:
        first -= 1
    last_good = _get(history, rows[first - 1].run_id) if first > 0 else None
    first_failing = _get(history, rows[first].run_id)
    deployment = next((row for row in reversed(rows[:first]) if row.kind == "deploy"), None)
    later = [_get(history, row.run_id) for row in rows[first + 1 :]]
    return Timeline(last_good, first_failing, _get(history, deployment.run_id) if deployment else None, later)


def _get(history: HistoryStore, run_id: str) -> RunRecord:
    record = history.get(run_id)
    if record is None:  # listed a moment ago: only a concurrent cleanup removes one
        raise DataOpsError(f"run {run_id} left the run history while the incident was drafted: try again")
    return record


def commit_of(run: RunRecord) -> str | None:
    """The code a run ran: a deployment's own commit, else the checkout's when it ran."""
    return (run.deployment.git_commit if run.deployment else None) or run.git_commit


# Lineage -----------------------------------------------------------------------------------------


def _manifest(settings: Settings, first: RunRecord) -> tuple[dict[str, Any] | None, str]:
    """The manifest of the failing run: a deployment keeps its own; a run's is the target's last."""
    kept = first.deployment.artifacts if first.deployment and first.deployment.artifacts else None
    path = Path(kept) / "manifest.json" if kept else settings.artifacts_dir / "dbt" / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")), f"lineage from {path}"
    except (OSError, ValueError) as error:
        return None, f"lineage unknown: no readable manifest at {path} ({type(error).__name__})"


def _failed_check(node: NodeRecord, manifest: dict[str, Any] | None) -> FailedCheck:
    if manifest is None or node.unique_id not in {**manifest["nodes"], **manifest.get("unit_tests", {})}:
        return FailedCheck(node, [], [], [], consumer_facing=False, lineage_known=False)
    entry = {**manifest["nodes"], **manifest.get("unit_tests", {})}[node.unique_id]
    tested = [uid for uid in entry.get("depends_on", {}).get("nodes", []) if uid.startswith("model.")]
    start = tested if entry["resource_type"] in ("test", "unit_test") else [node.unique_id]
    reached = _descendants(manifest["child_map"], start)
    models = sorted(uid for uid in {*tested, *reached} if uid.startswith("model."))
    exposures = sorted(uid for uid in reached if uid.startswith("exposure."))
    consumers = [_consumer(manifest["exposures"][uid]) for uid in exposures]
    marts = {uid for uid in models if "marts" in manifest["nodes"][uid].get("fqn", [])}
    exposed = {uid for exposure in manifest["exposures"].values() for uid in exposure["depends_on"]["nodes"]}
    facing = bool(set(start) & (marts | exposed)) or (entry["resource_type"] == "model" and bool(consumers))
    return FailedCheck(node, _names(tested), _names(models), consumers, consumer_facing=facing, lineage_known=True)


def _descendants(children: dict[str, list[str]], start: list[str]) -> set[str]:
    found, todo = set(start), list(start)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found and not child.startswith(("test.", "unit_test.")):
                found.add(child)
                todo.append(child)
    return found


def _consumer(exposure: dict[str, Any]) -> Consumer:
    owner = exposure.get("owner") or {}
    who = " ".join(part for part in (owner.get("name"), f"<{owner['email']}>" if owner.get("email") else None) if part)
    return Consumer(
        unique_id=exposure["unique_id"],
        label=exposure.get("label") or exposure["name"],
        kind=str(exposure.get("type", "")),
        maturity=str(exposure.get("maturity") or "unset"),
        owner=who or "no owner",
        url=str(exposure.get("url") or ""),
    )


def _names(unique_ids: list[str]) -> list[str]:
    return [uid.rsplit(".", 1)[-1] for uid in unique_ids]


# Severity, title, id -----------------------------------------------------------------------------


def _severity(first: RunRecord, failed: list[FailedCheck], stale: list[NodeRecord]) -> str:
    """critical: consumers are hit (a consumer-facing check failed, or bad data was published);
    major: consumers keep yesterday's data (a blocked publish, a stale source the target treats as
    an error, i.e. a production source); minor: nothing a consumer sees."""
    published = first.publish is not None and first.publish.status == "published"
    if published or any(check.consumer_facing for check in failed):
        return "critical"
    if stale or (first.publish is not None and first.publish.status == "not published"):
        return "major"
    return "minor"


def _default_title(target: str, first: RunRecord, failed: list[FailedCheck], stale: list[NodeRecord]) -> str:
    named = [check.node.name for check in failed] or [node.name for node in stale]
    if not named:
        return f"{first.kind} of {target} {first.status}" + (f": {first.error}" if first.error else "")
    more = f" and {len(named) - 1} more" if len(named) > 1 else ""
    return f"{named[0]}{more} failed on {target}"


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60].strip("-") or "incident"


def _free_id(folder: Path, history: HistoryStore, wanted: str) -> str:
    taken = {incident.incident_id for incident in history.incidents()}
    candidate, number = wanted, 1
    while candidate in taken or (folder / f"{candidate}.md").exists():
        number += 1
        candidate = f"{wanted}-{number}"
    return candidate


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(PROJECT_ROOT.resolve()))
    except ValueError:
        return str(path)


# Git ---------------------------------------------------------------------------------------------


def _commits_between(last_good: RunRecord | None, first: RunRecord) -> tuple[list[Commit] | None, str]:
    good, bad = (commit_of(last_good) if last_good else None), commit_of(first)
    if last_good is None:
        return None, "no run passed before this one: there is no good code to compare with"
    if good is None or bad is None:
        return None, "a run recorded no git commit: the code cannot be compared"
    if good == bad:
        return [], f"the code did not change ({good[:12]}): look at the data"
    found = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "log", "--format=%H%x1f%an%x1f%aI%x1f%s", f"{good}..{bad}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if found.returncode != 0:
        reason = " ".join(found.stderr.split()) or f"exit {found.returncode}"
        return None, f"git log {good[:12]}..{bad[:12]} failed: {reason}"
    commits = [Commit(*line.split("\x1f", 3)) for line in found.stdout.splitlines() if line]
    return commits, f"git log {good[:12]}..{bad[:12]}"
