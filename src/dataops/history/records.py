"""What the history keeps of a run: one versioned record, the same whoever started the run (the CLI,
an Airflow DAG, a quality-only run, a deploy, later a publish). Plain data, no heavy imports: the
monitor and the exporter read it without loading dbt.

`RunRecord.to_dict()` is the stable JSON shape of `dataops history --format json`: fields are only
ever added within a `RECORD_FORMAT`; a change that renames or removes one gets a new format."""

from __future__ import annotations

import math
import uuid
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import UTC, date, datetime
from typing import Any, Literal

RECORD_FORMAT = "dataops.run/v1"
LISTING_FORMAT = "dataops.history/v1"
# The kinds of record that are a run of the pipeline (a deployment runs it too): what the monitor,
# the exporter and the anomaly detection judge. Rollbacks and quality-only runs are not.
PIPELINE_KINDS = ("run", "deploy")
PIPELINE_KINDS_SQL = ", ".join(f"'{kind}'" for kind in PIPELINE_KINDS)

RunStatus = Literal["passed", "warned", "failed", "crashed"]
# What a failing check's sample keeps: enough rows to recognise the fault, values short enough for
# a table in an incident report, and a record that stays small whatever the check returned.
SAMPLE_ROWS = 5
SAMPLED_STATUSES = ("fail", "warn")  # a data test's dbt statuses that found rows (`error`: its SQL did not run)
SAMPLE_VALUE_CHARS = 80
SampleValue = str | int | float | bool | None


def new_run_id() -> str:
    """A run's id: when it started (UTC, sortable) and six random hex digits."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


@dataclass(frozen=True)
class Trigger:
    """Who started the run: `cli`, or `airflow` with the DAG and the DAG run."""

    kind: str
    dag_id: str | None = None
    dag_run_id: str | None = None

    def describe(self) -> str:
        return f"{self.kind} {self.dag_id}/{self.dag_run_id}" if self.dag_id else self.kind


@dataclass(frozen=True)
class StageRecord:
    name: str
    status: str
    seconds: float
    detail: str = ""


@dataclass(frozen=True)
class SampleRecord:
    """A few of the rows a failing check found, captured when it ran: the candidate they came from
    is gone (a version, or rebuilt) by the time an incident is drafted. At most SAMPLE_ROWS rows of
    JSON values, text cut at SAMPLE_VALUE_CHARS; or, with no rows, why none could be read."""

    columns: list[str] = field(default_factory=list)
    rows: list[list[SampleValue]] = field(default_factory=list)
    unavailable: str = ""

    @classmethod
    def of(cls, columns: list[str], rows: list[Any]) -> SampleRecord:
        return cls(
            [_short(str(column)) for column in columns],
            [[_json_value(value) for value in row] for row in rows[:SAMPLE_ROWS]],
        )

    @classmethod
    def missing(cls, reason: str) -> SampleRecord:
        return cls(unavailable=_short(" ".join(reason.split()), limit=300))


def _json_value(value: Any) -> SampleValue:
    """A value as JSON keeps it: numbers and booleans as they are, everything else (a decimal, a
    timestamp, bytes) as its text, cut short. A decimal stays text: as a float it would lose digits."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return _short(bytes(value).hex())
    return _short(str(value))


