"""Slack-compatible webhook notifications for the Airflow DAGs (task failures, as an
`on_failure_callback`, and the pipeline's final summary) and for `dataops deploy` (each deployment,
succeeded or failed).

The webhook URL is a secret (Slack and most chat tools put the token in its path), so it comes only
from the environment and is never logged or put in an error message: errors name the host only.
Standard library only: the callback runs inside Airflow workers, and must not import Airflow so
that it can be tested (and used) without it."""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from dataops.core.errors import DataOpsError
from dataops.history.records import RunRecord

log = logging.getLogger(__name__)

WEBHOOK_ENV_VAR = "DATAOPS_WEBHOOK_URL"
# How Airflow exposes a connection named `dataops_webhook` through the environment.
AIRFLOW_CONN_ENV_VAR = "AIRFLOW_CONN_DATAOPS_WEBHOOK"
# Seconds before the one retry: long enough for a restarting proxy, short enough for a callback.
RETRY_DELAY_SECONDS = 1.0
_MAX_EXCEPTION_CHARS = 500


def webhook_url() -> str | None:
    """$DATAOPS_WEBHOOK_URL, else the Airflow connection `dataops_webhook` from
    $AIRFLOW_CONN_DATAOPS_WEBHOOK (a URI or Airflow's JSON form); None when neither is set."""
    direct = os.environ.get(WEBHOOK_ENV_VAR, "").strip()
    if direct:
        return direct
    connection = os.environ.get(AIRFLOW_CONN_ENV_VAR, "").strip()
    if not connection:
        return None
    if connection.startswith("{"):
        try:
            fields = json.loads(connection)
        except json.JSONDecodeError as error:
            raise DataOpsError(f"{AIRFLOW_CONN_ENV_VAR} is not valid JSON: {error.msg}") from error
        if not isinstance(fields, dict):
            raise DataOpsError(f"{AIRFLOW_CONN_ENV_VAR} must be a JSON object or a URI")
        return _url_from_connection(fields)
    parts = urlsplit(connection)
    if parts.scheme in ("http", "https"):
        # The webhook URL itself, as most deployments set it.
        return connection
    if not parts.scheme or not parts.hostname:
        raise DataOpsError(f"{AIRFLOW_CONN_ENV_VAR} is neither a URL nor an Airflow connection URI")
    # An Airflow connection URI such as `slackwebhook://:<token>@hooks.example/services`: Airflow
    # reads the scheme as the connection type and the path as its `schema`.
    return _url_from_connection(
        {
            "conn_type": parts.scheme,
            "host": parts.hostname,
            "port": parts.port,
            "schema": unquote(parts.path.lstrip("/")),
            "password": unquote(parts.password) if parts.password else None,
        }
    )


def _url_from_connection(fields: Mapping[str, Any]) -> str:
    """The URL an Airflow http or slackwebhook connection stands for: a full URL in `host` (or in
    `password`, as Slack webhook connections allow), else scheme://host[:port] followed by the path
    in `schema` and the token in `password`."""
    host = str(fields.get("host") or "").strip()
    password = str(fields.get("password") or "").strip()
    if password.startswith(("http://", "https://")):
        return password
    if not host:
        raise DataOpsError(f"{AIRFLOW_CONN_ENV_VAR} has no host: set the webhook URL as its host")
    schema = str(fields.get("schema") or "").strip()
    if "://" in host:
        base = host.rstrip("/")
    else:
        # Airflow's HttpHook defaults to http, but the token travels in the path: use https unless
        # the connection asks for http explicitly.
        scheme = schema if schema in ("http", "https") else "https"
        port = fields.get("port")
        base = f"{scheme}://{host.rstrip('/')}" + (f":{port}" if port and ":" not in host else "")
    path = [segment.strip("/") for segment in (schema, password) if segment and segment not in ("http", "https")]
    return "/".join([base, *path])


