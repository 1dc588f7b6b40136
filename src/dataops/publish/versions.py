"""Publish a checked candidate as the next version, roll back to a kept one, list them.

A run builds the marts into the candidate schema and runs every check on it (dbt tests and unit
tests, the Great Expectations suites); `publish_candidate` adds the anomaly checks and the smoke
checks and, only when no error-level check failed, has the warehouse publish it in one atomic step
for all marts. Otherwise the published version stays exactly as it was and the outcome says which
checks stopped it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dataops.core.config import Settings
from dataops.core.errors import DataOpsError
from dataops.core.findings import Finding
from dataops.history.provenance import git_commit
from dataops.history.records import NodeRecord, PublishRecord, RunRecord, StageRecord, Trigger, new_run_id
from dataops.history.store import HistoryStore
from dataops.publish.audit import Mart, anomaly_checks, diff_records, smoke_checks
from dataops.publish.lock import hold_target
from dataops.warehouse import Version, Warehouse, connect


@dataclass
class PublishOutcome:
    record: PublishRecord
    findings: list[Finding] = field(default_factory=list)
    # The anomaly checks' results (kind `anomaly`), for the run's record.
    nodes: list[NodeRecord] = field(default_factory=list)

    @property
    def published(self) -> bool:
        return self.record.status == "published"


def publish_candidate(
    settings: Settings,
    run_id: str,
    marts: Sequence[Mart],
    candidate_rows: dict[str, int],
    blocked_by: Sequence[str],
    allow_breaking: bool = False,
    warehouse: Warehouse | None = None,
    *,
    started_at: datetime | None = None,
    freshness: Sequence[NodeRecord] = (),
    history: HistoryStore | None = None,
    copied: frozenset[str] = frozenset(),
) -> PublishOutcome:
    """Audit the candidate against the published version and the run against the target's recent
    runs (`history`; the run started at `started_at`, its freshness nodes are `freshness`), and
    publish it, or say why not. `blocked_by`: the checks of the run that already failed (each one
    stops the publish); `copied`: the marts copied unchanged from the published version (see
    `smoke_checks`). The anomaly checks run even then: the record says what they found, and the
    marts of a blocked run are judged when the caller counted them."""
    warehouse = warehouse or connect(settings)
    previous = _current(warehouse)
    nodes, findings = anomaly_checks(
        settings,
        warehouse,
        history or HistoryStore(),
        run_id,
        started_at or datetime.now(UTC),
        candidate_rows,
        freshness,
    )
    anomalies = [f.check for f in findings if f.level == "error"]
    if blocked_by:
        return PublishOutcome(
            PublishRecord("not published", previous_version=previous, reason=_stopped_by([*blocked_by, *anomalies])),
            findings,
            nodes,
        )
    smoke, diffs = smoke_checks(settings, warehouse, marts, candidate_rows, allow_breaking, copied)
    findings += smoke
    errors = [f.check for f in findings if f.level == "error"]
    if errors:
        return PublishOutcome(
            PublishRecord(
                "not published",
                previous_version=previous,
                reason=_stopped_by(errors),
                diffs=diff_records(diffs),
            ),
            findings,
            nodes,
        )
    version = warehouse.publish(
        settings.candidate_schema,
        [m.name for m in marts],
        run_id,
        {f"{settings.consumer_schema}.{m}": n for m, n in candidate_rows.items()},
        grant_to=settings.reader_role,
    )
    # Only now, with the new version published, may the oldest go.
    warehouse.drop_versions(settings.keep_versions)
    return PublishOutcome(
        PublishRecord(
            "published",
            version=version.number,
            previous_version=previous,
            diffs=diff_records(diffs),
            reason=f"v{version.number} is the published version" + (f" (was v{previous})" if previous else ""),
        ),
        findings,
        nodes,
    )


def _stopped_by(checks: Sequence[str]) -> str:
    unique = list(dict.fromkeys(checks))
    shown = ", ".join(unique[:5]) + (f" and {len(unique) - 5} more" if len(unique) > 5 else "")
    return f"not published: stopped by {shown}"


def _current(warehouse: Warehouse) -> int | None:
    return next((v.number for v in warehouse.versions() if v.current), None)


def list_versions(settings: Settings) -> list[Version]:
    return connect(settings).versions()


def rollback(
    settings: Settings, to: int | None = None, history: HistoryStore | None = None, wait: bool = False
) -> RunRecord:
    """Publish an earlier version again (the one before the published one, unless `to` names
    one), atomically, and record it in the history as a run of kind `rollback`."""
    history = history or HistoryStore()
    history.open_for_writing()
    warehouse = connect(settings)
    run_id = new_run_id()
    started = datetime.now(UTC)
    clock = time.perf_counter()
    with hold_target(settings, run_id, wait, warehouse, history=history):
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
        run_id=run_id,
        target=settings.target,
        kind="rollback",
        trigger=Trigger("cli"),
        started_at=started,
        finished_at=finished,
        status="passed",
        exit_code=0,
        git_commit=git_commit(),
        stages=[StageRecord("publish", "ok", round(time.perf_counter() - clock, 3), f"rolled back to {version.label}")],
        row_counts=dict(version.row_counts),
        publish=PublishRecord(
            "rolled back",
            version=version.number,
            previous_version=current.number if current else None,
            reason=f"{version.label} (run {version.run_id}) is the published version again",
        ),
    )
    history.record(record)
    return record
