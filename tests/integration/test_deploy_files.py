"""The deployment files, checked without a Docker engine.

- The Compose files are validated by Compose itself (`config`), with and without the variables they
  require, and a broken copy must fail, so a green run means the check can fail.
- The Dockerfile, the GitHub workflows, .env.example and .pre-commit-config.yaml are checked for the
  facts the deployment relies on: names that match dbt/profiles.yml, no literal secrets.
- The secrets scan (scripts/check_secrets.sh) passes on the project and fails on a planted secret.

Every value a test gives a required variable is generated here, at run time.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_support import compose_binary, dockerfile_instructions, intact_and_broken, walk

from dataops.core.config import load_settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEV_FILE = "docker-compose.yml"
# The Compose files of each environment, as they are passed to `docker compose -f ... -f ...`.
COMBINATIONS = {
    "sqlserver_dev": [DEV_FILE],
    "staging": [DEV_FILE, "docker-compose.staging.yml"],
    "prod": [DEV_FILE, "docker-compose.prod.yml"],
}
SA_VAR = "MSSQL_SA_PASSWORD"
MSSQL_IMAGE = "mcr.microsoft.com/mssql/server:2022-latest"
SQLCMD = "/opt/mssql-tools18/bin/sqlcmd"

# A key whose value would be a credential.
SECRET_KEY = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|WEBHOOK", re.IGNORECASE)
# `${NAME}`, `${NAME:?message}` / `${NAME?message}` (required) or `${NAME:-}` (empty default): never
# a literal, and never a literal default.
COMPOSE_REFERENCE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?:(?::?\?[^}]*)|:?-)?\}")
REQUIRED_REFERENCE = re.compile(r"\$\{([A-Z][A-Z0-9_]*):?\?")
WORKFLOW_SECRET = re.compile(r"\$\{\{\s*secrets\.[A-Z][A-Z0-9_]*\s*\}\}")


# --- helpers ------------------------------------------------------------------------------------


def placeholder() -> str:
    """A throwaway value that satisfies SQL Server's password policy; different every run."""
    return "Ph-" + secrets.token_urlsafe(18) + "9a"


class ComposeLoader(yaml.SafeLoader):
    """YAML as Compose reads it: `!reset` and `!override` (merge controls) keep their value."""


