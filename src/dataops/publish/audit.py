"""The audit before a publish. The smoke checks, the candidate against the published version: rows
per mart within `max_row_change_percent`, no column of a mart dropped or retyped (unless the run
allows a breaking change), and a data diff per mart by its primary key. And the anomaly checks, the
run against the target's recent runs in the history: volume per source table and mart, and each
source's freshness (dataops.ops.anomalies)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dataops.core.config import Settings
from dataops.core.findings import Finding
from dataops.history.records import DiffRecord, NodeRecord
from dataops.history.store import HistoryStore
from dataops.ops.anomalies import detect, findings_of, training_history
from dataops.sources.contract import SOURCE_TABLES
from dataops.warehouse import Column, MartDiff, Warehouse

SMOKE_ROWS = "smoke: rows per mart"
SMOKE_COLUMNS = "smoke: columns per mart"


@dataclass
class Mart:
    """A mart as the manifest knows it: its name and the columns of its primary key (the column of
    its `unique` test), which the data diff joins on."""

    name: str
    key: tuple[str, ...] = ()
    # Built incrementally: merged into a copy of the published version's (publish/incremental.py).
    incremental: bool = False


def _field(node: Any, name: str) -> Any:
    return node.get(name) if isinstance(node, dict) else getattr(node, name, None)


def marts_of(manifest: Any, settings: Settings) -> list[Mart]:
    """The models dbt builds into the candidate schema, each with the key of its `unique` test;
    from dbt's Manifest (in process) or manifest.json's document (what the DAG renders from)."""
    nodes = manifest["nodes"] if isinstance(manifest, dict) else manifest.nodes
    keys: dict[str, tuple[str, ...]] = {}
    for node in nodes.values():
        metadata, attached, column = (_field(node, name) for name in ("test_metadata", "attached_node", "column_name"))
        if metadata is not None and _field(metadata, "name") == "unique" and attached and column:
            keys.setdefault(attached, (column,))
    marts = []
    for unique_id, node in nodes.items():
        materialized = _field(_field(node, "config"), "materialized")
        if (
            _field(node, "resource_type") == "model"
            and _field(node, "schema") == settings.candidate_schema
            and materialized != "ephemeral"
        ):
            name = _field(node, "alias") or _field(node, "name")
            marts.append(Mart(name, keys.get(unique_id, ()), materialized == "incremental"))
    return sorted(marts, key=lambda mart: mart.name)


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
    settings: Settings,
    warehouse: Warehouse,
    marts: Sequence[Mart],
    candidate_rows: dict[str, int],
    allow_breaking: bool = False,
    copied: frozenset[str] = frozenset(),
) -> tuple[list[Finding], list[MartDiff]]:
    """The candidate against the published version. Nothing published yet: nothing to compare.
    `copied`: the marts the run copied from the published version instead of building them (a slim
    build): the same rows by construction, so their diff is zero without reading them again."""
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
            findings.append(
                Finding(
                    "error",
                    SMOKE_ROWS,
                    f"{mart} has {after:,} rows against {before:,} published ({change:+.0f}%, the limit is "
                    f"±{limit:g}% in environments.yml: max_row_change_percent)",
                )
            )
    candidate_columns = warehouse.columns(settings.candidate_schema, names)
    published_columns = warehouse.columns(settings.consumer_schema, names, published=True)
    changes = _column_changes(candidate_columns, published_columns)
    if changes:
        level = "warn" if allow_breaking else "error"
        allowed = "allowed by --allow-breaking" if allow_breaking else "run with --allow-breaking if it is meant"
        findings.append(Finding(level, SMOKE_COLUMNS, f"breaking change: {'; '.join(changes)} ({allowed})"))
    diffs = [
        MartDiff(mart.name, tuple(mart.key), 0, 0, 0)
        if mart.name in copied
        else warehouse.data_diff(
            settings.candidate_schema,
            mart.name,
            mart.key,
            _shared(candidate_columns[mart.name], published_columns.get(mart.name, [])),
        )
        for mart in marts
        if mart.key and mart.name in published_rows and mart.name in candidate_columns
    ]
    return findings, diffs


def _shared(candidate: list[Column], published: list[Column]) -> list[str]:
    """The columns a diff compares: those on both sides with one type (an added, dropped or retyped
    column is the column check's to report)."""
    before = {c.name.lower(): c.type for c in published}
    return [c.name for c in candidate if before.get(c.name.lower()) == c.type]


def anomaly_checks(
    settings: Settings,
    warehouse: Warehouse,
    history: HistoryStore,
    run_id: str,
    started_at: datetime,
    candidate_rows: dict[str, int],
    freshness: Sequence[NodeRecord],
) -> tuple[list[NodeRecord], list[Finding]]:
    """Each check as a node of kind `anomaly`, and each anomaly as a finding at the environment's
    level. The sources are counted here, as the run's record counts them (none when the target reads
    them in place); the marts are the candidate's rows, named as consumers know them."""
    sources = [] if settings.source_database else [table.qualified_name for table in SOURCE_TABLES]
    counts = warehouse.row_counts(sources) if sources else {}
    counts.update({f"{settings.consumer_schema}.{mart}": rows for mart, rows in candidate_rows.items()})
    config = settings.anomalies
    training = training_history(history, settings.target, run_id, started_at, config)
    checks = detect(config, training, started_at, counts, freshness)
    return [check.node(config.level) for check in checks], findings_of(checks, config.level)


def diff_records(diffs: Sequence[MartDiff]) -> list[DiffRecord]:
    return [DiffRecord(d.mart, list(d.key), d.added, d.removed, d.changed, dict(d.changed_columns)) for d in diffs]


def diff_summary(diffs: Sequence[DiffRecord]) -> str:
    if not diffs:
        return ""
    return "; ".join(f"{d.mart} +{d.added:,} -{d.removed:,} ~{d.changed:,}" for d in diffs)
