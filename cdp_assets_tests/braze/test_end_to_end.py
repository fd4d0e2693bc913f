"""End to end through the real upstream assets: simulated Segment events -> Pub/Sub emulator -> the events
loader (segment_events/*), and the Intercom simulator -> intercom/contacts; then the Braze tables.

Both simulators use the shared user universe (user n = ``u{n:07d}`` / ``user{n}@example.com``), so the Braze
user rows join Segment traits and Intercom attributes for the same people.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import uuid

import orjson
import pytest
from dagster import materialize

from cdp_assets.braze.assets import (
    CONTACTS,
    EVENTS_SYNC,
    IDENTIFIES,
    LINEAGE,
    TRACKS,
    USERS_SYNC,
    braze_cdi_tables,
    table_of,
)
from cdp_assets.braze.checks import contract_checks
from cdp_assets.events import emulator
from cdp_assets.events.assets import segment_events_load
from cdp_assets.events.resources import PubSubResource
from cdp_assets.events.simulator import SegmentEventFactory, publish
from cdp_assets.intercom.assets import ALL_ASSETS as INTERCOM_ASSETS
from cdp_assets.intercom.resources import IntercomResource
from cdp_assets.shared.warehouse import WarehouseIOManager
from cdp_assets.shared.warehouse.duckdb import DuckDBWarehouse

from . import upstream as up

pytestmark = pytest.mark.emulator

USERS = 40


@pytest.fixture(scope="module")
def pubsub(tmp_path_factory):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    emu = emulator.start(project=f"cdp-braze-{worker}", log_dir=tmp_path_factory.mktemp("pubsub"))
    name = f"braze-e2e-{uuid.uuid4().hex[:8]}"
    resource = PubSubResource(
        project=emu.project,
        topic=name,
        subscription=f"{name}-sub",
        emulator_host=emu.address,
        ack_deadline_seconds=10,
    )
    resource.ensure_exists()
    yield resource
    emulator.stop(emu)


def load_events(pubsub: PubSubResource, wh: DuckDBWarehouse, events: list[dict]):
    publisher = pubsub.publisher()
    try:
        publish(publisher, pubsub.topic_path, [orjson.dumps(e) for e in events])
    finally:
        publisher.transport.close()
    result = materialize([segment_events_load], resources={"pubsub": pubsub, "warehouse": wh})
    assert result.success
    return {e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}


def load_contacts(wh: DuckDBWarehouse):
    asset = next(a for a in INTERCOM_ASSETS if CONTACTS in getattr(a, "keys", ()))
    intercom = IntercomResource(simulated=True, sim_contacts=60, sim_conversations=5, sim_companies=5)
    result = materialize(
        [asset],
        selection=[CONTACTS],
        resources={"intercom": intercom, "warehouse": wh, "io_manager": WarehouseIOManager(warehouse=wh)},
    )
    assert result.success
    return {e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}


def expected_payload(events: list[dict], contact: dict | None) -> dict:
    """The README's precedence, recomputed independently: traits folded by time, Segment over Intercom."""
    traits: dict = {}
    for e in sorted((e for e in events if e["type"] == "identify"), key=lambda e: e["timestamp"]):
        traits.update(e["traits"])
    segment = {PAYLOAD_RENAMES.get(k, k): v for k, v in traits.items() if k not in ("email", "phone", "id")}
    intercom = {}
    if contact is not None:
        intercom = {
            "name": contact["name"],
            "intercom_role": contact["role"],
            **orjson.loads(contact["custom_attributes"]),
        }
    return {k: v for k, v in {**intercom, **segment}.items() if v is not None}


PAYLOAD_RENAMES = {"firstName": "first_name", "lastName": "last_name"}


def run_braze(wh: DuckDBWarehouse):
    result = materialize(
        [braze_cdi_tables, *up.UPSTREAM_SPECS, *contract_checks], resources={"warehouse": wh}
    )
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    return {e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}


def test_simulated_events_reach_the_braze_tables_and_only_changes_are_republished(pubsub, tmp_path):
    wh = DuckDBWarehouse(database=str(tmp_path / "cdp_e2e.duckdb"), lock_timeout_seconds=30)
    factory = SegmentEventFactory(seed=7, users=USERS)
    events = [factory.event(i) for i in range(600)]
    upstream_meta = load_events(pubsub, wh, events) | load_contacts(wh)
    contacts = wh.read(table_of(CONTACTS))

    braze_meta = run_braze(wh)

    identified = {e["userId"] for e in events if e["type"] == "identify"}
    known = set(contacts.loc[contacts["deleted_at"].isna(), "external_id"].dropna())
    tracks = [e for e in events if e["type"] == "track"]
    users = wh.read(table_of(USERS_SYNC))
    assert set(users["EXTERNAL_ID"].dropna()) == identified | known
    assert users["EXTERNAL_ID"].dropna().is_unique and users["ALIAS_NAME"].isna().all()
    leads = contacts[contacts["external_id"].isna()]
    assert set(users["EMAIL"].dropna()) <= set(leads["email"].dropna().str.lower())
    sync_events = wh.read(table_of(EVENTS_SYNC))
    assert len(sync_events) == len(tracks)
    assert sync_events["ALIAS_NAME"].notna().sum() == sum(1 for e in tracks if "userId" not in e)

    # For users in both systems (not joined by a stitched lead) the payload is exactly the documented merge.
    lead_emails = set(leads["email"].dropna().str.lower())
    both = sorted(u for u in identified & known if f"user{int(u[1:])}@example.com" not in lead_emails)
    assert both, "the simulators should share users"
    by_ext = users.set_index("EXTERNAL_ID")
    for uid in both[:10]:
        contact = contacts[contacts["external_id"] == uid].iloc[0].to_dict()
        mine = [e for e in events if e.get("userId") == uid]
        assert orjson.loads(by_ext.loc[uid, "PAYLOAD"]) == expected_payload(mine, contact)
    some = both[0]

    # Lineage names columns the upstream materializations really have.
    assert {IDENTIFIES, TRACKS, CONTACTS} <= set(upstream_meta)
    for key, columns in LINEAGE.items():
        for deps in columns.values():
            for dep_key, column in deps:
                if dep_key in upstream_meta:
                    names = {c.name for c in upstream_meta[dep_key]["dagster/column_schema"].schema.columns}
                    assert column in names, f"{key.to_user_string()} <- {dep_key.to_user_string()}.{column}"
    assert set(braze_meta) >= {USERS_SYNC, EVENTS_SYNC}

    # No upstream change: nothing moves.
    before = users["UPDATED_AT"].max()
    run_braze(wh)
    assert len(wh.read(table_of(USERS_SYNC))) == len(users)
    assert len(wh.read(table_of(EVENTS_SYNC))) == len(sync_events)

    # One user changes plan in Segment: exactly one new row, for that user, with only the plan.
    change = copy.deepcopy(next(e for e in events if e["type"] == "identify" and e["userId"] == some))
    later = (dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    change.update(
        messageId=f"ajs-change-{uuid.uuid4().hex}",
        timestamp=later,
        sentAt=later,
        receivedAt=later,
        originalTimestamp=later,
        traits={"plan": "plan-changed"},
    )
    load_events(pubsub, wh, [change])
    run_braze(wh)
    after = wh.read(table_of(USERS_SYNC))
    new = after[after["UPDATED_AT"] > before]
    assert list(new["EXTERNAL_ID"]) == [some]
    assert orjson.loads(new["PAYLOAD"].iloc[0]) == {"plan": "plan-changed"}
    assert len(wh.read(table_of(EVENTS_SYNC))) == len(sync_events)  # an identify is no custom event
