"""The Google Pub/Sub emulator: start it, find a running one, stop it, and build clients that talk to it.

The emulator is the real one from the Google Cloud CLI (``gcloud beta emulators pubsub start``); nothing here
fakes Pub/Sub. Clients get an explicit insecure gRPC channel to the emulator instead of relying on the
process-wide ``PUBSUB_EMULATOR_HOST`` variable, so one process can talk to several emulators (tests) and the
variable never leaks into live clients.

Facts that shaped this module (``contracts/pubsub-emulator.md`` and measurements on this machine):

* the port accepts TCP a little before gRPC is served, so readiness is "HTTP GET / answers ``Ok``";
* ``gcloud`` starts a Python wrapper that starts the JVM, so stopping must signal the whole process group;
* snapshots and ``seek`` are accepted by the emulator but a subscription seeked to a snapshot receives nothing,
  so the backlog probe (``sensors.py``) cannot use them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

INSTALL_HINT = (
    "Install the Google Cloud CLI and its Pub/Sub emulator component: `gcloud components install "
    "pubsub-emulator beta`, or on Debian/Ubuntu `apt-get install google-cloud-cli "
    "google-cloud-cli-pubsub-emulator` (from packages.cloud.google.com). The emulator needs Java 11 or newer "
    "on PATH."
)

#: Large enough for a pull of 100 messages of up to Pub/Sub's 10 MB each; the default (4 MB) is not.
_GRPC_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


class EmulatorError(RuntimeError):
    """The emulator is missing or did not start; the message says what to install or where the log is."""


@dataclass(frozen=True)
class Emulator:
    host: str
    port: int
    project: str
    pid: int | None = None  # process-group leader we started; None when we only found a running one
    log_path: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


# ------------------------------------------------------------------------------------------ processes


def free_port() -> int:
    """An ephemeral TCP port that is free right now (xdist workers each get their own)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_installed() -> str:
    """Path of ``gcloud`` with the emulator component present, or an EmulatorError saying how to install."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise EmulatorError(f"`gcloud` is not on PATH. {INSTALL_HINT}")
    if shutil.which("java") is None:
        raise EmulatorError(f"`java` is not on PATH. {INSTALL_HINT}")
    sdk_root = Path(os.path.realpath(gcloud)).parent.parent
    candidates = [sdk_root / "platform" / "pubsub-emulator", Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator")]
    if not any(p.is_dir() for p in candidates):
        raise EmulatorError(f"The Pub/Sub emulator component is not installed next to {gcloud}. {INSTALL_HINT}")
    return gcloud


def is_ready(address: str, timeout: float = 0.5) -> bool:
    """True when the emulator serves requests (it answers ``Ok`` to a plain HTTP GET on its port)."""
    try:
        with urllib.request.urlopen(f"http://{address}/", timeout=timeout) as resp:  # noqa: S310 (loopback)
            return resp.status == 200
    except OSError:
        return False


def start(port: int | None = None, project: str = "cdp-local", host: str = "127.0.0.1",
          log_dir: Path | None = None, timeout: float = 60.0) -> Emulator:
    """Start an emulator and wait until it serves; raise EmulatorError (with the log's tail) if it does not."""
    gcloud = check_installed()
    port = port or free_port()
    log_dir = log_dir or Path(os.environ.get("TMPDIR", "/tmp"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"pubsub-emulator-{port}.log"
    cmd = [gcloud, "beta", "emulators", "pubsub", "start", f"--host-port={host}:{port}", f"--project={project}",
           "--quiet"]
    with open(log_path, "wb") as log:
        # Own session: stop() signals the group, which reaches the JVM that gcloud starts as a child.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    emu = Emulator(host, port, project, proc.pid, str(log_path))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_ready(emu.address):
            return emu
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    stop(emu)
    tail = log_path.read_text(errors="replace")[-2000:]
    raise EmulatorError(f"the Pub/Sub emulator did not start on {emu.address} within {timeout:.0f}s "
                        f"(log {log_path}):\n{tail}\n{INSTALL_HINT}")


def stop(emu: Emulator, timeout: float = 10.0) -> None:
    """Stop an emulator we started (its whole process group). Emulators found running are left alone."""
    if emu.pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(emu.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(emu.pid, 0)
        except (ProcessLookupError, PermissionError):
            break
        with contextlib.suppress(ChildProcessError):
            os.waitpid(emu.pid, os.WNOHANG)
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(emu.pid, signal.SIGKILL)


def ensure(state_dir: Path, project: str = "cdp-local", port: int | None = None) -> Emulator:
    """Reuse the emulator recorded in ``state_dir/pubsub-emulator.json`` if it still serves, else start one.

    Used by the demo and the simulated-mode resource, so repeated runs share one emulator (and its messages).
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    state = state_dir / "pubsub-emulator.json"
    if state.exists():
        with contextlib.suppress(ValueError, TypeError, KeyError):
            known = Emulator(**json.loads(state.read_text()))
            if known.project == project and (port is None or known.port == port) and is_ready(known.address):
                return known
    emu = start(port=port, project=project, log_dir=state_dir)
    tmp = state.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(emu)))
    tmp.replace(state)
    return emu


def stop_recorded(state_dir: Path) -> bool:
    """Stop the emulator recorded under ``state_dir`` (the demo's), if any. Returns whether one was stopped."""
    state = state_dir / "pubsub-emulator.json"
    if not state.exists():
        return False
    emu = Emulator(**json.loads(state.read_text()))
    stop(emu)
    state.unlink(missing_ok=True)
    return True


# ------------------------------------------------------------------------------------------ clients


def subscriber_client(emulator_address: str | None = None) -> pubsub_v1.SubscriberClient:
    """A SubscriberClient for the emulator at ``emulator_address``, or for Google (ADC credentials) if None."""
    if emulator_address:
        channel = grpc.insecure_channel(emulator_address, options=_GRPC_OPTIONS)
        return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))
    return pubsub_v1.SubscriberClient()


def publisher_client(emulator_address: str | None = None,
                     batch: pubsub_v1.types.BatchSettings | None = None) -> pubsub_v1.PublisherClient:
    """A PublisherClient batching 1000 messages / 50 ms (about 25k msgs/s on the emulator)."""
    batch = batch or pubsub_v1.types.BatchSettings(max_messages=1000, max_bytes=9_000_000, max_latency=0.05)
    if emulator_address:
        channel = grpc.insecure_channel(emulator_address, options=_GRPC_OPTIONS)
        return pubsub_v1.PublisherClient(batch_settings=batch, transport=PublisherGrpcTransport(channel=channel))
    return pubsub_v1.PublisherClient(batch_settings=batch)


def ensure_topic_and_subscription(emulator_address: str | None, project: str, topic: str, subscription: str,
                                  ack_deadline_seconds: int = 60) -> tuple[str, str]:
    """Create the topic and its pull subscription unless they exist; return their full paths."""
    publisher = publisher_client(emulator_address)
    subscriber = subscriber_client(emulator_address)
    topic_path = publisher.topic_path(project, topic)
    sub_path = subscriber.subscription_path(project, subscription)
    try:
        with contextlib.suppress(gexc.AlreadyExists):
            publisher.create_topic(name=topic_path)
        with contextlib.suppress(gexc.AlreadyExists):
            subscriber.create_subscription(name=sub_path, topic=topic_path, ack_deadline_seconds=ack_deadline_seconds)
    finally:
        subscriber.close()
        publisher.transport.close()
    return topic_path, sub_path
