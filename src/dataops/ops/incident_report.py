"""The incident report as Markdown, in the guide's template (summary, impact, timeline, root cause,
resolution, action items, lessons learned), and the resolution stamped into it later.

The lines `resolve` rewrites (`**Status:**`, `**Resolved:**` and the body of `## Resolution`) have a
fixed shape, so that stamping a report a person has since edited changes those and nothing else."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from dataops.history.records import SAMPLED_STATUSES, IncidentRecord, NodeRecord, RunRecord, SampleValue

if TYPE_CHECKING:
    from dataops.ops.incidents import FailedCheck, Incident

RUNBOOKS = "docs/runbooks"
_NOT_RESOLVED = '_Not resolved yet._ When it is: `dataops incident resolve {id} --note "what fixed it"`.'
# Row counts that moved by less than this share are not worth a line in the hints.
_ROW_CHANGE_SHARE = 0.01
# Nor are freshness ages that moved by less than an hour.
_AGE_CHANGE_SECONDS = 3600.0


def render_report(incident: Incident) -> str:
    record, timeline = incident.record, incident.timeline
    first = timeline.first_failing
    sections = [
        f"# Incident Report: {record.title}",
        "\n".join(
            [
                f"**Incident:** {record.incident_id}  ",
                f"**Date:** {record.opened_at.astimezone(UTC):%Y-%m-%d}  ",
                f"**Target:** {record.target}  ",
                f"**Severity:** {record.severity}  ",
                "**Status:** Open  ",
                f"**Opened:** {_when(record.opened_at)} (run {first.run_id})  ",
                "**Resolved:** —",
            ]
        ),
        "## Summary\n\n" + _summary(incident),
        "## Impact\n\n" + _impact(incident),
        "## Timeline\n\n" + _timeline(incident),
        "## Root Cause\n\n" + _cause(incident),
        "## Resolution\n\n" + _NOT_RESOLVED.format(id=record.incident_id),
        "## Action Items\n\n" + _actions(incident),
        "## Lessons Learned\n\n_To be written in the review: what made this possible, what caught it, "
        "what would have caught it sooner._",
    ]
    return "\n\n".join(sections) + "\n"


def stamp_resolution(text: str, resolved: IncidentRecord) -> str:
    assert resolved.resolved_at is not None and resolved.seconds_open is not None
    stamped = re.sub(r"^\*\*Status:\*\* .*$", "**Status:** Resolved  ", text, count=1, flags=re.M)
    stamped = re.sub(
        r"^\*\*Resolved:\*\* .*$",
        lambda _: f"**Resolved:** {_when(resolved.resolved_at)} (open {duration(resolved.seconds_open)})",
        stamped,
        count=1,
        flags=re.M,
    )
    body = f"Resolved {_when(resolved.resolved_at)}: {resolved.resolution}"
    return re.sub(
        r"(^## Resolution\n\n)(.*?)(?=\n\n## |\Z)", lambda m: m.group(1) + body, stamped, count=1, flags=re.M | re.S
    )


def duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min" if minutes else f"{seconds:.0f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours < 48 else f"{hours // 24} d {hours % 24} h"


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _run(run: RunRecord) -> str:
    return f"{run.kind} {run.run_id} ({run.status})"


# Sections ----------------------------------------------------------------------------------------


def _summary(incident: Incident) -> str:
    first = incident.timeline.first_failing
    checks = ", ".join(f"`{c.node.name}`" for c in incident.failed) or "no check"
    stale = ", ".join(f"`{n.name}`" for n in incident.stale_sources)
    what = f"{checks} failed" + (f"; stale: {stale}" if stale else "")
    if first.error:
        what += f"; the run stopped: {first.error}"
    return (
        f"The {first.kind} {first.run_id} of {incident.record.target} {first.status} at "
        f"{_when(first.started_at)}: {what}. {_published(first)}"
    )


def _published(run: RunRecord) -> str:
    publish = run.publish
    if publish is None:
        return "The run recorded no publish step: what consumers read is unknown from this run."
    if publish.status == "published":
        return (
            f"**Bad data was published** as v{publish.version}: it should not have been. "
            f"Roll back: `dataops rollback --target {run.target}`."
        )
    kept = f"v{publish.previous_version}" if publish.previous_version is not None else "nothing (no version yet)"
    return f"Nothing bad was published: consumers kept {kept} ({publish.reason or publish.status})."


def _impact(incident: Incident) -> str:
    lines = ["Failing checks:", ""]
    for check in incident.failed:
        lines.append(_check_line(check))
        lines += _sample_lines(check.node)
    if not incident.failed:
        lines.append("- none (the run failed without a failing check: see the Summary)")
    for node in incident.stale_sources:
        lines.append(f"- `{node.name}` (stale source): {node.message}")
    lines += ["", "Downstream of the failing checks:", ""]
    reached = False
    for check in incident.failed:
        if not check.lineage_known:
            lines.append(f"- `{check.node.name}`: {incident.manifest_note}")
            continue
        reached = True
        models = ", ".join(f"`{m}`" for m in check.downstream_models) or "no model"
        lines.append(f"- `{check.node.name}` → models {models}")
        for consumer in check.consumers:
            url = f" — {consumer.url}" if consumer.url else ""
            lines.append(
                f"  - exposure `{consumer.unique_id.rsplit('.', 1)[-1]}`: {consumer.label} "
                f"({consumer.kind}, maturity {consumer.maturity}), owner {consumer.owner}{url}"
            )
        if not check.consumers:
            lines.append("  - no exposure reads them")
    if reached:
        lines += ["", f"({incident.manifest_note}.)"]
    lines += ["", f"Published: {_published(incident.timeline.first_failing)}"]
    return "\n".join(lines)


def _check_line(check: FailedCheck) -> str:
    node = check.node
    rows = f"{node.failures:,} failing rows" if node.failures else ""
    message = node.message if node.message and node.message != rows else ""
    said = ": ".join(part for part in (rows, message) if part) or "no message"
    on = f" on {', '.join(f'`{m}`' for m in check.tested)}" if check.tested else ""
    facing = " — consumer-facing" if check.consumer_facing else ""
    return f"- `{node.name}` ({node.kind}{on}, {node.status}): {said}{facing}"


def _sample_lines(node: NodeRecord) -> list[str]:
    """The rows the check found, as the run captured them: a table inside the check's list item."""
    sample = node.sample
    if sample is None:
        # Every run of `dataops run` and `dataops deploy` samples such a test; GX may give no values.
        sampled = node.kind == "test" and node.status in SAMPLED_STATUSES
        return ["  - no sample of the failing rows was recorded with the run"] if sampled else []
    if not sample.rows:
        return [f"  - sample unavailable: {sample.unavailable or 'the query returned no row'}"]
    of = f" of {node.failures:,}" if node.failures and node.failures > len(sample.rows) else ""
    table = [
        "| " + " | ".join(_cell(column) for column in sample.columns) + " |",
        "|" + "---|" * len(sample.columns),
        *("| " + " | ".join(_cell(value) for value in row) + " |" for row in sample.rows),
    ]
    caption = f"  Sample of the failing rows ({len(sample.rows)}{of}, captured by the run):"
    return ["", caption, "", *(f"  {line}" for line in table), ""]


