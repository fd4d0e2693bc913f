"""Backlog sensor against the emulator: skip when empty, request when due, never stack, never consume."""

from __future__ import annotations

import json

import pytest
from dagster import DagsterRunStatus, RunRequest, SkipReason, build_sensor_context, instance_for_test
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.utils import make_new_run_id

from cdp_assets.events.defs import LOAD_JOB_NAME, load_job
from cdp_assets.events.loader import DrainSettings, drain
from cdp_assets.events.sensors import BacklogPolicy, build_backlog_sensor, probe_emulator
from cdp_assets.events.simulator import SegmentEventFactory, publish

pytestmark = pytest.mark.emulator

sensor = build_backlog_sensor(load_job)


@pytest.fixture
def instance():
    with instance_for_test() as inst:
        yield inst


def evaluate(instance, channel, policy: BacklogPolicy, cursor: str | None = None):
    ctx = build_sensor_context(instance=instance, cursor=cursor,
                               resources={"pubsub": channel.pubsub, "events_backlog": policy})
    return sensor(ctx), ctx.cursor


def test_empty_subscription_skips_with_a_reason(instance, channel):
    result, cursor = evaluate(instance, channel, BacklogPolicy(min_messages=10))
    assert isinstance(result, SkipReason)
    assert "is empty" in result.skip_message
    assert json.loads(cursor)["messages"] == 0


def test_backlog_over_threshold_requests_a_run_without_consuming_messages(instance, channel, warehouse):
    publish(channel.publisher, channel.topic_path, SegmentEventFactory(seed=51).payloads(250))
    result, cursor = evaluate(instance, channel, BacklogPolicy(min_messages=200, max_lag_seconds=3600))
    assert isinstance(result, RunRequest)
    assert result.tags["cdp/trigger"] == "segment_events_backlog_sensor"
    assert result.run_key and "backlog 2" in result.tags["cdp/reason"]
    state = json.loads(cursor)
    assert state["messages"] >= 200 and state["requests"] == 1
    # the probe gave every message back: a drain still finds all 250
    assert drain(channel.subscriber, channel.subscription_path, warehouse, DrainSettings()).acked == 250


def test_small_but_old_backlog_requests_a_run_and_small_fresh_one_waits(instance, channel):
    publish(channel.publisher, channel.topic_path, SegmentEventFactory(seed=52).payloads(5))
    fresh, cursor = evaluate(instance, channel, BacklogPolicy(min_messages=100, max_lag_seconds=3600))
    assert isinstance(fresh, SkipReason) and "5 message(s) waiting < 100" in fresh.skip_message
    old, _ = evaluate(instance, channel, BacklogPolicy(min_messages=100, max_lag_seconds=0), cursor)
    assert isinstance(old, RunRequest) and "oldest message" in old.tags["cdp/reason"]


def test_run_in_flight_is_not_stacked_and_the_backlog_is_not_probed(instance, channel):
    publish(channel.publisher, channel.topic_path, SegmentEventFactory(seed=53).payloads(300))
    run = DagsterRun(job_name=LOAD_JOB_NAME, run_id=make_new_run_id(), status=DagsterRunStatus.STARTED)
    instance.add_run(run)
    result, cursor = evaluate(instance, channel, BacklogPolicy(min_messages=10))
    assert isinstance(result, SkipReason)
    assert run.run_id in result.skip_message and "not stacking" in result.skip_message
    assert json.loads(cursor)["in_flight"] == run.run_id
    instance.add_run(DagsterRun(job_name="some_other_job", run_id=make_new_run_id(),
                                status=DagsterRunStatus.STARTED))
    instance.report_run_failed(run)
    result, _ = evaluate(instance, channel, BacklogPolicy(min_messages=10))
    assert isinstance(result, RunRequest)  # once the load finished (another job's run does not block)


def test_probe_counts_at_most_its_limit_and_reports_the_oldest_age(channel):
    publish(channel.publisher, channel.topic_path, SegmentEventFactory(seed=54).payloads(350))
    first = probe_emulator(channel.subscriber, channel.subscription_path, limit=200)
    assert first.capped and 200 <= first.messages < 350 and first.oldest_age_seconds is not None
    again = probe_emulator(channel.subscriber, channel.subscription_path, limit=1_000)
    assert (again.messages, again.capped) == (350, False)  # nothing was consumed by the first probe
