"""Generated table checks and freshness policies: small fake tables in a real DuckDB file, and the real code
location's definitions."""

import datetime as dt

import pandas as pd
import pytest
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    Config,
    DagsterInstance,
    Definitions,
    FreshnessPolicy,
    Output,
    ScheduleDefinition,
    asset,
    define_asset_job,
)

from cdp_assets.shared.checks import (
    PK_NOT_NULL,
    PK_UNIQUE,
    ROW_COUNT_SHRINK,
    frame_key_violations,
    key_violations,
)
from cdp_assets.shared.policies import apply_platform_policies, freshness_for_gap, longest_gap
from cdp_assets.shared.warehouse import TableRef, WarehouseIOManager, WriteMode, WritePlan, table_metadata
from cdp_assets.shared.warehouse.duckdb import DuckDBWarehouse
from cdp_assets_tests.warehouse.conftest import backend, bq_emulator, fake_snowflake  # noqa: F401 (fixtures)


class Rows(Config):
    """What the fake source returns this time."""

    ids: list[int] = [1, 2, 3]
    null_key: bool = False


def _frame(cfg: Rows) -> pd.DataFrame:
    ids: list = list(cfg.ids)
    if cfg.null_key:
        ids.append(None)
    return pd.DataFrame({"id": pd.array(ids, dtype="Int64"), "name": [f"n{i}" for i in range(len(ids))]})


@asset(group_name="crm", metadata=table_metadata(WriteMode.REPLACE, ["id"]))
def contacts(config: Rows) -> pd.DataFrame:
    """Full refresh keyed on id."""
    return _frame(config)


@asset(group_name="crm", metadata=table_metadata(WriteMode.APPEND, ["id"]))
def events(config: Rows) -> pd.DataFrame:
    """Append-only: nothing stops a re-delivered id from landing twice."""
    return _frame(config)


@asset(group_name="crm", metadata=table_metadata(WriteMode.REPLACE))
def keyless(config: Rows) -> pd.DataFrame:
    """No primary key declared: no generated checks."""
    return _frame(config)


@asset(group_name="billing", metadata=table_metadata(WriteMode.MERGE, ["account", "month"]))
def invoices() -> pd.DataFrame:
    """Composite key, merged."""
    return pd.DataFrame({"account": ["a", "b"], "month": ["2026-01", "2026-01"], "amount": [1.0, 2.0]})


contacts_job = define_asset_job("contacts_hourly_job", selection=[contacts])


@pytest.fixture
def warehouse(tmp_path) -> DuckDBWarehouse:
    return DuckDBWarehouse(database=str(tmp_path / "checks.duckdb"))


@pytest.fixture
def defs(warehouse) -> Definitions:
    return apply_platform_policies(
        Definitions(
            assets=[contacts, events, keyless, invoices],
            jobs=[contacts_job],
            schedules=[ScheduleDefinition(job=contacts_job, cron_schedule="0 * * * *")],
            resources={"warehouse": warehouse, "io_manager": WarehouseIOManager(warehouse=warehouse)},
        )
    )


def _run(defs: Definitions, instance: DagsterInstance, **configs: dict):
    """Materialize every asset of ``defs`` once (with the given per-asset configs) and return the check
    evaluations by (asset name, check name)."""
    run_config = {"ops": {name: {"config": cfg} for name, cfg in configs.items()}}
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, run_config=run_config
    )
    assert result.success
    return {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}


def test_generated_checks_cover_primary_key_tables_only(defs):
    keys = {(k.asset_key.path[-1], k.name) for k in defs.resolve_asset_graph().asset_check_keys}
    assert keys == {
        ("contacts", PK_UNIQUE),
        ("contacts", PK_NOT_NULL),
        ("contacts", ROW_COUNT_SHRINK),
        ("events", PK_UNIQUE),
        ("events", PK_NOT_NULL),  # append: no shrink check
        ("invoices", PK_UNIQUE),
        ("invoices", PK_NOT_NULL),  # merge: no shrink check
    }
    # one check step per group, not one per table
    assert sorted(c.node_def.name for c in defs.asset_checks) == ["billing_table_checks", "crm_table_checks"]


