"""The SQL Server connection strings, built from the real profiles.yml and parsed back by
mssql-python's own ODBC parser: a password of any characters stays one attribute, and GX connects
with the encryption and certificate trust the target sets, exactly as loads and dbt do."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from mssql_python.connection_string_parser import _ConnectionStringParser
from sqlalchemy.engine import make_url

from dataops.core.config import Settings, load_settings
from dataops.core.errors import DataOpsError
from dataops.warehouse.sqlserver import SqlServerWarehouse, odbc_value

SERVER, DATABASE, USER = "db.example.test", "AdventureWorks", "dataops_loader"


def _nasty(*parts: str) -> str:
    """A fake password, built here so that no literal in this file looks like a credential."""
    return "fake-" + "".join(parts)


# Each one breaks a naive `Pwd={password};` in its own way: ends the attribute early, injects one,
# closes or opens a brace, carries an `=`, or outer spaces a driver would trim; `%+&#@/:?` would
# break a URL that was not quoted.
NASTY = [
    _nasty("semi;colon"),
    _nasty("x;Encrypt=no;TrustServerCertificate=yes"),
    _nasty("close}brace"),
    _nasty("}}doubled}}"),
    "{" + _nasty("opens-with-a-brace"),
    _nasty("key=value"),
    " " + _nasty("outer spaces") + " ",
    _nasty("%+&#@/:?~'\""),
    _nasty("}{;=} all;{of}=them"),
]


@pytest.fixture
def server_env(warehouse_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for target in ("STAGING", "PROD", "SQLSERVER_DEV"):
        monkeypatch.setenv(f"DBT_{target}_SERVER", SERVER)
        monkeypatch.setenv(f"DBT_{target}_DATABASE", DATABASE)
        monkeypatch.setenv(f"DBT_{target}_USER", USER)
        monkeypatch.delenv(f"DBT_{target}_PORT", raising=False)
        monkeypatch.delenv(f"DBT_{target}_DRIVER", raising=False)


def _warehouse(settings: Settings, password: str, monkeypatch: pytest.MonkeyPatch) -> SqlServerWarehouse:
    monkeypatch.setenv(f"DBT_{settings.target.upper()}_PASSWORD", password)
    return SqlServerWarehouse(settings.connection())


def _parsed(connection_string: str, validate_keywords: bool) -> dict[str, str]:
    """mssql-python's parser: validating keywords, exactly as mssql_python.connect() does first."""
    return _ConnectionStringParser(validate_keywords=validate_keywords)._parse(connection_string)


def _expected(password: str, encrypt: str, trust: str) -> dict[str, str]:
    return {
        "server": f"tcp:{SERVER},1433",
        "database": DATABASE,
        "uid": USER,
        "pwd": password,
        "encrypt": encrypt,
        "trustservercertificate": trust,
    }


@pytest.mark.parametrize("password", NASTY)
def test_any_password_parses_back_to_the_same_attributes(
    server_env: None, monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    warehouse = _warehouse(load_settings("prod"), password, monkeypatch)
    assert _parsed(warehouse.connection_string, validate_keywords=True) == _expected(password, "yes", "no")


@pytest.mark.parametrize("password", NASTY)
def test_the_gx_url_gives_pyodbc_the_same_attributes_and_the_driver(
    server_env: None, monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    warehouse = _warehouse(load_settings("prod"), password, monkeypatch)
    url = make_url(warehouse.gx_connection_url())
    assert url.drivername == "mssql+pyodbc"
    # What SQLAlchemy's pyodbc dialect hands to pyodbc.connect(), parsed back.
    (odbc,), keywords = url.get_dialect()().create_connect_args(url)
    assert keywords == {}
    expected = {"driver": "ODBC Driver 18 for SQL Server", **_expected(password, "yes", "no")}
    assert _parsed(odbc, validate_keywords=False) == expected


@pytest.mark.parametrize(
    ("target", "encrypt", "trust"),
    [("sqlserver_dev", "yes", "yes"), ("staging", "yes", "no"), ("prod", "yes", "no")],
)
def test_encryption_and_trust_are_the_targets_own_for_loads_and_gx(
    server_env: None, monkeypatch: pytest.MonkeyPatch, target: str, encrypt: str, trust: str
) -> None:
    settings = load_settings(target)
    output = settings.profile_output()
    assert (output["encrypt"], output["trust_cert"]) == (encrypt == "yes", trust == "yes")  # profiles.yml
    warehouse = _warehouse(settings, _nasty("plain"), monkeypatch)
    url = make_url(warehouse.gx_connection_url())
    for connection_string in (warehouse.connection_string, url.query["odbc_connect"]):
        attributes = _parsed(str(connection_string), validate_keywords=False)
        assert (attributes["encrypt"], attributes["trustservercertificate"]) == (encrypt, trust)


def test_a_target_that_turns_encryption_off_gets_it_off_in_gx_too(
    server_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = load_settings("prod")
    document = yaml.safe_load(settings.profiles_file.read_text(encoding="utf-8"))
    document["adventureworks"]["outputs"]["prod"].update(encrypt=False, trust_cert=True)
    profiles = tmp_path / "profiles.yml"
    profiles.write_text(yaml.safe_dump(document), encoding="utf-8")
    warehouse = _warehouse(dataclasses.replace(settings, profiles_file=profiles), _nasty("plain"), monkeypatch)
    gx = _parsed(str(make_url(warehouse.gx_connection_url()).query["odbc_connect"]), validate_keywords=False)
    assert (gx["encrypt"], gx["trustservercertificate"]) == ("no", "yes")
    assert _parsed(warehouse.connection_string, validate_keywords=True)["encrypt"] == "no"


def test_a_flag_that_is_not_a_boolean_is_a_configuration_error(
    server_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBT_PROD_PASSWORD", _nasty("plain"))
    connection = {**load_settings("prod").connection(), "encrypt": "sometimes"}
    with pytest.raises(DataOpsError) as raised:
        SqlServerWarehouse(connection)
    assert str(raised.value) == (
        "the SQL Server profile's encrypt is 'sometimes': set it to true or false in dbt/profiles.yml"
    )


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", "plain"),
        ("a;b", "{a;b}"),
        ("a}b", "{a}}b}"),
        ("{a", "{{a}"),
        ("a=b", "{a=b}"),
        (" a", "{ a}"),
        ("ODBC Driver 18 for SQL Server", "{ODBC Driver 18 for SQL Server}"),
    ],
)
def test_values_are_quoted_by_the_odbc_rules(value: str, quoted: str) -> None:
    assert odbc_value(value) == quoted
