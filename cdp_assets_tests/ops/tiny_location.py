"""A small code location for the instance and UI-client tests: two warehouse tables shaped like the real ones
(a full-refresh table and a monthly-partitioned one), a job, a schedule, and the platform's policies.

It writes through the same warehouse layer as ``cdp_assets`` (DuckDB under ``CDP_DATA_DIR``), so the tests
exercise the real I/O manager and generated checks, but it loads in a fraction of the real location's time.
Loaded by file: ``dagster code-server start -f cdp_assets_tests/ops/tiny_location.py``.
"""

import datetime as dt

import pandas as pd
from dagster import (
    AssetExecutionContext,
    Definitions,
    MonthlyPartitionsDefinition,
    RetryPolicy,
    ScheduleDefinition,
    asset,
    define_asset_job,
    in_process_executor,
)

from cdp_assets.shared.policies import apply_platform_policies
from cdp_assets.shared.resources import shared_resources
from cdp_assets.shared.warehouse import WriteMode, table_metadata

MONTHS = MonthlyPartitionsDefinition(start_date="2026-01-01", end_date="2026-07-01")


@asset(
    key_prefix="tiny",
    group_name="tiny",
    metadata=table_metadata(WriteMode.REPLACE, ["user_id"]),
    retry_policy=RetryPolicy(max_retries=1),
)
def customers() -> pd.DataFrame:
    """Full refresh of a small customer list."""
    return pd.DataFrame(
        {"user_id": [f"u{n:07d}" for n in range(5)], "plan": ["free", "pro", "pro", "free", "team"]}
    )


@asset(
    key_prefix="tiny",
    group_name="tiny",
    partitions_def=MONTHS,
    metadata=table_metadata(WriteMode.PARTITION, ["day", "workspace"], partition_column="day"),
)
def daily_usage(context: AssetExecutionContext) -> pd.DataFrame:
    """One row per day of the month and workspace; each run overwrites its month's slice."""
    start, end = context.partition_time_window
    days = pd.date_range(start, end - dt.timedelta(days=1), freq="D").date
    return pd.DataFrame(
        [
            {"day": d, "workspace": w, "events": d.day * 10 + i}
            for d in days
            for i, w in enumerate(("ws1", "ws2"))
        ]
    )


customers_job = define_asset_job(
    "tiny_customers_job", selection=[customers], tags={"cdp/warehouse": "duckdb"}
)


def build_defs() -> Definitions:
    """Built on demand: the warehouse path comes from ``CDP_DATA_DIR`` at the time of the call."""
    return apply_platform_policies(
        Definitions(
            assets=[customers, daily_usage],
            jobs=[customers_job],
            schedules=[
                ScheduleDefinition(name="tiny_customers_daily", job=customers_job, cron_schedule="0 4 * * *")
            ],
            resources=shared_resources(),
            # one process per run (the run worker) instead of one per step: these tests exercise the instance
            # and the run queue, not step isolation
            executor=in_process_executor,
        )
    )


defs = build_defs()
