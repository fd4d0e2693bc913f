"""The Braze CDI tables on a temp DuckDB, fed by stand-in upstream tables in the TABLES.md shapes."""

from __future__ import annotations

import duckdb
import orjson
import pandas as pd
import pytest
from dagster import AssetCheckSeverity, AssetSelection, TableColumnLineage, TableSchema, materialize

from cdp_assets.braze import contract
from cdp_assets.braze.assets import (
    CONTACTS,
    EVENTS_STATE,
    EVENTS_SYNC,
    IDENTIFIES,
    REJECTS,
    USERS_STATE,
    USERS_SYNC,
    braze_cdi_tables,
    table_of,
)
from cdp_assets.braze.checks import contract_checks
from cdp_assets.shared.warehouse.duckdb import DuckDBWarehouse

from . import upstream as up

BRAZE_KEYS = (USERS_SYNC, USERS_STATE, EVENTS_SYNC, EVENTS_STATE, REJECTS)


@pytest.fixture
def wh(tmp_path) -> DuckDBWarehouse:
    warehouse = DuckDBWarehouse(database=str(tmp_path / "cdp_test.duckdb"))
    up.baseline(warehouse)
    return warehouse


def run(wh: DuckDBWarehouse, raise_on_error: bool = True):
    return materialize(
        [braze_cdi_tables, *up.UPSTREAM_SPECS, *contract_checks],
        resources={"warehouse": wh},
        raise_on_error=raise_on_error,
    )


def table(wh: DuckDBWarehouse, key) -> pd.DataFrame:
    return wh.read(table_of(key))


def by_identifier(df: pd.DataFrame) -> dict[str, pd.Series]:
    out = {}
    for _, row in df.iterrows():
        ident = next(
            f"{c}={row[c]}" for c in ("EXTERNAL_ID", "ALIAS_NAME", "EMAIL", "PHONE") if pd.notna(row[c])
        )
        out.setdefault(ident, []).append(row)
    return out


