"""One real Pub/Sub emulator per test process (each xdist worker has its own port and project), and a fresh
topic + subscription per test so tests never see each other's messages."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pytest

from cdp_assets.events import emulator
from cdp_assets.events.resources import PubSubResource
from cdp_assets.shared.warehouse.duckdb import DuckDBWarehouse


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory) -> emulator.Emulator:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    emu = emulator.start(project=f"cdp-test-{worker}", log_dir=tmp_path_factory.mktemp("pubsub"))
    yield emu
    emulator.stop(emu)


@dataclass
class Channel:
    """A topic with its pull subscription on the test emulator, and clients for both."""

    pubsub: PubSubResource
    topic_path: str
    subscription_path: str
    publisher: object
    subscriber: object


@pytest.fixture
def channel(pubsub_emulator) -> Channel:
    name = f"events-{uuid.uuid4().hex[:12]}"
    resource = PubSubResource(project=pubsub_emulator.project, topic=name, subscription=f"{name}-sub",
                              emulator_host=pubsub_emulator.address, ack_deadline_seconds=10)
    topic, sub = resource.ensure_exists()
    ch = Channel(resource, topic, sub, resource.publisher(), resource.subscriber())
    yield ch
    ch.subscriber.close()
    ch.publisher.transport.close()


@pytest.fixture
def warehouse(tmp_path) -> DuckDBWarehouse:
    return DuckDBWarehouse(database=str(tmp_path / "events.duckdb"), lock_timeout_seconds=30)
