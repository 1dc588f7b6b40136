"""One run per target at a time, from its first stage to its publish.

A run in one process (`dataops run`, `dataops rollback`) holds the warehouse's own lock for its
whole length: an flock on DuckDB, an advisory lock in the database on a server. An Airflow DAG run
is many processes, one per task: each task holds the warehouse's lock while it works, and between
its tasks the DAG run keeps a lease on the target in the run history, which every worker of a
deployment shares. A run that finds either held by another waits (`wait`) or stops with a user
error naming the holder; a lock dies with its process, a lease of a DAG run that died expires."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime

from dataops.core.config import Settings
from dataops.core.errors import DataOpsError
from dataops.history.store import HistoryStore, Lease
from dataops.warehouse import LockHolder, TargetBusy, Warehouse, connect

# A DAG run's lease outlives any one of its tasks by far; a DAG run that died lets go after this.
LEASE_SECONDS = 6 * 3600
# How often a waiting run looks again at a lease (a lock it simply waits for).
LEASE_POLL_SECONDS = 2.0


def _busy(settings: Settings, holder: LockHolder | None) -> DataOpsError:
    who = holder.describe() if holder else "another run (it did not say which)"
    return DataOpsError(
        f"target '{settings.target}' is busy: {who} holds it; run again when it has finished, "
        "or pass --wait to wait for it"
    )


def _holder_of(lease: Lease) -> LockHolder:
    return LockHolder(lease.run_id, lease.host, lease.pid, lease.since)


@contextmanager
def hold_target(
    settings: Settings,
    run_id: str,
    wait: bool,
    warehouse: Warehouse | None = None,
    on_wait: Callable[[LockHolder | None], None] | None = None,
    history: HistoryStore | None = None,
    lease: bool = False,
) -> Iterator[None]:
    """Hold the target for the block. Held by another run (its lock, or a DAG run's lease): wait
    for it (`wait`, after telling `on_wait` who holds it once), or stop with a user error naming
    it. `lease`: this is a task of a DAG run (`run_id`), which takes the target's lease, or renews
    its own; `release_lease` ends it."""
    warehouse = warehouse or connect(settings)
    history = history or HistoryStore()
    holder = LockHolder(run_id, socket.gethostname(), os.getpid(), datetime.now(UTC).isoformat(timespec="seconds"))
    told = False
    while True:
        with ExitStack() as held:
            try:
                held.enter_context(warehouse.hold(holder, wait=False))
            except TargetBusy as busy:
                if not wait:
                    raise _busy(settings, busy.holder) from None
                if on_wait is not None and not told:
                    on_wait(busy.holder)
                    told = True
                held.enter_context(warehouse.hold(holder, wait=True))
            # The lock is ours; a DAG run between two of its tasks may still have the target.
            if lease:
                other = history.take_lease(
                    settings.target, Lease(holder.run_id, holder.host, holder.pid, holder.since), LEASE_SECONDS
                )
            else:
                other = history.lease_holder(settings.target, excluding=run_id)
            if other is None:
                yield
                return
        # Wait for the lease without the lock: the DAG run's next task needs the lock to go on.
        if not wait:
            raise _busy(settings, _holder_of(other))
        if on_wait is not None and not told:
            on_wait(_holder_of(other))
            told = True
        time.sleep(LEASE_POLL_SECONDS)


def release_lease(settings: Settings, run_id: str, history: HistoryStore | None = None) -> None:
    """The DAG run is done with the target (its last task)."""
    (history or HistoryStore()).release_lease(settings.target, run_id)
