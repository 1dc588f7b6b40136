"""Where a run came from and what it cost: the git commit of the project, CPU seconds and peak
memory of the process and the children it waited for (dbt runs in process; the quality worker is a
child)."""

from __future__ import annotations

import os
import resource
import subprocess
from dataclasses import dataclass

from dataops.core.config import PROJECT_ROOT

GIT_COMMIT_ENV_VAR = "DATAOPS_GIT_COMMIT"


def git_commit() -> str | None:
    """$DATAOPS_GIT_COMMIT (an image built without .git), else the checkout's HEAD; None outside git."""
    if os.environ.get(GIT_COMMIT_ENV_VAR):
        return os.environ[GIT_COMMIT_ENV_VAR]
    try:
        found = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "--verify", "--quiet", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found.stdout.strip() or None


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class Usage:
    """CPU seconds since `start()`; peak resident memory of this process or its largest child."""

    started_cpu: float

    @classmethod
    def start(cls) -> Usage:
        return cls(_cpu_seconds())

    def cpu_seconds(self) -> float:
        return round(_cpu_seconds() - self.started_cpu, 3)

    @staticmethod
    def peak_memory_bytes() -> int:
        # Linux reports ru_maxrss in KiB. A process's peak, not the run's alone: an orchestrator
        # that runs many things in one process reports its own high-water mark.
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return max(own.ru_maxrss, children.ru_maxrss) * 1024
