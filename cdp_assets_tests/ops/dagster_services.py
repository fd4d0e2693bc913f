"""Start Dagster's own services for real, as a deployment runs them: one code server (gRPC), the
webserver and, when asked, the daemon, all sharing a temporary instance and a workspace file that points at
the code server.

Every process gets its own session, so stopping them ends their children too (run workers, code-server
subprocesses) and nothing else. Ports are ephemeral; nothing is written outside the given folder except what
the code location itself writes (its warehouse lives under ``CDP_DATA_DIR``, set by the caller).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_INSTANCE_YAML = REPO_ROOT / "dagster.yaml"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DagsterServices:
    home: Path
    workspace: Path
    location_name: str
    webserver_port: int
    env: dict[str, str]
    logs: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.webserver_port}"

    def start(self, name: str, args: Sequence[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            list(args),
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = proc
        return proc

    def start_daemon(self) -> None:
        self.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(self.workspace)])

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        for proc in reversed(list(self.processes.values())):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def wait_for_code_server(self, port: int, timeout: float = 120) -> None:
        from dagster._grpc.client import DagsterGrpcClient

        client = DagsterGrpcClient(port=port, host="127.0.0.1")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.processes["code_server"].poll() is not None:
                raise RuntimeError(f"code server exited:\n{self.log_tail('code_server')}")
            with contextlib.suppress(Exception):
                client.ping("ready")
                return
            time.sleep(0.3)
        raise TimeoutError(f"code server did not start:\n{self.log_tail('code_server')}")

    def wait_until_loaded(self, timeout: float = 120) -> None:
        """Until the webserver answers and its workspace has loaded the code location without error."""
        query = (
            "{ workspaceOrError { ... on Workspace { locationEntries {"
            " name locationOrLoadError { __typename } } } } }"
        )
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            try:
                r = requests.post(f"{self.url}/graphql", json={"query": query}, timeout=5)
                entries = r.json()["data"]["workspaceOrError"]["locationEntries"]
                kinds = {e["name"]: (e["locationOrLoadError"] or {}).get("__typename") for e in entries}
                if kinds.get(self.location_name) == "RepositoryLocation":
                    return
                last = str(kinds)
            except (requests.RequestException, KeyError, TypeError, ValueError) as exc:
                last = repr(exc)
            time.sleep(0.5)
        raise TimeoutError(
            f"code location {self.location_name!r} did not load: {last}\n{self.log_tail('webserver')}"
        )


@contextlib.contextmanager
def dagster_services(
    root: Path,
    location_args: Sequence[str],
    location_name: str = "cdp_assets",
    env: Mapping[str, str] | None = None,
    instance_yaml: Path = LOCAL_INSTANCE_YAML,
    daemon: bool = False,
) -> Iterator[DagsterServices]:
    """Code server for ``location_args`` (e.g. ``["-m", "cdp_assets.definitions"]``) + webserver (+ daemon).

    The instance is ``instance_yaml`` copied to ``root/dagster_home/dagster.yaml`` (the documented way to
    select an instance), so the services run under the project's real instance configuration.
    """
    home, logs = root / "dagster_home", root / "logs"
    home.mkdir(parents=True, exist_ok=True)
    logs.mkdir(exist_ok=True)
    shutil.copy(instance_yaml, home / "dagster.yaml")
    grpc_port, web_port = free_port(), free_port()
    workspace = root / "workspace.yaml"
    workspace.write_text(
        f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {grpc_port}\n"
        f"      location_name: {location_name}\n"
    )
    full_env = {**os.environ, **(env or {}), "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    services = DagsterServices(home, workspace, location_name, web_port, full_env, logs)
    try:
        # `dagster api grpc` is what the Helm chart's user deployments run; it serves once the code is loaded
        services.start(
            "code_server",
            [
                str(BIN / "dagster"),
                "api",
                "grpc",
                "-h",
                "127.0.0.1",
                "-p",
                str(grpc_port),
                "--location-name",
                location_name,
                "-d",
                str(REPO_ROOT),
                *location_args,
            ],
        )
        services.wait_for_code_server(grpc_port)
        services.start(
            "webserver",
            [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port), "-w", str(workspace)],
        )
        if daemon:
            services.start_daemon()
        services.wait_until_loaded()
        yield services
    finally:
        services.stop()
