"""The `deployment` part of a run record: kept through the JSON shape, absent from older records,
and what the deployment's Slack message says."""

from __future__ import annotations

from datetime import UTC, datetime

from dataops.history.records import DeploymentRecord, DiffRecord, PublishRecord, RunRecord, Trigger
from dataops.ops.notify import format_deployment


def _record(deployment: DeploymentRecord | None) -> RunRecord:
    started = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)
    return RunRecord(
        run_id="20260504T030201Z-abcdef",
        target="ci",
        kind="deploy",
        trigger=Trigger("cli"),
        started_at=started,
        finished_at=started,
        status="passed",
        exit_code=0,
        publish=PublishRecord(
            "published",
            version=4,
            previous_version=3,
            diffs=[DiffRecord("dim_territories", ["territory_id"], 0, 0, 10, {"territory_name": 10})],
        ),
        deployment=deployment,
    )


def test_a_deployment_survives_the_json_shape_and_older_records_have_none() -> None:
    deployment = DeploymentRecord(
        outcome="deployed",
        build="slim",
        reason="state:modified+ against deployment x",
        git_commit="a" * 40,
        branch="main",
        author="Dana <d@example.com>",
        changed_models=["model.adventureworks.stg_territories"],
        nodes_built=["model.adventureworks.stg_territories", "model.adventureworks.dim_territories"],
        tests_passed=18,
        seconds=12.5,
        published_version=4,
        previous_version=3,
        manifest_id="inv-1",
    )
    document = _record(deployment).to_dict()
    assert RunRecord.from_dict(document).deployment == deployment
    older = {key: value for key, value in document.items() if key != "deployment"}
    assert RunRecord.from_dict(older).deployment is None
    newer = {**document, "deployment": {**document["deployment"], "added_later": 1}}
    assert RunRecord.from_dict(newer).deployment == deployment


def test_the_message_names_environment_commit_changes_diff_and_rollback() -> None:
    record = _record(
        DeploymentRecord(
            outcome="deployed",
            build="slim",
            reason="r",
            git_commit="0123456789abcdef",
            branch="main",
            author="Dana",
            changed_models=["model.adventureworks.stg_territories"],
            tests_passed=18,
            tests_failed=0,
            seconds=12.5,
            published_version=4,
            previous_version=3,
        )
    )
    text, blocks = format_deployment(record, "dataops rollback --target ci --to 3")
    assert text.splitlines()[0] == ":large_green_circle: dataops deploy to ci deployed: v4 published"
    for fact in (
        "*Environment:* ci",
        "*Commit:* 0123456789ab on main by Dana",
        "*Changed models:* stg_territories",
        "*Tests:* 18 passed, 0 failed",
        "*Data diff:* dim_territories +0 -0 ~10",
        "*Duration:* 12.5 s",
        "*Rollback:* dataops rollback --target ci --to 3",
    ):
        assert fact in text, fact
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "dataops deploy to ci deployed: v4 published"},
    }
