"""Schedule evaluation: the hourly incremental run and the daily reconciliation with its run config."""

from __future__ import annotations

import datetime as dt

from dagster import AssetKey, build_schedule_context

from cdp_assets.intercom.assets import contacts, conversations
from cdp_assets.definitions import defs
from cdp_assets.intercom.schedules import incremental_job, intercom_daily_reconciliation, intercom_hourly


def test_hourly_schedule_requests_the_incremental_assets():
    tick = dt.datetime(2026, 3, 4, 5, 17, tzinfo=dt.timezone.utc)
    request = intercom_hourly(build_schedule_context(scheduled_execution_time=tick))
    assert request.run_key == "intercom_hourly:2026-03-04T05:17:00+00:00"
    assert intercom_hourly.cron_schedule == "17 * * * *"
    keys = {k.to_user_string() for k in incremental_job.selection.resolve(defs.resolve_asset_graph())}
    assert keys == {"intercom/contacts", "intercom/conversations", "intercom/conversation_parts"}


def test_daily_reconciliation_sets_reconcile_on_both_incremental_assets():
    tick = dt.datetime(2026, 3, 4, 3, 40, tzinfo=dt.timezone.utc)
    request = intercom_daily_reconciliation(build_schedule_context(scheduled_execution_time=tick))
    ops = request.run_config["ops"]
    assert ops[contacts.op.name]["config"]["reconcile"] is True
    assert ops[conversations.op.name]["config"]["reconcile"] is True
    assert request.run_key == "intercom_reconcile:2026-03-04"


def test_asset_conventions():
    graph = defs.resolve_asset_graph()
    nodes = [n for n in graph.asset_nodes if n.key.path[0] == "intercom" and n.is_materializable]
    assert len(nodes) == 8
    workspace = graph.get(AssetKey(["intercom", "workspace"]))
    assert not workspace.is_materializable and workspace.group_name == "intercom"
    for n in nodes:
        assert n.group_name == "intercom" and n.owners and n.description
        assert AssetKey(["intercom", "workspace"]) in n.parent_keys, f"{n.key} does not trace back to Intercom"
        assert n.metadata["primary_key"] and n.metadata["write_mode"] in ("merge", "replace")
        assert n.metadata["dagster/column_schema"].columns
        assert n.pools and n.pools <= {"intercom_api", "intercom_scroll"}
    assert graph.get(contacts.keys_by_output_name["result"]).metadata["write_mode"] == "merge"