def _host(url: str) -> str:
    """host[:port] of a URL, the only part of a webhook URL safe to show."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "?", parts.port
    except ValueError:
        return "?"
    return f"{host}:{port}" if port else host


def send(text: str, blocks: list[dict[str, Any]] | None = None, url: str | None = None, timeout: float = 10) -> bool:
    """POST a Slack-compatible message; True when delivered, False when no webhook is configured.
    A 5xx answer or a connection error is retried once; then DataOpsError names the host and the
    status or error, never the URL's path (where the secret is)."""
    target = url or webhook_url()
    if not target:
        log.debug("no webhook configured (%s or %s): notification not sent", WEBHOOK_ENV_VAR, AIRFLOW_CONN_ENV_VAR)
        return False
    host = _host(target)
    if urlsplit(target).scheme not in ("http", "https"):
        # urllib also opens file:// and ftp:// URLs; a webhook is only ever http(s).
        raise DataOpsError(f"webhook URL for {host} must start with https:// (or http://)")
    payload: dict[str, Any] = {"text": text}
    if blocks:
        payload["blocks"] = blocks
    body = json.dumps(payload).encode("utf-8")
    for attempt in (1, 2):
        request = urllib.request.Request(
            target,
            data=body,
            headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": "dataops-notify"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
            return True
        except urllib.error.HTTPError as error:
            detail = f"HTTP {error.code} {error.reason}{_answer(error, target)}"
            retry = error.code >= 500
            problem = f"webhook at {host} answered {detail}"
        except (urllib.error.URLError, OSError) as error:
            # A timeout may hide a delivered message; one duplicate beats a lost failure alert.
            reason = error.reason if isinstance(error, urllib.error.URLError) else error
            detail = reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason)
            retry = True
            problem = f"cannot reach webhook at {host}: {detail}"
        if not retry or attempt == 2:
            raise DataOpsError(problem)
        log.info("%s; retrying once", problem)
        time.sleep(RETRY_DELAY_SECONDS)
    raise AssertionError("unreachable")  # the loop returns or raises


def _answer(error: urllib.error.HTTPError, url: str) -> str:
    """The start of the server's answer (Slack says why there: "invalid_token", "no_service"),
    on one line, with the URL's path removed in case the server echoes it."""
    try:
        text = error.read(200).decode("utf-8", "replace")
    except Exception:
        return ""
    path = urlsplit(url).path
    if path and path != "/":
        text = text.replace(path, "/…")
    text = " ".join(text.split())[:120]
    return f": {text}" if text else ""


def _escape(text: str) -> str:
    """Slack treats &, < and > as markup: escape them in anything that comes from outside."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attribute(thing: Any, name: str) -> Any:
    """getattr that survives Airflow properties raising (log_url reads the config, for one)."""
    try:
        return getattr(thing, name, None)
    except Exception:
        return None


def _one_line(value: Any) -> str:
    if isinstance(value, BaseException):
        text = f"{type(value).__name__}: {value}" if str(value) else type(value).__name__
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_EXCEPTION_CHARS else text[: _MAX_EXCEPTION_CHARS - 1] + "…"


def format_failure(context: Mapping[str, Any]) -> str:
    """One line for a failed Airflow task, from its callback context; any key may be missing."""
    ti = context.get("task_instance") or context.get("ti")
    dag_id = (
        _attribute(ti, "dag_id") or context.get("dag_id") or _attribute(context.get("dag"), "dag_id") or "unknown dag"
    )
    task_id = _attribute(ti, "task_id") or _attribute(context.get("task"), "task_id") or "unknown task"
    run_id = _attribute(ti, "run_id") or context.get("run_id") or _attribute(context.get("dag_run"), "run_id")
    try_number = _attribute(ti, "try_number")
    text = f":red_circle: dataops: task {_escape(f'{dag_id}.{task_id}')} failed"
    if try_number is not None:
        text += f" (try {_escape(str(try_number))})"
    if run_id:
        text += f" in run {_escape(str(run_id))}"
    elif context.get("logical_date") is not None:
        text += f" for {_escape(str(context['logical_date']))}"
    exception = context.get("exception")
    if exception is not None and _one_line(exception):
        text += f": {_escape(_one_line(exception))}"
    log_url = _attribute(ti, "log_url")
    if log_url:
        text += f" {_escape(str(log_url))}"
    return text


def notify_failure(context: Mapping[str, Any]) -> None:
    """`on_failure_callback`: never raises, since a failing notification must not mask the task's
    own failure; what went wrong is logged instead."""
    try:
        send(format_failure(context))
    except DataOpsError as error:
        log.warning("failure notification not sent: %s", error)
    except Exception:
        # A bug here must not hide the task failure either; the traceback stays in the task log.
        log.exception("failure notification not sent")


def format_success(dag_id: str, run_id: str, summary_lines: Iterable[str]) -> str:
    """The pipeline's final message: a headline, then one bullet per step's account."""
    text = f":large_green_circle: dataops: {_escape(dag_id)} succeeded"
    if run_id:
        text += f" in run {_escape(run_id)}"
    bullets = [f"• {_escape(_one_line(line))}" for line in summary_lines if line and str(line).strip()]
    return "\n".join([text, *bullets])


def notify_success(dag_id: str, run_id: str, summary_lines: Iterable[str], url: str | None = None) -> bool:
    """Send the final summary; False when no webhook is configured. Unlike notify_failure it
    raises DataOpsError: sending is this task's whole job, so Airflow should retry it and report it."""
    return send(format_success(dag_id, run_id, summary_lines), url=url)