def _cell(value: SampleValue) -> str:
    """A value as a Markdown table cell: a pipe would end the cell, and NULL is not an empty text."""
    text = "NULL" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _timeline(incident: Incident) -> str:
    timeline = incident.timeline
    rows: list[tuple[datetime, str]] = []
    if timeline.deployment_before is not None:
        rows.append(
            (
                timeline.deployment_before.started_at,
                "Deployment before the failure: " + _deploy(timeline.deployment_before),
            )
        )
    if timeline.last_good is not None:
        rows.append((timeline.last_good.started_at, f"Last good run: {_run(timeline.last_good)}"))
    else:
        rows.append((timeline.first_failing.started_at, "Last good run: none in the history"))
    first = timeline.first_failing
    detected = f"First failing run (detected): {_run(first)}"
    if first.deployment is not None:
        detected += " — a deployment itself: " + _deploy(first)
    rows.append((first.started_at, detected))
    for run in timeline.later:
        rows.append((run.started_at, f"Later run: {_run(run)}" + (" — " + _deploy(run) if run.deployment else "")))
    rows.sort(key=lambda row: row[0])
    table = ["| time (UTC) | event |", "|---|---|"]
    table += [f"| {moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} | {event} |" for moment, event in rows]
    return "\n".join(table)


def _deploy(run: RunRecord) -> str:
    deployment = run.deployment
    if deployment is None:
        return _run(run)
    commit = (deployment.git_commit or "unknown commit")[:12]
    note = f"; notification: {deployment.notification}" if deployment.notification else "; notification: not recorded"
    return f"{run.run_id}, commit {commit}, {deployment.build} build, {deployment.outcome}{note}"


