"""The BigQuery emulator (PyPI ``bqemulator``) for tests: its own virtualenv, started on ephemeral ports.

Why its own venv: bqemulator needs DuckDB's ``spatial`` extension, which it would download at start (there is no
network here). DuckDB 1.5.2 with the ``duckdb-extension-spatial`` 1.5.2 wheel works offline once the wheel's
extension file is ``INSTALL``ed from its local path; the project itself runs a newer DuckDB, so the two cannot
share an environment. The venv is built once under ``~/.cache/cdp_assets/bqemulator-venv`` (override with
``CDP_BQEMULATOR_VENV``) and reused; a stamp file with the pins makes the check instant, and a file lock keeps
parallel test workers from building it twice. The emulator runs with ``HOME`` inside the venv, so the DuckDB
extension directory it uses is the venv's own, not the user's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator

PINS = ("bqemulator==1.4.0", "duckdb==1.5.2", "duckdb-extension-spatial==1.5.2", "numpy>=2")
_STAMP = ".cdp_ready"
_LISTEN = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")

# Run inside the venv: register the wheel's spatial extension with DuckDB from its local file.
_INSTALL_SPATIAL = """
import pathlib, duckdb, duckdb_extension_spatial
ext = next(pathlib.Path(duckdb_extension_spatial.__file__).parent.rglob("spatial.duckdb_extension"))
con = duckdb.connect()
con.execute(f"INSTALL '{ext}'")
con.execute("LOAD spatial")
"""


def default_venv_dir() -> Path:
    if os.environ.get("CDP_BQEMULATOR_VENV"):
        return Path(os.environ["CDP_BQEMULATOR_VENV"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "cdp_assets" / "bqemulator-venv"


def _emulator_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["HOME"] = str(venv / "home")  # DuckDB keeps extensions under $HOME/.duckdb
    return env


def ensure_venv(venv: Path | None = None, python: str = sys.executable) -> Path:
    """Create the emulator's venv if it is missing or built with other pins; return its directory.

    Idempotent and fast when present (one stat and one small read)."""
    venv = venv or default_venv_dir()
    wanted = "\n".join(PINS)
    stamp = venv / _STAMP
    if stamp.is_file() and stamp.read_text() == wanted:
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be building it right now
        if stamp.is_file() and stamp.read_text() == wanted:
            return venv
        subprocess.run([python, "-m", "venv", "--clear", str(venv)], check=True)
        vpy = str(venv / "bin" / "python")
        subprocess.run([vpy, "-m", "pip", "install", "-q", "--disable-pip-version-check", *PINS], check=True)
        (venv / "home").mkdir(exist_ok=True)
        subprocess.run([vpy, "-c", _INSTALL_SPATIAL], check=True, env=_emulator_env(venv))
        stamp.write_text(wanted)
    return venv


@dataclass
class BqEmulator:
    project: str
    rest_port: int
    process: subprocess.Popen
    log_path: Path
    _log: IO = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def client(self):
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(
            project=self.project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.endpoint),
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)  # its own session: only what we started
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._log:
            self._log.close()


def start(project: str, log_dir: Path, venv: Path | None = None, timeout: float = 60.0) -> BqEmulator:
    """Start an in-memory emulator on ephemeral REST and gRPC ports and wait until it listens."""
    venv = ensure_venv(venv)
    log_path = log_dir / f"bqemulator-{project}.log"
    log = open(log_path, "w+")
    proc = subprocess.Popen(
        [str(venv / "bin" / "bqemulator"), "start", "--project", project, "--rest-port", "0", "--grpc-port", "0",
         "--ephemeral", "--log-level", "info", "--log-format", "console"],
        stdout=log, stderr=subprocess.STDOUT, env=_emulator_env(venv), start_new_session=True,
    )
    emulator = BqEmulator(project, 0, proc, log_path, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = _LISTEN.search(log_path.read_text(errors="replace"))
        if match:
            emulator.rest_port = int(match.group(1))
            return emulator
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    emulator.stop()
    raise RuntimeError(f"bqemulator did not start within {timeout:.0f}s; see {log_path}:\n{log_path.read_text()[-2000:]}")


@contextlib.contextmanager
def running(project: str, log_dir: Path, venv: Path | None = None) -> Iterator[BqEmulator]:
    emulator = start(project, log_dir, venv)
    try:
        yield emulator
    finally:
        emulator.stop()
