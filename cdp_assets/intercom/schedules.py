"""When Intercom runs: the incremental collections hourly, the full refreshes and the reconciliation daily.

* ``intercom_hourly``: contacts and conversations (+ parts) from their cursors (issue 8).
* ``intercom_daily_reconciliation``: the same assets with ``reconcile: true`` (full id sets compared with the
  tables; vanished records marked deleted), plus the full-refresh collections (companies, tags, segments,
  admins, teams), at a quiet hour.
"""


from dagster import AssetSelection, RunConfig, RunRequest, ScheduleEvaluationContext, define_asset_job, schedule

from .assets import INCREMENTAL_ASSETS, SNAPSHOT_ASSETS, ConversationsConfig, IncrementalConfig, contacts, conversations

HOURLY_CRON = "17 * * * *"  # off the hour, away from everyone else's top-of-hour jobs
DAILY_CRON = "40 3 * * *"

incremental_job = define_asset_job(
    "intercom_incremental_job",
    selection=AssetSelection.assets(*INCREMENTAL_ASSETS),
    description="Intercom contacts, conversations and conversation parts from their stored cursors.",
    tags={"cdp/job": "intercom_incremental"},
)

reconciliation_job = define_asset_job(
    "intercom_reconciliation_job",
    selection=AssetSelection.assets(*INCREMENTAL_ASSETS, *SNAPSHOT_ASSETS),
    description="Intercom full-refresh collections plus an id reconciliation of contacts and conversations.",
    tags={"cdp/job": "intercom_reconciliation"},
)


def reconcile_config() -> RunConfig:
    return RunConfig(ops={
        contacts.op.name: IncrementalConfig(reconcile=True),
        conversations.op.name: ConversationsConfig(reconcile=True),
    })


@schedule(job=incremental_job, cron_schedule=HOURLY_CRON, execution_timezone="UTC",
          description="Hourly incremental load of Intercom contacts and conversations.")
def intercom_hourly(context: ScheduleEvaluationContext) -> RunRequest:
    tick = context.scheduled_execution_time
    return RunRequest(run_key=f"intercom_hourly:{tick.isoformat()}", tags={"cdp/trigger": "schedule"})


@schedule(job=reconciliation_job, cron_schedule=DAILY_CRON, execution_timezone="UTC",
          description="Daily Intercom full refreshes and deletion reconciliation.")
def intercom_daily_reconciliation(context: ScheduleEvaluationContext) -> RunRequest:
    tick = context.scheduled_execution_time
    return RunRequest(run_key=f"intercom_reconcile:{tick.date().isoformat()}", run_config=reconcile_config(),
                      tags={"cdp/trigger": "schedule"})


SCHEDULES = [intercom_hourly, intercom_daily_reconciliation]
JOBS = [incremental_job, reconciliation_job]
