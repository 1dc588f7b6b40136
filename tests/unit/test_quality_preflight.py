"""What `dataops quality` says before Great Expectations starts: a malformed gx/ document, or marts
that are not built, is one line that names the file and the key, or the missing marts."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dataops.core.config import PROJECT_ROOT, Settings
from dataops.core.errors import DataOpsError
from dataops.quality.suites import run_quality

Document = dict[str, Any]
CUSTOMER = "expectations/customer_quality_suite.json"
CHECKPOINT = "checkpoints/daily_quality_checkpoint.json"


@pytest.fixture
def gx_dir(tmp_path: Path) -> Path:
    """A copy of the project's gx/ folder, to break one document at a time."""
    return Path(shutil.copytree(PROJECT_ROOT / "gx", tmp_path / "gx"))


def _edit(gx_dir: Path, relative: str, change: Callable[[Document], object]) -> None:
    path = gx_dir / relative
    document = json.loads(path.read_text(encoding="utf-8"))
    change(document)
    path.write_text(json.dumps(document), encoding="utf-8")


def _one_line_error(settings: Settings, gx_dir: Path) -> str:
    with pytest.raises(DataOpsError) as raised:
        run_quality(settings, gx_dir=gx_dir)
    message = str(raised.value)
    assert "\n" not in message
    return message


BROKEN_DOCUMENTS: list[tuple[str, str, Callable[[Document], object], str]] = [
    ("suite without a name", CUSTOMER, lambda d: d.pop("name"), "customer_quality_suite.json: missing key 'name'"),
    (
        "suite without meta.model",
        CUSTOMER,
        lambda d: d["meta"].pop("model"),
        "customer_quality_suite.json: missing key 'meta.model'",
    ),
    (
        "suite whose meta is a string",
        CUSTOMER,
        lambda d: d.update(meta="customer_analytics"),
        "customer_quality_suite.json: key 'meta' must be an object, not a string",
    ),
    (
        "a model that is not a table name",
        CUSTOMER,
        lambda d: d["meta"].update(model="x; drop table y"),
        "customer_quality_suite.json: meta.model 'x; drop table y' must be the plain name of a mart",
    ),
    (
        "expectations that are not a list",
        CUSTOMER,
        lambda d: d.update(expectations={"type": "x"}),
        "customer_quality_suite.json: key 'expectations' must be a list, not an object",
    ),
    (
        "no expectations at all",
        CUSTOMER,
        lambda d: d.update(expectations=[]),
        "customer_quality_suite.json: key 'expectations' is empty",
    ),
    (
        "an expectation without type",
        CUSTOMER,
        lambda d: d["expectations"][1].pop("type"),
        "customer_quality_suite.json: missing key 'expectations[1].type'",
    ),
    (
        "kwargs that are a list",
        CUSTOMER,
        lambda d: d["expectations"][2].update(kwargs=["customer_id"]),
        "customer_quality_suite.json: key 'expectations[2].kwargs' must be an object, not a list",
    ),
    # GX itself would drop this expectation with a log line and run the rest: a check silently gone.
    (
        "an unknown severity",
        CUSTOMER,
        lambda d: d["expectations"][3].update(severity="warn"),
        "customer_quality_suite.json: key 'expectations[3].severity' is 'warn': choose critical, warning, info",
    ),
    (
        "a parameter no run supplies",
        "expectations/order_quality_suite.json",
        lambda d: d["expectations"][4]["kwargs"].update(max_value={"$PARAMETER": "yesterday"}),
        "order_quality_suite.json: expectations[4].kwargs uses $PARAMETER yesterday; a run supplies only today, "
        "min_rows, max_rows",
    ),
    (
        "row bounds without the variable that sets them",
        CUSTOMER,
        lambda d: d["expectations"][0]["meta"].pop("variable"),
        "customer_quality_suite.json: missing key 'expectations[0].meta.variable'",
    ),
    (
        "row bounds set by a variable that is not ours",
        CUSTOMER,
        lambda d: d["expectations"][0]["meta"].update(variable="CUSTOMER_ROWS"),
        "customer_quality_suite.json: expectations[0].meta.variable 'CUSTOMER_ROWS' must be a DATAOPS_ environment "
        "variable",
    ),
    (
        "row bounds without a default",
        CUSTOMER,
        lambda d: d["expectations"][0]["meta"].pop("default"),
        "customer_quality_suite.json: missing key 'expectations[0].meta.default'",
    ),
    (
        "a default that is no number of rows",
        CUSTOMER,
        lambda d: d["expectations"][0]["meta"]["default"].update(min_value="1000"),
        "customer_quality_suite.json: expectations[0].meta.default.min_value must be a whole number of rows or null, "
        "not '1000'",
    ),
    (
        "a default that bounds nothing",
        CUSTOMER,
        lambda d: d["expectations"][0]["meta"].update(default={"min_value": None}),
        "customer_quality_suite.json: expectations[0].meta.default must bound the rows on at least one side",
    ),
    (
        "checkpoint without validation_definitions",
        CHECKPOINT,
        lambda d: d.pop("validation_definitions"),
        "daily_quality_checkpoint.json: missing key 'validation_definitions'",
    ),
    (
        "checkpoint without a name",
        CHECKPOINT,
        lambda d: d.pop("name"),
        "daily_quality_checkpoint.json: missing key 'name'",
    ),
    (
        "a validation definition without name",
        CHECKPOINT,
        lambda d: d["validation_definitions"][1].clear(),
        "daily_quality_checkpoint.json: missing key 'validation_definitions[1].name'",
    ),
    (
        "a checkpoint naming an unknown suite",
        CHECKPOINT,
        lambda d: d["validation_definitions"].append({"name": "orders_suite"}),
        "daily_quality_checkpoint.json: validation_definitions[2].name 'orders_suite' is no suite in "
        "gx/expectations (there are customer_quality_suite, order_quality_suite)",
    ),
    (
        "an action without type",
        CHECKPOINT,
        lambda d: d["actions"][0].pop("type"),
        "daily_quality_checkpoint.json: missing key 'actions[0].type'",
    ),
    (
        "an unknown result format",
        CHECKPOINT,
        lambda d: d.update(result_format="FULL"),
        "daily_quality_checkpoint.json: key 'result_format' is 'FULL': choose BOOLEAN_ONLY, BASIC, SUMMARY, COMPLETE",
    ),
]


