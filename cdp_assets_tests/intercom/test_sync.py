"""End to end: every Intercom asset into DuckDB against the simulator; after mutations an incremental run
leaves the tables exactly equal to the simulator's truth, with and without faults and 429s."""

from __future__ import annotations

import orjson
import pytest

from cdp_assets.intercom.assets import ALL_ASSETS, contacts, conversations
from cdp_assets.intercom.simulator import contact_id
from cdp_assets.shared.warehouse import TableRef

from .conftest import (
    TOKEN,
    assert_contacts_equal_truth,
    assert_conversations_equal_truth,
    capture_logs,
    small_config,
)

INTERCOM_TABLES = ["contacts", "companies", "conversations", "conversation_parts", "tags", "segments", "admins", "teams"]


def mutate(ws, cursor: int) -> dict:
    """Updates (one late on the cursor's own day), new records, a merge, new parts, a deleted conversation."""
    ws.update_contact(3, plan_note="x")  # now
    ws.update_contact(5, at=cursor + 1, custom_attributes={"plan": "enterprise"})  # late on the cursor's day
    new = ws.add_contacts(4)
    ws.merge_contacts(source=9, target=8)  # a lead merged into a user
    ws.add_parts(1, count=3)
    ws.add_parts(0, count=2)  # the long conversation grows past the cap again
    ws.add_conversations(2)
    ws.delete_conversation(4)
    return {"new": new}


def cursor_of(result, node: str) -> int:
    mats = [m for m in result.asset_materializations_for_node(node) if "intercom/cursor" in m.metadata]
    return mats[-1].metadata["intercom/cursor"].value


def declared_columns() -> dict[str, list[tuple[str, str]]]:
    """Each table's columns as its asset definition declares them (``dagster/column_schema``)."""
    declared = {}
    for assets_def in ALL_ASSETS:
        for key, meta in assets_def.metadata_by_key.items():
            declared[key.path[-1]] = [(c.name, c.type) for c in meta["dagster/column_schema"].columns]
    return declared


def test_initial_load_then_incremental_matches_truth(harness):
    first = harness.run()
    declared = declared_columns()
    assert sorted(declared) == sorted(INTERCOM_TABLES)
    for name in INTERCOM_TABLES:
        assert len(harness.table(name)) > 0, name
        written = [(c.name, c.type.value) for c in harness.warehouse.columns(TableRef("intercom", name))]
        assert written == declared[name], f"intercom/{name}: the table's columns differ from its definition"
    ws = harness.ws
    assert len(harness.table("companies")) == ws.config.companies
    assert len(harness.table("tags")) == ws.config.tags
    assert_contacts_equal_truth(harness.table("contacts"), ws)
    assert_conversations_equal_truth(harness.table("conversations"), harness.table("conversation_parts"), ws)
    cursor = cursor_of(first, contacts.op.name)
    assert cursor == max(u for u in ws.c_updated)
    conv_cursor = cursor_of(first, conversations.op.name)

    mutate(ws, cursor)
    # records updated between pages: before page 2 of the contact search, a page-1 contact changes
    window_start = cursor - 200 * 86_400
    page1 = [n for u, n in ws.c_index if u >= ws.day_start(window_start)][:150]
    ws.on_request("POST", "/contacts/search", 2,
                  lambda w: w.update_contact(page1[10], at=cursor + 2))  # moves to the end of the old data
    second = harness.run(run_config={"ops": {contacts.op.name: {"config": {"lookback_seconds": 200 * 86_400}}}})
    meta = second.asset_materializations_for_node(contacts.op.name)[-1].metadata
    assert meta["intercom/mode"].value == "incremental"
    assert meta["intercom/window_passes"].value >= 2, "the move under the cursor was not noticed"
    assert_contacts_equal_truth(harness.table("contacts"), ws)
    df = harness.table("contacts").set_index("id")
    assert df.loc[contact_id(9), "deleted_reason"] == "merged"
    assert df.loc[contact_id(9), "merged_into"] == contact_id(8)
    assert orjson.loads(df.loc[contact_id(5), "custom_attributes"])["plan"] == "enterprise"
    convs = harness.table("conversations").set_index("id")
    assert convs["parts_truncated"].sum() == 1
    assert_conversations_equal_truth(harness.table("conversations"), harness.table("conversation_parts"), ws)
    # only conversations in the window (changed ones, plus the lookback's overlap) were re-fetched for parts
    window = {n for n in range(ws.config.conversations)
              if n not in ws.v_deleted and ws.v_updated[n] >= conv_cursor - 3_600}
    assert {0, 1, 60, 61} <= window and len(window) < 10
    metas = second.asset_materializations_for_node(conversations.op.name)
    parts_meta = next(m for m in metas if m.asset_key.path[-1] == "conversation_parts").metadata
    assert parts_meta["intercom/conversations_fetched"].value == len(window)

    # archived contacts vanish silently: only the daily reconciliation can see them
    ws.archive_contact(20)
    harness.run(run_config={"ops": {contacts.op.name: {"config": {"reconcile": True}}}},
                selection=[contacts])
    assert_contacts_equal_truth(harness.table("contacts"), ws)
    assert harness.table("contacts").set_index("id").loc[contact_id(20), "deleted_reason"] == "archived"