def _untagged(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


for _tag in ("!reset", "!override"):
    ComposeLoader.add_constructor(_tag, _untagged)


def load_yaml(name: str | Path) -> dict[str, Any]:
    document = yaml.load((ROOT / name).read_text(encoding="utf-8"), Loader=ComposeLoader)  # a SafeLoader
    assert isinstance(document, dict), f"{name} is not a YAML mapping"
    return document


def referenced_variables(files: list[str], pattern: re.Pattern[str] = REQUIRED_REFERENCE) -> list[str]:
    """Every variable the files' values reference (by default: require), in order of first use."""
    names: list[str] = []
    for name in files:
        for _, value in walk(load_yaml(name)):
            for variable in pattern.findall(str(value)):
                if variable not in names:
                    names.append(variable)
    return names


def required_variables(files: list[str]) -> list[str]:
    return referenced_variables(files)


def compose(
    files: list[str | Path], *args: str, env: dict[str, str], env_file: Path
) -> subprocess.CompletedProcess[str]:
    command = [str(compose_binary()), "--env-file", str(env_file)]
    for name in files:
        command += ["-f", str(ROOT / name)]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def profile_variables(target: str) -> dict[str, bool]:
    """The variables dbt/profiles.yml reads for a target: name -> required (no default)."""
    return {v.name: v.required for v in load_settings(target).profile_variables()}


# --- Compose: validated by Compose itself ---------------------------------------------------------


def test_the_compose_binary_is_the_real_one() -> None:
    result = subprocess.run([str(compose_binary()), "version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Docker Compose version v2." in result.stdout


@pytest.mark.parametrize("target", list(COMBINATIONS))
def test_compose_config_is_valid_with_the_required_variables_set(
    target: str, isolated_env: dict[str, str], empty_env_file: Path
) -> None:
    files = COMBINATIONS[target]
    env = {**isolated_env, **{name: placeholder() for name in required_variables(files)}}
    result = compose(files, "config", "-q", env=env, env_file=empty_env_file)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


@pytest.mark.parametrize("target", list(COMBINATIONS))
def test_compose_config_fails_and_names_each_missing_required_variable(
    target: str, isolated_env: dict[str, str], empty_env_file: Path
) -> None:
    files = COMBINATIONS[target]
    required = required_variables(files)
    # Every credential the target's dbt profile needs without a default is required in Compose.
    needed = [name for name, is_required in profile_variables(target).items() if is_required]
    if target == "sqlserver_dev":
        # docker-compose.yml passes the SA password on as DBT_SQLSERVER_DEV_PASSWORD.
        needed = [SA_VAR if name == "DBT_SQLSERVER_DEV_PASSWORD" else name for name in needed]
    assert set(needed) <= set(required), f"{files} does not require {set(needed) - set(required)}"
    assert SA_VAR in required

    values = {name: placeholder() for name in required}
    for missing in required:
        for absent in ("unset", "empty"):
            env = {**isolated_env, **{k: v for k, v in values.items() if k != missing}}
            if absent == "empty":
                env[missing] = ""
            result = compose(files, "config", "-q", env=env, env_file=empty_env_file)
            assert result.returncode != 0, f"{target}: config passed with {missing} {absent}"
            assert f"required variable {missing} is missing a value" in result.stderr, result.stderr


def test_a_fresh_copy_of_env_example_is_refused_until_the_password_is_filled_in(
    isolated_env: dict[str, str],
) -> None:
    result = compose([DEV_FILE], "config", "-q", env=isolated_env, env_file=ROOT / ".env.example")
    assert result.returncode != 0
    assert f"required variable {SA_VAR} is missing a value" in result.stderr


def _merged(target: str, env: dict[str, str], env_file: Path) -> dict[str, Any]:
    result = compose(COMBINATIONS[target], "config", "--format", "json", env=env, env_file=env_file)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_dev_runs_the_pipeline_against_the_local_server(isolated_env: dict[str, str], empty_env_file: Path) -> None:
    password = placeholder()
    project = _merged("sqlserver_dev", {**isolated_env, SA_VAR: password}, empty_env_file)
    services = project["services"]
    assert set(services) == {"sqlserver", "sqlserver-init", "dataops"}

    dataops = services["dataops"]
    assert dataops["depends_on"]["sqlserver"]["condition"] == "service_healthy"
    assert dataops["depends_on"]["sqlserver-init"]["condition"] == "service_completed_successfully"
    env = dataops["environment"]
    assert env["DATAOPS_TARGET"] == "sqlserver_dev"
    assert env["DBT_SQLSERVER_DEV_SERVER"] == "sqlserver"
    assert env["DBT_SQLSERVER_DEV_PASSWORD"] == password
    assert set(env) - {"DATAOPS_TARGET"} <= set(profile_variables("sqlserver_dev"))
    assert services["sqlserver"]["environment"][SA_VAR] == password
    assert services["sqlserver-init"]["environment"]["SQLCMDPASSWORD"] == password
    # The database the init service creates is the one the target builds into.
    assert f"DB_ID(N'{env['DBT_SQLSERVER_DEV_DATABASE']}')" in " ".join(services["sqlserver-init"]["command"])


@pytest.mark.parametrize("target", ["staging", "prod"])
def test_staging_and_prod_run_only_dataops_against_their_managed_server(
    target: str, isolated_env: dict[str, str], empty_env_file: Path
) -> None:
    values = {name: placeholder() for name in required_variables(COMBINATIONS[target])}
    project = _merged(target, {**isolated_env, **values}, empty_env_file)

    # The local server is behind an inactive profile: not in the project, not started, not waited for.
    assert set(project["services"]) == {"dataops"}
    dataops = project["services"]["dataops"]
    assert not dataops.get("depends_on")
    env = dataops["environment"]
    assert env["DATAOPS_TARGET"] == target
    assert load_settings(target).engine == "sqlserver"
    assert set(env) - {"DATAOPS_TARGET", "DATAOPS_WEBHOOK_URL"} <= set(profile_variables(target))
    for name, is_required in profile_variables(target).items():
        if is_required:
            assert env[name] == values[name]
    # The dev SA password, which Compose makes us set, reaches no service.
    assert values[SA_VAR] not in json.dumps(project["services"])
    assert not any(name.startswith("DBT_SQLSERVER_DEV_") for name in env)
    # Its own project name: containers and volumes never mix with dev's on one host.
    assert project["name"] == f"dataops-{target}"


BREAKAGES = {
    "ports is not a list": (lambda d: d["services"]["sqlserver"].update(ports="not-a-list"), "ports"),
    "unknown key under a service": (lambda d: d["services"]["dataops"].update(frobnicate=True), "frobnicate"),
    "depends on an undefined service": (
        lambda d: d["services"]["dataops"]["depends_on"].update(nowhere={"condition": "service_healthy"}),
        "nowhere",
    ),
    "healthcheck retries is not a number": (
        lambda d: d["services"]["sqlserver"]["healthcheck"].update(retries="many"),
        "retries",
    ),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_broken_compose_file_fails_config(
    breakage: str, tmp_path: Path, isolated_env: dict[str, str], empty_env_file: Path
) -> None:
    env = {**isolated_env, SA_VAR: placeholder()}
    mutate, named = BREAKAGES[breakage]
    intact, broken = intact_and_broken(load_yaml(DEV_FILE), mutate, tmp_path)

    # The same file unbroken passes, so the failure below is the breakage and nothing else.
    assert compose([intact], "config", "-q", env=env, env_file=empty_env_file).returncode == 0
    result = compose([broken], "config", "-q", env=env, env_file=empty_env_file)
    assert result.returncode != 0, f"config accepted a file whose {breakage}"
    assert named in result.stderr


def test_a_yaml_syntax_error_fails_config(tmp_path: Path, isolated_env: dict[str, str], empty_env_file: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text((ROOT / DEV_FILE).read_text(encoding="utf-8") + "\n  broken: [unclosed\n")
    result = compose([broken], "config", "-q", env={**isolated_env, SA_VAR: placeholder()}, env_file=empty_env_file)
    assert result.returncode != 0
    assert "yaml" in result.stderr.lower()


# --- No password on a command line ---------------------------------------------------------------
# A process's arguments are public to everyone who can list processes (`ps`, `docker top`, /proc),
# so a password passed as one leaks however it got there: literally, interpolated by Compose, or
# expanded by the container's shell (`-P "$$MSSQL_SA_PASSWORD"`). The commands are checked as
# Compose renders them, and as GitHub Actions runs them.

# Where each tool takes a password on its command line; sqlcmd reads SQLCMDPASSWORD instead, and
# `airflow users create` asks for it on its input.
PASSWORD_OPTIONS = {"sqlcmd": ("-P",), "airflow": ("--password",)}
SHELL_OPERATORS = set("();<>|&")
# Every Compose project of the repository, as it is started.
COMPOSE_PROJECTS = {
    **COMBINATIONS,
    "airflow": ["docker-compose.airflow.yml"],
    # The monitoring stack is an overlay on the Airflow deployment (tests/integration/test_monitoring_compose.py).
    "monitoring": ["docker-compose.airflow.yml", "docker-compose.monitoring.yml"],
}


def _shell_commands(text: str) -> Iterator[list[str]]:
    """The simple commands of a shell text (a script, a CMD-SHELL), each as its words."""
    for line in text.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        # Conservative: a comment is read as words too, so a password option there is reported.
        lexer.commenters = ""
        try:
            tokens = list(lexer)
        except ValueError:  # an unbalanced quote: not shell (e.g. SQL text), read it word by word
            tokens = line.split()
        words: list[str] = []
        for token in tokens:
            if set(token) <= SHELL_OPERATORS:
                yield words
                words = []
            else:
                words.append(token)
        yield words


def _command_lines(argv: list[str]) -> Iterator[list[str]]:
    """An exec-form command line, and the commands of every shell script among its arguments."""
    yield argv
    for argument in argv:
        if any(character.isspace() for character in argument):
            yield from _shell_commands(argument)


def passwords_on_command_lines(argvs: list[list[str]]) -> list[str]:
    """Each command line that hands a password option to a tool of PASSWORD_OPTIONS."""
    found = []
    for argv in argvs:
        for words in _command_lines(argv):
            for index, word in enumerate(words):
                options = PASSWORD_OPTIONS.get(Path(word).name, ())
                for argument in words[index + 1 :]:
                    if any(
                        argument == option or argument.startswith(option if len(option) == 2 else option + "=")
                        for option in options
                    ):
                        found.append(shlex.join(words))
    return found


def _service_command_lines(service: dict[str, Any]) -> list[list[str]]:
    """What a rendered service runs: its entrypoint and command, and its healthcheck."""
    argvs = []
    entrypoint, command = service.get("entrypoint") or [], service.get("command") or []
    for part in (entrypoint, command, entrypoint + command):
        argvs.append(shlex.split(part) if isinstance(part, str) else list(part))
    test = (service.get("healthcheck") or {}).get("test") or []
    if test[:1] == ["CMD-SHELL"]:
        argvs += list(_shell_commands(" ".join(test[1:])))
    elif test[:1] == ["CMD"]:
        argvs.append(test[1:])
    return argvs


def _runs(argvs: list[list[str]], tool: str) -> bool:
    return any(Path(word).name == tool for argv in argvs for words in _command_lines(argv) for word in words)


def _rendered(files: list[str | Path], env: dict[str, str], env_file: Path) -> dict[str, Any]:
    result = compose(files, "config", "--format", "json", env=env, env_file=env_file)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _check_no_password_on_a_command_line(project: dict[str, Any], secrets_set: list[str]) -> None:
    for name, service in project["services"].items():
        argvs = _service_command_lines(service)
        assert passwords_on_command_lines(argvs) == [], f"{name} passes a password on a command line"
        # Nor one Compose interpolated into anything but the environment.
        outside = json.dumps({key: value for key, value in service.items() if key != "environment"})
        assert not [value for value in secrets_set if value in outside], f"{name} shows a secret"
        if _runs(argvs, "sqlcmd"):
            assert service["environment"].get("SQLCMDPASSWORD"), f"{name} runs sqlcmd without SQLCMDPASSWORD"


@pytest.mark.parametrize("project", list(COMPOSE_PROJECTS))
def test_no_compose_service_passes_a_password_on_a_command_line(
    project: str, isolated_env: dict[str, str], empty_env_file: Path
) -> None:
    files = COMPOSE_PROJECTS[project]
    values = {name: placeholder() for name in required_variables(files)}
    rendered = _rendered(files, {**isolated_env, **values}, empty_env_file)
    _check_no_password_on_a_command_line(rendered, [value for name, value in values.items() if SECRET_KEY.search(name)])
    if project == "sqlserver_dev":
        # The healthcheck and the init service do run sqlcmd: the check above had something to check.
        assert _runs(_service_command_lines(rendered["services"]["sqlserver"]), "sqlcmd")
        assert _runs(_service_command_lines(rendered["services"]["sqlserver-init"]), "sqlcmd")


def test_every_compose_file_is_checked() -> None:
    checked = {name for files in COMPOSE_PROJECTS.values() for name in files}
    assert {path.name for path in ROOT.glob("docker-compose*.yml")} <= checked


@pytest.mark.parametrize(
    "leak",
    [
        '/opt/mssql-tools18/bin/sqlcmd -C -S localhost -U sa -P "$$MSSQL_SA_PASSWORD" -Q "SELECT 1"',
        "sqlcmd -S localhost -U sa -P${MSSQL_SA_PASSWORD} -Q 'SELECT 1'",
        "true && sqlcmd -U sa -P $$MSSQL_SA_PASSWORD",
    ],
)
def test_a_password_on_the_healthchecks_sqlcmd_command_line_is_caught(
    leak: str, tmp_path: Path, isolated_env: dict[str, str], empty_env_file: Path
) -> None:
    def mutate(document: dict[str, Any]) -> None:
        document["services"]["sqlserver"]["healthcheck"]["test"] = ["CMD-SHELL", leak]

    password = placeholder()
    env = {**isolated_env, SA_VAR: password}
    intact, broken = intact_and_broken(load_yaml(DEV_FILE), mutate, tmp_path)
    _check_no_password_on_a_command_line(_rendered([intact], env, empty_env_file), [password])
    with pytest.raises(AssertionError, match="sqlserver passes a password on a command line"):
        _check_no_password_on_a_command_line(_rendered([broken], env, empty_env_file), [password])


# --- Compose: the facts, from the YAML ------------------------------------------------------------


def test_the_local_sql_server_is_the_2022_image_with_a_sqlcmd_healthcheck() -> None:
    services = load_yaml(DEV_FILE)["services"]
    sqlserver = services["sqlserver"]
    assert sqlserver["image"] == MSSQL_IMAGE
    assert sqlserver["environment"]["ACCEPT_EULA"] == "Y"
    assert REQUIRED_REFERENCE.match(sqlserver["environment"][SA_VAR]).group(1) == SA_VAR
    assert any(str(port).endswith(":1433") for port in sqlserver["ports"])
    assert any(volume.endswith(":/var/opt/mssql") for volume in sqlserver["volumes"])

    healthcheck = sqlserver["healthcheck"]
    test = " ".join(healthcheck["test"])
    assert healthcheck["test"][0] == "CMD-SHELL"
    for fragment in (SQLCMD, " -C ", "-U sa", "SELECT 1"):
        assert fragment in test
    assert " -P" not in test and sqlserver["environment"]["SQLCMDPASSWORD"] == sqlserver["environment"][SA_VAR]
    assert {"interval", "retries", "start_period"} <= set(healthcheck)

    dataops = services["dataops"]
    assert dataops["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert dataops["depends_on"]["sqlserver"] == {"condition": "service_healthy"}


@pytest.mark.parametrize("name", [DEV_FILE, "docker-compose.staging.yml", "docker-compose.prod.yml"])
def test_compose_files_hold_no_literal_secret(name: str) -> None:
    checked = 0
    for path, value in walk(load_yaml(name)):
        if SECRET_KEY.search(path.rsplit(".", 1)[-1]) and isinstance(value, str):
            assert COMPOSE_REFERENCE.fullmatch(value.strip()), f"{name}: {path} is not a ${{VAR}} reference"
            checked += 1
    assert checked, f"{name} has no password-like setting: is this test still looking?"


# --- Dockerfile ---------------------------------------------------------------------------------


def test_the_image_installs_the_odbc_driver_and_the_project_and_runs_as_a_user() -> None:
    instructions = dockerfile_instructions(ROOT / "Dockerfile")
    args = {name: value for name, value in instructions if name == "ARG"}
    base = next(value for name, value in instructions if name == "FROM")
    for arg in args.values():
        key, _, default = arg.partition("=")
        base = base.replace("${" + key + "}", default)
    assert base.startswith("python:3.11-slim"), base

    runs = " ".join(value for name, value in instructions if name == "RUN")
    assert "packages.microsoft.com" in runs
    assert re.search(r"ACCEPT_EULA=Y apt-get install [^&]*\bmsodbcsql18\b", runs)
    assert re.search(r"apt-get install [^&]*\bunixodbc\b", runs)
    assert re.search(r"\bpip install \.(\s|$)", runs)

    users = [value for name, value in instructions if name == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    cmd = [value for name, value in instructions if name == "CMD"]
    assert cmd and json.loads(cmd[-1]) == ["dataops", "run"]
    # A non-editable install finds dbt/ and environments.yml through DATAOPS_PROJECT_ROOT.
    env = " ".join(value for name, value in instructions if name == "ENV")
    assert "DATAOPS_PROJECT_ROOT=/app" in env


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]


def test_the_build_context_leaves_out_local_state_and_keeps_what_the_image_copies() -> None:
    ignored = _dockerignore()
    for entry in (".venv", "warehouse", "data", ".git", "dbt/target", ".env"):
        assert entry in ignored, f".dockerignore does not exclude {entry}"
    excluded = [pattern for pattern in ignored if not pattern.startswith("!")]
    for name, value in dockerfile_instructions(ROOT / "Dockerfile"):
        if name != "COPY":
            continue
        sources = [part for part in value.split() if not part.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is not in the project"
            assert source not in excluded, f"the Dockerfile copies {source}, which .dockerignore excludes"


# --- GitHub workflows ---------------------------------------------------------------------------


def _workflow(name: str) -> dict[str, Any]:
    document = load_yaml(f".github/workflows/{name}")
    # YAML 1.1 reads the key `on` as the boolean true.
    triggers = document.get("on", document.get(True))
    assert triggers, f"{name} has no triggers"
    document["on"] = triggers
    return document


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's steps, a local composite action's (`uses: ./.github/actions/X`) in its place."""
    steps = []
    for step in job["steps"]:
        uses = step.get("uses", "")
        if uses.startswith("./"):
            steps += load_yaml(f"{uses[2:]}/action.yml")["runs"]["steps"]
        else:
            steps.append(step)
    return steps


def test_ci_workflow_runs_make_test_on_python_3_11() -> None:
    workflow = _workflow("ci.yml")
    assert {"push", "pull_request"} <= set(workflow["on"])
    steps = _steps(workflow["jobs"]["test"])
    assert any(step.get("uses", "").startswith("actions/checkout@") for step in steps)
    setup = next(step for step in steps if step.get("uses", "").startswith("actions/setup-python@"))
    assert str(setup["with"]["python-version"]) == "3.11"
    assert any(step.get("run", "").strip() == "make test" for step in steps)


def test_sqlserver_workflow_runs_the_pipeline_on_a_sql_server_service() -> None:
    workflow = _workflow("sqlserver.yml")
    job = workflow["jobs"]["sqlserver"]
    (service,) = job["services"].values()
    assert service["image"] == MSSQL_IMAGE
    assert service["env"]["ACCEPT_EULA"] == "Y"
    assert service["env"][SA_VAR] == "${{ secrets.MSSQL_SA_PASSWORD }}"
    assert "--health-cmd" in service["options"] and SQLCMD in service["options"]

    # The job points the sqlserver_dev target at the service, by the names profiles.yml reads.
    names = set(profile_variables("sqlserver_dev"))
    assert {name for name in job["env"] if name.startswith("DBT_")} <= names
    assert job["env"]["DBT_SQLSERVER_DEV_SERVER"] == "localhost"

    runs = [step.get("run", "") for step in _steps(job)]
    expected = [
        "msodbcsql18",
        "mssql-tools18",
        "make install",
        "CREATE DATABASE [AdventureWorks]",
        ".venv/bin/dataops load --target sqlserver_dev --scale 0.1",
        ".venv/bin/dataops run --target sqlserver_dev",
    ]
    positions = []
    for fragment in expected:
        found = [index for index, run in enumerate(runs) if fragment in run]
        assert found, f"sqlserver.yml has no step running {fragment!r}"
        positions.append(found[0])
    assert positions == sorted(positions), "sqlserver.yml runs its steps out of order"


@pytest.mark.parametrize("name", sorted(path.name for path in (ROOT / ".github" / "workflows").glob("*.yml")))
def test_no_workflow_passes_a_password_on_a_command_line(name: str) -> None:
    workflow = _workflow(name)
    sqlcmd_runs = 0
    for job_name, job in workflow["jobs"].items():
        # A service container's health command, in its `options`, with the service's environment.
        places = [
            (f"{job_name}.services.{service_name}", [shlex.split(service.get("options", ""))], service.get("env", {}))
            for service_name, service in (job.get("services") or {}).items()
        ]
        places += [
            (
                f"{job_name}.steps[{index}]",
                list(_shell_commands(step["run"])),
                {**workflow.get("env", {}), **job.get("env", {}), **step.get("env", {})},
            )
            for index, step in enumerate(_steps(job) if "steps" in job else [])
            if "run" in step
        ]
        for where, argvs, env in places:
            assert passwords_on_command_lines(argvs) == [], f"{name}: {where} passes a password on a command line"
            if _runs(argvs, "sqlcmd"):
                assert "SQLCMDPASSWORD" in env, f"{name}: {where} runs sqlcmd without SQLCMDPASSWORD"
                sqlcmd_runs += 1
    if name == "sqlserver.yml":
        assert sqlcmd_runs == 2, "the health command and the database step run sqlcmd: is this test still looking?"


@pytest.mark.parametrize("name", ["ci.yml", "sqlserver.yml"])
def test_workflows_hold_no_literal_secret(name: str) -> None:
    for path, value in walk(_workflow(name)):
        key = path.rsplit(".", 1)[-1]
        if SECRET_KEY.search(key) and isinstance(value, str):
            assert WORKFLOW_SECRET.fullmatch(value.strip()), f"{name}: {path} is not a secrets reference"


# --- .env.example and pre-commit ----------------------------------------------------------------


def _variables_the_project_reads() -> set[str]:
    names = {
        "DATAOPS_TARGET",
        "DATAOPS_DUCKDB_PATH",
        "DATAOPS_WAREHOUSE_DIR",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        SA_VAR,
        "DATAOPS_WEBHOOK_URL",
    }
    for prefix in ("DBT_SQLSERVER_DEV", "DBT_STAGING", "DBT_PROD"):
        names |= {f"{prefix}_{field}" for field in ("SERVER", "PORT", "DATABASE", "USER", "PASSWORD", "DRIVER")}
    profiles = (ROOT / "dbt" / "profiles.yml").read_text(encoding="utf-8")
    names |= set(re.findall(r"env_var\(\s*['\"](\w+)['\"]", profiles))
    names |= set(referenced_variables([*COMBINATIONS["prod"], "docker-compose.staging.yml"], COMPOSE_REFERENCE))
    for source in (ROOT / "src").rglob("*.py"):
        names |= set(re.findall(r"[\"'](DATAOPS_[A-Z0-9_]+)[\"']", source.read_text(encoding="utf-8")))
    return names


def test_env_example_lists_every_variable_with_placeholders_only() -> None:
    lines = (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    entries = {}
    for line in lines:
        match = re.fullmatch(r"#?\s*([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            entries[match.group(1)] = match.group(2)
    missing = _variables_the_project_reads() - set(entries)
    assert not missing, f".env.example does not list {sorted(missing)}"
    for name, value in entries.items():
        if SECRET_KEY.search(name):
            assert value == "" or re.fullmatch(r"<[^>]*>", value), f".env.example gives {name} a value"


def test_pre_commit_runs_local_hooks_only() -> None:
    config = load_yaml(".pre-commit-config.yaml")
    hooks = []
    for repo in config["repos"]:
        assert repo["repo"] == "local", "a remote hook repository cannot be fetched here"
        hooks += repo["hooks"]
    for hook in hooks:
        assert hook["language"] == "system"
    entries = " | ".join(hook["entry"] for hook in hooks)
    for expected in ("ruff check", "dataops check", "scripts/check_secrets.sh"):
        assert expected in entries
    assert (ROOT / "scripts" / "check_secrets.sh").stat().st_mode & 0o111


# --- secrets scan -------------------------------------------------------------------------------


def _scan(project: Path) -> subprocess.CompletedProcess[str]:
    # The venv's detect-secrets, found on PATH when the copy has no .venv of its own.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        ["bash", str(project / "scripts" / "check_secrets.sh")],
        capture_output=True,
        text=True,
        env=env,
        cwd=project,
        timeout=300,
    )


def test_the_project_is_clean_under_the_secrets_scan() -> None:
    result = _scan(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no new secrets" in result.stdout
    # A finding is accepted only once `detect-secrets audit` has marked it as not a secret.
    baseline = json.loads((ROOT / ".secrets.baseline").read_text(encoding="utf-8"))
    for filename, findings in baseline["results"].items():
        for finding in findings:
            assert finding.get("is_secret") is False, f"unaudited finding in {filename}: {finding}"


def test_the_secrets_scan_fails_on_a_planted_secret(tmp_path: Path) -> None:
    project = tmp_path / "project"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "-co", "--exclude-standard"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, project / name)
    subprocess.run(["git", "init", "-q", str(project)], check=True)

    # Built here, so that this file itself holds nothing the scan would report.
    keyword = "pass" + "word"
    value = "Xk9#" + secrets.token_urlsafe(12) + "!"
    key_id = "AK" + "IA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    (project / "src" / "settings_local.py").write_text(f'{keyword} = "{value}"\n', encoding="utf-8")
    (project / "deploy.env").write_text(f"AWS_ACCESS_KEY_ID={key_id}\n", encoding="utf-8")

    result = _scan(project)
    assert result.returncode == 1, result.stdout + result.stderr
    reported = set(re.findall(r"Location:\s+(\S+):\d+", result.stdout))
    assert reported == {"src/settings_local.py", "deploy.env"}, result.stdout
    assert "Secret Keyword" in result.stdout and "AWS Access Key" in result.stdout
