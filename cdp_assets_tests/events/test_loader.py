"""The loader against the real emulator: every event in exactly one row, rejects kept, nothing left behind,
and exactly once across failures at every point of a batch (including a SIGKILLed process)."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from dagster import materialize

from cdp_assets.events.assets import segment_events_load
from cdp_assets.events.loader import DrainSettings, drain, pull_raw
from cdp_assets.events.parse import BY_TYPE, EVENT_TABLES
from cdp_assets.events.simulator import SegmentEventFactory, malformed_payloads, publish
from cdp_assets.shared.warehouse import TableRef

pytestmark = pytest.mark.emulator


def publish_events(channel, n: int, seed: int, bad: bool = True) -> tuple[dict[str, set[str]], collections.Counter]:
    """Publish n good events (and the malformed set); return expected messageIds per table and reject reasons."""
    factory = SegmentEventFactory(seed=seed)
    events = [factory.event(i) for i in range(n)]
    expected: dict[str, set[str]] = {t.table: set() for t in EVENT_TABLES}
    for e in events:
        expected[BY_TYPE[e["type"]].table].add(e["messageId"])
    import orjson

    publish(channel.publisher, channel.topic_path, [orjson.dumps(e) for e in events])
    reasons: collections.Counter = collections.Counter()
    if bad:
        malformed = malformed_payloads(seed)
        publish(channel.publisher, channel.topic_path, [p for p, _ in malformed])
        reasons.update(r for _, r in malformed)
    return expected, reasons


def table_ids(db: str, table: str, key: str = "message_id") -> list[str]:
    con = duckdb.connect(db, read_only=True)
    try:
        return [r[0] for r in con.execute(f'SELECT {key} FROM segment_events."{table}"').fetchall()]
    except duckdb.CatalogException:
        return []
    finally:
        con.close()


def assert_exactly_once(db: str, expected: dict[str, set[str]]) -> None:
    for table, ids in expected.items():
        rows = table_ids(db, table)
        assert len(rows) == len(set(rows)), f"duplicates in {table}"
        assert set(rows) == ids, f"{table}: {len(rows)} rows, expected {len(ids)}"


def assert_subscription_empty(channel) -> None:
    msgs, _ = pull_raw(channel.subscriber, channel.subscription_path, return_immediately=True, timeout=10)
    assert msgs == [], f"{len(msgs)} message(s) still waiting"


def test_dagster_run_loads_every_event_once_rejects_bad_ones_and_empties_the_subscription(channel, warehouse):
    expected, reasons = publish_events(channel, 2_000, seed=11)
    result = materialize(
        [segment_events_load],
        resources={"pubsub": channel.pubsub, "warehouse": warehouse},
        run_config={"ops": {"segment_events_load": {"config": {"batch_messages": 700}}}},
    )
    assert result.success
    assert_exactly_once(warehouse.database, expected)
    con = duckdb.connect(warehouse.database, read_only=True)
    got = collections.Counter(r[0] for r in con.execute("SELECT reason FROM segment_events.rejected").fetchall())
    identify = con.execute("SELECT user_id, email, traits->>'plan', typeof(timestamp) FROM segment_events.identifies "
                           "WHERE user_id IS NOT NULL LIMIT 1").fetchone()
    con.close()
    assert got == reasons
    assert identify[1] == f"user{int(identify[0][1:])}@example.com" and identify[2] in {"free", "starter", "pro",
                                                                                     "enterprise"}
    assert identify[3] == "TIMESTAMP WITH TIME ZONE"
    assert_subscription_empty(channel)
    events = result.get_asset_materialization_events()
    mats = {e.asset_key.path[-1]: e.materialization.metadata for e in events}
    assert set(mats) == {t.table for t in EVENT_TABLES} | {"rejected"}
    for table, ids in expected.items():
        assert mats[table]["dagster/row_count"].value == len(ids)
        assert mats[table]["dagster/table_name"].value == '"segment_events"."' + table + '"'
    assert mats["rejected"]["dagster/row_count"].value == sum(reasons.values())
    assert mats["tracks"]["cdp/acked"].value == 2_000 + sum(reasons.values())
    assert "message_id" in {c.name for c in mats["tracks"]["dagster/column_schema"].schema.columns}
    # every table was written with exactly the columns its definition declares
    for key, meta in segment_events_load.metadata_by_key.items():
        declared = [(c.name, c.type) for c in meta["dagster/column_schema"].columns]
        written = [(c.name, c.type.value) for c in warehouse.columns(TableRef("segment_events", key.path[-1]))]
        assert written == declared, f"{key.to_user_string()}: the table's columns differ from its definition"


class Crash(RuntimeError):
    pass


def crash_at(stage: str, batch: int):
    def hook(s: str, b: int) -> None:
        if (s, b) == (stage, batch):
            raise Crash(f"injected at {stage} of batch {batch}")
    return hook


@pytest.mark.parametrize("stage, batch", [
    ("committed", 1),  # every table of batch 1 written, nothing acked
    ("written:pages", 2),  # mid-batch: tracks and identifies of batch 2 written, the rest not
    ("parsed", 2),  # before any write of batch 2
])
def test_a_run_that_fails_anywhere_is_completed_exactly_once_by_the_next(channel, warehouse, stage, batch):
    expected, _ = publish_events(channel, 1_500, seed=21, bad=False)
    settings = DrainSettings(batch_messages=500, pull_threads=2)  # also covers concurrent pull loops
    with pytest.raises(Crash):
        drain(channel.subscriber, channel.subscription_path, warehouse, settings, hook=crash_at(stage, batch))
    partial = sum(len(table_ids(warehouse.database, t)) for t in expected)
    assert 0 < partial < 1_500  # the crash really left a half-done load behind
    report = drain(channel.subscriber, channel.subscription_path, warehouse, settings)
    assert report.pulled >= 1_500 - 500 * (batch - 1)  # nothing acked after the crash point was lost
    assert_exactly_once(warehouse.database, expected)
    assert_subscription_empty(channel)


KILL_SCRIPT = """
import os, signal, sys, time
from cdp_assets.events.emulator import subscriber_client
from cdp_assets.events.loader import DrainSettings, drain
from cdp_assets.shared.warehouse.duckdb import DuckDBWarehouse
address, subscription, db = sys.argv[1:4]

