"""dataops.ops.notify against a real HTTP server on 127.0.0.1. The webhook URLs are built here at run
time, with a random token in the path like a real one, so that tests can prove it is never shown."""

from __future__ import annotations

import json
import logging
import secrets
import socket
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from dataops.core.errors import DataOpsError
from dataops.ops import notify

# tests/webhook_receiver.py: tests/ is on sys.path under pytest's default import mode.
from webhook_receiver import WebhookServer, serve


@pytest.fixture
def server() -> Iterator[WebhookServer]:
    with serve() as state:
        yield state


@pytest.fixture(autouse=True)
def no_configured_webhook(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the developer's webhook nor a real delay between attempts."""
    monkeypatch.delenv(notify.WEBHOOK_ENV_VAR, raising=False)
    monkeypatch.delenv(notify.AIRFLOW_CONN_ENV_VAR, raising=False)
    monkeypatch.setattr(notify, "RETRY_DELAY_SECONDS", 0)


def closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_message_is_delivered_as_slack_compatible_json(
    server: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(notify.WEBHOOK_ENV_VAR, server.url)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*dataops* ok"}}]

    assert notify.send("dataops: all good", blocks=blocks) is True

    [request] = server.received
    assert request.path == server.path
    assert request.headers["Content-Type"].startswith("application/json")
    assert request.json == {"text": "dataops: all good", "blocks": blocks}


def test_without_a_webhook_nothing_is_sent(server: WebhookServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dataops.ops.notify")

    assert notify.webhook_url() is None
    assert notify.send("nobody listens") is False
    assert notify.notify_success("adventureworks_pipeline", "run-1", ["all passed"]) is False

    assert server.received == []
    assert "no webhook configured" in caplog.text


def test_a_server_error_is_retried_once_and_the_message_delivered(server: WebhookServer) -> None:
    server.statuses = [500]

    assert notify.send("second time lucky", url=server.url) is True

    assert [r.json["text"] for r in server.received] == ["second time lucky", "second time lucky"]


def test_two_server_errors_give_up_after_one_retry(server: WebhookServer) -> None:
    server.statuses = [503, 502, 200]

    with pytest.raises(DataOpsError, match="HTTP 502"):
        notify.send("down", url=server.url)

    assert len(server.received) == 2


def test_a_client_error_names_host_and_status_but_never_the_secret_path(server: WebhookServer) -> None:
    server.statuses = [404]

    with pytest.raises(DataOpsError) as raised:
        notify.send("lost", url=server.url)

    message = str(raised.value)
    assert f"127.0.0.1:{server.port}" in message
    assert "HTTP 404" in message
    assert server.token not in message
    assert "/services" not in message
    assert "\n" not in message
    assert len(server.received) == 1  # a 4xx is the caller's fault: retrying cannot help


def test_a_refused_connection_is_a_readable_error_after_one_retry(caplog: pytest.LogCaptureFixture) -> None:
    port = closed_port()
    token = secrets.token_hex(12)
    caplog.set_level(logging.INFO, logger="dataops.ops.notify")

    with pytest.raises(DataOpsError) as raised:
        notify.send("nobody home", url=f"http://127.0.0.1:{port}/services/{token}", timeout=2)

    message = str(raised.value)
    assert message.startswith(f"cannot reach webhook at 127.0.0.1:{port}: ")
    assert "refused" in message.lower()
    assert token not in message
    assert "retrying once" in caplog.text
    assert token not in caplog.text


def test_the_airflow_connection_in_uri_form_is_used(server: WebhookServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(notify.AIRFLOW_CONN_ENV_VAR, server.url)

    assert notify.webhook_url() == server.url
    assert notify.send("via the Airflow connection URI") is True
    assert server.received[0].path == server.path


@pytest.mark.parametrize(
    "connection",
    [
        # The webhook URL as the host: what most http connections for a webhook look like.
        lambda s: {"conn_type": "http", "host": s.url},
        # Host, port and scheme apart, the token as the password (Airflow's Slack webhook style).
        lambda s: {
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": s.port,
            "schema": "http",
            "password": s.path.lstrip("/"),
        },
    ],
    ids=["url-as-host", "host-port-token"],
)
def test_the_airflow_connection_in_json_form_is_used(
    server: WebhookServer, monkeypatch: pytest.MonkeyPatch, connection: Any
) -> None:
    monkeypatch.setenv(notify.AIRFLOW_CONN_ENV_VAR, json.dumps(connection(server)))

    assert notify.webhook_url() == server.url
    assert notify.send("via the Airflow connection JSON") is True
    assert server.received[0].path == server.path


def test_an_airflow_slack_webhook_uri_becomes_an_https_url(monkeypatch: pytest.MonkeyPatch) -> None:
    token = secrets.token_hex(12)
    monkeypatch.setenv(notify.AIRFLOW_CONN_ENV_VAR, f"slackwebhook://:{token}@hooks.example.test/services")

    assert notify.webhook_url() == f"https://hooks.example.test/services/{token}"


def test_a_malformed_airflow_connection_is_a_readable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(notify.AIRFLOW_CONN_ENV_VAR, '{"conn_type": "http", "host": ')
    with pytest.raises(DataOpsError, match=f"{notify.AIRFLOW_CONN_ENV_VAR} is not valid JSON"):
        notify.webhook_url()
    # notify_failure still never raises over it.
    notify.notify_failure({})


def test_dataops_webhook_url_wins_over_the_airflow_connection(
    server: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(notify.WEBHOOK_ENV_VAR, server.url)
    monkeypatch.setenv(notify.AIRFLOW_CONN_ENV_VAR, f"http://127.0.0.1:{closed_port()}/elsewhere")

    assert notify.webhook_url() == server.url


def failure_context(**overrides: Any) -> dict[str, Any]:
    """What Airflow passes to on_failure_callback, with plain objects in place of Airflow's."""
    ti = SimpleNamespace(
        dag_id="adventureworks_pipeline",
        task_id="dbt.stg_orders.test",
        run_id="scheduled__2026-11-24T00:00:00+00:00",
        try_number=2,
        log_url="http://airflow.local/dags/adventureworks_pipeline/grid?task_id=dbt.stg_orders.test&tab=logs",
    )
    return {
        "ti": ti,
        "task_instance": ti,
        "exception": RuntimeError("unique on stg_orders.order_id:\n3 failing rows"),
        "logical_date": "2026-11-24T00:00:00+00:00",
        **overrides,
    }


def test_notify_failure_sends_the_formatted_failure(server: WebhookServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(notify.WEBHOOK_ENV_VAR, server.url)

    notify.notify_failure(failure_context())

    [request] = server.received
    assert request.json == {
        "text": ":red_circle: dataops: task adventureworks_pipeline.dbt.stg_orders.test failed (try 2) in run "
        "scheduled__2026-11-24T00:00:00+00:00: RuntimeError: unique on stg_orders.order_id: 3 failing rows "
        "http://airflow.local/dags/adventureworks_pipeline/grid?task_id=dbt.stg_orders.test&amp;tab=logs"
    }


def test_notify_failure_swallows_a_server_error_and_logs_it(
    server: WebhookServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(notify.WEBHOOK_ENV_VAR, server.url)
    server.statuses = [500, 500]

    notify.notify_failure(failure_context())  # must not raise: the task's own failure comes first

    assert len(server.received) == 2
    [record] = [r for r in caplog.records if r.name == "dataops.ops.notify" and r.levelno == logging.WARNING]
    assert "failure notification not sent" in record.getMessage()
    assert "HTTP 500" in record.getMessage()
    assert server.token not in caplog.text


def test_failure_text_survives_a_sparse_or_odd_context() -> None:
    class Exploding:
        dag_id = "d"
        task_id = "t"

        @property
        def log_url(self) -> str:
            raise RuntimeError("no [webserver] base_url configured")

    assert notify.format_failure({}) == ":red_circle: dataops: task unknown dag.unknown task failed"
    assert notify.format_failure(
        {"dag_id": "d", "task": SimpleNamespace(task_id="t"), "run_id": "r1", "exception": "boom <b>"}
    ) == (":red_circle: dataops: task d.t failed in run r1: boom &lt;b&gt;")
    assert notify.format_failure(
        {"ti": Exploding(), "dag": SimpleNamespace(dag_id="ignored"), "logical_date": "2026-11-24"}
    ) == (":red_circle: dataops: task d.t failed for 2026-11-24")


def test_notify_success_sends_the_summary_and_raises_when_it_cannot(
    server: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(notify.WEBHOOK_ENV_VAR, server.url)

    assert (
        notify.notify_success("adventureworks_pipeline", "manual__1", ["source freshness passed", "", "quality passed"])
        is True
    )
    assert server.received[0].json["text"] == (
        ":large_green_circle: dataops: adventureworks_pipeline succeeded in run manual__1\n"
        "• source freshness passed\n• quality passed"
    )

    server.statuses = [403]
    with pytest.raises(DataOpsError, match="HTTP 403"):
        notify.notify_success("adventureworks_pipeline", "manual__1", ["quality passed"])