def _diffs_line(record: RunRecord) -> str:
    diffs = record.publish.diffs if record.publish else []
    if not diffs:
        return "no data diff (nothing published to compare with)"
    return "; ".join(f"{d.mart} +{d.added:,} -{d.removed:,} ~{d.changed:,}" for d in diffs)


def format_deployment(record: RunRecord, rollback: str) -> tuple[str, list[dict[str, Any]]]:
    """A deployment's message, as text (the fallback Slack shows in notifications) and blocks:
    environment, commit, changed models, tests, the data diff, duration, and how to roll back."""
    deployment = record.deployment
    if deployment is None:
        raise ValueError(f"run {record.run_id} is not a deployment")
    succeeded = deployment.outcome in ("deployed", "unchanged")
    icon = ":large_green_circle:" if succeeded else ":red_circle:"
    version = (
        f"v{deployment.published_version} published"
        if deployment.outcome == "deployed"
        else "nothing published"
        + (f", consumers keep v{deployment.previous_version}" if deployment.previous_version else "")
    )
    headline = f"{icon} dataops deploy to {record.target} {deployment.outcome}: {version}"
    commit = (deployment.git_commit or "unknown commit")[:12] + (" (uncommitted changes)" if deployment.dirty else "")
    changed = ", ".join(name.rsplit(".", 1)[-1] for name in deployment.changed_models) or "none"
    facts = [
        ("Environment", record.target),
        ("Commit", f"{commit} on {deployment.branch or 'no branch'} by {deployment.author or 'unknown'}"),
        ("Build", f"{deployment.build}: {deployment.reason}; {len(deployment.nodes_built)} models built"),
        ("Changed models", changed),
        ("Tests", f"{deployment.tests_passed} passed, {deployment.tests_failed} failed"),
        ("Data diff", _diffs_line(record)),
        ("Duration", f"{deployment.seconds:.1f} s" if deployment.seconds is not None else "unknown"),
        ("Rollback", rollback),
    ]
    if record.error:
        facts.append(("Error", _one_line(record.error)))
    elif not succeeded and record.publish is not None:
        facts.append(("Stopped by", record.publish.reason))
    lines = [f"*{name}:* {_escape(str(value))}" for name, value in facts]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline.split(" ", 1)[1][:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"run {_escape(record.run_id)}"}]},
    ]
    text = "\n".join([_escape(headline), *(f"• {line}" for line in lines)])
    return text, blocks


def notify_deployment(record: RunRecord, rollback: str, url: str | None = None) -> bool:
    """Send a deployment's message; False when no webhook is configured. DataOpsError when it
    could not be delivered (the deploy reports that, and its outcome stays what it was)."""
    text, blocks = format_deployment(record, rollback)
    return send(text, blocks, url=url)
