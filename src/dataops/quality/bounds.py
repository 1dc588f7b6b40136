"""Row-count bounds that follow the size of the business, not the size of the sample.

A suite's row-count expectation names its bounds `{"$PARAMETER": "min_rows"}` and
`{"$PARAMETER": "max_rows"}`, and its `meta` says where they come from: an environment variable
(`meta.variable`, e.g. `DATAOPS_CUSTOMER_ROWS=1000..5000000`) and a default (`meta.default`). Each
run resolves them, first that applies:

1. the variable, when it is set: `MIN..MAX`, either side may be left out (`1000..`, `..5000000`);
2. the run history: a tenth of the fewest to ten times the most rows the mart had in the target's
   training runs (the runs the anomaly detection learns volumes from, dataops.ops.anomalies). An
   order of magnitude either way is no change of a business from one run to the next but a broken
   load or a fan-out, at any scale; smaller moves are left to the checks that judge them against
   the same history, and name them as such: the publish stage's smoke check (rows within
   `max_row_change_percent` of the published version) and the volume anomalies (z-scores);
3. the default, the guide's bound where it fits every scale the generator makes, else none: with
   no history and no variable there is nothing that says how big this business is.

The suite then goes to Great Expectations with numbers in place of the parameters, and the
expectation's `meta.bounds_from` says which of the three it was, so the run's record and the Data
Docs show the bounds as they were checked.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from dataops.core.config import Settings
from dataops.core.errors import DataOpsError
from dataops.history.store import DEFAULT_FILE, HISTORY_URL_ENV_VAR, HistoryStore
from dataops.ops.anomalies import training_history
from dataops.quality.config import MAX_ROWS, MIN_ROWS, ROW_PARAMETERS, SuiteDocument

# How far the history's rows may be left behind, either way: an order of magnitude (see above).
LEARNT_FACTOR = 10
_RANGE = re.compile(r"^\s*(\d[\d_,]*)?\s*\.\.\s*(\d[\d_,]*)?\s*$")


@dataclass(frozen=True)
class RowBounds:
    """A mart's least and most rows (None: unbounded on that side), and where they came from."""

    min_rows: int | None
    max_rows: int | None
    source: str

    def describe(self) -> str:
        low = f"{self.min_rows:,}" if self.min_rows is not None else "any"
        high = f"{self.max_rows:,}" if self.max_rows is not None else "any"
        return f"{low} to {high} rows, from {self.source}"


def parse_range(variable: str, text: str) -> RowBounds:
    """`MIN..MAX` rows from an environment variable; anything else is one line naming it."""
    match = _RANGE.match(text)
    low, high = (_whole(part) for part in match.groups()) if match else (None, None)
    if (low is None and high is None) or (low is not None and high is not None and low > high):
        raise DataOpsError(
            f"{variable}={text!r} is no row range: give MIN..MAX rows, either may be left out "
            f"(e.g. {variable}=1000..5000000)"
        )
    return RowBounds(low, high, variable)


def _whole(digits: str | None) -> int | None:
    return int(digits.replace("_", "").replace(",", "")) if digits else None


def row_count_expectations(suite: SuiteDocument) -> list[tuple[int, dict[str, Any]]]:
    """The suite's expectations whose bounds are the run's row parameters, by index."""
    return [
        (index, expectation)
        for index, expectation in enumerate(suite.expectations)
        if any(
            isinstance(bound, dict) and bound.get("$PARAMETER") in ROW_PARAMETERS
            for bound in expectation.get("kwargs", {}).values()
        )
    ]


def _default(expectation: dict[str, Any]) -> RowBounds:
    default = expectation["meta"].get("default", {})
    return RowBounds(default.get("min_value"), default.get("max_value"), "the suite's default")


def _learnt(rows: list[float]) -> RowBounds:
    runs = len(rows)
    return RowBounds(
        math.floor(min(rows) / LEARNT_FACTOR),
        math.ceil(max(rows) * LEARNT_FACTOR),
        f"the history ({runs} training run{'s' if runs != 1 else ''}, within {LEARNT_FACTOR}x)",
    )


def history_for(settings: Settings) -> HistoryStore:
    """The run history of `settings`: DATAOPS_HISTORY_URL, else the SQLite file beside its
    warehouse (a run on a warehouse folder of its own, like the detection matrix's, has its own)."""
    return HistoryStore(os.environ.get(HISTORY_URL_ENV_VAR) or f"sqlite:///{settings.warehouse_dir / DEFAULT_FILE}")


def resolve_row_bounds(
    settings: Settings | None,
    suites: dict[str, SuiteDocument],
    run_id: str = "",
    history: HistoryStore | None = None,
) -> dict[str, SuiteDocument]:
    """The suites with their row parameters replaced by the bounds of this run (see the module's
    docstring). No settings: the defaults only (the worker's warm-up on empty tables)."""
    wanted = {name: row_count_expectations(suite) for name, suite in suites.items()}
    if not any(wanted.values()):
        return suites
    learnt: dict[str, list[float]] = {}
    if settings is not None:
        learnt = training_history(
            history or history_for(settings), settings.target, run_id, datetime.now(UTC), settings.anomalies
        ).rows
    resolved = {}
    for name, suite in suites.items():
        expectations = suite.expectations
        for index, expectation in wanted[name]:
            meta = expectation["meta"]
            variable = os.environ.get(meta["variable"], "").strip()
            rows = learnt.get(f"{settings.consumer_schema}.{suite.model}") if settings is not None else None
            if variable:
                bounds = parse_range(meta["variable"], variable)
            elif settings is not None and rows:
                bounds = _learnt(rows)
            else:
                bounds = _default(expectation)
            expectations[index] = _with_bounds(expectation, bounds)
        resolved[name] = replace(suite, document={**suite.document, "expectations": expectations})
    return resolved


def _with_bounds(expectation: dict[str, Any], bounds: RowBounds) -> dict[str, Any]:
    values = {MIN_ROWS: bounds.min_rows, MAX_ROWS: bounds.max_rows}
    kwargs = {
        key: values[value["$PARAMETER"]] if isinstance(value, dict) and value.get("$PARAMETER") in values else value
        for key, value in expectation["kwargs"].items()
    }
    return {**expectation, "kwargs": kwargs, "meta": {**expectation["meta"], "bounds_from": bounds.describe()}}