def hook(stage, batch):
    if (stage, batch) == ("committed", 2):
        time.sleep(1.0)  # let the lease keeper shorten the ack deadline to lease_seconds first
        os.kill(os.getpid(), signal.SIGKILL)  # no nack, no cleanup: like an OOM kill or a lost node

drain(subscriber_client(address), subscription, DuckDBWarehouse(database=db),
      DrainSettings(batch_messages=400, lease_seconds=2), hook=hook)
"""


def test_sigkill_after_write_before_ack_loses_and_duplicates_nothing(channel, warehouse, pubsub_emulator):
    expected, _ = publish_events(channel, 1_200, seed=31, bad=False)
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, pubsub_emulator.address, channel.subscription_path,
                           warehouse.database], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert 400 <= sum(len(table_ids(warehouse.database, t)) for t in expected) < 1_200
    deadline = time.monotonic() + 30  # the dead process's leases expire after lease_seconds (2 s)
    while time.monotonic() < deadline:
        drain(channel.subscriber, channel.subscription_path, warehouse, DrainSettings(batch_messages=400))
        if sum(len(table_ids(warehouse.database, t)) for t in expected) == 1_200:
            break
        time.sleep(0.5)
    assert_exactly_once(warehouse.database, expected)
    time.sleep(2.5)  # any lease still pending would now have expired and be visible again
    assert_subscription_empty(channel)


def test_leases_are_extended_while_a_slow_write_is_in_flight(channel, warehouse):
    # The subscription's ack deadline is 10 s; the first write stalls for 11 s. Without extensions the
    # in-flight messages would be redelivered mid-run and pulled twice.
    expected, _ = publish_events(channel, 600, seed=41, bad=False)

    def slow(stage: str, batch: int) -> None:
        if (stage, batch) == ("written:tracks", 1):
            time.sleep(11)

    report = drain(channel.subscriber, channel.subscription_path, warehouse,
                   DrainSettings(batch_messages=300, lease_seconds=3), hook=slow)
    assert report.lease_extensions >= 3
    assert report.pulled == 600  # no redelivery during the run
    assert report.acked == 600
    assert_exactly_once(warehouse.database, expected)
    assert_subscription_empty(channel)