def test_clean_tables_pass(defs):
    evals = _run(defs, DagsterInstance.ephemeral())
    assert len(evals) == 7
    assert all(e.passed for e in evals.values()), {k: e.passed for k, e in evals.items()}
    assert evals[("contacts", PK_UNIQUE)].metadata["duplicate_keys"].value == 0


def test_duplicate_key_fails(defs, warehouse):
    evals = _run(defs, DagsterInstance.ephemeral(), events={"ids": [1, 2, 2, 3, 3, 3]})
    unique = evals[("events", PK_UNIQUE)]
    assert not unique.passed and unique.severity is AssetCheckSeverity.ERROR
    assert unique.metadata["duplicate_keys"].value == 2
    assert unique.metadata["duplicate_rows"].value == 5
    assert sorted((e["id"], e["rows"]) for e in unique.metadata["examples"].value) == [(2, 2), (3, 3)]
    assert evals[("events", PK_NOT_NULL)].passed
    # the table really holds the duplicates the check reported
    assert warehouse.row_count(TableRef("main", "events")) == 6


def test_null_key_fails(defs):
    evals = _run(defs, DagsterInstance.ephemeral(), contacts={"ids": [1, 2], "null_key": True})
    not_null = evals[("contacts", PK_NOT_NULL)]
    assert not not_null.passed and not_null.severity is AssetCheckSeverity.ERROR
    assert not_null.metadata["null_key_rows"].value == 1
    assert evals[("contacts", PK_UNIQUE)].passed  # NULL keys are counted once, as NULLs, not as duplicates


def test_full_refresh_shrink_warns_without_failing_the_run(defs):
    instance = DagsterInstance.ephemeral()
    hundred = {"ids": list(range(100))}
    first = _run(defs, instance, contacts=hundred)
    assert first[("contacts", ROW_COUNT_SHRINK)].passed  # nothing to compare with yet

    mild = _run(defs, instance, contacts={"ids": list(range(60))})  # lost 40 %: within the default 50 %
    assert mild[("contacts", ROW_COUNT_SHRINK)].passed

    sharp = _run(defs, instance, contacts={"ids": list(range(6))})  # lost 90 % of the previous 60
    shrink = sharp[("contacts", ROW_COUNT_SHRINK)]
    assert not shrink.passed and shrink.severity is AssetCheckSeverity.WARN
    assert (shrink.metadata["previous"].value, shrink.metadata["current"].value) == (60, 6)


def test_key_counts_agree_on_every_sql_warehouse_and_in_pandas(backend):  # noqa: F811 (fixture)
    """The check's SQL runs unchanged on DuckDB, Snowflake (fakesnow) and BigQuery (bqemulator), and the
    DataFrame path (for warehouses read column-wise) gives the same answer."""
    frame = pd.DataFrame(
        {
            "a": ["x", "x", "x", "y", None, "z", "z", "w", "w"],
            "b": [1, 1, 1, 2, 3, None, 4, 5, 5],
            "v": range(9),
        }
    )
    table = backend.table("pairs")
    backend.wh.write(frame, WritePlan(table, WriteMode.APPEND))
    sql = key_violations(backend.wh, table, ["a", "b"])
    df = frame_key_violations(backend.wh.read(table, columns=["a", "b"]), ["a", "b"])
    assert (sql.null_rows, sql.duplicate_keys, sql.duplicate_rows) == (2, 2, 5)
    assert (df.null_rows, df.duplicate_keys, df.duplicate_rows) == (2, 2, 5)
    # most duplicated first, then by key
    assert sql.examples == df.examples == [{"a": "x", "b": 1, "rows": 3}, {"a": "w", "b": 5, "rows": 2}]


# ------------------------------------------------------------------------------------------ freshness


def test_longest_gap_of_schedules():
    assert longest_gap("0 * * * *") == dt.timedelta(hours=1)
    assert longest_gap("15 2 * * *") == dt.timedelta(days=1)
    # "finalize the previous month on the 2nd-4th": the longest quiet stretch is the rest of the month
    assert dt.timedelta(days=26) <= longest_gap("0 6 2-4 * *") <= dt.timedelta(days=29)
    assert longest_gap(["0 * * * *", "30 * * * *"]) == dt.timedelta(minutes=30)