def test_same_end_state_with_faults_and_429s(harness):
    logs = capture_logs()
    harness.run()
    ws, server = harness.ws, harness.server
    cursor = max(ws.c_updated)
    mutate(ws, cursor)
    ws.config.rate_limit, ws.config.rate_window_seconds = 25, 1.0  # real 429s from the budget
    for kind, path in [("500", "/contacts/search"), ("drop", "/contacts/search"), ("truncate", "/contacts/search"),
                       ("503", "/conversations/search"), ("429", "/conversations/search"),
                       ("truncate", r"/conversations/\d+"), ("slow", r"/conversations/\d+"),
                       ("500", "/companies/scroll"), ("drop", "/tags"), ("loop", "/contacts/search")]:
        server.inject(kind, path, delay=0.2)
    ws.on_request("POST", "/contacts/search", 2, lambda w: w.update_contact(w.c_index[0][1], at=cursor + 3))
    result = harness.run(run_config={"ops": {contacts.op.name: {"config": {"lookback_seconds": 200 * 86_400}}}})
    assert server.stats["faults"] >= 8
    assert server.stats["rate_limited"] > 0
    assert_contacts_equal_truth(harness.table("contacts"), ws)
    assert_conversations_equal_truth(harness.table("conversations"), harness.table("conversation_parts"), ws)
    assert len(harness.table("companies")) == ws.config.companies

    # the token never shows up: not in logs, event metadata or the run's event log
    events = harness.instance.all_logs(result.run_id)
    blob = " ".join(logs) + " ".join(str(e.dagster_event or "") + (e.user_message or "") for e in events)
    assert "Exceeded rate limit" in blob or "waiting" in blob  # the log capture works
    assert TOKEN not in blob


@pytest.mark.parametrize("harness", [small_config(contacts=50, conversations=5, companies=5)], indirect=True)
def test_full_refresh_forced_by_config(harness):
    harness.run(selection=[contacts])
    harness.ws.update_contact(1, at=harness.ws.anchor - 400 * 86_400 + 5)  # far behind the cursor: only a full read sees it
    harness.run(selection=[contacts])
    assert harness.table("contacts").set_index("id").loc[contact_id(1), "name"] != harness.ws.contact(1)["name"]
    res = harness.run(run_config={"ops": {contacts.op.name: {"config": {"full_refresh": True}}}}, selection=[contacts])
    assert res.asset_materializations_for_node(contacts.op.name)[-1].metadata["intercom/mode"].value == "full_refresh"
    assert_contacts_equal_truth(harness.table("contacts"), harness.ws)