def _cause(incident: Incident) -> str:
    lines = ["_To be confirmed. What the history and git point at:_", "", f"Code ({incident.commits_note}):", ""]
    if incident.commits:
        lines += [f"- {c.sha[:12]} {c.subject} ({c.author}, {c.date})" for c in incident.commits]
    else:
        lines.append("- no commit between the last good and the first failing run")
    lines += ["", "Data (last good run → first failing run):", ""]
    lines += _data_changes(incident.timeline.last_good, incident.timeline.first_failing) or [
        "- no source or mart row count and no freshness changed noticeably"
    ]
    return "\n".join(lines)


def _data_changes(good: RunRecord | None, bad: RunRecord) -> list[str]:
    if good is None:
        return ["- no good run to compare with"]
    lines: list[str] = []
    for name in sorted(set(good.row_counts) | set(bad.row_counts)):
        before, after = good.row_counts.get(name), bad.row_counts.get(name)
        if before is None or after is None:
            lines.append(f"- rows of {name}: {_count(before)} → {_count(after)}")
        elif before != after and abs(after - before) >= max(1, before * _ROW_CHANGE_SHARE):
            lines.append(
                f"- rows of {name}: {before:,} → {after:,} ({(after - before) / before:+.1%})"
                if before
                else f"- rows of {name}: 0 → {after:,}"
            )
    ages = {n.name: n.age_seconds for n in good.nodes if n.kind == "source" and n.age_seconds is not None}
    for node in bad.nodes:
        before, after = ages.get(node.name), node.age_seconds
        if node.kind != "source" or before is None or after is None:
            continue
        if abs(after - before) >= _AGE_CHANGE_SECONDS:
            lines.append(f"- {node.name}: {duration(before)} → {duration(after)} old")
    return lines


def _count(rows: int | None) -> str:
    return "not counted" if rows is None else f"{rows:,}"


def _actions(incident: Incident) -> str:
    target, record = incident.record.target, incident.record
    first = incident.timeline.first_failing
    items = []
    for check in incident.failed:
        items.append(
            f"Find why `{check.node.name}` fails ({check.node.message or check.node.status}) and fix it at the "
            f"source or in the model, then `dataops run --target {target}` "
            f"(see [{RUNBOOKS}/data-quality-issue.md](../{RUNBOOKS}/data-quality-issue.md))"
        )
    if incident.stale_sources:
        items.append(
            f"Get the stale sources loaded again, then `dataops run --target {target}` "
            f"(see [{RUNBOOKS}/stale-source.md](../{RUNBOOKS}/stale-source.md))"
        )
    if first.publish is not None and first.publish.status == "published":
        items.append(
            f"Roll back the bad version: `dataops rollback --target {target}` "
            f"(see [{RUNBOOKS}/rollback.md](../{RUNBOOKS}/rollback.md)), and find why the checks let it through"
        )
    if first.deployment is not None:
        items.append(
            f"Review the failed deployment (see [{RUNBOOKS}/failed-deploy.md](../{RUNBOOKS}/failed-deploy.md))"
        )
    owners = sorted({c.owner for check in incident.failed for c in check.consumers})
    if owners:
        items.append("Tell the owners of the exposures hit: " + ", ".join(owners))
    items.append("Add the test or alert that would have caught this sooner, if there was none")
    items.append(f'Resolve: `dataops incident resolve {record.incident_id} --note "what fixed it"`')
    return "\n".join(f"- [ ] {item}" for item in items)
