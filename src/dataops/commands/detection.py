"""The fault detection matrix: for every fault class, generate data with it, run the real pipeline
and record which checks caught it and whether the run failed or warned as intended."""

from __future__ import annotations

import dataclasses
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

    @property
    def caught_by(self) -> tuple[str, ...]:
        """The expected checks that fired."""
        return tuple(check for check in self.expected_checks if check in self.fired)

    @property
    def as_intended(self) -> bool:
        caught = bool(self.caught_by) or not self.expected_checks
        return caught and self.outcome == self.expected_outcome


def _run_one(settings: Settings, data_dir: Path) -> tuple[tuple[str, ...], Outcome, str]:
    try:
        # Its own history too: a matrix of injected faults must not become the target's latest runs.
        history = HistoryStore(f"sqlite:///{settings.warehouse_dir / DEFAULT_FILE}")
        summary = Pipeline(settings, history=history).run(RunOptions(data_dir=data_dir, docs=False))
    except SourceDataError as error:
        return (LOAD_VALIDATION,), "fail", str(error)
    fired = tuple(sorted({finding.check for finding in summary.findings}))
    outcome: Outcome = "fail" if summary.exit_code else ("warn" if summary.findings else "pass")
    failures = [f"{f.check}: {f.message}" for f in summary.failures]
    return fired, outcome, "; ".join(failures)[:300]


def run_matrix(
    settings: Settings,
    scale: float = 0.1,
    seed: int = 7,
    faults: list[str] | None = None,
    on_row: Callable[[MatrixRow], None] | None = None,
) -> list[MatrixRow]:
    """Clean data first (it must pass), then every fault, each on a warehouse of its own."""
    as_of = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    clean = generate_tables(scale, seed=seed, as_of=as_of)
    cases: list[tuple[str, tuple[str, ...], Outcome, list[str]]] = [(CLEAN, (), "pass", [])]
    cases += [(f.name, f.caught_by, f.outcome, [f.name]) for f in FAULTS.values() if not faults or f.name in faults]
    rows = []
    with tempfile.TemporaryDirectory(prefix="dataops-detection-") as workspace:
        for name, expected, expected_outcome, injected in cases:
            folder = Path(workspace) / (injected[0] if injected else "clean")
            write_tables(inject(clean, injected, seed=seed), folder / "data", "parquet")
            isolated = dataclasses.replace(settings, warehouse_dir=folder / "warehouse")
            fired, outcome, detail = _run_one(isolated, folder / "data")
            row = MatrixRow(name, expected, expected_outcome, fired, outcome, detail)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def detection_rate(rows: list[MatrixRow]) -> float:
    """The share of fault classes caught by their named check with the intended run outcome."""
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
        "with the intended outcome)"
        + (f"; clean data: {clean.outcome}." if clean else "."),
        "",
        "| fault | caught by (named check) | also fired | run | intended | ok |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        others = [check for check in row.fired if check not in row.caught_by]
        lines.append(
            f"| {row.fault} | {'<br>'.join(row.caught_by) or '-'} | {'<br>'.join(others) or '-'} | "
            f"{row.outcome} | {row.expected_outcome} | {'yes' if row.as_intended else '**NO**'} |"
        )
    return "\n".join(lines) + "\n"