@pytest.mark.parametrize(
    ("relative", "change", "expected"),
    [case[1:] for case in BROKEN_DOCUMENTS],
    ids=[case[0] for case in BROKEN_DOCUMENTS],
)
def test_a_malformed_document_is_one_line_naming_the_file_and_the_key(
    settings: Settings, gx_dir: Path, relative: str, change: Callable[[Document], object], expected: str
) -> None:
    _edit(gx_dir, relative, change)
    assert expected in _one_line_error(settings, gx_dir)


def test_invalid_json_names_the_line_and_column(settings: Settings, gx_dir: Path) -> None:
    (gx_dir / CHECKPOINT).write_text('{\n  "name": "daily_quality_checkpoint",\n  "actions": [}\n', encoding="utf-8")
    message = _one_line_error(settings, gx_dir)
    assert message.startswith(f"{gx_dir / CHECKPOINT}: invalid JSON at line 3, column 15: ")


def test_a_document_that_is_not_an_object_or_not_there_is_named(settings: Settings, gx_dir: Path) -> None:
    (gx_dir / CUSTOMER).write_text("[]", encoding="utf-8")
    assert _one_line_error(settings, gx_dir) == f"{gx_dir / CUSTOMER}: must hold a JSON object, not a list"
    (gx_dir / CUSTOMER).unlink()
    (gx_dir / CHECKPOINT).unlink()
    assert _one_line_error(settings, gx_dir) == f"cannot read {gx_dir / CHECKPOINT}: No such file or directory"


def test_two_files_may_not_define_the_same_suite(settings: Settings, gx_dir: Path) -> None:
    shutil.copy(gx_dir / CUSTOMER, gx_dir / "expectations" / "z_copy.json")
    assert _one_line_error(settings, gx_dir) == (
        f"{gx_dir / 'expectations' / 'z_copy.json'}: suite name 'customer_quality_suite' is taken by "
        f"{gx_dir / CUSTOMER}"
    )


def test_quality_before_any_mart_is_built_says_so_once(settings: Settings) -> None:
    # No warehouse file at all: a fresh checkout.
    assert _one_line_error(settings, PROJECT_ROOT / "gx") == (
        "the marts are not built yet in dev (missing marts__candidate.customer_analytics, "
        "marts__candidate.fct_orders): "
        "run `dataops run` first"
    )
    # One mart there (as a view), the other not: only that one is named.
    settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.duckdb_candidate_path)) as connection:  # where dbt builds the marts
        connection.execute("create schema marts__candidate")
        connection.execute("create view marts__candidate.Customer_Analytics as select 1 as customer_id")
    assert _one_line_error(settings, PROJECT_ROOT / "gx") == (
        "the marts are not built yet in dev (missing marts__candidate.fct_orders): run `dataops run` first"
    )
