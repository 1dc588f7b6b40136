"""The gx/ folder, read and checked before Great Expectations sees it.

GX takes a malformed suite badly: it drops an expectation it cannot build with only a log line (a
check silently gone), and a missing key surfaces as a KeyError or a pydantic dump deep inside a
run. Every document is checked here, as plain JSON (no GX import), and any problem is one
DataOpsError line that names the file and the key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataops.core.config import PROJECT_ROOT
from dataops.core.errors import DataOpsError

GX_DIR = PROJECT_ROOT / "gx"
DEFAULT_CHECKPOINT = "daily_quality_checkpoint"
SEVERITIES = ("critical", "warning", "info")
RESULT_FORMATS = ("BOOLEAN_ONLY", "BASIC", "SUMMARY", "COMPLETE")
# The expectation parameters every run supplies (`{"$PARAMETER": "today"}` in a suite).
RUN_PARAMETERS = ("today",)
# A row-count expectation's bounds, resolved per run from its meta.variable, the run history or its
# meta.default (dataops.quality.bounds): they follow the size of the business.
MIN_ROWS, MAX_ROWS = "min_rows", "max_rows"
ROW_PARAMETERS = (MIN_ROWS, MAX_ROWS)
_VARIABLE = re.compile(r"^DATAOPS_[A-Z0-9_]+$")
# meta.model goes into `select * from <schema>.<model>`: a plain name, nothing else.
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def shown(path: Path) -> str:
    """A path as the user knows it: relative to the project when it is inside it."""
    try:
        return str(path.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; anything else is one line naming the file (and the line and column)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise DataOpsError(f"cannot read {shown(path)}: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise DataOpsError(f"{shown(path)} is not UTF-8 text (byte {error.start})") from error
    except json.JSONDecodeError as error:
        raise DataOpsError(
            f"{shown(path)}: invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from error
    if not isinstance(document, dict):
        raise DataOpsError(f"{shown(path)}: must hold a JSON object, not {_kind(document)}")
    return document


def _required(path: Path, document: dict[str, Any], key: str, kind: type, where: str = "") -> Any:
    """document[key], which must be there and of `kind`."""
    name = f"{where}{key}"
    if key not in document:
        raise DataOpsError(f"{shown(path)}: missing key '{name}'")
    value = document[key]
    if not isinstance(value, kind) or (kind is str and not value.strip()):
        expected = {str: "a non-empty string", list: "a list", dict: "an object"}[kind]
        raise DataOpsError(f"{shown(path)}: key '{name}' must be {expected}, not {_kind(value)}")
    return value


def parameters_used(value: Any) -> Iterator[str]:
    """The `$PARAMETER` names anywhere in an expectation's arguments."""
    if isinstance(value, dict):
        if "$PARAMETER" in value:
            yield str(value["$PARAMETER"])
        for item in value.values():
            yield from parameters_used(item)
    elif isinstance(value, list):
        for item in value:
            yield from parameters_used(item)


@dataclass(frozen=True)
class SuiteDocument:
    """A suite file of gx/expectations, checked: its document goes to GX as it is."""

    path: Path
    document: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.document["name"])

    @property
    def model(self) -> str:
        return str(self.document["meta"]["model"])

    @property
    def expectations(self) -> list[dict[str, Any]]:
        return list(self.document["expectations"])

    @classmethod
    def read(cls, path: Path) -> SuiteDocument:
        document = read_json(path)
        _required(path, document, "name", str)
        meta = _required(path, document, "meta", dict)
        model = _required(path, meta, "model", str, where="meta.")
        if not _TABLE_NAME.match(model):
            raise DataOpsError(f"{shown(path)}: meta.model '{model}' must be the plain name of a mart")
        expectations = _required(path, document, "expectations", list)
        if not expectations:
            raise DataOpsError(f"{shown(path)}: key 'expectations' is empty: a suite must check something")
        for index, expectation in enumerate(expectations):
            _check_expectation(path, index, expectation)
        return cls(path, document)


def _check_expectation(path: Path, index: int, expectation: Any) -> None:
    where = f"expectations[{index}]"
    if not isinstance(expectation, dict):
        raise DataOpsError(f"{shown(path)}: {where} must be an object, not {_kind(expectation)}")
    _required(path, expectation, "type", str, where=f"{where}.")
    kwargs = expectation.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise DataOpsError(f"{shown(path)}: key '{where}.kwargs' must be an object, not {_kind(kwargs)}")
    severity = expectation.get("severity", "critical")
    if severity not in SEVERITIES:
        # GX would drop the expectation with a log line: a check silently gone.
        raise DataOpsError(f"{shown(path)}: key '{where}.severity' is {severity!r}: choose {', '.join(SEVERITIES)}")
    used = set(parameters_used(kwargs))
    unknown = sorted(used - set(RUN_PARAMETERS) - set(ROW_PARAMETERS))
    if unknown:
        raise DataOpsError(
            f"{shown(path)}: {where}.kwargs uses $PARAMETER {', '.join(unknown)}; a run supplies only "
            + ", ".join((*RUN_PARAMETERS, *ROW_PARAMETERS))
        )
    if used & set(ROW_PARAMETERS):
        _check_row_bounds(path, where, expectation)


