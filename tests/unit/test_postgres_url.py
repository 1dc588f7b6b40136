"""The URL GX reaches PostgreSQL with, for a TCP host and for a Unix socket folder (libpq's
PGHOST=/var/run/postgresql), read back by SQLAlchemy as psycopg2 will receive it. The socket
against a real server: tests/integration/test_postgres_socket.py."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from dataops.warehouse.postgres import PostgresWarehouse

# A fake password with every character a URL must quote.
PASSWORD = "fake-@:/%?#&+ ;="  # pragma: allowlist secret


def _connect_args(host: str) -> dict[str, object]:
    warehouse = PostgresWarehouse(
        {"host": host, "port": "5433", "user": "analyst", "password": PASSWORD, "dbname": "adventureworks"}
    )
    url = make_url(warehouse.gx_connection_url())
    assert url.drivername == "postgresql+psycopg2"
    _, keywords = url.get_dialect()().create_connect_args(url)
    return dict(keywords)


@pytest.mark.parametrize("host", ["/var/run/postgresql", "/tmp", "@abstract-socket"])
def test_a_socket_folder_reaches_psycopg2_as_its_host(host: str) -> None:
    assert _connect_args(host) == {
        "host": host,
        "port": "5433",
        "user": "analyst",
        "password": PASSWORD,
        "dbname": "adventureworks",
    }


def test_a_network_host_stays_the_urls_host() -> None:
    assert _connect_args("db.example.test") == {
        "host": "db.example.test",
        "port": 5433,
        "user": "analyst",
        "password": PASSWORD,
        "dbname": "adventureworks",
    }
