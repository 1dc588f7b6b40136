"""The fault detection matrix: for every fault class, generate data with it, run the real pipeline
and record which checks caught it, whether the run failed or warned as intended, and whether it
published. Clean data runs first and publishes v1; each fault then runs on a copy of that
warehouse, so a run that fails must leave v1 the published version (write-audit-publish)."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from dataops.commands.run import Pipeline, RunOptions
from dataops.core.config import Settings
from dataops.core.errors import SourceDataError
from dataops.history.store import DEFAULT_FILE, HistoryStore
from dataops.sources.faults import FAULTS, inject
from dataops.sources.generate import generate_tables, write_tables
from dataops.warehouse import connect

Outcome = Literal["pass", "warn", "fail"]
LOAD_VALIDATION = "load validation"
CLEAN = "(clean data)"


@dataclass(frozen=True)
class MatrixRow:
    fault: str
    expected_checks: tuple[str, ...]
    expected_outcome: Outcome
    fired: tuple[str, ...]
    outcome: Outcome
    detail: str = ""
    # What the run's record says it did to the published version ("published", "not published"),
    # and the version published before the run and after it.
    publish: str = ""
    published_before: int | None = None
    published_after: int | None = None

    @property
    def caught_by(self) -> tuple[str, ...]:
        """The expected checks that fired."""
        return tuple(check for check in self.expected_checks if check in self.fired)

    @property
    def published(self) -> bool:
        return self.publish == "published" and self.published_after not in (None, self.published_before)

    @property
    def publish_as_intended(self) -> bool:
        """A run that fails publishes nothing: consumers keep the version they had. One that
        passes, or only warns, publishes."""
        if self.expected_outcome == "fail":
            return self.publish == "not published" and self.published_after == self.published_before
        return self.published

    @property
    def publish_text(self) -> str:
        if self.published:
            return f"v{self.published_after}"
        kept = f"v{self.published_before} kept" if self.published_before is not None else "nothing published yet"
        return (
            f"not published ({kept})"
            if self.published_after == self.published_before
            else (f"{self.publish or 'no record'}: v{self.published_before} -> v{self.published_after}")
        )

    @property
    def as_intended(self) -> bool:
        caught = bool(self.caught_by) or not self.expected_checks
        return caught and self.outcome == self.expected_outcome and self.publish_as_intended


def _published_version(settings: Settings) -> int | None:
    return next((v.number for v in connect(settings).versions() if v.current), None)


def _run_one(
    name: str, expected: tuple[str, ...], expected_outcome: Outcome, settings: Settings, data_dir: Path
) -> MatrixRow:
    before = _published_version(settings)
    # Its own history too: a matrix of injected faults must not become the target's latest runs.
    history = HistoryStore(f"sqlite:///{settings.warehouse_dir / DEFAULT_FILE}")
    try:
        summary = Pipeline(settings, history=history).run(RunOptions(data_dir=data_dir, docs=False))
    except SourceDataError as error:
        fired: tuple[str, ...] = (LOAD_VALIDATION,)
        outcome: Outcome = "fail"
        detail = str(error)
    else:
        fired = tuple(sorted({finding.check for finding in summary.findings}))
        outcome = "fail" if summary.exit_code else ("warn" if summary.findings else "pass")
        detail = "; ".join(f"{f.check}: {f.message}" for f in summary.failures)[:300]
    record = history.latest(settings.target)
    publish = record.publish.status if record is not None and record.publish is not None else ""
    return MatrixRow(
        name, expected, expected_outcome, fired, outcome, detail, publish, before, _published_version(settings)
    )


def run_matrix(
    settings: Settings,
    scale: float = 0.1,
    seed: int = 7,
    faults: list[str] | None = None,
    on_row: Callable[[MatrixRow], None] | None = None,
    after_each: Callable[[MatrixRow, Settings], None] | None = None,
) -> list[MatrixRow]:
    """Clean data first (it must pass, and publishes v1), then every fault, each on a copy of the
    clean run's warehouse. `after_each` is given each case's row and the settings of the warehouse
    its run left, before the next case replaces it: to look at what was published."""
    as_of = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    clean = generate_tables(scale, seed=seed, as_of=as_of)
    cases: list[tuple[str, tuple[str, ...], Outcome, list[str]]] = [(CLEAN, (), "pass", [])]
    cases += [(f.name, f.caught_by, f.outcome, [f.name]) for f in FAULTS.values() if not faults or f.name in faults]
    rows = []
    with tempfile.TemporaryDirectory(prefix="dataops-detection-") as workspace:
        # Every case runs in one folder, the clean run's warehouse restored there first: dbt's
        # partial parse holds only while its profile names the same file, and a full parse per
        # case would cost as much as the build. The published link is relative: copied as a link,
        # it points at the copy's version.
        warehouse, clean_run = Path(workspace) / "warehouse", Path(workspace) / "clean"
        isolated = dataclasses.replace(settings, warehouse_dir=warehouse)
        for name, expected, expected_outcome, injected in cases:
            data = Path(workspace) / "data" / (injected[0] if injected else "clean")
            write_tables(inject(clean, injected, seed=seed), data, "parquet")
            if injected and clean_run.is_dir():
                shutil.rmtree(warehouse, ignore_errors=True)
                shutil.copytree(clean_run, warehouse, symlinks=True)
            row = _run_one(name, expected, expected_outcome, isolated, data)
            if after_each is not None:
                after_each(row, isolated)
            if not injected:
                shutil.copytree(warehouse, clean_run, symlinks=True)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def detection_rate(rows: list[MatrixRow]) -> float:
    """The share of fault classes caught by their named check with the intended run outcome (and,
    with it, published or not as intended)."""
    faults = [row for row in rows if row.fault != CLEAN]
    return sum(row.as_intended for row in faults) / len(faults) if faults else 0.0


def to_markdown(rows: list[MatrixRow], scale: float, target: str) -> str:
    faults = [row for row in rows if row.fault != CLEAN]
    clean = next((row for row in rows if row.fault == CLEAN), None)
    lines = [
        "# Fault detection matrix",
        "",
        f"Every fault class injected into generated data (scale {scale:g}), the whole pipeline run on it "
        f"(target `{target}`: stale data warns), and what caught it. Regenerate with `make detection-matrix`.",
        "",
        f"**Fault detection rate: {detection_rate(rows):.0%}** "
        f"({sum(r.as_intended for r in faults)} of {len(faults)} fault classes caught by their named check "
        "with the intended outcome, and published only if the run did not fail)"
        + (f"; clean data: {clean.outcome}." if clean else "."),
        "",
        "Clean data runs first and publishes v1; each fault runs on a copy of that warehouse. *published* "
        "is what the run did to the version consumers read: a run that fails must publish nothing (v1 kept), "
        "one that passes or warns publishes v2.",
        "",
        "| fault | caught by (named check) | also fired | run | intended | published | ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        others = [check for check in row.fired if check not in row.caught_by]
        lines.append(
            f"| {row.fault} | {'<br>'.join(row.caught_by) or '-'} | {'<br>'.join(others) or '-'} | "
            f"{row.outcome} | {row.expected_outcome} | {row.publish_text} | {'yes' if row.as_intended else '**NO**'} |"
        )
    return "\n".join(lines) + "\n"
