"""All 18 Segment assets against the simulator, into DuckDB: rows and keys equal the simulated workspace,
columns equal the catalog's declarations, re-runs change nothing, keys are unique, faults change nothing,
secrets and the token stay out."""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd
from dagster import DagsterInstance, EnvVar, materialize

from cdp_assets.segment import catalog
from cdp_assets.segment.assets import build_segment_assets
from cdp_assets.segment.catalog import Kind
from cdp_assets.segment.simulator import FAULT_KINDS, SegmentSimulator
from cdp_assets.shared.warehouse import TableRef

from .conftest import TOKEN, norm_keys, query, resources, table_exists, table_keys

START = "2025-06-01"
ASSETS = build_segment_assets(START)
UNPARTITIONED = [a for a in ASSETS if a.partitions_def is None]
USAGE = [a for a in ASSETS if a.partitions_def is not None]


def _materializations(result) -> dict[str, dict]:
    return {e.asset_key.path[-1]: e.step_materialization_data.materialization.metadata
            for e in result.get_asset_materialization_events()}


def _run_all(sim, warehouse, period: str, instance=None, **segment):
    res = resources(sim, warehouse, **segment)
    first = materialize(UNPARTITIONED, resources=res, instance=instance)
    second = materialize(USAGE, resources=res, partition_key=period, instance=instance)
    assert first.success and second.success
    return {**_materializations(first), **_materializations(second)}


def _expected(sim: SegmentSimulator, meta: dict[str, dict], period: dt.date) -> dict[str, set]:
    ws = sim.workspace
    out = {}
    for obj in catalog.CATALOG:
        m = meta[obj.name]
        if obj.kind is Kind.USAGE:
            out[obj.name] = ws.expected_keys(obj.name, period=period)
        elif obj.kind is Kind.AUDIT:
            out[obj.name] = ws.expected_keys(obj.name, start=pd.Timestamp(m["cdp/start_time"].value).to_pydatetime())
        elif obj.kind is Kind.METRICS:
            window = (m["cdp/granularity"].value, m["cdp/window_start"].value, m["cdp/window_end"].value)
            out[obj.name] = ws.expected_keys(obj.name, window=window)
        else:
            out[obj.name] = ws.expected_keys(obj.name)
    return out


def _snapshot(warehouse) -> dict[str, list]:
    """Full contents of every segment table, in key order (to compare two loads exactly)."""
    out = {}
    for obj in catalog.CATALOG:
        order = ", ".join(f'"{c}"' for c in obj.primary_key)
        out[obj.name] = query(warehouse, f'SELECT * FROM segment."{obj.name}" ORDER BY {order}')
    return out


def _assert_columns_are_the_declared_ones(warehouse) -> None:
    """Each table's columns, names and logical types, are exactly what its catalog row declares (and so what its
    definition's ``dagster/column_schema`` shows before any materialization)."""
    for obj in catalog.CATALOG:
        written = {c.name: c.type.value for c in warehouse.columns(TableRef.for_asset_key(obj.asset_path))}
        declared = {c.name: c.type.value for c in obj.declared_columns}
        retyped = {name: f"{written[name]} written, {declared[name]} declared"
                   for name in written.keys() & declared.keys() if written[name] != declared[name]}
        assert written == declared, (
            f"segment/{obj.name}: undeclared {sorted(written.keys() - declared.keys())}, "
            f"never written {sorted(declared.keys() - written.keys())}, other type {retyped}"
        )


def test_all_18_assets_load_the_simulated_workspace_exactly_and_idempotently(sim, warehouse):
    period = sim.workspace.usage_months()[-2]
    meta = _run_all(sim, warehouse, period.isoformat())
    assert set(meta) == {o.name for o in catalog.CATALOG}
    expected = _expected(sim, meta, period)
    for obj in catalog.CATALOG:
        keys = table_keys(warehouse, obj.name, obj.primary_key)
        assert len(keys) == len(set(keys)), f"{obj.name}: duplicate primary keys"
        assert set(keys) == norm_keys(expected[obj.name]), obj.name
        assert len(keys) > 0, obj.name
        m = meta[obj.name]
        assert m["dagster/row_count"].value == len(keys)
        assert m["cdp/entitled"].value is True
        assert m["cdp/http_requests"].value >= 1
    # several pages were followed where the workspace has more than one page
    assert meta["catalog_destinations"]["cdp/http_requests"].value == 3
    _assert_columns_are_the_declared_ones(warehouse)
    before = _snapshot(warehouse)
    _run_all(sim, warehouse, period.isoformat())
    assert _snapshot(warehouse) == before


