"""A copy of the project (dbt/, gx/, environments.yml) in a git repository of its own, committed by
a known author on `main`, that the CLI finds through DATAOPS_PROJECT_ROOT, with its warehouse and run
history inside it: for the tests of what dataops does across commits (deploys, changes, incidents,
metrics). Each command is the CLI in a process of its own, as CI or an operator runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dataops.core.config import PROJECT_ROOT
from dataops.history.store import HistoryStore

DATAOPS = Path(sys.executable).with_name("dataops")


@dataclass
class ProjectCopy:
    root: Path
    env: dict[str, str]

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse"

    @property
    def history(self) -> HistoryStore:
        return HistoryStore(f"sqlite:///{self.warehouse / 'history.sqlite'}")

    def dataops(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(DATAOPS), *args],
            cwd=self.root,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def git(self, *args: str) -> str:
        done = subprocess.run(["git", "-C", str(self.root), *args], capture_output=True, text=True, env=self.env)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


def copy_project(root: Path, author: str, email: str, **variables: str) -> ProjectCopy:
    """The copy in `root`, committed once (`feat(models): the project`) by `author`. The caller's
    own DATAOPS_, GIT_ and GitHub variables and its webhook connection never reach it."""
    for name in ("dbt", "gx"):
        shutil.copytree(PROJECT_ROOT / name, root / name, ignore=shutil.ignore_patterns("target", "logs"))
    shutil.copy2(PROJECT_ROOT / "environments.yml", root / "environments.yml")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATAOPS_", "GITHUB_", "GIT_")) and key != "AIRFLOW_CONN_DATAOPS_WEBHOOK"
    }
    for role in ("AUTHOR", "COMMITTER"):
        env.update({f"GIT_{role}_NAME": author, f"GIT_{role}_EMAIL": email})
    env.update(variables, DATAOPS_PROJECT_ROOT=str(root), DATAOPS_WAREHOUSE_DIR=str(root / "warehouse"))
    copy = ProjectCopy(root, env)
    copy.git("init", "-q", "-b", "main")
    copy.git("add", "dbt", "gx", "environments.yml")
    copy.git("commit", "-q", "-m", "feat(models): the project")
    return copy
