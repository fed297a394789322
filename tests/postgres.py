"""A real PostgreSQL server for tests: the `postgres_url` fixture, one server per test process, on 127.0.0.1.

Under pytest-xdist every worker process starts its own server on its own free port; nothing is shared
but the binaries. Without PostgreSQL's initdb and pg_ctl the tests that use the fixture are skipped
(`bash .ci/run` installs Debian's `postgresql` package when they are missing).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

DEBIAN_BINS = "/usr/lib/postgresql"  # Debian and Ubuntu keep each major version's server in /usr/lib/postgresql/N/bin
SUPERUSER = "postgres"  # the database superuser initdb creates, whoever the OS user running the server is
DATABASE = "kerasrun_test"
SYSTEM_USER = "postgres"  # the OS user Debian's package creates, whom root runs the server as
SERVICE_USER = "kerasrun-pg"  # created only when root runs the tests on a machine without a `postgres` user
TIMEOUT = 60  # seconds for each server command: initdb and start take ~1 s on the 2-core CI machine, so only a hang gets here
PORT_ATTEMPTS = 5  # a free port found by binding port 0 can be taken by another process before the server binds it
# Durability is not wanted from a throwaway server: without fsync and synchronous commits, writes are several times faster.
SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def find_server_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: the newest /usr/lib/postgresql/N/bin, else PATH's; None without one."""
    candidates = sorted(Path(DEBIAN_BINS).glob("*/bin"), key=lambda path: _version(path.parent.name), reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        # Resolved: a symlink in /usr/local/bin stands for the real folder, where pg_ctl also finds `postgres`.
        candidates.append(Path(on_path).resolve().parent)
    return next((folder for folder in candidates if _is_server_bin(folder)), None)


def _version(name: str) -> tuple[int, ...]:
    """`15` → (15,), `9.6` → (9, 6); anything else sorts first."""
    return tuple(int(part) for part in name.split(".")) if re.fullmatch(r"\d+(\.\d+)*", name) else ()


def _is_server_bin(folder: Path) -> bool:
    """Whether the folder has executable initdb and pg_ctl."""
    return all(os.access(folder / name, os.X_OK) for name in ("initdb", "pg_ctl"))


def server_user() -> pwd.struct_passwd | None:
    """Whom the server runs as when root runs the tests (PostgreSQL refuses root); None for anyone else: themselves."""
    if os.geteuid() != 0:
        return None
    for name in (SYSTEM_USER, SERVICE_USER):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    # No check: two xdist workers may add the user at once, and the loser's "already exists" is success too.
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER], capture_output=True)
    return pwd.getpwnam(SERVICE_USER)


def as_user(user: pwd.struct_passwd | None, argv: list[str]) -> list[str]:
    """The command line that runs argv as user: runuser where util-linux has it, else setpriv."""
    if user is None:
        return argv
    if shutil.which("runuser"):
        return ["runuser", "-u", user.pw_name, "--", *argv]
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", *argv]


def temp_parent(user: pwd.struct_passwd | None) -> str:
    """Where the server's folder goes: the temp folder, or /tmp when the server's user could not reach into it."""
    parent = tempfile.gettempdir()
    if user is None:
        return parent
    # A TMPDIR below a folder only root may enter (pytest's own /tmp/pytest-of-root is 0700) is out of the server's reach.
    folders = [Path(parent), *Path(parent).parents]
    return parent if all(folder.stat().st_mode & stat.S_IXOTH for folder in folders) else "/tmp"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """A throwaway PostgreSQL server: its binaries, its folder (data, socket, log), its OS user and its port."""

    bin: Path
    base: Path
    user: pwd.struct_passwd | None
    port: int = 0

    @property
    def data(self) -> Path:
        """The data directory initdb creates."""
        return self.base / "data"

    @property
    def log(self) -> Path:
        """The server's log, which pg_ctl writes and a failure shows."""
        return self.base / "server.log"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the test database (trust authentication: no password)."""
        return f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run one of the server's binaries as the server's user; its output in the error if it fails."""
        argv = as_user(self.user, [str(self.bin / tool), *args])
        # PG* variables of the caller's (PGHOST, PGPORT, PGDATA…) would redirect pg_ctl's readiness check.
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        # cwd: the server's user may not be allowed into the caller's working folder (root's home), and initdb warns then.
        result = subprocess.run(argv, cwd=self.base, env=env, capture_output=True, text=True, timeout=TIMEOUT + 10)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.is_file() else ""
            raise RuntimeError(f"{shlex.join(argv)} failed ({result.returncode}):\n{result.stdout}{result.stderr}\n{log}")
        return result

    def init(self) -> None:
        """Create the data directory: the C locale (no generated locale needed), trust authentication, no fsync."""
        self.run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        """Start the server on a free port of 127.0.0.1 (its unix socket in its own folder) and wait until it accepts connections."""
        for attempt in range(PORT_ATTEMPTS):
            self.port = free_port()
            settings = {**SETTINGS, "listen_addresses": "127.0.0.1", "port": str(self.port), "unix_socket_directories": str(self.base)}
            # pg_ctl hands -o to a shell: each value quoted.
            options = " ".join(f"-c {key}={shlex.quote(value)}" for key, value in settings.items())
            try:
                # -w: pg_ctl returns once the server accepts connections, or fails after -t seconds.
                self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", str(TIMEOUT), "start")
                return
            except RuntimeError as error:
                if "already in use" not in str(error) or attempt == PORT_ATTEMPTS - 1:
                    raise

    def create_database(self) -> None:
        """Create the test database, retrying the connection until the deadline (readiness over TCP can lag the socket's)."""
        import sqlalchemy

        admin = sqlalchemy.create_engine(
            f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{self.port}/postgres",
            isolation_level="AUTOCOMMIT",  # CREATE DATABASE cannot run inside a transaction
            connect_args={"connect_timeout": 5},
        )
        deadline = time.monotonic() + TIMEOUT
        try:
            while True:
                try:
                    with admin.connect() as connection:
                        connection.execute(sqlalchemy.text(f"CREATE DATABASE {DATABASE}"))
                    return
                except sqlalchemy.exc.OperationalError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        finally:
            admin.dispose()

    def stop(self) -> None:
        """Stop the server (fast: open connections are cut) and remove its folder."""
        try:
            if (self.data / "postmaster.pid").exists():
                self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", str(TIMEOUT), "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def start_server() -> Server:
    """Init, start and fill a new server in a temp folder; skip the test when PostgreSQL or its driver is missing."""
    pytest.importorskip("psycopg2", reason="psycopg2 (the test extra's psycopg2-binary) is not installed")
    folder = find_server_bin()
    if folder is None:
        pytest.skip(f"PostgreSQL's initdb and pg_ctl not found in {DEBIAN_BINS}/*/bin or on PATH (bash .ci/run installs them)")
    user = server_user()
    server = Server(bin=folder, base=Path(tempfile.mkdtemp(prefix="kerasrun-pg-", dir=temp_parent(user))), user=user)
    try:
        if user is not None:
            os.chown(server.base, user.pw_uid, user.pw_gid)  # initdb creates the data directory in it, and pg_ctl the log
        server.init()
        server.start()
        server.create_database()
    except BaseException:
        with contextlib.suppress(Exception):  # the failure to show is the one above, not the clean-up's
            server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """An SQLAlchemy URL to an empty database on a PostgreSQL server of this test process's own, stopped at the end."""
    server = start_server()
    try:
        yield server.url
    finally:
        server.stop()