def test_freshness_windows():
    hourly = freshness_for_gap(dt.timedelta(hours=1))
    assert hourly.warn_window.to_timedelta() == dt.timedelta(hours=1, minutes=30)
    assert hourly.fail_window.to_timedelta() == dt.timedelta(hours=2, minutes=30)
    daily = freshness_for_gap(dt.timedelta(days=1))
    assert daily.warn_window.to_timedelta() == dt.timedelta(hours=25)
    assert daily.fail_window.to_timedelta() == dt.timedelta(hours=49)


def test_freshness_on_scheduled_assets_only(defs):
    policies = {n.key: n.freshness_policy for n in defs.resolve_asset_graph().asset_nodes}
    assert policies[AssetKey("contacts")] == freshness_for_gap(dt.timedelta(hours=1))
    assert policies[AssetKey("events")] is None and policies[AssetKey("invoices")] is None


def test_own_freshness_policy_is_kept(warehouse):
    own = FreshnessPolicy.time_window(fail_window=dt.timedelta(days=3))

    @asset(freshness_policy=own, metadata=table_metadata(WriteMode.REPLACE, ["id"]))
    def special() -> pd.DataFrame:
        return pd.DataFrame({"id": [1]})

    job = define_asset_job("special_job", selection=[special])
    defs = apply_platform_policies(
        Definitions(
            assets=[special],
            schedules=[ScheduleDefinition(job=job, cron_schedule="0 * * * *")],
            resources={"warehouse": warehouse, "io_manager": WarehouseIOManager(warehouse=warehouse)},
        )
    )
    (node,) = defs.resolve_asset_graph().asset_nodes
    assert node.freshness_policy == own


def test_an_assets_own_check_is_kept_and_the_rest_generated(warehouse):
    @asset(
        metadata=table_metadata(WriteMode.REPLACE, ["id"]),
        check_specs=[AssetCheckSpec(PK_UNIQUE, asset="ledger")],
    )
    def ledger():
        """Ships its own uniqueness check (say, on a natural key the warehouse enforces differently)."""
        yield Output(pd.DataFrame({"id": [1, 1]}))
        yield AssetCheckResult(check_name=PK_UNIQUE, passed=True, metadata={"own": True})

    defs = apply_platform_policies(
        Definitions(
            assets=[ledger],
            resources={"warehouse": warehouse, "io_manager": WarehouseIOManager(warehouse=warehouse)},
        )
    )
    names = sorted(k.name for k in defs.resolve_asset_graph().asset_check_keys)
    assert names == [PK_NOT_NULL, PK_UNIQUE, ROW_COUNT_SHRINK]  # no duplicate of the asset's own check
    evals = _run(defs, DagsterInstance.ephemeral())
    assert evals[("ledger", PK_UNIQUE)].metadata["own"].value is True


# ------------------------------------------------------------------------------------------ the real location


def test_real_code_location_checks_every_primary_key_table():
    from cdp_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    check_keys = set(graph.asset_check_keys)
    pk_tables = [
        n for n in graph.asset_nodes if n.is_materializable and (n.metadata or {}).get("primary_key")
    ]
    assert pk_tables, "no warehouse table asset with a primary_key in the code location"
    missing = [
        (n.key.to_user_string(), name)
        for n in pk_tables
        for name in (PK_UNIQUE, PK_NOT_NULL)
        if not any(ck.asset_key == n.key and ck.name == name for ck in check_keys)
    ]
    assert not missing
    replace_tables = [n for n in pk_tables if n.metadata.get("write_mode") == WriteMode.REPLACE.value]
    assert all(
        any(ck.asset_key == n.key and ck.name == ROW_COUNT_SHRINK for ck in check_keys)
        for n in replace_tables
    )


def test_real_code_location_scheduled_assets_have_freshness():
    from cdp_assets.definitions import defs

    repo = defs.get_repository_def()
    scheduled = {
        key
        for s in repo.schedule_defs
        if s.has_job
        for key in repo.get_job(s.job_name).asset_layer.selected_asset_keys
    }
    assert scheduled, "the code location has no schedule that materializes assets"
    graph = defs.resolve_asset_graph()
    lacking = [k.to_user_string() for k in scheduled if graph.get(k).freshness_policy is None]
    assert not lacking