def test_usage_types_and_secret_handling(sim, warehouse):
    period = sim.workspace.usage_months()[-2]
    _run_all(sim, warehouse, period.isoformat())
    types = dict(query(warehouse, "SELECT column_name, data_type FROM information_schema.columns "
                                  "WHERE table_schema='segment' AND table_name='usage_mtu_per_source_daily'"))
    assert types["period"] == "DATE" and types["identified"] == "BIGINT"
    assert types["timestamp"].startswith("TIMESTAMP WITH TIME ZONE") and types["periodStart"].startswith("TIMESTAMP WITH")
    big = query(warehouse, "SELECT min(apiCalls) FROM segment.usage_api_calls_workspace_daily")[0][0]
    assert big > 2**31  # bigint strings kept exact
    ws = sim.workspace
    raw_keys = [k for s in range(ws.size.sources) for k in ws.source(s)["writeKeys"]]
    masked = [ws.destination(d)["settings"]["apiKey"] for d in range(ws.destination_count)]
    everything = str(_snapshot(warehouse))
    assert not any(k in everything for k in raw_keys + masked)
    hashed = query(warehouse, "SELECT writeKeys_sha256, json_extract_string(settings, '$.sharedSecret') FROM segment.sources")
    assert all(h.startswith('["sha256:') and s.startswith("sha256:") for h, s in hashed)
    cols = {c for (c,) in query(warehouse, "SELECT column_name FROM information_schema.columns WHERE table_name='sources'")}
    assert "writeKeys" not in cols


def test_faults_and_429s_on_every_endpoint_give_identical_rows(sim, warehouse, tmp_path):
    period = sim.workspace.usage_months()[-2].isoformat()
    _run_all(sim, warehouse, period)
    clean = _snapshot(warehouse)
    from cdp_assets.shared.warehouse.duckdb import DuckDBWarehouse

    faulty_wh = DuckDBWarehouse(database=str(tmp_path / "faulty.duckdb"))
    sim.config.slow_seconds = 0.05
    kinds = [k for k in FAULT_KINDS if k != "loop"]
    sim.faults.inject([o.name for o in catalog.CATALOG], *kinds)
    meta = _run_all(sim, faulty_wh, period)
    assert sim.faults.pending() == 0  # every endpoint really got every fault
    assert _snapshot(faulty_wh) == clean
    assert all(meta[o.name]["cdp/http_rate_limited"].value >= 1 for o in catalog.CATALOG)
    assert all(meta[o.name]["cdp/http_retries"].value >= 3 for o in catalog.CATALOG)


def test_three_monthly_partitions_write_exactly_those_months(sim, warehouse):
    months = sim.workspace.usage_months()[-5:-2]
    res = resources(sim, warehouse)
    for m in months:
        assert materialize(USAGE, resources=res, partition_key=m.isoformat()).success
    for obj in catalog.CATALOG:
        if obj.kind is not Kind.USAGE:
            continue
        periods = query(warehouse, f'SELECT period, count(*) FROM segment."{obj.name}" GROUP BY 1 ORDER BY 1')
        assert [p for p, _ in periods] == months
        for m in months:
            keys = table_keys(warehouse, obj.name, obj.primary_key)
            assert norm_keys(sim.workspace.expected_keys(obj.name, period=m)) <= set(keys)
        assert sum(n for _, n in periods) == sum(len(sim.workspace.expected_keys(obj.name, period=m)) for m in months)
    # re-pulling one month rewrites only that month
    before = query(warehouse, "SELECT period, count(*) FROM segment.usage_mtu_workspace_daily GROUP BY 1 ORDER BY 1")
    assert materialize(USAGE, resources=res, partition_key=months[1].isoformat()).success
    assert query(warehouse, "SELECT period, count(*) FROM segment.usage_mtu_workspace_daily GROUP BY 1 ORDER BY 1") == before


GATED = {o.name for o in catalog.CATALOG if o.gated}


def test_not_entitled_objects_warn_and_keep_the_run_green(sim, warehouse):
    sim.config.forbidden = frozenset(GATED)
    res = resources(sim, warehouse)
    instance = DagsterInstance.ephemeral()
    result = materialize(UNPARTITIONED, resources=res, instance=instance)
    assert result.success
    meta = _materializations(result)
    assert {n for n, m in meta.items() if m["cdp/entitled"].value is False} == GATED
    assert not any(table_exists(warehouse, n) for n in GATED)
    assert table_exists(warehouse, "sources") and table_exists(warehouse, "destinations")
    warned = {e.step_key for e in instance.all_logs(result.run_id)
              if e.level == logging.WARNING and "not entitled" in (e.user_message or "")}
    assert warned == {f"segment__{n}" for n in GATED}

    strict = resources(sim, warehouse, fail_on_not_entitled=True)
    failed = materialize([a for a in UNPARTITIONED if a.key.path[-1] == "transformations"], resources=strict,
                         raise_on_error=False)
    assert not failed.success


