"""Braze's row rules, UPDATED_AT, deltas, identity and the automation condition, without a warehouse."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, Definitions, asset, evaluate_automation_conditions, materialize

from cdp_assets.braze import publish
from cdp_assets.braze.assets import CONTACTS, IDENTIFIES, TRACKS, USERS_SYNC, braze_cdi_tables
from cdp_assets.braze.contract import MAX_ATTRIBUTES, IdKind
from cdp_assets.braze.profiles import build_user_profiles
from cdp_assets.shared.warehouse.duckdb import DuckDBWarehouse

from . import upstream as up

NOW = dt.datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=dt.timezone.utc)
EXT = {
    "EXTERNAL_ID": "u1",
    "ALIAS_NAME": None,
    "ALIAS_LABEL": None,
    "BRAZE_ID": None,
    "EMAIL": None,
    "PHONE": None,
}


def rules(ids, payload, count=True):
    text = publish.canonical_json(payload)
    return [rule for rule, _ in publish.row_violations(ids, payload, text, count_attributes=count)]


@pytest.mark.parametrize(
    "previous, expected",
    [
        (None, pd.Timestamp(NOW)),
        (
            pd.Timestamp(NOW),
            pd.Timestamp(NOW) + pd.Timedelta(microseconds=1),
        ),  # never equal to the last maximum
        (
            pd.Timestamp(NOW) + pd.Timedelta(hours=1),
            pd.Timestamp(NOW) + pd.Timedelta(hours=1, microseconds=1),
        ),
        (pd.Timestamp(NOW.replace(tzinfo=None)) - pd.Timedelta(hours=1), pd.Timestamp(NOW)),  # naive = UTC
    ],
)
def test_updated_at_is_utc_and_strictly_after_the_previous_maximum(previous, expected):
    got = publish.next_updated_at(previous, NOW)
    assert got == expected and str(got.tz) == "UTC"


def test_exactly_one_identifier():
    assert rules(EXT, {"a": 1}) == []
    assert rules({**EXT, "EMAIL": "a@example.com"}, {"a": 1}) == ["two_identifiers"]
    assert rules({**EXT, "EXTERNAL_ID": None}, {"a": 1}) == ["no_identifier"]
    alias = {**EXT, "EXTERNAL_ID": None, "ALIAS_NAME": "anon-1", "ALIAS_LABEL": "segment_anonymous_id"}
    assert rules(alias, {"a": 1}) == []
    assert rules({**alias, "ALIAS_LABEL": None}, {"a": 1}) == ["incomplete_alias"]


def test_identifiers_inside_payload_are_rejected():
    assert rules(EXT, {"email": "x@example.com", "a": 1}) == ["identifier_in_payload"]


def test_attribute_limit_counts_an_array_as_one():
    at_limit = {f"a{i}": i for i in range(MAX_ATTRIBUTES - 1)} | {"tags": list(range(1_000))}
    assert rules(EXT, at_limit) == []
    assert rules(EXT, at_limit | {"one_more": 1}) == ["too_many_attributes"]
    assert rules(EXT, at_limit | {"one_more": 1}, count=False) == []  # events have no attribute limit


def test_size_limit_counts_the_whole_row():
    payload = {"blob": "x" * (1_000_000 - len('{"blob":""}') - len("u1"))}
    assert rules(EXT, payload) == []
    assert rules({**EXT, "EXTERNAL_ID": "u12"}, payload) == ["payload_too_large"]


def test_attribute_delta_sends_changes_and_nulls_for_removals():
    before = {"plan": "free", "tier": "gold", "company": {"name": "A"}}
    after = {"plan": "pro", "company": {"name": "A"}, "title": "CTO"}
    assert publish.attribute_delta(before, after) == {"plan": "pro", "title": "CTO", "tier": None}
    assert publish.attribute_delta(after, after) == {}


def test_traits_fold_in_event_time_order_and_anonymous_users_get_an_alias():
    identifies = pd.DataFrame(
        [
            up.identify(1, 2, {"plan": "pro"}),  # later in time, listed first
            up.identify(
                1, 0, {"plan": "free", "title": "CTO", "email": "user1@example.com", "id": "u0000001"}
            ),
            up.identify(7, 0, {"plan": "trial"}, user=None, anonymous="anon-7", mail=None),
        ]
    )
    contacts = pd.DataFrame([up.contact("c1", external_id=None, mail=None, phone=None)])
    profiles, conflicts = build_user_profiles(identifies, contacts)
    got = {p.identity.key: p.attributes for p in profiles}
    assert got == {
        "external_id:u0000001": {"plan": "pro", "title": "CTO"},
        "alias:segment_anonymous_id:anon-7": {"plan": "trial"},
    }
    assert [p.identity.kind for p in profiles] == [IdKind.ALIAS, IdKind.EXTERNAL_ID]
    assert [c.rule for c in conflicts] == [
        "no_identifier"
    ]  # an Intercom contact with nothing to address it by


def test_automation_runs_on_the_braze_cadence_only_after_an_upstream_change(tmp_path):
    @asset(key=IDENTIFIES)
    def identifies(): ...

    @asset(key=CONTACTS)
    def contacts(): ...

    @asset(key=TRACKS)
    def tracks(): ...

    wh = DuckDBWarehouse(database=str(tmp_path / "cdp_test.duckdb"))
    up.baseline(wh)  # the tables the stand-ins stand for
    defs = Definitions(assets=[identifies, contacts, tracks, braze_cdi_tables], resources={"warehouse": wh})
    instance = DagsterInstance.ephemeral()
    t0 = dt.datetime(2026, 11, 22, 10, 1, tzinfo=dt.timezone.utc)

    def tick(at: dt.datetime, cursor=None):
        return evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor, evaluation_time=at)

    result = tick(t0)
    assert result.total_requested == 0  # upstream tables never built: nothing to publish from
    materialize([identifies, contacts, tracks], instance=instance)
    result = tick(t0 + dt.timedelta(minutes=5), result.cursor)
    assert result.get_num_requested(USERS_SYNC) == 0  # upstream changed, but no cadence tick yet
    result = tick(t0 + dt.timedelta(minutes=15), result.cursor)  # 10:15 tick passed
    assert result.get_num_requested(AssetKey(["braze", "custom_events_sync"])) == 1
    assert result.get_num_requested(USERS_SYNC) == 1  # one step writes all five tables
    materialize(
        [braze_cdi_tables, identifies, contacts, tracks],
        instance=instance,
        resources={"warehouse": wh},
        selection=[USERS_SYNC, AssetKey(["braze", "custom_events_sync"])]
        + [AssetKey(["braze", n]) for n in ("users_attributes_state", "custom_events_state", "rejects")],
    )
    result = tick(t0 + dt.timedelta(minutes=30), result.cursor)  # next tick, nothing new upstream
    assert result.total_requested == 0
    materialize([tracks], instance=instance)
    result = tick(t0 + dt.timedelta(minutes=45), result.cursor)  # new events arrived before this tick
    assert result.get_num_requested(USERS_SYNC) == 1
