"""`dataops deploy`: pre-deployment checks (doctor, compile, the project checks), a slim build of
what changed since the last successful deployment to the target, every check, the atomic publish,
docs, a deployment record in the run history and a notification.

Why a slim deployment publishes the same marts a full build would. dbt builds `state:modified+`
against the manifest that built the published version (the one kept with the deployment that
published it): every model whose code, config, macros or contract changed, and everything
downstream of one, so a mart with a changed upstream is rebuilt. The candidate first gets a copy of
every other mart from the published version, and the models that are not rebuilt are read where
they are (staging and intermediate are views in the warehouse, not versioned). That is right only
while the published version and those views are still what that deployment built from the same
sources, so a slim build is planned only when all of these hold, and otherwise the deployment
builds everything and says why:

- the published version is the one that deployment published (no rollback, no other publish);
- no run, deploy or rollback was recorded on the target after it: a failed or `--select` run may
  have rebuilt views from other code and left marts in the candidate that must not be published
  (the candidate is as that publish left it: emptied on DuckDB and PostgreSQL, views of the
  published tables on SQL Server); a crashed run may have done anything;
- the source tables are still the load that deployment built from: every load writes a new load id
  in its own transaction, and each run records the one it read (the same row counts may hold
  other rows), with the row counts that deployment recorded (a writer other than `dataops load`
  leaves the load id alone). A target that reads its sources in place has no load: those move all the time, and
  the unchanged marts are then as fresh as the published version, as dbt's `--defer` would have them;
- dbt's version and the project's vars are the same (state:modified does not see a var change);
- with `--state DIR`, DIR holds that deployment's manifest (its invocation id): DIR only says
  where the manifest is (e.g. downloaded by CI), never which version the marts come from.

The pipeline checks the history and the published version again once it holds the target, before
building anything (SlimBuild.confirm), so a run in between cannot slip through.

What a deployment parses and compiles. dbt parses the project once (the `parse` stage, into the
compile folder); that manifest serves the compile, the project checks, the plan's `dbt ls` and the
pipeline's freshness, build and docs (DbtProject.sharing_parse: the run's artifacts still go to the
run folder, and the kept manifest is the build's). The plan and the build therefore see the same
code the checks passed. The compile is of the whole project, slim or not, offline (no connection,
no introspection): its job is to prove that every model and test renders for this target before
anything is built. Compiling only `state:modified+` would prove nothing the slim build does not
prove itself (it compiles exactly those nodes), and a parse does not render a model's SQL for the
target the way a compile does. It is a fixed cost that does not grow with the data (about 0.7 s
here, see BENCHMARKS.md), so it stays whole."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dataops.commands.changes import MANIFEST, read_state
from dataops.commands.doctor import diagnose
from dataops.commands.run import Pipeline, Reporter, RunOptions, SilentReporter, SlimBuild, parse_detail
from dataops.core.config import DBT_PROJECT_DIR, PROJECT_ROOT, Settings
from dataops.core.errors import DataOpsError, ExitCode
from dataops.history.provenance import git_commit
from dataops.history.records import DeploymentRecord, RunRecord, StageRecord, Trigger, new_run_id
from dataops.history.store import HistoryStore
from dataops.ops import notify
from dataops.project.checks import run_checks
from dataops.project.compile import compile_project
from dataops.project.results import RunSummary, StageResult, what_stopped
from dataops.project.runner import DbtProject, project_vars
from dataops.publish.audit import marts_of
from dataops.sources.contract import SOURCE_TABLES
from dataops.warehouse import connect

if TYPE_CHECKING:
    from dataops.quality.suites import QualityWorker

KEPT_ARTIFACTS = (MANIFEST, "run_results.json")
# The deployment's own stages, before the pipeline's: what `dataops deploy` shows as pre-deployment.
PRE_DEPLOYMENT_STAGES = ("doctor", "parse", "compile", "checks", "plan")
# Runs that write nothing to the warehouse do not break a slim build's premise.
_READ_ONLY_KINDS = frozenset({"quality"})
_RUNS_LOOKED_AT = 200
T = TypeVar("T")


@dataclass(frozen=True)
class DeployOptions:
    full: bool = False
    state: Path | None = None
    wait: bool = False


@dataclass
class BuildPlan:
    slim: bool
    reason: str
    state_dir: Path | None = None
    state_of: str | None = None  # the deployment whose manifest the build compares with
    changed: list[str] | None = None  # state:modified nodes but tests (models, sources, seeds...)
    selected: list[str] | None = None  # state:modified+ nodes

    @property
    def models(self) -> list[str]:
        """The models the slim build rebuilds."""
        return [uid for uid in self.selected or [] if uid.startswith("model.")]


@dataclass
class DeployReport:
    record: RunRecord
    plan: BuildPlan | None
    summary: RunSummary | None
    rollback: str

    @property
    def exit_code(self) -> int:
        return self.record.exit_code


def deployments_dir(settings: Settings) -> Path:
    return settings.artifacts_dir / "deployments"


def last_deployment(history: HistoryStore, target: str) -> RunRecord | None:
    """The newest deployment to the target that published (or found nothing to deploy)."""
    for row in history.runs(target, limit=_RUNS_LOOKED_AT, kind="deploy"):
        record = history.get(row.run_id)
        if (
            record is not None
            and record.deployment is not None
            and record.deployment.outcome in ("deployed", "unchanged")
        ):
            return record
    return None


def _vars_digest(settings: Settings) -> str:
    return hashlib.sha256(json.dumps(project_vars(settings), sort_keys=True, default=str).encode()).hexdigest()[:16]


def _published_version(settings: Settings) -> int | None:
    return next((v.number for v in connect(settings).versions() if v.current), None)


def why_not_slim(
    settings: Settings, history: HistoryStore, last: RunRecord, own_run_id: str | None = None
) -> str | None:
    """What stops a slim build against deployment `last` (see the module's docstring); None when nothing."""
    deployment = last.deployment
    assert deployment is not None
    for row in history.runs(settings.target, limit=_RUNS_LOOKED_AT):
        if row.run_id == last.run_id:
            break
        if row.run_id != own_run_id and row.kind not in _READ_ONLY_KINDS:
            return (
                f"run {row.run_id} ({row.kind}, {row.status}) changed {settings.target} after deployment {last.run_id}"
            )
    else:
        return f"deployment {last.run_id} is not among the last {_RUNS_LOOKED_AT} runs of {settings.target}"
    published = _published_version(settings)
    if published != deployment.published_version:
        return f"v{published} is published, not v{deployment.published_version} that deployment {last.run_id} published"
    if not settings.source_database:
        if last.source_load is None:
            return f"deployment {last.run_id} recorded no load of the source tables to compare with"
        warehouse = connect(settings)
        if warehouse.source_load() != last.source_load:
            return f"the source tables were loaded again since deployment {last.run_id}"
        # A writer other than `dataops load` leaves the load id as it was; its rows still count.
        counted = warehouse.row_counts([table.qualified_name for table in SOURCE_TABLES])
        moved = sorted(name for name, rows in counted.items() if last.row_counts.get(name) != rows)
        if moved:
            return f"the source tables changed since deployment {last.run_id} ({', '.join(moved[:3])})"
    if deployment.vars_digest != _vars_digest(settings):
        return "the project's vars changed (state:modified does not see a var change)"
    return None


def plan_build(settings: Settings, history: HistoryStore, project: DbtProject, options: DeployOptions) -> BuildPlan:
    if options.full:
        return BuildPlan(False, "--full")
    last = last_deployment(history, settings.target)
    if last is None or last.deployment is None:
        return BuildPlan(False, f"first deployment to {settings.target}")
    kept = Path(last.deployment.artifacts) if last.deployment.artifacts else None
    state_dir = options.state or kept
    if state_dir is None or not (state_dir / MANIFEST).is_file():
        return BuildPlan(False, f"the manifest of deployment {last.run_id} is not at {state_dir} (give --state DIR)")
    manifest = read_state(state_dir)
    state_id = manifest["metadata"].get("invocation_id")
    if state_id != last.deployment.manifest_id:
        return BuildPlan(
            False,
            f"{state_dir / MANIFEST} is not the manifest of deployment {last.run_id} "
            f"(invocation {state_id}, not {last.deployment.manifest_id})",
        )
    if manifest["metadata"].get("dbt_version") != metadata.version("dbt-core"):
        return BuildPlan(
            False,
            f"dbt {manifest['metadata'].get('dbt_version')} wrote the state's manifest, "
            f"this is dbt {metadata.version('dbt-core')}",
        )
    problem = why_not_slim(settings, history, last)
    if problem is not None:
        return BuildPlan(False, problem)
    modified, selected = project.modified(state_dir)
    # dbt counts the tests of a modified model as modified too: the change is the model.
    changed = [uid for uid in modified if not uid.startswith(("test.", "unit_test."))]
    return BuildPlan(
        True, f"state:modified+ against deployment {last.run_id}", state_dir, last.run_id, changed, selected
    )


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _provenance() -> dict[str, Any]:
    """The commit deployed: its time, branch and author, and whether the dbt project had uncommitted
    changes. CI checks out a detached HEAD: the branch then comes from the CI's own variable."""
    commit = git_commit()
    shown = _git("show", "-s", "--format=%cI%x00%an <%ae>", "HEAD") if commit else None
    commit_time, author = shown.split("\x00", 1) if shown and "\x00" in shown else (None, None)
    branch = _git("rev-parse", "--abbrev-ref", "HEAD")
    if branch in (None, "HEAD"):
        branch = os.environ.get("GITHUB_HEAD_REF") or os.environ.get("GITHUB_REF_NAME") or branch
    status = _git("status", "--porcelain", "--", str(DBT_PROJECT_DIR)) if commit else None
    return {"git_commit": commit, "commit_time": commit_time, "author": author, "branch": branch, "dirty": bool(status)}


def _keep_artifacts(settings: Settings, run_id: str) -> tuple[str | None, str | None]:
    """This deployment's manifest and run results, copied beside the others; and the manifest's id."""
    source = settings.artifacts_dir / "dbt"
    folder = deployments_dir(settings) / run_id
    folder.mkdir(parents=True, exist_ok=True)
    for name in KEPT_ARTIFACTS:
        if (source / name).is_file():
            shutil.copy2(source / name, folder / name)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return str(folder), manifest["metadata"].get("invocation_id")
    except (OSError, ValueError, KeyError):
        return str(folder), None


class Deployment:
    def __init__(
        self,
        settings: Settings,
        reporter: Reporter | None = None,
        history: HistoryStore | None = None,
        quality_worker: QualityWorker | None = None,
    ) -> None:
        self.settings = settings
        self.reporter = reporter or SilentReporter()
        self.history = history or HistoryStore()
        self.quality_worker = quality_worker
        self.stages: list[StageRecord] = []

    def _stage(self, name: str, work: Callable[[], tuple[T, str]]) -> T:
        self.reporter.stage_started(name)
        started = time.perf_counter()
        try:
            value, detail = work()
        except BaseException as error:
            stage = StageResult(name, "failed", time.perf_counter() - started, what_stopped(error)[1])
            self._finished(stage)
            raise
        self._finished(StageResult(name, "ok", time.perf_counter() - started, detail))
        return value

    def _finished(self, stage: StageResult) -> None:
        self.stages.append(StageRecord(stage.name, stage.status, round(stage.seconds, 3), stage.detail))
        self.reporter.stage_finished(stage)

    def _doctor(self) -> tuple[None, str]:
        """A problem is a configuration error (exit 2)."""
        report = diagnose(self.settings)
        failing = [f"{f.name}: {f.detail}" for f in report.findings if f.status == "fail"]
        if failing:
            raise DataOpsError(f"dataops doctor found problems on {self.settings.target}: {'; '.join(failing)}")
        return None, "healthy"

    def _compile(self, project: DbtProject) -> tuple[None, str]:
        compiled = compile_project(self.settings, run_validation=False, project=project)
        return None, f"{len(compiled.nodes)} nodes compiled"

    def _project_checks(self, project: DbtProject) -> tuple[None, str]:
        """A violation is a failed check (exit 1)."""
        violations = run_checks(project.manifest_dict())
        if violations:
            shown = "; ".join(f"{v.check} on {v.node}: {v.message}" for v in violations[:5])
            raise _ChecksFailed(f"{len(violations)} project check(s) failed: {shown} (see `dataops check`)")
        return None, "project checks passed"

    def _pre_deployment(self, project: DbtProject, options: DeployOptions) -> BuildPlan:
        """Doctor, the one parse, the compile, the project checks and the plan, each a stage of its own."""
        self._stage("doctor", self._doctor)
        self._stage("parse", lambda: (None, f"{parse_detail(project.parse())}; the deployment's only parse"))
        self._stage("compile", lambda: self._compile(project))
        self._stage("checks", lambda: self._project_checks(project))
        return self._stage("plan", lambda: _described(plan_build(self.settings, self.history, project, options)))

    def run(self, options: DeployOptions) -> DeployReport:
        try:
            if options.state is not None:
                read_state(options.state)  # a wrong --state is a usage error before anything runs
            self.history.open_for_writing()
        except BaseException:
            if self.quality_worker is not None:
                self.quality_worker.finish()
            raise
        run_id = new_run_id()
        started, clock = datetime.now(UTC), time.perf_counter()
        provenance = _provenance()
        # Parsed once, into the compile folder; the run reuses the parse with its artifacts in the run folder.
        project = DbtProject(self.settings, compile_only=True)
        plan: BuildPlan | None = None
        summary: RunSummary | None = None
        error: BaseException | None = None
        try:
            plan = self._pre_deployment(project, options)
            if plan.slim and not plan.selected:
                if self.quality_worker is not None:
                    self.quality_worker.finish()
            else:
                pipeline = Pipeline(
                    self.settings,
                    self.reporter,
                    self.quality_worker,
                    self.history,
                    project=project.sharing_parse(compile_only=False),
                )
                summary = pipeline.run(
                    RunOptions(kind="deploy", run_id=run_id, wait=options.wait, slim=self._slim(plan, project, run_id))
                )
        except BaseException as raised:
            error = raised
            if self.quality_worker is not None and summary is None and plan is None:
                self.quality_worker.finish()
        record = self._record(run_id, started, time.perf_counter() - clock, provenance, plan, error)
        rollback = self._rollback_command(record)
        record = self._notify(record, rollback)
        if isinstance(error, _ChecksFailed) or error is None:
            return DeployReport(record, plan, summary, rollback)
        raise error

    def _slim(self, plan: BuildPlan, project: DbtProject, run_id: str) -> SlimBuild | None:
        if not plan.slim:
            return None
        assert plan.state_dir is not None and plan.selected is not None and project.manifest is not None
        selected = set(plan.models)
        rebuilt = frozenset(
            mart.name
            for mart in marts_of(project.manifest, self.settings)
            if any(uid.endswith(f".{mart.name}") for uid in selected)
        )

        def confirm() -> None:
            last = last_deployment(self.history, self.settings.target)
            problem = (
                why_not_slim(self.settings, self.history, last, own_run_id=run_id)
                if last is not None and last.run_id == plan.state_of
                else "another deployment since the plan"
            )
            if problem is not None:
                raise DataOpsError(f"the target changed while this deploy waited ({problem}): deploy again")

        return SlimBuild(plan.state_dir, rebuilt, confirm)

    def _record(
        self,
        run_id: str,
        started: datetime,
        seconds: float,
        provenance: dict[str, Any],
        plan: BuildPlan | None,
        error: BaseException | None,
    ) -> RunRecord:
        """The run's record with its deployment part: the pipeline's record when it ran, else one of
        the deployment's own stages."""
        record = self.history.get(run_id)
        if record is None:
            kind, message = what_stopped(error) if error is not None else (None, None)
            failed = error is not None
            exit_code = (
                ExitCode.FAILURES
                if isinstance(error, _ChecksFailed)
                else (ExitCode.USAGE if kind == "usage" else ExitCode.INTERNAL if failed else ExitCode.SUCCESS)
            )
            record = RunRecord(
                run_id=run_id,
                target=self.settings.target,
                kind="deploy",
                trigger=Trigger("cli"),
                started_at=started,
                finished_at=datetime.now(UTC),
                status="failed" if failed else "passed",
                exit_code=int(exit_code),
                git_commit=provenance["git_commit"],
                error=message,
            )
        published = record.publish is not None and record.publish.status == "published"
        outcome = (
            "deployed"
            if published
            else (
                "unchanged"
                if record.exit_code == 0 and plan is not None and plan.slim and not plan.selected
                else "failed"
            )
        )
        artifacts, manifest_id = _keep_artifacts(self.settings, run_id) if record.publish is not None else (None, None)
        built = [n.unique_id for n in record.nodes if n.kind == "model" and n.level != "skipped"]
        tests = [n for n in record.nodes if n.kind in ("test", "unit_test", "expectation")]
        previous = record.publish.previous_version if record.publish else _published_version_or_none(self.settings)
        deployment = DeploymentRecord(
            outcome=outcome,
            build="slim" if plan is not None and plan.slim else "full",
            reason=plan.reason if plan is not None else "not planned: the checks stopped it",
            **provenance,
            state_of=plan.state_of if plan is not None else None,
            changed_models=list(plan.changed or []) if plan is not None else [],
            nodes_built=built,
            tests_passed=sum(1 for n in tests if n.level == "ok"),
            tests_failed=sum(1 for n in tests if n.level == "error"),
            seconds=round(seconds, 3),
            published_version=record.publish.version if published and record.publish else None,
            previous_version=previous,
            artifacts=artifacts,
            manifest_id=manifest_id,
            vars_digest=_vars_digest(self.settings),
        )
        if outcome == "unchanged":
            # Nothing built: the deployment compared with stays what the next one compares with.
            assert plan is not None and plan.state_of is not None
            state = self.history.get(plan.state_of)
            assert state is not None and state.deployment is not None
            record = replace(record, row_counts=dict(state.row_counts), publish=state.publish)
            deployment = replace(
                deployment,
                published_version=state.deployment.published_version,
                artifacts=state.deployment.artifacts,
                manifest_id=state.deployment.manifest_id,
            )
        elif outcome == "failed" and record.exit_code == int(ExitCode.SUCCESS):
            # Nothing published is no successful deployment, whatever the checks said.
            record = replace(record, status="failed", exit_code=int(ExitCode.FAILURES))
        return replace(
            record,
            stages=[*self.stages, *record.stages],
            deployment=deployment,
            finished_at=record.finished_at or datetime.now(UTC),
        )

    def _rollback_command(self, record: RunRecord) -> str:
        deployment = record.deployment
        assert deployment is not None
        target = self.settings.target
        if deployment.outcome == "deployed" and deployment.previous_version is not None:
            return f"dataops rollback --target {target} --to {deployment.previous_version}"
        if deployment.outcome == "deployed":
            return "nothing to roll back to: this is the first published version"
        try:
            kept = sorted((v.number for v in connect(self.settings).versions()), reverse=True)
        except Exception:  # a warehouse that cannot say must not stop the record and the message
            kept = []
        current = deployment.previous_version
        older = [n for n in kept if current is not None and n < current]
        stayed = f"none needed: v{current} stays published" if current else "none needed: nothing is published"
        before = f" (to go back before it: dataops rollback --target {target} --to {older[0]})" if older else ""
        return stayed + before

    def _notify(self, record: RunRecord, rollback: str) -> RunRecord:
        """Send the message, and record whether it went: a failed notification never changes the outcome."""
        assert record.deployment is not None
        try:
            sent = notify.notify_deployment(record, rollback)
            note = "sent" if sent else f"not sent: no webhook set ({notify.WEBHOOK_ENV_VAR})"
        except DataOpsError as problem:
            note = f"not sent: {problem}"
        record = replace(record, deployment=replace(record.deployment, notification=note))
        self.history.record(record)
        return record


class _ChecksFailed(DataOpsError):
    """A project check failed: the deployment failed (exit 1), nothing was built."""


def _described(plan: BuildPlan) -> tuple[BuildPlan, str]:
    if not plan.slim:
        return plan, f"full build: {plan.reason}"
    names = ", ".join(uid.rsplit(".", 1)[-1] for uid in plan.changed or []) or "tests only"
    others = len(plan.selected or []) - len(plan.models)
    to_build = f"{len(plan.models)} models and {others} tests and other nodes to build"
    return plan, f"slim build, {plan.reason}: {names} changed, {to_build}"


def _published_version_or_none(settings: Settings) -> int | None:
    try:
        return _published_version(settings)
    except Exception:  # the record of a failed deploy must be written even when the warehouse cannot answer
        return None
