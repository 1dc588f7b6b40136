"""Where things are and how each environment behaves: one place for paths, env vars and targets."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from dataops.errors import DataOpsError

PROJECT_ROOT = Path(os.environ.get("DATAOPS_PROJECT_ROOT", Path(__file__).resolve().parents[2]))
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt"
ENVIRONMENTS_FILE = PROJECT_ROOT / "environments.yml"
PROFILES_FILE = DBT_PROJECT_DIR / "profiles.yml"
PROFILE_NAME = "adventureworks"
ENGINES = ("duckdb", "postgres", "sqlserver")
SECRET_FIELDS = frozenset({"password"})
DEFAULT_TARGET = "dev"

TARGET_ENV_VAR = "DATAOPS_TARGET"
DUCKDB_PATH_ENV_VAR = "DATAOPS_DUCKDB_PATH"
WAREHOUSE_DIR_ENV_VAR = "DATAOPS_WAREHOUSE_DIR"

Severity = Literal["warn", "error"]


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
            raise DataOpsError(
                f"target '{self.target}' is in environments.yml but not in {self.profiles_file.name}"
            )
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
        """The profile's fields as they would render now, secrets replaced by `mask` and unset
        required variables shown as <missing NAME>; never raises for a missing variable."""
        missing = set(self.missing_variables())
        rows = []
        for field, value in self.profile_output().items():
            names = [m.group(1) for m in _ENV_VAR.finditer(str(value))]
            absent = [name for name in names if name in missing]
            if absent:
                rows.append((field, f"<missing {', '.join(absent)}>"))
            elif field in SECRET_FIELDS:
                rows.append((field, mask))
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
    def artifacts_dir(self) -> Path:
        """dbt's target folder and our run records, per target so environments never mix."""
        return self.warehouse_dir / "artifacts" / self.target

    @property
    def dbt_vars(self) -> dict[str, Any]:
        """The dbt vars every command of this target runs with."""
        variables: dict[str, Any] = {"stale_data_severity": self.stale_data}
        if self.source_database:
            variables["source_database"] = self.source_database
        return variables

    @property
    def dbt_env(self) -> dict[str, str]:
        """Environment variables dbt/profiles.yml reads for this target."""
        env = {TARGET_ENV_VAR: self.target}
        if self.engine == "duckdb":
            env[DUCKDB_PATH_ENV_VAR] = str(self.duckdb_path)
        return env


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


def load_settings(target: str | None = None, environments_file: Path = ENVIRONMENTS_FILE) -> Settings:
    """Settings for `target` (else $DATAOPS_TARGET, else dev); an unknown target is a user error."""
    name = target or os.environ.get(TARGET_ENV_VAR) or DEFAULT_TARGET
    environments = _read_environments(environments_file)
    if name not in environments:
        known = ", ".join(sorted(environments))
        raise DataOpsError(
            f"unknown target '{name}': choose one of {known} (declared in {environments_file.name})"
        )
    entry = environments[name] or {}
    engine = str(entry.get("engine", "duckdb"))
    if engine not in ENGINES:
        raise DataOpsError(
            f"{environments_file.name}: environment '{name}' has engine '{engine}'; "
            f"use one of {', '.join(ENGINES)}"
        )
    stale_data = entry.get("stale_data", "warn")
    if stale_data not in ("warn", "error"):
        raise DataOpsError(
            f"{environments_file.name}: environment '{name}' has stale_data '{stale_data}'; "
            "use 'warn' or 'error'"
        )
    warehouse_dir = Path(os.environ.get(WAREHOUSE_DIR_ENV_VAR, PROJECT_ROOT / "warehouse"))
    return Settings(
        target=name,
        engine=engine,
        stale_data=stale_data,
        threads=int(entry.get("threads", 4)),
        warehouse_dir=warehouse_dir.resolve(),
        consumer_schema=str(entry.get("consumer_schema", "marts")),
        source_database=entry.get("source_database"),
    )
