"""Schedule evaluation: which job, which partition, when (issue 8)."""

from __future__ import annotations

import datetime as dt

import pytest
from dagster import AssetKey, Definitions, build_schedule_context

from cdp_assets.segment import catalog, schedules
from cdp_assets.segment.defs import build_defs
from cdp_assets.shared.resources import shared_resources

UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def defs():
    # the code location adds the warehouse resources at the root; do the same here
    return Definitions.merge(build_defs("2025-01-01"), Definitions(resources=shared_resources()))


def _request(defs, schedule, when: dt.datetime):
    context = build_schedule_context(scheduled_execution_time=when, repository_def=defs.get_repository_def())
    result = defs.get_schedule_def(schedule.name).evaluate_tick(context)
    assert result.run_requests and len(result.run_requests) == 1
    return result.run_requests[0]


def test_usage_current_month_is_repulled_daily(defs):
    for when, key in [(dt.datetime(2026, 3, 1, 3, 30, tzinfo=UTC), "2026-03-01"),
                      (dt.datetime(2026, 3, 31, 3, 30, tzinfo=UTC), "2026-03-01"),
                      (dt.datetime(2026, 12, 15, 3, 30, tzinfo=UTC), "2026-12-01")]:
        assert _request(defs, schedules.segment_usage_current_month_daily, when).partition_key == key


def test_previous_month_is_finalized_on_day_two(defs):
    assert schedules.segment_usage_previous_month_final.cron_schedule == "45 3 2 * *"
    when = dt.datetime(2026, 1, 2, 3, 45, tzinfo=UTC)
    request = _request(defs, schedules.segment_usage_previous_month_final, when)
    assert request.partition_key == "2025-12-01" and request.run_key == "usage-final-2025-12-01"


def test_daily_and_hourly_schedules_target_their_jobs(defs):
    when = dt.datetime(2026, 5, 4, 2, 15, tzinfo=UTC)
    assert _request(defs, schedules.segment_workspace_daily, when).partition_key is None
    assert schedules.segment_workspace_daily.job_name == "segment_workspace_job"
    assert schedules.segment_audit_hourly.job_name == "segment_audit_job"


def test_jobs_cover_every_object_once_at_the_right_cadence(defs):
    jobs = {name: defs.resolve_job_def(name) for name in ("segment_workspace_job", "segment_audit_job", "segment_usage_job")}
    selected = {n: {k.path[-1] for k in j.asset_layer.selected_asset_keys} for n, j in jobs.items()}
    assert selected["segment_audit_job"] == {"audit_events"}
    assert selected["segment_usage_job"] == {o.name for o in catalog.CATALOG if o.kind is catalog.Kind.USAGE}
    assert len(selected["segment_workspace_job"]) == 13
    assert set().union(*selected.values()) == {o.name for o in catalog.CATALOG}
    crons = {s.name: s.cron_schedule for s in defs.schedules}
    assert crons["segment_workspace_daily"] == "15 2 * * *" and crons["segment_audit_hourly"] == "5 * * * *"


def test_usage_partitions_include_the_current_month_and_ignore_the_start_day(defs):
    usage = defs.resolve_assets_def(AssetKey(["segment", "usage_mtu_workspace_daily"]))
    keys = usage.partitions_def.get_partition_keys(current_time=dt.datetime(2026, 3, 10, tzinfo=UTC))
    assert keys[0] == "2025-01-01" and keys[-1] == "2026-03-01"
    other = Definitions.merge(build_defs("2025-04-17"), Definitions(resources=shared_resources())).resolve_assets_def(
        usage.key).partitions_def
    assert other.get_partition_keys(current_time=dt.datetime(2025, 6, 1, tzinfo=UTC)) == ["2025-04-01", "2025-05-01", "2025-06-01"]
