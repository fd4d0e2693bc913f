"""When the Segment assets refresh (issue 8).

* workspace objects (configuration, catalogs, fan-outs, delivery metrics): daily;
* audit events: hourly (incremental, cheap: only what happened since the last run, plus an overlap);
* usage: the **current** month re-pulled daily (its latest day keeps changing), and the **previous** month
  finalized once early in the next month (day 2, after Segment has closed the period), so late corrections
  of the month's last days land too.
"""

from __future__ import annotations

import datetime as dt

from dagster import (
    AssetKey,
    AssetSelection,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    define_asset_job,
    schedule,
)

from .catalog import CATALOG, Kind

TIMEZONE = "UTC"
WORKSPACE_CRON = "15 2 * * *"
AUDIT_CRON = "5 * * * *"
USAGE_CURRENT_CRON = "30 3 * * *"
USAGE_FINAL_CRON = "45 3 2 * *"


def _keys(*kinds: Kind, exclude: bool = False) -> list[AssetKey]:
    return [AssetKey(o.asset_path) for o in CATALOG if (o.kind in kinds) != exclude]


def month_key(day: dt.date | dt.datetime) -> str:
    """Partition key of the month containing ``day`` (MonthlyPartitionsDefinition's default format)."""
    return day.strftime("%Y-%m-01")


def previous_month_key(day: dt.date | dt.datetime) -> str:
    first = (day.date() if isinstance(day, dt.datetime) else day).replace(day=1)
    return month_key(first - dt.timedelta(days=1))


workspace_job = define_asset_job(
    "segment_workspace_job", AssetSelection.assets(*_keys(Kind.USAGE, Kind.AUDIT, exclude=True)),
    description="Segment workspace objects, catalogs, fan-outs and delivery metrics (full refresh).",
)
audit_job = define_asset_job("segment_audit_job", AssetSelection.assets(*_keys(Kind.AUDIT)),
                             description="Segment audit events since the last load.")
usage_job = define_asset_job("segment_usage_job", AssetSelection.assets(*_keys(Kind.USAGE)),
                             description="Segment usage metrics for one month (or a range, in one run).")

segment_workspace_daily = ScheduleDefinition(
    name="segment_workspace_daily", job=workspace_job, cron_schedule=WORKSPACE_CRON, execution_timezone=TIMEZONE,
)
segment_audit_hourly = ScheduleDefinition(
    name="segment_audit_hourly", job=audit_job, cron_schedule=AUDIT_CRON, execution_timezone=TIMEZONE,
)


@schedule(name="segment_usage_current_month_daily", job=usage_job, cron_schedule=USAGE_CURRENT_CRON,
          execution_timezone=TIMEZONE)
def segment_usage_current_month_daily(context: ScheduleEvaluationContext) -> RunRequest:
    key = month_key(context.scheduled_execution_time)
    return RunRequest(run_key=f"usage-current-{context.scheduled_execution_time:%Y-%m-%d}", partition_key=key)


@schedule(name="segment_usage_previous_month_final", job=usage_job, cron_schedule=USAGE_FINAL_CRON,
          execution_timezone=TIMEZONE)
def segment_usage_previous_month_final(context: ScheduleEvaluationContext) -> RunRequest:
    key = previous_month_key(context.scheduled_execution_time)
    return RunRequest(run_key=f"usage-final-{key}", partition_key=key)


JOBS = (workspace_job, audit_job, usage_job)
SCHEDULES = (segment_workspace_daily, segment_audit_hourly, segment_usage_current_month_daily,
             segment_usage_previous_month_final)
