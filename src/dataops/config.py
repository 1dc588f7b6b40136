"""Where things are and how each environment behaves: one place for paths, env vars and targets."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from dataops.errors import DataOpsError

PROJECT_ROOT = Path(os.environ.get("DATAOPS_PROJECT_ROOT", Path(__file__).resolve().parents[2]))
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt"
ENVIRONMENTS_FILE = PROJECT_ROOT / "environments.yml"
DEFAULT_TARGET = "dev"

TARGET_ENV_VAR = "DATAOPS_TARGET"
DUCKDB_PATH_ENV_VAR = "DATAOPS_DUCKDB_PATH"
WAREHOUSE_DIR_ENV_VAR = "DATAOPS_WAREHOUSE_DIR"

Severity = Literal["warn", "error"]


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know about the target it runs against."""

    target: str
    engine: str
    stale_data: Severity
    threads: int
    warehouse_dir: Path

    @property
    def duckdb_path(self) -> Path:
        override = os.environ.get(DUCKDB_PATH_ENV_VAR)
        return Path(override).resolve() if override else self.warehouse_dir / f"{self.target}.duckdb"

    @property
    def artifacts_dir(self) -> Path:
        """dbt's target folder and our run records, per target so environments never mix."""
        return self.warehouse_dir / "artifacts" / self.target

    @property
    def dbt_env(self) -> dict[str, str]:
        """Environment variables dbt/profiles.yml reads for this target."""
        env = {TARGET_ENV_VAR: self.target}
        if self.engine == "duckdb":
            env[DUCKDB_PATH_ENV_VAR] = str(self.duckdb_path)
        return env


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
    stale_data = entry.get("stale_data", "warn")
    if stale_data not in ("warn", "error"):
        raise DataOpsError(
            f"{environments_file.name}: environment '{name}' has stale_data '{stale_data}'; "
            "use 'warn' or 'error'"
        )
    warehouse_dir = Path(os.environ.get(WAREHOUSE_DIR_ENV_VAR, PROJECT_ROOT / "warehouse"))
    return Settings(
        target=name,
        engine=str(entry.get("engine", "duckdb")),
        stale_data=stale_data,
        threads=int(entry.get("threads", 4)),
        warehouse_dir=warehouse_dir.resolve(),
    )
