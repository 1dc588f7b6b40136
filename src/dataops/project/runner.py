"""dbt, in-process: parse the project once, then run every command against that manifest."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from dbt.cli.main import dbtRunner, dbtRunnerResult
from dbt.contracts.graph.manifest import Manifest
from dbt_common.events.base_types import EventMsg

from dataops.core.config import DBT_PROJECT_DIR, Settings
from dataops.core.errors import DataOpsError
from dataops.project.progress import NodeProgress, ProgressCallback
from dataops.warehouse import release_dbt_connections

# dbt's own words for a selection criterion that matches nothing (event NoNodesForSelectionCriteria).
_UNMATCHED_SELECTION = re.compile(r"The selection criterion '[^']*' does not match any enabled nodes")


def project_vars(settings: Settings, project_dir: Path = DBT_PROJECT_DIR) -> dict[str, Any]:
    """The vars dbt resolves for the target: dbt_project.yml's, then the target's own."""
    project = yaml.safe_load((project_dir / "dbt_project.yml").read_text(encoding="utf-8")) or {}
    return {**(project.get("vars") or {}), **settings.dbt_vars}


@contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    """dbt reads profiles.yml's env_var() from os.environ; set ours only for the call."""
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class DbtProject:
    """The dbt project for one target. `parse()` once; every later command reuses the manifest."""

    def __init__(
        self,
        settings: Settings,
        dbt_vars: dict[str, Any] | None = None,
        project_dir: Path = DBT_PROJECT_DIR,
        compile_only: bool = False,
    ) -> None:
        self.settings = settings
        # Compile and parse only: dbt's artifacts go to their own folder, never over a run's.
        self.compile_only = compile_only
        self.project_dir = project_dir
        self.vars: dict[str, Any] = {**settings.dbt_vars, **(dbt_vars or {})}
        self.manifest: Manifest | None = None
        self.on_progress: ProgressCallback | None = None
        # Extra environment for dbt, e.g. placeholders for an offline compile.
        self.extra_env: dict[str, str] = {}

    @property
    def target_path(self) -> str:
        if self.compile_only:
            return str(self.settings.compile_dir)
        return str(self.settings.artifacts_dir / "dbt")

    def _common_args(self, command: list[str]) -> list[str]:
        return [
            "--project-dir",
            str(self.project_dir),
            "--profiles-dir",
            str(self.project_dir),
            "--target",
            self.settings.target,
            "--target-path",
            self.target_path,
            "--log-path",
            str(self.settings.artifacts_dir / "logs"),
            "--vars",
            json.dumps(self.vars),
            # `dbt ls` runs nothing, and refuses the option.
            *(["--threads", str(self.settings.threads)] if command != ["ls"] else []),
        ]

    def _relay_event(self, event: EventMsg) -> None:
        if self.on_progress is None:
            return
        name = event.info.name
        if name == "LogStartLine":
            node = event.data.node_info
            self.on_progress(NodeProgress(node.unique_id, False, total=event.data.total))
        elif name == "NodeFinished":
            self.on_progress(NodeProgress(event.data.node_info.unique_id, True))

    def _invoke(self, command: list[str], *extra: str) -> dbtRunnerResult:
        runner = dbtRunner(manifest=self.manifest, callbacks=[self._relay_event])
        # dbt's own console output is replaced by our progress and summary; its log file stays.
        quiet = ["--log-level", "none", "--log-level-file", "info"]
        args = [*command, *self._common_args(command), *quiet, *extra]
        with _environment({**self.settings.dbt_env, **self.extra_env}):
            try:
                result = runner.invoke(args)
            finally:
                release_dbt_connections(self.settings)
        if result.exception is not None and result.result is None:
            message = str(result.exception).strip().replace("\n", " ")
            raise DataOpsError(f"dbt {' '.join(command)} failed: {message}")
        return result

    def parse(self) -> Manifest:
        result = self._invoke(["parse"])
        if not result.success or not isinstance(result.result, Manifest):
            raise DataOpsError("dbt could not parse the project; see the dbt log for the cause")
        self.manifest = result.result
        return self.manifest

    def var(self, name: str) -> Any:
        """A var as this project's dbt commands resolve it (dbt_project.yml's, the target's, the
        project's own); a var none of them sets is a configuration error."""
        variables = {**project_vars(self.settings, self.project_dir), **self.vars}
        if name not in variables:
            raise DataOpsError(f"{self.project_dir / 'dbt_project.yml'}: the var {name!r} is not set; add it to vars")
        return variables[name]

    def sharing_parse(self, compile_only: bool) -> DbtProject:
        """The same project and the same parse, with dbt's artifacts in the other folder: one parse
        serves both a deploy's pre-deployment compile (compile folder) and its run (run folder)."""
        twin = DbtProject(self.settings, self.vars, self.project_dir, compile_only)
        twin.manifest = self.manifest
        return twin

    def _require_manifest(self) -> None:
        if self.manifest is None:
            self.parse()

    def source_freshness(self) -> dbtRunnerResult:
        self._require_manifest()
        return self._invoke(["source", "freshness"])

    def build(
        self,
        select: list[str] | None = None,
        state: Path | None = None,
        *,
        full_refresh: bool = False,
        run_vars: dict[str, Any] | None = None,
    ) -> dbtRunnerResult:
        """`dbt build`. A selection criterion that matches nothing is a usage error, raised while
        dbt selects and before it builds anything: dbt itself only warns, then builds nothing and
        succeeds. `state`: the folder of the manifest that `state:` selectors compare with.
        `full_refresh`: incremental models rebuild every row. `run_vars`: vars of this build only,
        read when the SQL runs (the parsed manifest stays as it was, so nothing is parsed again)."""
        self._require_manifest()
        extra = [*(["--full-refresh"] if full_refresh else []), *self._run_vars_args(run_vars)]
        if not select:
            return self._invoke(["build"], *extra)
        strict = json.dumps({"error": ["NoNodesForSelectionCriteria"]})
        try:
            return self._invoke(
                ["build"], "--select", *select, "--warn-error-options", strict, *_state_args(state), *extra
            )
        except DataOpsError as error:
            unmatched = _UNMATCHED_SELECTION.search(str(error))
            if unmatched is None:
                raise
            raise DataOpsError(
                f"--select {' '.join(select)}: {unmatched.group(0)}; nothing was built "
                "(list the project's nodes with `dbt ls`)"
            ) from error

    def _run_vars_args(self, run_vars: dict[str, Any] | None) -> list[str]:
        # A second --vars replaces the first: it carries the project's vars too.
        return ["--vars", json.dumps({**self.vars, **run_vars})] if run_vars else []

    def selected(self, select: list[str], state: Path | None = None, resource_type: str | None = "model") -> list[str]:
        """The unique ids of the nodes of `resource_type` (None: of every type) that `dbt ls
        --select` picks (e.g. `state:modified` against the manifest in `state`), sorted; none is an
        empty list."""
        self._require_manifest()
        result = self._invoke(
            ["ls"],
            "--select",
            *select,
            *(["--resource-type", resource_type] if resource_type else []),
            "--output",
            "json",
            "--output-keys",
            "unique_id",
            *_state_args(state),
        )
        if not result.success or not isinstance(result.result, list):
            raise DataOpsError(f"dbt ls --select {' '.join(select)} failed; see the dbt log for the cause")
        return sorted(json.loads(line)["unique_id"] for line in result.result)

    def modified(self, state: Path) -> tuple[list[str], list[str]]:
        """Every node of `state:modified` against the manifest in `state` (a model, a source, a
        seed, a test...), and every node of `state:modified+`: the first from one `dbt ls` (dbt
        alone knows what counts as modified), the second their descendants in the parsed
        manifest's graph, which is what `+` selects, without a second `dbt ls`. A changed source
        selects the models that read it; a changed test alone selects that test."""
        changed = self.selected(["state:modified"], state, resource_type=None)
        assert self.manifest is not None
        children = self.manifest.child_map
        reached, todo = set(changed), list(changed)
        while todo:
            for child in children.get(todo.pop(), []):
                if child not in reached:
                    reached.add(child)
                    todo.append(child)
        return changed, sorted(reached)

    def compile_offline(self) -> dbtRunnerResult:
        """Compile every node without connecting: no relation cache, no introspective queries."""
        self._require_manifest()
        return self._invoke(["compile"], "--no-populate-cache", "--no-introspect")

    def docs_generate(self) -> dbtRunnerResult:
        self._require_manifest()
        # The build already compiled every node into the shared manifest.
        return self._invoke(["docs", "generate"], "--no-compile")

    def manifest_dict(self) -> dict[str, Any]:
        """The manifest as the JSON artifact shape, for checks that read manifest.json."""
        self._require_manifest()
        assert self.manifest is not None
        return self.manifest.writable_manifest().to_dict()


def _state_args(state: Path | None) -> list[str]:
    return ["--state", str(state)] if state is not None else []
