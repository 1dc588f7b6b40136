"""`dataops doctor`: is this machine ready to run the platform against a target? Like `dbt debug`,
for the whole platform. Secrets are masked in everything it returns."""

from __future__ import annotations

import os
import platform
import shutil
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Literal

from dataops.core.config import Settings
from dataops.core.errors import DataOpsError

Status = Literal["ok", "fail", "info"]
MASK = "****"

ADAPTERS = {"duckdb": "dbt-duckdb", "postgres": "dbt-postgres", "sqlserver": "dbt-sqlserver"}
CORE_PACKAGES = ("dbt-core", "duckdb", "pyarrow", "sqlfluff", "sqlglot")
OPTIONAL_PACKAGES = ("apache-airflow", "astronomer-cosmos", "great-expectations")
OPTIONAL_TOOLS = ("promtool", "amtool", "docker-compose")
ODBC_FIX = (
    "install unixODBC and Microsoft's ODBC Driver 18: on Debian/Ubuntu `apt-get install unixodbc`, "
    "then msodbcsql18 from packages.microsoft.com with ACCEPT_EULA=Y (the Dockerfile does this)"
)


@dataclass(frozen=True)
class Finding:
    area: str
    name: str
    status: Status
    detail: str


@dataclass
class DoctorReport:
    target: str
    engine: str
    settings: list[tuple[str, str]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(finding.status != "fail" for finding in self.findings)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _packages(settings: Settings) -> list[Finding]:
    findings = [
        Finding(
            "platform",
            "python",
            "ok" if sys.version_info >= (3, 11) else "fail",
            f"{platform.python_version()} ({sys.executable})",
        )
    ]
    for package in (*CORE_PACKAGES, ADAPTERS[settings.engine]):
        version = _version(package)
        findings.append(
            Finding(
                "packages",
                package,
                "ok" if version else "fail",
                version or "not installed: run `make install`",
            )
        )
    return findings


def _variables(settings: Settings) -> list[Finding]:
    findings = []
    for variable in settings.profile_variables():
        if variable.name in os.environ:
            value = os.environ[variable.name]
            # Masking an empty secret would claim a value that is not there.
            shown = MASK if variable.secret and value else value
            findings.append(Finding("environment", variable.name, "ok", f"set ({shown})" if value else "set, empty"))
        elif variable.required:
            findings.append(
                Finding(
                    "environment",
                    variable.name,
                    "fail",
                    f"missing: the '{settings.target}' target's {variable.field} comes from it; "
                    "set it (see .env.example)",
                )
            )
        else:
            findings.append(Finding("environment", variable.name, "ok", f"not set, default '{variable.default}'"))
    return findings


def _odbc_driver(driver: str) -> Finding:
    """dbt-sqlserver talks to SQL Server through pyodbc and Microsoft's ODBC driver."""
    try:
        import pyodbc
    except ImportError as error:
        return Finding("driver", "ODBC (dbt-sqlserver)", "fail", f"pyodbc cannot load ({error}): {ODBC_FIX}")
    installed = pyodbc.drivers()
    if driver not in installed:
        found = ", ".join(installed) or "none"
        detail = f"'{driver}' not installed (found: {found}): {ODBC_FIX}"
        return Finding("driver", "ODBC (dbt-sqlserver)", "fail", detail)
    return Finding("driver", "ODBC (dbt-sqlserver)", "ok", driver)


def _reachability(settings: Settings, missing: list[str]) -> Finding:
    from dataops.warehouse import connect

    if missing:
        return Finding("database", settings.target, "fail", f"not tried: set {', '.join(missing)} first")
    try:
        return Finding("database", settings.target, "ok", connect(settings).ping())
    except DataOpsError as error:
        return Finding("database", settings.target, "fail", str(error))


def _history() -> Finding:
    from dataops.history.store import HistoryStore

    try:
        return Finding("history", "run history", "ok", HistoryStore().describe())
    except DataOpsError as error:
        return Finding("history", "run history", "fail", str(error))


def _tools() -> list[Finding]:
    findings = [
        Finding("optional", package, "info", _version(package) or "not installed") for package in OPTIONAL_PACKAGES
    ]
    for tool in OPTIONAL_TOOLS:
        path = shutil.which(tool) or shutil.which(tool, path=os.path.dirname(sys.executable))
        findings.append(Finding("optional", tool, "info", path or "not found"))
    return findings


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def diagnose(settings: Settings) -> DoctorReport:
    report = DoctorReport(settings.target, settings.engine)
    output = settings.profile_output()
    variables = settings.profile_variables()
    secrets = [os.environ[v.name] for v in variables if v.secret and os.environ.get(v.name)]
    report.settings = [
        ("engine", settings.engine),
        ("stale data", settings.stale_data),
        ("threads", str(settings.threads)),
        ("consumer schema", settings.consumer_schema),
    ] + [(f"profile {key}", value) for key, value in settings.described_profile(MASK) if key != "threads"]
    if settings.engine == "duckdb":
        report.settings.append(("warehouse file", str(settings.duckdb_path)))
    missing = settings.missing_variables()
    report.findings = _packages(settings) + _variables(settings)
    if settings.engine == "sqlserver":
        report.findings.append(_odbc_driver(str(output.get("driver", "ODBC Driver 18 for SQL Server"))))
    report.findings.append(_reachability(settings, missing))
    report.findings.append(_history())
    report.findings += _tools()
    report.findings = [Finding(f.area, f.name, f.status, _scrub(f.detail, secrets)) for f in report.findings]
    report.settings = [(key, _scrub(value, secrets)) for key, value in report.settings]
    return report
