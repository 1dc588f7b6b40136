"""The exit-code taxonomy at the one place errors become exit codes, `dataops.cli.main.main`: each kind of
error gives its own code and one line on stderr, and an internal error names the log that holds
its traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dataops.cli import main as cli
from dataops.core.errors import DataOpsError, ExitCode, InternalError


@pytest.fixture
def failing_command() -> Iterator[list[BaseException]]:
    """A command that raises whatever the test puts in the list: how any command's error reaches main."""
    raised: list[BaseException] = []

    @cli.app.command("raise-for-test", hidden=True)
    def raise_for_test() -> None:
        raise raised[0]

    yield raised
    cli.app.registered_commands.pop()


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def test_a_user_error_is_one_line_and_exit_2(
    failing_command: list[BaseException], capsys: pytest.CaptureFixture[str], warehouse_dir: Path
) -> None:
    failing_command.append(DataOpsError("environments.yml: environment 'dev' has threads 'four'"))
    assert cli.main(["raise-for-test"]) == ExitCode.USAGE == 2
    assert _one_line(capsys) == "error: environments.yml: environment 'dev' has threads 'four'"


def test_a_crash_is_one_line_naming_the_log_with_its_traceback(
    failing_command: list[BaseException], capsys: pytest.CaptureFixture[str], warehouse_dir: Path
) -> None:
    failing_command.append(ZeroDivisionError("division by zero"))
    assert cli.main(["raise-for-test"]) == ExitCode.INTERNAL == 3

    log = warehouse_dir.resolve() / "logs" / "dataops-errors.log"
    assert _one_line(capsys) == f"internal error: ZeroDivisionError: division by zero; the traceback is in {log}"
    text = log.read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in text and "raise raised[0]" in text


def test_an_internal_error_with_its_own_log_names_that_log(
    failing_command: list[BaseException], capsys: pytest.CaptureFixture[str], warehouse_dir: Path, tmp_path: Path
) -> None:
    worker_log = tmp_path / "quality_worker.log"
    failing_command.append(InternalError("the quality checks crashed:\n  KeyError 'x'", log=worker_log))
    assert cli.main(["raise-for-test"]) == 3
    assert _one_line(capsys) == (
        f"internal error: the quality checks crashed: KeyError 'x'; the details are in {worker_log}"
    )
    assert not (warehouse_dir / "logs" / "dataops-errors.log").exists()


def test_version_names_dataops_and_dbt(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"dataops {version('dataops')} (dbt-core {version('dbt-core')})"