def _short(text: str, limit: int = SAMPLE_VALUE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class NodeRecord:
    """One node's result: a model, data test, unit test, source freshness check or expectation."""

    unique_id: str
    kind: str
    name: str
    status: str  # as its tool says it (dbt's node status, or pass/warn/fail for an expectation)
    level: str  # what it counts as here: ok, warn, error, skipped
    seconds: float | None = None
    rows_affected: int | None = None
    failures: int | None = None
    message: str = ""
    # A source's freshness check: seconds from its newest row to the check.
    age_seconds: float | None = None
    # An anomaly check (kind `anomaly`): the value's z-score against the target's recent runs.
    score: float | None = None
    # A data test or expectation that failed or warned: some of its failing rows (see SampleRecord).
    sample: SampleRecord | None = None


@dataclass(frozen=True)
class FindingRecord:
    level: str
    check: str
    message: str


@dataclass(frozen=True)
class DiffRecord:
    """The candidate against the published version of one mart, on its key."""

    mart: str
    key: list[str]
    added: int
    removed: int
    changed: int
    changed_columns: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishRecord:
    """What a run (or a rollback) did to the published version: `published` (version is the new
    one), `not published` (reason names the checks that stopped it; the published version stayed
    `previous_version`), or `rolled back` (to version, from previous_version)."""

    status: str
    version: int | None = None
    previous_version: int | None = None
    reason: str = ""
    diffs: list[DiffRecord] = field(default_factory=list)


@dataclass(frozen=True)
class IncidentRecord:
    """An incident, as `dataops incident` keeps it in the run history: its report's file (relative
    to the project), the run that opened it (the first failing run), when it was opened and, once
    `dataops incident resolve` stamped it, resolved."""

    incident_id: str  # the report's name: YYYY-MM-DD-<slug>
    target: str
    title: str
    severity: str  # critical, major, minor
    opened_at: datetime
    run_id: str | None = None
    path: str = ""
    resolved_at: datetime | None = None
    resolution: str = ""

    @property
    def seconds_open(self) -> float | None:
        return (self.resolved_at - self.opened_at).total_seconds() if self.resolved_at else None


@dataclass(frozen=True)
class DeploymentRecord:
    """What a `dataops deploy` deployed (the `deployment` part of a run of kind `deploy`): the code
    (commit, its time, branch, author; `dirty` when the working tree had uncommitted changes), the
    build (`slim`: state:modified+ against the deployment `state_of`, else `full`, with the reason),
    what changed and what was built, and the outcome: `deployed` (published_version is the new
    version), `failed` (nothing published: previous_version stayed) or `unchanged` (nothing to build)."""

    outcome: str
    build: str
    reason: str = ""
    git_commit: str | None = None
    commit_time: str | None = None
    branch: str | None = None
    author: str | None = None
    dirty: bool = False
    state_of: str | None = None
    changed_models: list[str] = field(default_factory=list)
    nodes_built: list[str] = field(default_factory=list)
    tests_passed: int = 0
    tests_failed: int = 0
    seconds: float | None = None
    published_version: int | None = None
    previous_version: int | None = None
    # The folder that keeps this deployment's manifest.json and run_results.json, that manifest's
    # dbt invocation id, and a digest of the dbt vars it was built with: what the next deployment's
    # slim build compares with.
    artifacts: str | None = None
    manifest_id: str | None = None
    vars_digest: str | None = None
    # Whether the deployment's message was sent (or why not).
    notification: str = ""


@dataclass
class RunRecord:
    run_id: str
    target: str
    kind: str
    trigger: Trigger
    started_at: datetime
    finished_at: datetime | None
    status: str
    exit_code: int
    git_commit: str | None = None
    error: str | None = None
    stages: list[StageRecord] = field(default_factory=list)
    nodes: list[NodeRecord] = field(default_factory=list)
    findings: list[FindingRecord] = field(default_factory=list)
    row_counts: dict[str, int] = field(default_factory=dict)  # per source table and mart
    quality_score: float | None = None
    cpu_seconds: float | None = None
    peak_memory_bytes: int | None = None
    publish: PublishRecord | None = None
    deployment: DeploymentRecord | None = None
    # The load of the source tables the run built from (the warehouse's `source_load`).
    source_load: str | None = None

    @property
    def seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def count(self, kind: str, level: str | None = None) -> int:
        return sum(1 for node in self.nodes if node.kind == kind and (level is None or node.level == level))

    @property
    def models_built(self) -> int:
        return sum(1 for n in self.nodes if n.kind in ("model", "seed", "snapshot") and n.level == "ok")

    @property
    def tests_failed(self) -> int:
        return sum(1 for n in self.nodes if n.kind in ("test", "unit_test", "expectation") and n.level == "error")

    def to_dict(self) -> dict[str, Any]:
        document = {"format": RECORD_FORMAT, **asdict(self)}
        document["started_at"] = self.started_at.isoformat()
        document["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        document["seconds"] = self.seconds
        return document

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> RunRecord:
        """A record as `to_dict` wrote it. Fields this dataops does not know are left out: a newer
        dataops may add fields within a format, and an older one must still read its records."""
        if document.get("format") != RECORD_FORMAT:
            raise ValueError(f"a record of format {document.get('format')!r}, not {RECORD_FORMAT}")
        fields = _known(cls, document)
        finished = fields.get("finished_at")
        return cls(
            **{
                **fields,
                "trigger": Trigger(**_known(Trigger, fields["trigger"])),
                "started_at": datetime.fromisoformat(fields["started_at"]),
                "finished_at": datetime.fromisoformat(finished) if finished else None,
                "stages": [StageRecord(**_known(StageRecord, stage)) for stage in fields.get("stages", [])],
                "nodes": [_node(node) for node in fields.get("nodes", [])],
                "findings": [FindingRecord(**_known(FindingRecord, f)) for f in fields.get("findings", [])],
                "publish": _publish(fields.get("publish")),
                "deployment": _deployment(fields.get("deployment")),
            }
        )


def _node(document: dict[str, Any]) -> NodeRecord:
    fields = _known(NodeRecord, document)
    sample = fields.get("sample")
    return NodeRecord(**{**fields, "sample": SampleRecord(**_known(SampleRecord, sample)) if sample else None})


def _publish(document: dict[str, Any] | None) -> PublishRecord | None:
    if document is None:
        return None
    fields = _known(PublishRecord, document)
    diffs = [DiffRecord(**_known(DiffRecord, diff)) for diff in fields.get("diffs", [])]
    return PublishRecord(**{**fields, "diffs": diffs})


def _deployment(document: dict[str, Any] | None) -> DeploymentRecord | None:
    # Records written before deploys existed have no `deployment` key: None, like a run's.
    return DeploymentRecord(**_known(DeploymentRecord, document)) if document is not None else None


def _known(kind: type, document: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclass_fields(kind)}
    return {key: value for key, value in document.items() if key in names}


@dataclass(frozen=True)
class RunSummaryRow:
    """One line of `dataops history`: what listing needs, without reading the whole record."""

    run_id: str
    target: str
    kind: str
    trigger: str
    started_at: str
    seconds: float | None
    status: str
    exit_code: int
    models_built: int
    tests_failed: int
    quality_score: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def listing_document(rows: list[RunSummaryRow]) -> dict[str, Any]:
    """`dataops history --format json`: the runs, newest first, under a format name of their own."""
    return {"format": LISTING_FORMAT, "runs": [row.to_dict() for row in rows]}