def test_first_run_publishes_contract_tables_with_expected_users_and_events(wh):
    result = run(wh)
    assert result.success

    con = duckdb.connect(wh.database, read_only=True)
    try:
        for key in (USERS_SYNC, EVENTS_SYNC):
            cols = con.execute(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                "WHERE table_schema = 'braze' AND table_name = ? ORDER BY ordinal_position",
                [key.path[-1]],
            ).fetchall()
            assert [c[0] for c in cols] == list(
                contract.SYNC_COLUMN_NAMES
            )  # exactly Braze's columns, in order
            types = {name: (dtype, nullable) for name, dtype, nullable in cols}
            assert types["UPDATED_AT"] == ("TIMESTAMP WITH TIME ZONE", "NO")
            assert types["PAYLOAD"] == ("JSON", "NO")
            assert {types[c] for c in contract.ID_COLUMNS} == {("VARCHAR", "YES")}
    finally:
        con.close()

    users = table(wh, USERS_SYNC)
    rows = by_identifier(users)
    expected = {f"EXTERNAL_ID={up.uid(n)}" for n in range(5)} | {
        "EMAIL=prospect@example.com",
        "PHONE=+15559990000",
    }
    assert set(rows) == expected  # the deleted contact is gone; the stitched lead joined u0
    assert all(len(v) == 1 for v in rows.values())
    assert users["UPDATED_AT"].nunique() == 1

    u1 = orjson.loads(rows[f"EXTERNAL_ID={up.uid(1)}"][0]["PAYLOAD"])
    assert u1 == {
        "name": "User 1",  # Segment wins over Intercom's "Intercom 1"
        "first_name": "User",  # Segment firstName -> Braze standard attribute
        "plan": "pro",  # the later identify wins; Segment wins over Intercom's "enterprise"
        "title": "Engineer",  # kept from the partial second identify
        "company": {"name": "Company 1"},
        "intercom_role": "user",
        "support_tier": "gold",  # only Intercom knows it
    }
    u0 = orjson.loads(rows[f"EXTERNAL_ID={up.uid(0)}"][0]["PAYLOAD"])
    assert (
        u0["lead_source"] == "ads" and u0["intercom_role"] == "user"
    )  # stitched lead, user contact wins role
    lead = rows["EMAIL=prospect@example.com"][0]
    assert pd.isna(lead["EXTERNAL_ID"]) and orjson.loads(lead["PAYLOAD"]) == {
        "intercom_role": "lead",
        "score": 7,
    }
    for payload in users["PAYLOAD"]:
        assert not contract.PAYLOAD_FORBIDDEN_KEYS & set(orjson.loads(payload))

    events = table(wh, EVENTS_SYNC)
    assert len(events) == 11
    anon = events[events["ALIAS_NAME"].notna()]
    assert list(anon["ALIAS_LABEL"]) == ["segment_anonymous_id"] and anon["EXTERNAL_ID"].isna().all()
    first = orjson.loads(events[events["EXTERNAL_ID"] == up.uid(3)]["PAYLOAD"].iloc[0])
    assert first["name"] == "Order Completed" and first["time"].endswith("Z")
    assert first["properties"]["sku"] in {"S0", "S1"}
    assert len(table(wh, EVENTS_STATE)) == 11 and len(table(wh, USERS_STATE)) == 7

    checks = {e.asset_key: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == {USERS_SYNC, EVENTS_SYNC} and all(e.passed for e in checks.values())

    mats = {
        m.asset_key: m.metadata
        for m in result.get_asset_materialization_events()
        for m in [m.materialization]
    }
    assert set(mats) == set(BRAZE_KEYS)
    for key, meta in mats.items():
        assert isinstance(meta["dagster/column_schema"].value, TableSchema)
        lineage = meta["dagster/column_lineage"].value
        assert isinstance(lineage, TableColumnLineage)
        assert set(lineage.deps_by_column) == {c.name for c in meta["dagster/column_schema"].value.columns}
    assert mats[USERS_SYNC]["cdp/published_rows"].value == 7


def test_second_run_without_upstream_change_moves_no_updated_at(wh):
    run(wh)
    users1, events1 = table(wh, USERS_SYNC), table(wh, EVENTS_SYNC)
    result = run(wh)
    users2, events2 = table(wh, USERS_SYNC), table(wh, EVENTS_SYNC)
    pd.testing.assert_frame_equal(users1, users2)
    pd.testing.assert_frame_equal(events1, events2)
    meta = {
        m.materialization.asset_key: m.materialization.metadata
        for m in result.get_asset_materialization_events()
    }
    assert meta[USERS_SYNC]["cdp/published_rows"].value == 0
    assert meta[USERS_SYNC]["cdp/unchanged_users"].value == 7


def test_one_trait_change_moves_only_that_users_updated_at(wh):
    run(wh)
    before = table(wh, USERS_SYNC)
    first_stamp = before["UPDATED_AT"].max()

    up.write(wh, IDENTIFIES, [up.identify(2, 5, {"plan": "enterprise"})], "message_id")
    run(wh)
    after = table(wh, USERS_SYNC)
    new = after[after["UPDATED_AT"] > first_stamp]
    assert list(new["EXTERNAL_ID"]) == [up.uid(2)]
    assert orjson.loads(new["PAYLOAD"].iloc[0]) == {"plan": "enterprise"}  # only what changed is re-sent
    latest = after.groupby(after["EXTERNAL_ID"].fillna(after["EMAIL"]).fillna(after["PHONE"]))[
        "UPDATED_AT"
    ].max()
    moved = set(latest[latest > first_stamp].index)
    assert moved == {up.uid(2)}
    assert new["UPDATED_AT"].iloc[0] > first_stamp  # never equal to the previous maximum


def test_vanished_intercom_attributes_are_removed_with_null(wh):
    run(wh)
    up.write(wh, CONTACTS, [up.contact("ic3", external_id=up.uid(3), mail=up.email(3), deleted=True)], "id")
    run(wh)
    users = table(wh, USERS_SYNC)
    u3 = users[users["EXTERNAL_ID"] == up.uid(3)].sort_values("UPDATED_AT")
    assert len(u3) == 2
    assert orjson.loads(u3["PAYLOAD"].iloc[-1]) == {"intercom_role": None, "support_tier": None}


def test_rule_breaking_rows_land_in_rejects_with_reason(wh):
    up.write(
        wh,
        IDENTIFIES,
        [up.identify(1, 9, {}, mail="shared@example.com"), up.identify(2, 9, {}, mail="shared@example.com")],
        "message_id",
    )
    up.write(
        wh,
        CONTACTS,
        [
            up.contact(
                "lead-shared", external_id=None, mail="shared@example.com", role="lead", custom={"k": 1}
            ),
            up.contact("big", external_id="u9000001", mail=None, custom={"notes": "x" * 1_100_000}),
            up.contact(
                "wide", external_id="u9000002", mail=None, custom={f"a{i:03d}": i for i in range(300)}
            ),
        ],
        "id",
    )
    result = run(wh)
    assert result.success

    rejects = table(wh, REJECTS)
    by_rule = {r: g for r, g in rejects.groupby("rule")}
    assert set(by_rule) == {"two_identifiers", "payload_too_large", "too_many_attributes"}
    two = by_rule["two_identifiers"].iloc[0]
    assert (
        two["email"] == "shared@example.com" and "u0000001" in two["reason"] and "u0000002" in two["reason"]
    )
    big = by_rule["payload_too_large"].iloc[0]
    assert big["external_id"] == "u9000001" and big["payload_bytes"] > 1_000_000 and "1 MB" in big["reason"]
    assert len(orjson.loads(big["payload"])["notes"]) == 1_100_000  # kept whole, never truncated
    wide = by_rule["too_many_attributes"].iloc[0]
    assert (
        wide["external_id"] == "u9000002" and wide["attribute_count"] == 301
    )  # 300 custom + intercom_role and "250" in wide["reason"]

    published = set(table(wh, USERS_SYNC)["EXTERNAL_ID"].dropna())
    assert not {"u9000001", "u9000002"} & published

    run(wh)  # still broken: the same rejects, not new copies
    assert len(table(wh, REJECTS)) == len(rejects)

    up.write(
        wh, CONTACTS, [up.contact("big", external_id="u9000001", mail=None, custom={"notes": "short"})], "id"
    )
    run(wh)  # fixed upstream: published on the next run
    users = table(wh, USERS_SYNC)
    assert orjson.loads(users[users["EXTERNAL_ID"] == "u9000001"]["PAYLOAD"].iloc[0])["notes"] == "short"


def _run_checks(wh):
    return materialize(
        [braze_cdi_tables, *up.UPSTREAM_SPECS, *contract_checks],
        resources={"warehouse": wh},
        selection=AssetSelection.checks(*contract_checks),
        raise_on_error=False,
    )


def test_blocking_contract_check_fails_on_a_broken_table(wh):
    assert all(spec.blocking for check in contract_checks for spec in check.check_specs)
    run(wh)
    assert all(e.passed for e in _run_checks(wh).get_asset_check_evaluations())

    # A row with two identifiers and a duplicate user in the newest batch of the users table.
    stamp = pd.Timestamp("2030-01-01", tz="UTC")
    bad = pd.DataFrame(
        {
            "UPDATED_AT": [stamp] * 3,
            "EXTERNAL_ID": ["u1", "u1", "u2"],
            "ALIAS_NAME": [None] * 3,
            "ALIAS_LABEL": [None] * 3,
            "BRAZE_ID": [None] * 3,
            "EMAIL": [None, None, "x@example.com"],
            "PHONE": [None] * 3,
            "PAYLOAD": ['{"a":1}', '{"a":2}', '{"b":1}'],
        }
    )
    from cdp_assets.shared.warehouse import WriteMode, WritePlan

    wh.write(bad, WritePlan(table_of(USERS_SYNC), WriteMode.APPEND))
    # And an events table whose schema is not Braze's (lower-case, nullable PAYLOAD as plain text).
    wh.drop(table_of(EVENTS_SYNC))
    wh.write(
        pd.DataFrame({"updated_at": [stamp], "external_id": ["u1"], "payload": ["{}"]}),
        WritePlan(table_of(EVENTS_SYNC), WriteMode.APPEND),
    )

    result = _run_checks(wh)
    assert not result.success
    evals = {e.asset_key: e for e in result.get_asset_check_evaluations()}
    assert not evals[USERS_SYNC].passed and evals[USERS_SYNC].severity is AssetCheckSeverity.ERROR
    problems = evals[USERS_SYNC].metadata["problems"].value
    assert any("exactly one identifier" in p for p in problems)
    assert any("share" in p for p in problems)
    schema_problems = evals[EVENTS_SYNC].metadata["problems"].value
    assert any("columns differ" in p for p in schema_problems)


def test_teradata_refuses_braze_tables_clearly(monkeypatch):
    pytest.importorskip("cdp_assets.shared.warehouse.teradata")
    from cdp_assets.shared.resources import shared_resources

    # The real configuration path: CDP_WAREHOUSE=teradata picks the Teradata warehouse (settings via EnvVar).
    monkeypatch.setenv("CDP_WAREHOUSE", "teradata")
    for var, value in {
        "TERADATA_HOST": "vantage.invalid",
        "TERADATA_USER": "u",
        "TERADATA_PASSWORD": "s3cret-value",
        "TERADATA_DATABASE": "cdp",
    }.items():
        monkeypatch.setenv(var, value)
    resources = shared_resources()
    wh = resources["warehouse"]
    assert wh.kind == "teradata" and not type(wh).braze_readable
    with pytest.raises(
        contract.BrazeTargetError, match="cannot read 'teradata'.*CDP_WAREHOUSE=snowflake or bigquery"
    ):
        contract.require_braze_readable(wh)

    result = materialize(
        [braze_cdi_tables, *up.UPSTREAM_SPECS, *contract_checks], resources=resources, raise_on_error=False
    )
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert {f.step_key for f in failures} >= {"braze_cdi_tables"}
    for failure in failures:  # the step and (when they run) the checks, each with the same clear reason
        error = failure.step_failure_data.error
        assert error.cause is not None and error.cause.cls_name == "BrazeTargetError"
        assert "Braze Cloud Data Ingestion cannot read 'teradata'" in error.cause.message
        assert "s3cret-value" not in error.cause.message
