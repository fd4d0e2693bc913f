"""A throw-away PostgreSQL server for tests: initdb + pg_ctl from the Debian packages, in a temporary folder,
on an ephemeral loopback port, with password authentication over TCP (as production uses it).

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` OS user (created by the
Debian package; created here if missing). As any other user it runs as that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found under /usr/lib/postgresql/*/bin. "
    "Install them with: apt-get install postgresql  (or run `bash .ci/bootstrap`)"
)
SERVICE_USER = "postgres"


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    superuser: str
    password: str

    def connect(self, db: str = "postgres", user: str | None = None, password: str | None = None):
        return psycopg2.connect(
            host=self.host,
            port=self.port,
            dbname=db,
            user=user or self.superuser,
            password=password or self.password,
        )

    def create_database(self, db: str, owner: str, password: str) -> None:
        conn = self.connect()
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE ROLE "{owner}" LOGIN PASSWORD %s', [password])
                cur.execute(f'CREATE DATABASE "{db}" OWNER "{owner}"')
        finally:
            conn.close()


def pg_bin_dir() -> Path | None:
    """The newest installed PostgreSQL server's bin folder."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        return None
    newest = max(
        found, key=lambda p: float(Path(p).parts[-3]) if Path(p).parts[-3].replace(".", "").isdigit() else 0
    )
    return Path(newest).parent


def _service_account() -> pwd.struct_passwd | None:
    """None when we are not root (the server runs as us); else the OS user the server runs as."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
        )
        return pwd.getpwnam(SERVICE_USER)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_postgres(superuser_password: str = "cdp-test-superuser") -> Iterator[PgServer]:
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError(INSTALL_HINT)
    account = _service_account()
    # /tmp, not pytest's tmp_path: as root that one is private to root, and the server user must enter it.
    root = Path(tempfile.mkdtemp(prefix="cdp-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    pwfile = root / "pwfile"
    pwfile.write_text(superuser_password + "\n")
    as_user: dict = {}
    if account is not None:
        for path in (root, sockets, pwfile):
            os.chown(path, account.pw_uid, account.pw_gid)
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def run(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=root, **as_user)

    init = run(
        str(bin_dir / "initdb"),
        "-D",
        str(data),
        "-U",
        "postgres",
        "-E",
        "UTF8",
        "--no-sync",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        f"--pwfile={pwfile}",
    )
    if init.returncode:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
    port = 0
    try:
        for _attempt in range(3):  # another process may take the port between our probe and the server's bind
            port = _free_port()
            options = (
                f"-p {port} -c listen_addresses=127.0.0.1 -k {sockets} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            started = run(
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            )
            if started.returncode == 0:
                break
        else:
            log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed:\n{started.stderr}\n{log[-2000:]}")
        yield PgServer("127.0.0.1", port, "postgres", superuser_password)
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        for _ in range(50):  # let the postmaster release its files before removing them
            if not (data / "postmaster.pid").exists():
                break
            time.sleep(0.1)
        shutil.rmtree(root, ignore_errors=True)
