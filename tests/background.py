"""Slow jobs whose outcome tests only read, run beside the other tests.

An `airflow dags test` of the pipeline keeps one core busy for one to two minutes, and the tests of
tests/integration/test_airflow.py need six such runs; the rest of the suite keeps about one core of
two busy. So a test module registers its jobs here at import (`@job("name")`), a test says which
one it reads with `@pytest.mark.background("name")`, and tests/conftest.py starts every job the
selected tests need when the session starts, and runs the tests that read them after all others.

The jobs run one at a time, in a thread of their own: their commands take the core the other
tests leave idle. (At the same CPU priority as the tests: run with a lower one, they starved
whenever anything else ran on the machine, and the tests that race processes against each other
pass with as much load beside them.) A test that asks for an outcome not ready yet runs pending
jobs itself meanwhile, so that at the end both cores work.

Each job is registered as a function of its own folder that returns what to run. That function is
called in the main thread when the session starts, before any test has changed the environment:
a job builds the environment of its commands there (`os.environ` of that moment), and never reads
`os.environ` when it runs, since by then the tests run with their own variables set. Whatever it
runs in-process holds the interpreter lock from the tests; heavy work belongs in a subprocess.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent import futures
from concurrent.futures import Future
from pathlib import Path
from typing import Any

Run = Callable[[], Any]
Job = Callable[[Path], Run]

JOBS: dict[str, Job] = {}


def job(name: str) -> Callable[[Job], Job]:
    """Registers a job under `name`: a function of its folder that returns what to run."""

    def register(prepare: Job) -> Job:
        if name in JOBS:
            raise ValueError(f"two background jobs are named {name}")
        JOBS[name] = prepare
        return prepare

    return register


class Once:
    """A value that the first job to need it computes, while the others that need it wait."""

    def __init__(self, compute: Callable[[], Any]) -> None:
        self._compute = compute
        self._lock = threading.Lock()
        self._future: Future[Any] = Future()

    def get(self) -> Any:
        with self._lock:
            if not self._future.done():
                try:
                    self._future.set_result(self._compute())
                except Exception as error:
                    self._future.set_exception(error)
        return self._future.result()


class Background:
    """The jobs of one session, in the order the tests will ask for them."""

    def __init__(self, names: Iterable[str], folder: Callable[[str], Path]) -> None:
        unknown = [name for name in names if name not in JOBS]
        if unknown:
            raise KeyError(f"no background job named {', '.join(unknown)}; registered: {', '.join(JOBS)}")
        self._lock = threading.Lock()
        self._futures: dict[str, Future[Any]] = {}
        self._pending: dict[str, Run] = {}
        for name in names:
            self._pending[name] = JOBS[name](folder(name))
            self._futures[name] = Future()
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="background-jobs", daemon=True)
        self._worker.start()

    def _take(self, preferred: str | None = None, last: bool = False) -> tuple[str, Run] | None:
        with self._lock:
            if self._closed or not self._pending:
                return None
            name = preferred if preferred in self._pending else list(self._pending)[-1 if last else 0]
            run = self._pending.pop(name)
            self._futures[name].set_running_or_notify_cancel()
            return name, run

    def _run(self, name: str, run: Run) -> None:
        future = self._futures[name]
        try:
            future.set_result(run())
        except BaseException as error:
            future.set_exception(error)
            if not isinstance(error, Exception):  # Ctrl-C in the main thread stops the session
                raise

    def _work(self) -> None:
        while (taken := self._take()) is not None:
            self._run(*taken)

    def result(self, name: str) -> Any:
        """The outcome of job `name` (its exception, if it raised). While it is not ready, this
        thread runs the jobs nobody has started, the one asked for first."""
        if name not in self._futures:
            raise KeyError(f"background job {name} was not started: mark the test @pytest.mark.background({name!r})")
        future = self._futures[name]
        while not future.done():
            # The worker takes the jobs from the front; we take the one asked for, else the last.
            taken = self._take(preferred=name, last=True)
            if taken is None:
                break
            self._run(*taken)
        return future.result()

    def wait(self) -> None:
        """Until every job has ended, running those not started: before a test that needs the
        machine to itself. A job's failure is for the test that reads it to report."""
        while (taken := self._take(last=True)) is not None:
            self._run(*taken)
        futures.wait(list(self._futures.values()))

    def close(self) -> None:
        """No job starts any more; the one running ends (its commands are not interrupted)."""
        with self._lock:
            self._closed = True
            for name in self._pending:
                self._futures[name].cancel()
            self._pending.clear()
        self._worker.join()