def _check_row_bounds(path: Path, where: str, expectation: dict[str, Any]) -> None:
    """Row parameters need the variable that sets them and a default (either side may be null)."""
    meta = _required(path, expectation, "meta", dict, where=f"{where}.")
    variable = _required(path, meta, "variable", str, where=f"{where}.meta.")
    if not _VARIABLE.match(variable):
        raise DataOpsError(f"{shown(path)}: {where}.meta.variable '{variable}' must be a DATAOPS_ environment variable")
    default = _required(path, meta, "default", dict, where=f"{where}.meta.")
    unknown = sorted(set(default) - {"min_value", "max_value"})
    if unknown:
        raise DataOpsError(f"{shown(path)}: {where}.meta.default.{unknown[0]} is unknown: give min_value and max_value")
    for key in ("min_value", "max_value"):
        value = default.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise DataOpsError(
                f"{shown(path)}: {where}.meta.default.{key} must be a whole number of rows or null, not {value!r}"
            )
    if default.get("min_value") is None and default.get("max_value") is None:
        raise DataOpsError(f"{shown(path)}: {where}.meta.default must bound the rows on at least one side")


def suite_documents(gx_dir: Path = GX_DIR) -> dict[str, SuiteDocument]:
    """Every suite in gx/expectations, by name."""
    suites: dict[str, SuiteDocument] = {}
    for path in sorted((gx_dir / "expectations").glob("*.json")):
        suite = SuiteDocument.read(path)
        if suite.name in suites:
            raise DataOpsError(f"{shown(path)}: suite name '{suite.name}' is taken by {shown(suites[suite.name].path)}")
        suites[suite.name] = suite
    return suites


@dataclass(frozen=True)
class CheckpointDocument:
    """A checkpoint file of gx/checkpoints, checked against the suites it names."""

    path: Path
    name: str
    suite_names: tuple[str, ...]
    actions: tuple[dict[str, Any], ...]
    result_format: str

    @property
    def wants_data_docs(self) -> bool:
        return any(action["type"] == "update_data_docs" for action in self.actions)

    @classmethod
    def read(cls, path: Path, suites: dict[str, SuiteDocument]) -> CheckpointDocument:
        document = read_json(path)
        name = _required(path, document, "name", str)
        definitions = _required(path, document, "validation_definitions", list)
        if not definitions:
            raise DataOpsError(f"{shown(path)}: key 'validation_definitions' is empty: name a suite to run")
        names = []
        for index, definition in enumerate(definitions):
            where = f"validation_definitions[{index}]"
            if not isinstance(definition, dict):
                raise DataOpsError(f"{shown(path)}: {where} must be an object, not {_kind(definition)}")
            suite = _required(path, definition, "name", str, where=f"{where}.")
            if suite not in suites:
                raise DataOpsError(
                    f"{shown(path)}: {where}.name '{suite}' is no suite in gx/expectations "
                    f"(there are {', '.join(suites) or 'none'})"
                )
            names.append(suite)
        actions = document.get("actions", [])
        if not isinstance(actions, list):
            raise DataOpsError(f"{shown(path)}: key 'actions' must be a list, not {_kind(actions)}")
        for index, action in enumerate(actions):
            if not isinstance(action, dict):
                raise DataOpsError(f"{shown(path)}: actions[{index}] must be an object, not {_kind(action)}")
            _required(path, action, "type", str, where=f"actions[{index}].")
        result_format = document.get("result_format", "SUMMARY")
        if result_format not in RESULT_FORMATS:
            raise DataOpsError(
                f"{shown(path)}: key 'result_format' is {result_format!r}: choose {', '.join(RESULT_FORMATS)}"
            )
        return cls(path, name, tuple(names), tuple(actions), result_format)

    def select(self, suites: dict[str, SuiteDocument], wanted: list[str] | None) -> dict[str, SuiteDocument]:
        """The checkpoint's suites, or only the `wanted` ones among them, in the checkpoint's order."""
        unknown = sorted(set(wanted or []) - set(self.suite_names))
        if unknown:
            raise DataOpsError(f"unknown suite {', '.join(unknown)}: choose from {', '.join(self.suite_names)}")
        return {name: suites[name] for name in self.suite_names if not wanted or name in wanted}


def load(gx_dir: Path = GX_DIR) -> tuple[dict[str, SuiteDocument], CheckpointDocument]:
    """Every suite, and the checkpoint that runs them."""
    suites = suite_documents(gx_dir)
    return suites, CheckpointDocument.read(gx_dir / "checkpoints" / f"{DEFAULT_CHECKPOINT}.json", suites)
