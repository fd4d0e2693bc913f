"""The main job (every asset of the code location), how the demo runs it, and the demo's table summary."""

from __future__ import annotations

import datetime as dt

from dagster import (
    AssetSelection,
    DagsterInstance,
    ExecuteInProcessResult,
    JobDefinition,
    JobExecutionResult,
    define_asset_job,
    execute_job,
    reconstructable,
)

EVERYTHING_JOB_NAME = "cdp_everything"

#: Materializes every asset; partitioned assets take the run's partition (a month).
everything = define_asset_job(
    EVERYTHING_JOB_NAME,
    selection=AssetSelection.all(),
    description="Every asset of the platform: Segment, Intercom, Pub/Sub events, Braze sync tables.",
    tags={"cdp/job": "everything"},
)


def everything_job() -> JobDefinition:
    """Resolved job, for `reconstructable` (the demo runs it in a real multi-process run)."""
    from .definitions import defs

    return defs.resolve_job_def(EVERYTHING_JOB_NAME)


def run_everything(instance: DagsterInstance, run_config: dict | None = None, trigger: str = "demo") -> JobExecutionResult:
    """One run of ``cdp_everything`` for the current month, as ``cdp-demo`` launches it (the tests call this too).

    The instance gets the per-API pool limits production uses (``deploy/pools.py``; ``dagster.yaml`` can only
    hold their default, 1). The usage metrics are monthly: the run takes the current month as its
    ``dagster/partition`` tag, exactly as a run launched from the UI does (``execute_job`` has no partition
    argument).
    """
    from .deploy.pools import apply_pool_limits
    from .shared.env import warehouse

    apply_pool_limits(instance)
    return execute_job(
        reconstructable(everything_job),
        instance=instance,
        run_config=run_config,
        tags={"dagster/partition": current_month_key(), "cdp/warehouse": warehouse().value, "cdp/trigger": trigger},
    )


def current_month_key(today: dt.date | None = None) -> str:
    today = today or dt.datetime.now(dt.timezone.utc).date()
    return today.replace(day=1).isoformat()


def print_tables(result: ExecuteInProcessResult | JobExecutionResult) -> None:
    """Each table the run wrote, with its row count, as the run recorded them (any warehouse)."""
    written = {}
    for event in result.get_asset_materialization_events():
        meta = event.materialization.metadata
        if "dagster/table_name" in meta:
            written[meta["dagster/table_name"].value] = meta["dagster/row_count"].value
    print(f"{len(written)} tables written:")
    for table, rows in sorted(written.items()):
        print(f"  {table:<60} {rows:>10,} rows")
