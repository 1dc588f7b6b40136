"""Where things are and how each environment behaves: one place for paths, env vars and targets."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from dataops.core.errors import DataOpsError

PROJECT_ROOT = Path(os.environ.get("DATAOPS_PROJECT_ROOT", Path(__file__).resolve().parents[3]))
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt"
ENVIRONMENTS_FILE = PROJECT_ROOT / "environments.yml"
PROFILES_FILE = DBT_PROJECT_DIR / "profiles.yml"
PROFILE_NAME = "adventureworks"
ENGINES = ("duckdb", "postgres", "sqlserver")
SECRET_FIELDS = frozenset({"password"})
DEFAULT_TARGET = "dev"
DEFAULT_KEEP_VERSIONS = 3
DEFAULT_MAX_ROW_CHANGE_PERCENT = 50.0
# The candidate schema is the consumer schema with this suffix (marts__candidate).
CANDIDATE_SUFFIX = "__candidate"

TARGET_ENV_VAR = "DATAOPS_TARGET"
DUCKDB_PATH_ENV_VAR = "DATAOPS_DUCKDB_PATH"
# Set by dataops for dbt (profiles.yml): where the DuckDB candidate marts are built.
DUCKDB_CANDIDATE_PATH_ENV_VAR = "DATAOPS_DUCKDB_CANDIDATE_PATH"
WAREHOUSE_DIR_ENV_VAR = "DATAOPS_WAREHOUSE_DIR"

Severity = Literal["warn", "error"]

# How often the pipeline DAG runs: its DAG is scheduled by it, and the monitor judges by it how long
# a target may go without a run. An Airflow preset or a cron expression.
PIPELINE_SCHEDULE = os.environ.get("DATAOPS_PIPELINE_SCHEDULE", "@daily")


_ENV_VAR = re.compile(r"""env_var\(\s*['"](\w+)['"]\s*(?:,\s*['"]([^'"]*)['"]\s*)?\)""")
_JINJA = re.compile(r"\{\{(.*?)\}\}", re.S)


@dataclass(frozen=True)
class ProfileVariable:
    """An environment variable a target's profile reads; `default` None means it is required."""

    name: str
    field: str
    default: str | None

    @property
    def required(self) -> bool:
        return self.default is None

    @property
    def secret(self) -> bool:
        return self.field in SECRET_FIELDS


@dataclass(frozen=True)
class AnomalySettings:
    """How the anomaly detection judges a run against the target's recent runs (see
    dataops.ops.anomalies). Sensitivity, training runs and days are Elementary's defaults; the
    small-change thresholds are ours (Elementary has none by default): a change smaller than them
    is never an anomaly, however steady the history, so identical row counts of generated data do
    not make a +2% step infinitely anomalous. `level`: what an anomaly is, `error` stops the publish."""

    level: Severity = "warn"
    sensitivity: float = 3.0
    min_training_runs: int = 7
    training_days: int = 14
    # Whole-table row counts move by a fraction of a percent a day; a tenth of a table is an incident.
    min_spike_percent: float = 10.0
    min_drop_percent: float = 10.0
    # A source's age jitters by the minutes a load and a run take; an hour more is a missed update.
    min_age_increase_hours: float = 1.0


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know about the target it runs against."""

    target: str
    engine: str
    stale_data: Severity
    threads: int
    warehouse_dir: Path
    consumer_schema: str = "marts"
    # A database that already holds the AdventureWorks OLTP tables, read in place instead of loading.
    source_database: str | None = None
    profiles_file: Path = PROFILES_FILE
    # Publishing: versions kept for rollback, how far a mart's rows may move from the published
    # version before the smoke check stops the publish, and the role that may read the marts.
    keep_versions: int = DEFAULT_KEEP_VERSIONS
    max_row_change_percent: float = DEFAULT_MAX_ROW_CHANGE_PERCENT
    reader_role: str | None = None
    anomalies: AnomalySettings = AnomalySettings()

    @property
    def candidate_schema(self) -> str:
        """Where dbt builds the marts: no consumer reads it; `publish` turns it into a version."""
        return f"{self.consumer_schema}{CANDIDATE_SUFFIX}"

    def profile_output(self) -> dict[str, Any]:
        """The target's connection as written in profiles.yml, before rendering."""
        try:
            document = yaml.safe_load(self.profiles_file.read_text(encoding="utf-8"))
            outputs = document[PROFILE_NAME]["outputs"]
        except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
            raise DataOpsError(
                f"cannot read the '{PROFILE_NAME}' profile from {self.profiles_file}: {error}"
            ) from error
        if self.target not in outputs:
            raise DataOpsError(f"target '{self.target}' is in environments.yml but not in {self.profiles_file.name}")
        return dict(outputs[self.target])

    def profile_variables(self) -> list[ProfileVariable]:
        return [
            ProfileVariable(match.group(1), field, match.group(2))
            for field, value in self.profile_output().items()
            for match in _ENV_VAR.finditer(str(value))
        ]

    def missing_variables(self) -> list[str]:
        return [v.name for v in self.profile_variables() if v.required and v.name not in os.environ]

    def described_profile(self, mask: str) -> list[tuple[str, str]]:
        """The profile's fields as they would render now, unset required variables shown as
        <missing NAME>; never raises for a missing variable. A secret shows `mask` only when it
        has a value, and otherwise says why it has none: its variable is not set, or set empty."""
        missing = set(self.missing_variables())
        rows = []
        for field, value in self.profile_output().items():
            names = [m.group(1) for m in _ENV_VAR.finditer(str(value))]
            absent = [name for name in names if name in missing]
            if absent:
                rows.append((field, f"<missing {', '.join(absent)}>"))
            elif field in SECRET_FIELDS:
                rows.append((field, _described_secret(str(value), names, mask)))
            else:
                rows.append((field, _render(str(value))))
        return rows

    def connection(self) -> dict[str, str]:
        """The target's connection fields rendered from the environment, as dbt renders them.
        Every missing required variable is named at once."""
        missing = self.missing_variables()
        if missing:
            raise DataOpsError(
                f"target '{self.target}' needs {', '.join(missing)}: set "
                f"{'it' if len(missing) == 1 else 'them'} in the environment (see .env.example)"
            )
        return {field: _render(str(value)) for field, value in self.profile_output().items()}

    @property
    def duckdb_path(self) -> Path:
        override = os.environ.get(DUCKDB_PATH_ENV_VAR)
        return Path(override).resolve() if override else self.warehouse_dir / f"{self.target}.duckdb"

    @property
    def duckdb_candidate_path(self) -> Path:
        """On DuckDB the candidate marts are a file of their own beside the warehouse's."""
        return self.duckdb_path.with_name(f"{self.duckdb_path.stem}_candidate.duckdb")

    @property
    def artifacts_dir(self) -> Path:
        """dbt's target folder and our run records, per target so environments never mix."""
        return self.warehouse_dir / "artifacts" / self.target

    @property
    def compile_dir(self) -> Path:
        """dbt's target folder for `dataops compile` and `dataops check`, which only compile or
        parse: apart from the run's (`dbt/`), so that a deploy-time compile never replaces the
        run_results.json and manifest.json of the last real run."""
        return self.artifacts_dir / "compile"

    @property
    def dbt_vars(self) -> dict[str, Any]:
        """The dbt vars every command of this target runs with."""
        variables: dict[str, Any] = {
            "stale_data_severity": self.stale_data,
            "dataops_marts_schema": self.candidate_schema,
        }
        if self.source_database:
            variables["source_database"] = self.source_database
        return variables

    @property
    def dbt_env(self) -> dict[str, str]:
        """Environment variables dbt/profiles.yml reads for this target."""
        env = {TARGET_ENV_VAR: self.target}
        if self.engine == "duckdb":
            env[DUCKDB_PATH_ENV_VAR] = str(self.duckdb_path)
            env[DUCKDB_CANDIDATE_PATH_ENV_VAR] = str(self.duckdb_candidate_path)
        return env


def _described_secret(value: str, names: list[str], mask: str) -> str:
    """A secret field of the profile without its value: `mask` when it renders to something,
    else whether its variable is absent ("not set") or set to the empty string."""
    unset = [name for name in names if name not in os.environ]
    if _render(value):
        # A default from profiles.yml (never a secret: the file is committed) or the variable's value.
        return f"not set, default {mask}" if unset else mask
    return "not set" if unset else "set, empty"


def _render(value: str) -> str:
    """profiles.yml only ever uses `env_var('NAME'[, 'default'])`, optionally `| as_number`."""

    def expression(match: re.Match[str]) -> str:
        found = _ENV_VAR.search(match.group(1))
        if not found:
            return match.group(0)
        name, default = found.groups()
        return os.environ.get(name, default if default is not None else "")

    return _JINJA.sub(expression, value)


def _read_environments(path: Path) -> dict[str, dict[str, Any]]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise DataOpsError(f"{path} is missing: it declares the environments (dev, ci, ...)") from error
    except yaml.YAMLError as error:
        raise DataOpsError(f"{path} is not valid YAML: {error}".replace("\n", " ")) from error
    environments = (document or {}).get("environments")
    if not isinstance(environments, dict) or not environments:
        raise DataOpsError(f"{path} has no 'environments:' mapping")
    return environments


# What an environment entry may hold, each checked by one function that returns the value or says
# what was expected instead. A key not listed here is a typo (`thread:`), never silently ignored.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _engine(value: Any) -> str:
    if value not in ENGINES:
        raise ValueError(f"one of {', '.join(ENGINES)}")
    return str(value)


def _stale_data(value: Any) -> Severity:
    if value not in ("warn", "error"):
        raise ValueError("'warn' or 'error'")
    return "warn" if value == "warn" else "error"


def _threads(value: Any) -> int:
    # bool is an int to Python (and `threads: yes` is true to YAML): not a thread count.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("a positive whole number, e.g. 4")
    return value


def _schema(value: Any) -> str:
    # Quality checks name it unquoted in SQL (`select * from <schema>.<model>`): an identifier only.
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise ValueError("a schema name of letters, digits and underscores, e.g. marts")
    return value


def _keep_versions(value: Any) -> int:
    # One version is the published one; rollback needs at least one more.
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ValueError("a whole number of at least 2 (the published version and one to roll back to)")
    return value


def _max_row_change(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError("a percentage above 0, e.g. 50 (a mart may grow or shrink by half)")
    return float(value)


def _role(value: Any) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise ValueError("a role name of letters, digits and underscores, e.g. marts_reader")
    return value


def _database(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("the name of a database, e.g. AdventureWorks2014")
    return value


class _InvalidSubkey(ValueError):
    """A key inside a block (`anomalies: {sensitivity: ...}`): the message names `block.key`."""

    def __init__(self, key: str, value: Any, expected: str, unknown: bool = False) -> None:
        super().__init__(expected)
        self.key, self.value, self.unknown = key, value, unknown


def _positive_number(example: str) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"a number above 0, e.g. {example}")
        return float(value)

    return check


def _percent(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 100:
        raise ValueError("a percentage from 0 to below 100, e.g. 10 (a smaller change is never an anomaly)")
    return float(value)


def _hours(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError("a number of hours of at least 0, e.g. 1")
    return float(value)


def _whole(least: int, example: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"a whole number of at least {least}, e.g. {example}")
        return value

    return check


_ANOMALY_KEYS: dict[str, Callable[[Any], Any]] = {
    "level": _stale_data,
    "sensitivity": _positive_number("3 (a z-score beyond ±3 is an anomaly)"),
    # A standard deviation needs two values; fewer than three say nothing about spread.
    "min_training_runs": _whole(3, 7),
    "training_days": _whole(1, 14),
    "min_spike_percent": _percent,
    "min_drop_percent": _percent,
    "min_age_increase_hours": _hours,
}


def _anomalies(value: Any) -> AnomalySettings:
    if value is None:
        return AnomalySettings()
    if not isinstance(value, dict):
        raise ValueError(f"a mapping of {', '.join(_ANOMALY_KEYS)}, each on its own indented line")
    checked: dict[str, Any] = {}
    for key, item in value.items():
        check = _ANOMALY_KEYS.get(key)
        if check is None:
            close = difflib.get_close_matches(str(key), _ANOMALY_KEYS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"the keys are {', '.join(_ANOMALY_KEYS)}"
            raise _InvalidSubkey(str(key), item, hint, unknown=True)
        try:
            checked[key] = check(item)
        except ValueError as expected:
            raise _InvalidSubkey(str(key), item, str(expected)) from None
    return AnomalySettings(**checked)


_ENTRY_KEYS: dict[str, Callable[[Any], Any]] = {
    "engine": _engine,
    "stale_data": _stale_data,
    "threads": _threads,
    "consumer_schema": _schema,
    "source_database": _database,
    "keep_versions": _keep_versions,
    "max_row_change_percent": _max_row_change,
    "reader_role": _role,
    "anomalies": _anomalies,
}


def _check_entry(path: Path, name: Any, entry: Any) -> dict[str, Any]:
    """One environment's entry, every key checked; the first problem is a one-line error that
    names the file, the environment, the key and what it must be."""
    where = f"{path.name}: environment '{name}'"
    if entry is None:
        return {}
    if not isinstance(entry, dict):
        raise DataOpsError(
            f"{where} is {_shown(entry)}; expected a mapping of settings "
            f"({', '.join(_ENTRY_KEYS)}), each on its own indented line"
        )
    checked: dict[str, Any] = {}
    for key, value in entry.items():
        check = _ENTRY_KEYS.get(key)
        if check is None:
            close = difflib.get_close_matches(str(key), _ENTRY_KEYS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"the keys are {', '.join(_ENTRY_KEYS)}"
            raise DataOpsError(f"{where} has an unknown key '{key}': {hint}")
        try:
            checked[key] = check(value)
        except _InvalidSubkey as invalid:
            if invalid.unknown:
                raise DataOpsError(f"{where} has an unknown key '{key}.{invalid.key}': {invalid}") from None
            shown = _shown(invalid.value)
            raise DataOpsError(f"{where} has {key}.{invalid.key}: {shown}; expected {invalid}") from None
        except ValueError as expected:
            raise DataOpsError(f"{where} has {key}: {_shown(value)}; expected {expected}") from None
    return checked


def _shown(value: Any) -> str:
    """A YAML value as the user wrote it, on one line."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (dict, list)):
        kind = "a mapping" if isinstance(value, dict) else "a list"
        return f"{kind} ({' '.join(str(value).split())[:60]})"
    return str(value)


def load_settings(target: str | None = None, environments_file: Path = ENVIRONMENTS_FILE) -> Settings:
    """Settings for `target` (else $DATAOPS_TARGET, else dev); an unknown target is a user error.
    Every environment in the file is checked, so a typo in `prod` shows up on a developer's
    machine, not first in production."""
    name = target or os.environ.get(TARGET_ENV_VAR) or DEFAULT_TARGET
    environments = {
        key: _check_entry(environments_file, key, entry) for key, entry in _read_environments(environments_file).items()
    }
    if name not in environments:
        known = ", ".join(sorted(str(key) for key in environments))
        raise DataOpsError(f"unknown target '{name}': choose one of {known} (declared in {environments_file.name})")
    entry = environments[name]
    return Settings(
        target=name,
        engine=entry.get("engine", "duckdb"),
        stale_data=entry.get("stale_data", "warn"),
        threads=entry.get("threads", 4),
        warehouse_dir=warehouse_dir(),
        consumer_schema=entry.get("consumer_schema", "marts"),
        source_database=entry.get("source_database"),
        keep_versions=entry.get("keep_versions", DEFAULT_KEEP_VERSIONS),
        max_row_change_percent=entry.get("max_row_change_percent", DEFAULT_MAX_ROW_CHANGE_PERCENT),
        reader_role=entry.get("reader_role"),
        anomalies=entry.get("anomalies", AnomalySettings()),
    )


def warehouse_dir() -> Path:
    """Where warehouses, artifacts and logs live: $DATAOPS_WAREHOUSE_DIR, else warehouse/."""
    return Path(os.environ.get(WAREHOUSE_DIR_ENV_VAR, PROJECT_ROOT / "warehouse")).resolve()


def target_names(environments_file: Path = ENVIRONMENTS_FILE) -> list[str]:
    """The declared targets, for help texts: an unreadable file gives none (the command that needs
    a target then says what is wrong with it)."""
    try:
        return list(_read_environments(environments_file))
    except DataOpsError:
        return []
