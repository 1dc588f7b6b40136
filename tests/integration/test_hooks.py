"""The team's git hooks, run for real: `pre-commit install` in a throwaway git repository holding the
hook configuration, the dbt project and the SQLFluff setup, then real `git commit`s through them.
Also: the repository's own dbt models pass SQLFluff (one lint run with the dbt templater, shared),
and every commit message in the project's history passes the commit-msg hook.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conventional_pre_commit.format import ConventionalCommit

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
# What the hooks need to run in a copy: their configuration, the dbt project they lint and the
# wrapper that lints it offline.
HOOK_FILES = (".pre-commit-config.yaml", ".sqlfluff", "pyproject.toml", "scripts/sqlfluff_dbt.py")
# These two read the whole project, not the files of a commit: the secrets scan has its own tests
# (test_deploy_files.py) and `dataops check` reads the installed project, not this copy.
SKIPPED_HOOKS = "secrets,dataops-check"
MODEL = "dbt/models/marts/dim_territories.sql"

pytestmark = pytest.mark.skipif(not (VENV_BIN / "pre-commit").exists(), reason="run `make install` first")


def _env(repo: Path) -> dict[str, str]:
    # No user or system git configuration (no hooks path, no signing) and pre-commit's cache in the
    # test's own folder.
    return {
        **os.environ,
        "SKIP": SKIPPED_HOOKS,
        "PRE_COMMIT_HOME": str(repo.parent / "pre-commit-home"),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "NO_COLOR": "1",
    }


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, env=_env(repo), timeout=300)
    if check:
        assert result.returncode == 0, f"git {' '.join(args)}: {result.stdout}{result.stderr}"
    return result


def _commit(repo: Path, message: str, *paths: str) -> subprocess.CompletedProcess[str]:
    _git(repo, "add", *paths)
    return _git(repo, "commit", "-m", message, check=False)


def _head(repo: Path) -> str:
    return _git(repo, "rev-parse", "HEAD").stdout.strip()


def _clean(repo: Path) -> None:
    """Back to the last commit, for the next test (this is the throwaway repository's own index)."""
    _git(repo, "reset", "--quiet", "--hard", "HEAD")
    _git(repo, "clean", "--quiet", "-fd")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    repo = tmp_path_factory.mktemp("hooks") / "project"
    shutil.copytree(ROOT / "dbt", repo / "dbt", ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    for name in HOOK_FILES:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    # The hooks' entries are .venv/bin/<tool>: the project's own venv, as `make install` made it.
    (repo / ".venv").symlink_to(ROOT / ".venv")
    (repo / ".gitignore").write_text(".venv\n/warehouse/\n", encoding="utf-8")
    _git(repo, "init", "--quiet", "--initial-branch", "main")
    _git(repo, "config", "user.name", "Hook Test")
    _git(repo, "config", "user.email", "hooks@example.invalid")
    install = subprocess.run(
        [str(VENV_BIN / "pre-commit"), "install"], cwd=repo, capture_output=True, text=True, env=_env(repo), timeout=120
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert (repo / ".git" / "hooks" / "pre-commit").exists() and (repo / ".git" / "hooks" / "commit-msg").exists()
    # The first commit passes every hook on every file: the project is clean under its own hooks.
    first = _commit(repo, "chore: the project's hook files", ".")
    assert first.returncode == 0, first.stdout + first.stderr
    yield repo


def test_a_commit_message_outside_the_format_is_rejected(repo: Path) -> None:
    before = _head(repo)
    (repo / "notes.txt").write_text("a note\n", encoding="utf-8")
    result = _commit(repo, "updated stuff", "notes.txt")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "commit message format" in output and "Failed" in output, output
    assert _head(repo) == before, "a rejected message was committed"
    _clean(repo)


def test_the_guides_example_message_is_accepted(repo: Path) -> None:
    before = _head(repo)
    (repo / "segments.txt").write_text("customer segments\n", encoding="utf-8")
    result = _commit(repo, "feat(models): add customer segmentation model", "segments.txt")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _head(repo) != before
    assert _git(repo, "log", "-1", "--format=%s").stdout.strip() == "feat(models): add customer segmentation model"


def test_trailing_whitespace_is_fixed(repo: Path) -> None:
    before = _head(repo)
    (repo / "todo.txt").write_text("first line   \nsecond line\t\n", encoding="utf-8")
    result = _commit(repo, "docs: a todo list", "todo.txt")
    output = result.stdout + result.stderr
    # The hook fixes the file and stops the commit, so the fixed file is what gets reviewed.
    assert result.returncode != 0, output
    assert "trim trailing whitespace" in output and "files were modified by this hook" in output, output
    assert _head(repo) == before
    assert (repo / "todo.txt").read_text(encoding="utf-8") == "first line\nsecond line\n"
    again = _commit(repo, "docs: a todo list", "todo.txt")
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_sql_style_violation_in_a_model_is_reported_by_sqlfluff(repo: Path) -> None:
    before = _head(repo)
    original = (repo / MODEL).read_text(encoding="utf-8")
    # A CTE nobody selects from (ST03): no fix can decide what was meant, so lint reports it.
    (repo / MODEL).write_text(
        "with unused as (\n    select territory_id from {{ ref('stg_territories') }}\n)\n\n" + original,
        encoding="utf-8",
    )
    result = _commit(repo, "feat(models): territories", MODEL)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "sqlfluff fix and lint (dbt models)" in output, output
    assert "ST03" in output and MODEL in output, output
    assert _head(repo) == before
    _clean(repo)


def test_sqlfluff_fix_rewrites_a_model_to_the_projects_style(repo: Path) -> None:
    original = (repo / MODEL).read_text(encoding="utf-8")
    (repo / MODEL).write_text(original.replace("select", "SELECT").replace("from", "FROM"), encoding="utf-8")
    result = _commit(repo, "style(models): territories", MODEL)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "sqlfluff fix and lint (dbt models)" in output and "files were modified by this hook" in output, output
    assert (repo / MODEL).read_text(encoding="utf-8") == original
    _clean(repo)


# --- the repository itself ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_lint() -> list[dict[str, object]]:
    """One SQLFluff run over the repository's dbt models, as the CI lint job runs it."""
    result = subprocess.run(
        [str(VENV_BIN / "python"), "scripts/sqlfluff_dbt.py", "lint", "dbt/models", "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode in (0, 1), result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(result.stdout)


def test_every_dbt_model_is_linted_by_sqlfluff(model_lint: list[dict[str, object]]) -> None:
    linted = {Path(str(entry["filepath"])).resolve() for entry in model_lint}
    models = {path.resolve() for path in (ROOT / "dbt" / "models").rglob("*.sql")}
    assert models and linted == models


def test_the_dbt_models_pass_sqlfluff(model_lint: list[dict[str, object]]) -> None:
    problems = [
        f"{entry['filepath']}:{violation['start_line_no']} {violation['code']} {violation['description']}"
        for entry in model_lint
        for violation in entry["violations"]  # type: ignore[union-attr]
    ]
    assert problems == []


def test_every_commit_in_the_history_passes_the_commit_msg_hook() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    (hook,) = [hook for repo in config["repos"] for hook in repo["hooks"] if "commit-msg" in hook.get("stages", [])]
    log = subprocess.run(["git", "log", "--format=%h%x00%B%x01"], cwd=ROOT, capture_output=True, text=True, check=True)
    commits = [entry.strip("\n").split("\x00", 1) for entry in log.stdout.split("\x01") if entry.strip()]
    assert commits
    # The hook's own check, with the hook's own arguments.
    rejected = [
        f"{sha} {message.splitlines()[0]}"
        for sha, message in commits
        if not ConventionalCommit(message, hook["args"]).is_valid() and not ConventionalCommit(message).is_merge()
    ]
    assert rejected == []