def test_audit_events_load_incrementally_with_overlap(sim, warehouse):
    ws = sim.workspace
    audit = [a for a in ASSETS if a.key.path[-1] == "audit_events"]
    res = resources(sim, warehouse)
    first = _materializations(materialize(audit, resources=res))["audit_events"]
    loaded = first["cdp/rows_loaded"].value
    assert loaded == len(ws.audit_range(pd.Timestamp(first["cdp/start_time"].value).to_pydatetime()))
    high = pd.Timestamp(first["cdp/high_watermark"].value)
    ws.now = ws.now + dt.timedelta(days=2)  # two days of new events
    second = _materializations(materialize(audit, resources=res))["audit_events"]
    assert pd.Timestamp(second["cdp/start_time"].value) == high - pd.Timedelta(minutes=60)
    # only the new events and the overlap were read, not the 90 days again
    new = len(ws.audit_range(high.to_pydatetime() + dt.timedelta(seconds=1)))
    assert new <= second["cdp/rows_loaded"].value <= new + 1 + ws.size.audit_events_per_day
    keys = table_keys(warehouse, "audit_events", ["id"])
    assert len(keys) == len(set(keys)) == loaded + new


def test_token_never_appears_in_logs_metadata_or_errors(sim, warehouse, monkeypatch, caplog, capfd):
    monkeypatch.setenv("SEGMENT_API_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    instance = DagsterInstance.ephemeral()
    sim.faults.inject("*", "429", "503", "drop", "truncate")
    sim.config.forbidden = frozenset({"transformations"})
    res = resources(sim, warehouse, token=EnvVar("SEGMENT_API_TOKEN"))
    assert materialize(UNPARTITIONED, resources=res, instance=instance).success
    # a wrong token: the error must name the host and the variable, not the token
    bad = "sgp_wrong-token-0000"
    monkeypatch.setenv("SEGMENT_API_TOKEN", bad)
    failed = materialize([a for a in UNPARTITIONED if a.key.path[-1] == "users"], instance=instance,
                         resources=resources(sim, warehouse, token=EnvVar("SEGMENT_API_TOKEN")), raise_on_error=False)
    assert not failed.success
    errors = [str(e.event_specific_data.error) for e in failed.all_events if e.is_step_failure]
    assert errors and sim.url in errors[0] and "SEGMENT_API_TOKEN" in errors[0]
    records = instance.get_records_for_run(failed.run_id).records + instance.get_records_for_run(
        instance.get_runs()[-1].run_id).records
    captured = capfd.readouterr()
    haystack = "\n".join([caplog.text, captured.out, captured.err, *(str(r.event_log_entry) for r in records)])
    assert "HTTP 401" in haystack and "429" in haystack  # the logs are really in the haystack
    assert TOKEN not in haystack and bad not in haystack


def test_simulated_mode_needs_no_credentials_and_drop_removes_secrets(warehouse):
    """No base_url and no token: each step starts the bundled simulator (seed 7, scale 1) itself."""
    from cdp_assets.segment.resources import SegmentResource
    from cdp_assets.segment.simulator import Workspace
    from cdp_assets.shared.warehouse import WarehouseIOManager

    picked = [a for a in UNPARTITIONED if a.key.path[-1] in ("sources", "source_connected_warehouses", "warehouses")]
    res = {"segment": SegmentResource(secrets="drop"), "warehouse": warehouse,
           "io_manager": WarehouseIOManager(warehouse=warehouse)}
    assert materialize(picked, resources=res).success
    truth = Workspace(seed=7)
    for name in ("sources", "source_connected_warehouses", "warehouses"):
        pk = catalog.get(name).primary_key
        assert set(table_keys(warehouse, name, pk)) == norm_keys(truth.expected_keys(name))
    cols = {c for (c,) in query(warehouse, "SELECT column_name FROM information_schema.columns WHERE table_name='sources'")}
    assert not {"writeKeys", "writeKeys_sha256"} & cols
    settings = [s for (s,) in query(warehouse, "SELECT settings FROM segment.warehouses")]
    assert settings and not any("password" in s for s in settings) and all("hostname" in s for s in settings)
