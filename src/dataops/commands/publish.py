"""Write-audit-publish, rollback and the list of versions.

A run builds the marts into the candidate schema, runs every check on it (dbt tests and unit tests,
the Great Expectations suites) and, here, the smoke checks that compare it with the published
version: rows per mart within `max_row_change_percent`, no column dropped or retyped (unless the run
allows breaking changes), and a data diff by primary key. Only a run with no error-level finding is
published, by the warehouse in one atomic step for all marts; otherwise the published version stays
exactly as it was and the run says which checks stopped it."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dataops.core.config import Settings
from dataops.core.errors import DataOpsError
from dataops.core.findings import Finding
from dataops.history.provenance import git_commit
from dataops.history.records import DiffRecord, PublishRecord, RunRecord, StageRecord, Trigger
from dataops.history.store import HistoryStore
from dataops.warehouse import Column, LockHolder, MartDiff, TargetBusy, Version, Warehouse, connect

SMOKE_ROWS = "smoke: rows per mart"
SMOKE_COLUMNS = "smoke: columns per mart"


@dataclass
class Mart:
    """A mart as the manifest knows it: its name and the columns of its primary key (the column of
    its `unique` test), which the data diff joins on."""

    name: str
    key: tuple[str, ...] = ()


@dataclass
class PublishOutcome:
    record: PublishRecord
    findings: list[Finding] = field(default_factory=list)

    @property
    def published(self) -> bool:
        return self.record.status == "published"


def marts_of(manifest: Any, settings: Settings) -> list[Mart]:
    """The models dbt builds into the candidate schema, each with the key of its `unique` test."""
    keys: dict[str, tuple[str, ...]] = {}
    for node in manifest.nodes.values():
        metadata = getattr(node, "test_metadata", None)
        attached = getattr(node, "attached_node", None)
        column = getattr(node, "column_name", None)
        if metadata is not None and metadata.name == "unique" and attached and column:
            keys.setdefault(attached, (column,))
    return sorted(
        (Mart(node.alias or node.name, keys.get(unique_id, ()))
         for unique_id, node in manifest.nodes.items()
         if node.resource_type == "model" and node.schema == settings.candidate_schema
         and node.config.materialized != "ephemeral"),
        key=lambda mart: mart.name,
    )


def _column_changes(candidate: dict[str, list[Column]], published: dict[str, list[Column]]) -> list[str]:
    changes = []
    for mart, columns in published.items():
        now = {c.name.lower(): c for c in candidate.get(mart, [])}
        if mart not in candidate:
            changes.append(f"{mart} is gone")
            continue
        for column in columns:
            new = now.get(column.name.lower())
            if new is None:
                changes.append(f"{mart}.{column.name} was dropped")
            elif new.type != column.type:
                changes.append(f"{mart}.{column.name} changed type from {column.type} to {new.type}")
    return changes


def smoke_checks(
    settings: Settings, warehouse: Warehouse, marts: Sequence[Mart], candidate_rows: dict[str, int],
    allow_breaking: bool = False,
) -> tuple[list[Finding], list[MartDiff]]:
    """The candidate against the published version. Nothing published yet: nothing to compare."""
    names = [mart.name for mart in marts]
    published_rows = warehouse.published_row_counts(names)
    if not published_rows:
        return [], []
    findings: list[Finding] = []
    limit = settings.max_row_change_percent
    for mart in names:
        before, after = published_rows.get(mart), candidate_rows.get(mart)
        if before is None or after is None:
            continue
        change = (after - before) / before * 100 if before else (0.0 if after == 0 else float("inf"))
        if abs(change) > limit:
            findings.append(Finding(
                "error", SMOKE_ROWS,
                f"{mart} has {after:,} rows against {before:,} published ({change:+.0f}%, the limit is "
                f"±{limit:g}% in environments.yml: max_row_change_percent)",
            ))
    candidate_columns = warehouse.columns(settings.candidate_schema, names)
    changes = _column_changes(candidate_columns, warehouse.columns(settings.consumer_schema, names, published=True))
    if changes:
        level = "warn" if allow_breaking else "error"
        allowed = "allowed by --allow-breaking" if allow_breaking else "run with --allow-breaking if it is meant"
        findings.append(Finding(level, SMOKE_COLUMNS, f"breaking change: {'; '.join(changes)} ({allowed})"))
    diffs = [
        warehouse.data_diff(settings.candidate_schema, mart.name, mart.key,
                            [c.name for c in candidate_columns.get(mart.name, [])])
        for mart in marts if mart.key and mart.name in published_rows and mart.name in candidate_columns
    ]
    return findings, diffs


def diff_records(diffs: Sequence[MartDiff]) -> list[DiffRecord]:
    return [DiffRecord(d.mart, list(d.key), d.added, d.removed, d.changed, dict(d.changed_columns)) for d in diffs]


def diff_summary(diffs: Sequence[DiffRecord]) -> str:
    if not diffs:
        return ""
    return "; ".join(f"{d.mart} +{d.added:,} -{d.removed:,} ~{d.changed:,}" for d in diffs)


def publish_candidate(
    settings: Settings, run_id: str, marts: Sequence[Mart], candidate_rows: dict[str, int],
    blocked_by: Sequence[str], allow_breaking: bool = False, warehouse: Warehouse | None = None,
) -> PublishOutcome:
    """Audit the candidate against the published version and publish it, or say why not.
    `blocked_by`: the checks of the run that already failed (each one stops the publish)."""
    warehouse = warehouse or connect(settings)
    previous = _current(warehouse)
    if blocked_by:
        return PublishOutcome(PublishRecord(
            "not published", previous_version=previous, reason=_stopped_by(blocked_by)))
    findings, diffs = smoke_checks(settings, warehouse, marts, candidate_rows, allow_breaking)
    errors = [f.check for f in findings if f.level == "error"]
    if errors:
        return PublishOutcome(PublishRecord(
            "not published", previous_version=previous, reason=_stopped_by(errors), diffs=diff_records(diffs),
        ), findings)
    version = warehouse.publish(
        settings.candidate_schema, [m.name for m in marts], run_id,
        {f"{settings.consumer_schema}.{m}": n for m, n in candidate_rows.items()}, grant_to=settings.reader_role,
    )
    # Only now, with the new version published, may the oldest go.
    warehouse.drop_versions(settings.keep_versions)
    return PublishOutcome(PublishRecord(
        "published", version=version.number, previous_version=previous, diffs=diff_records(diffs),
        reason=f"v{version.number} is the published version" + (f" (was v{previous})" if previous else ""),
    ), findings)


def _stopped_by(checks: Sequence[str]) -> str:
    unique = list(dict.fromkeys(checks))
    shown = ", ".join(unique[:5]) + (f" and {len(unique) - 5} more" if len(unique) > 5 else "")
    return f"not published: stopped by {shown}"


def _current(warehouse: Warehouse) -> int | None:
    return next((v.number for v in warehouse.versions() if v.current), None)


def list_versions(settings: Settings) -> list[Version]:
    return connect(settings).versions()


def rollback(settings: Settings, to: int | None = None, history: HistoryStore | None = None,
             wait: bool = False) -> RunRecord:
    """Publish an earlier version again (the one before the published one, unless `to` names
    one), atomically, and record it in the history as a run of kind `rollback`."""
    history = history or HistoryStore()
    history.open_for_writing()
    warehouse = connect(settings)
    run_id = new_run_id()
    started = datetime.now(UTC)
    clock = time.perf_counter()
    with hold_target(settings, run_id, wait, warehouse):
        versions = warehouse.versions()
        current = next((v for v in versions if v.current), None)
        if to is None:
            older = [v for v in versions if current is not None and v.number < current.number]
            if not older:
                kept = ", ".join(v.label for v in versions) or "none"
                raise DataOpsError(
                    f"nothing to roll back to on {settings.target}: the published version is "
                    f"{current.label if current else 'none'} and no earlier one is kept (kept: {kept})"
                )
            to = older[0].number
        elif current is not None and to == current.number:
            raise DataOpsError(f"v{to} is already the published version of {settings.target}")
        version = warehouse.switch_to(to, grant_to=settings.reader_role)
    finished = datetime.now(UTC)
    record = RunRecord(
        run_id=run_id, target=settings.target, kind="rollback", trigger=Trigger("cli"),
        started_at=started, finished_at=finished, status="passed", exit_code=0, git_commit=git_commit(),
        stages=[StageRecord("publish", "ok", round(time.perf_counter() - clock, 3), f"rolled back to {version.label}")],
        row_counts=dict(version.row_counts),
        publish=PublishRecord("rolled back", version=version.number,
                              previous_version=current.number if current else None,
                              reason=f"{version.label} (run {version.run_id}) is the published version again"),
    )
    history.record(record)
    return record


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


@contextmanager
def hold_target(
    settings: Settings, run_id: str, wait: bool, warehouse: Warehouse | None = None,
    on_wait: Callable[[LockHolder | None], None] | None = None,
) -> Iterator[None]:
    """One run per target at a time. Held: wait for it (`wait`, after telling `on_wait` who holds
    it), or stop at once with a user error naming the holder."""
    warehouse = warehouse or connect(settings)
    holder = LockHolder(run_id, socket.gethostname(), os.getpid(), datetime.now(UTC).isoformat(timespec="seconds"))
    with ExitStack() as held:
        try:
            held.enter_context(warehouse.hold(holder, wait=False))
        except TargetBusy as busy:
            if not wait:
                raise DataOpsError(
                    f"target '{settings.target}' is busy: {busy} holds it; run again when it has "
                    "finished, or pass --wait to wait for it"
                ) from None
            if on_wait is not None:
                on_wait(busy.holder)
            held.enter_context(warehouse.hold(holder, wait=True))
        yield
