"""The production instance (cdp_assets/deploy/dagster.prod.yaml) against a real PostgreSQL server.

Selected exactly as DEPLOY.md says: the file is copied to ``$DAGSTER_HOME/dagster.yaml`` and the connection
comes from DAGSTER_PG_* variables. Then a run, its event log, a schedule's state and the pool limits are
written through Dagster and read back, both through a second, fresh instance and with plain SQL.
"""

import shutil
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.scheduler.instigation import InstigatorStatus
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from cdp_assets.deploy.pools import POOL_LIMITS, apply_pool_limits
from cdp_assets.shared.env import project_root

from .pg_server import INSTALL_HINT, pg_bin_dir, running_postgres

pytestmark = pytest.mark.postgres

PROD_YAML = project_root() / "cdp_assets" / "deploy" / "dagster.prod.yaml"
LOCATION_FILE = Path(__file__).with_name("tiny_location.py")
# Characters that must survive URL-quoting into the SQLAlchemy connection string.
DAGSTER_PASSWORD = "Pr0d p@ss:w%rd&x=1"


@pytest.fixture(scope="module")
def pg():
    if pg_bin_dir() is None:
        pytest.fail(INSTALL_HINT)
    with running_postgres() as server:
        server.create_database("dagster_prod", owner="dagster", password=DAGSTER_PASSWORD)
        yield server


@pytest.fixture
def prod_home(pg, tmp_path, monkeypatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROD_YAML, home / "dagster.yaml")
    for var, value in {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": pg.host,
        "DAGSTER_PG_PORT": str(pg.port),
        "DAGSTER_PG_USER": "dagster",
        "DAGSTER_PG_PASSWORD": DAGSTER_PASSWORD,
        "DAGSTER_PG_DB": "dagster_prod",
        "CDP_DATA_DIR": str(tmp_path / "data"),
        "CDP_WAREHOUSE": "duckdb",
    }.items():
        monkeypatch.setenv(var, value)
    return home


def _in_process_location(instance: DagsterInstance):
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            python_file=str(LOCATION_FILE), attribute="defs", working_directory=str(project_root())
        ),
        location_name="tiny",
    )
    return origin.create_location(instance)


def test_prod_instance_round_trip_through_postgres(pg, prod_home):
    with DagsterInstance.from_config(str(prod_home)) as instance:
        # the storages and the queue are the production ones
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        concurrency = instance.get_concurrency_config()
        assert {
            "key": "cdp/warehouse",
            "value": "duckdb",
            "limit": 1,
        } in concurrency.run_queue_config.tag_concurrency_limits
        assert concurrency.pool_config.default_pool_limit == 1

        # pool limits live in PostgreSQL; applying them twice changes nothing the second time
        assert apply_pool_limits(instance) == dict(POOL_LIMITS)
        assert apply_pool_limits(instance) == {}

        with _in_process_location(instance) as location:
            schedule = location.get_repository("__repository__").get_schedule("tiny_customers_daily")
            instance.start_schedule(schedule)

        from .tiny_location import build_defs  # imported late: its warehouse path comes from CDP_DATA_DIR

        defs = build_defs()
        job_run = defs.resolve_job_def("tiny_customers_job").execute_in_process(instance=instance)
        usage_run = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, partition_key="2026-03-01", asset_selection=[AssetKey(["tiny", "daily_usage"])]
        )
        assert job_run.success and usage_run.success
        run_ids = {job_run.run_id, usage_run.run_id}

    # a fresh instance from the same file sees everything: it was stored in PostgreSQL, not in the process
    with DagsterInstance.from_config(str(prod_home)) as fresh:
        runs = fresh.get_runs()
        assert {r.run_id for r in runs} == run_ids
        assert all(r.status is DagsterRunStatus.SUCCESS for r in runs)
        by_id = {r.run_id: r for r in runs}
        assert by_id[job_run.run_id].tags["cdp/warehouse"] == "duckdb"  # the job's tag, for the run queue

        (mat,) = fresh.fetch_materializations(AssetKey(["tiny", "customers"]), limit=10).records
        assert mat.asset_materialization.metadata["dagster/row_count"].value == 5
        assert fresh.get_materialized_partitions(AssetKey(["tiny", "daily_usage"])) == {"2026-03-01"}

        (state,) = fresh.all_instigator_state()
        assert (state.name, state.status) == ("tiny_customers_daily", InstigatorStatus.RUNNING)
        assert {p.name: p.limit for p in fresh.event_log_storage.get_pool_limits()} == dict(POOL_LIMITS)

    # and the rows are in PostgreSQL, read with plain SQL as the application role
    conn = pg.connect("dagster_prod", user="dagster", password=DAGSTER_PASSWORD)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT run_id, status FROM runs")
            assert dict(cur.fetchall()) == {rid: "SUCCESS" for rid in run_ids}
            cur.execute(
                "SELECT dagster_event_type, COUNT(*) FROM event_logs "
                "WHERE dagster_event_type IN ('ASSET_MATERIALIZATION', 'ASSET_CHECK_EVALUATION') "
                "GROUP BY dagster_event_type"
            )
            # customers: unique, not-null, shrink; daily_usage (partition mode): unique, not-null
            assert dict(cur.fetchall()) == {"ASSET_MATERIALIZATION": 2, "ASSET_CHECK_EVALUATION": 5}
            cur.execute("SELECT status FROM jobs")
            assert cur.fetchall() == [("RUNNING",)]
            cur.execute('SELECT concurrency_key, "limit" FROM concurrency_limits')
            assert dict(cur.fetchall()) == dict(POOL_LIMITS)
    finally:
        conn.close()
