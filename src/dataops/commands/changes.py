"""`dataops changes`: the models a branch affects, `state:modified+` against the dbt project of a
base commit, as the "Models Affected" list of the pull request template. Also what `dataops deploy`
reads a state folder with."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataops.core.config import DBT_PROJECT_DIR, PROJECT_ROOT, Settings
from dataops.core.errors import DataOpsError
from dataops.project.runner import DbtProject

MANIFEST = "manifest.json"


def read_state(folder: Path) -> dict[str, Any]:
    """The manifest.json of a state folder (`--state DIR`), checked: one line naming what is wrong."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise DataOpsError(f"--state {folder}: no such folder; give the folder that holds a deployment's {MANIFEST}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataOpsError(
            f"--state {folder}: there is no {MANIFEST} in it; give a deployment's artifacts folder"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataOpsError(
            f"--state {folder}: {MANIFEST} is not a dbt manifest ({error}); give a deployment's artifacts folder"
        ) from None
    metadata = document.get("metadata") if isinstance(document, dict) else None
    if (
        not isinstance(metadata, dict)
        or "dbt_schema_version" not in metadata
        or not isinstance(document.get("nodes"), dict)
    ):
        raise DataOpsError(
            f"--state {folder}: {MANIFEST} is JSON but not a dbt manifest (no "
            "metadata.dbt_schema_version or nodes); give a deployment's artifacts folder"
        )
    return document


class _ProjectAt(DbtProject):
    """Another checkout of the dbt project, parsed into a folder of its own."""

    def __init__(self, settings: Settings, project_dir: Path, target_dir: Path) -> None:
        super().__init__(settings, project_dir=project_dir, compile_only=True)
        self._target_dir = target_dir

    @property
    def target_path(self) -> str:
        return str(self._target_dir)


def _git(*args: str) -> bytes:
    try:
        done = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise DataOpsError(f"git could not run in {PROJECT_ROOT}: {error}") from error
    if done.returncode != 0:
        message = " ".join(done.stderr.decode("utf-8", "replace").split())
        raise DataOpsError(f"git {' '.join(args[:2])} failed in {PROJECT_ROOT}: {message}")
    return done.stdout


def resolve(ref: str) -> str:
    try:
        return _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").decode().strip()
    except DataOpsError:
        raise DataOpsError(
            f"--base {ref}: no such commit in the repository at {PROJECT_ROOT}; give a branch, tag "
            "or commit (e.g. --base main)"
        ) from None


def base_state(settings: Settings, commit: str, into: Path) -> Path:
    """The manifest of `commit`'s dbt project: its files from git (`git archive`, so the working
    tree and its index are never touched), parsed by dbt into `into/state`."""
    project = DBT_PROJECT_DIR.relative_to(PROJECT_ROOT).as_posix()
    with tarfile.open(fileobj=io.BytesIO(_git("archive", "--format=tar", commit, "--", project))) as archive:
        archive.extractall(into / "source", filter="data")
    state = into / "state"
    _ProjectAt(settings, into / "source" / project, state).parse()
    if not (state / MANIFEST).is_file():
        raise DataOpsError(f"dbt parsed the project of {commit[:12]} but wrote no {MANIFEST} in {state}")
    return state


@dataclass
class Changes:
    base: str
    commit: str
    modified: list[str] = field(default_factory=list)  # models changed themselves (unique ids)
    affected: list[str] = field(default_factory=list)  # and everything downstream of them


def branch_changes(settings: Settings, base: str) -> Changes:
    commit = resolve(base)
    with tempfile.TemporaryDirectory(prefix="dataops-changes-") as folder:
        state = base_state(settings, commit, Path(folder))
        project = DbtProject(settings, compile_only=True)
        modified, affected = project.modified(state)
    return Changes(base, commit, modified, affected)


def model_name(unique_id: str) -> str:
    return unique_id.rsplit(".", 1)[-1]


def markdown(changes: Changes) -> str:
    """The pull request template's "Models Affected" section."""
    lines = [
        "### Models Affected",
        "",
        f"<!-- dataops changes --base {changes.base}: state:modified+ against {changes.commit[:12]} -->",
    ]
    models = [uid for uid in changes.affected if uid.startswith("model.")]
    if not models:
        lines.append(f"- none: no model differs from {changes.base}")
    modified = set(changes.modified)
    for unique_id in models:
        why = "modified" if unique_id in modified else "downstream of a change"
        lines.append(f"- [ ] `{model_name(unique_id)}` ({why})")
    return "\n".join(lines) + "\n"
