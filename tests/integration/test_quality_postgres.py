"""`dataops quality` (the published marts) on a PostgreSQL target whose marts are not built: one line
that names them, found in PostgreSQL's own catalog (tables, views and materialized views alike)."""

from __future__ import annotations

import psycopg2
import pytest

from dataops.core.config import Settings
from dataops.core.errors import DataOpsError
from dataops.quality.suites import run_quality

pytestmark = pytest.mark.integration


def test_quality_before_the_marts_are_built_names_the_missing_ones(postgres_settings: Settings) -> None:
    with pytest.raises(DataOpsError) as raised:
        run_quality(postgres_settings, published=True)
    assert str(raised.value) == (
        "the marts are not built yet in postgres (missing marts.customer_analytics, marts.fct_orders): "
        "run `dataops run --target postgres` first"
    )

    fields = postgres_settings.connection()
    connection = psycopg2.connect(**{k: fields[k] for k in ("host", "port", "user", "password", "dbname")})
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("create schema marts")
            # A materialized view is a mart too; a table of the name in another schema is not.
            cursor.execute("create materialized view marts.fct_orders as select 1 as order_id")
            cursor.execute("create table public.customer_analytics (customer_id integer)")
    finally:
        connection.close()
    with pytest.raises(DataOpsError) as raised:
        run_quality(postgres_settings, published=True)
    assert "(missing marts.customer_analytics): run" in str(raised.value)
