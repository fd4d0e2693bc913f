"""Backlog sensor: start a load when the subscription has enough waiting, or has waited too long.

How the backlog is read:

* **Google Cloud** (``simulated=False``): Cloud Monitoring's ``pubsub.googleapis.com/subscription/
  num_undelivered_messages`` and ``.../oldest_unacked_message_age`` (latest point of the last 5 minutes). The
  ``google-cloud-monitoring`` client is imported only here and only then. There is no Monitoring emulator: the
  tests drive this path with the library's real request and response types through a recording client
  (``test_sensor.py``), so the request and the parsing are checked, not the service's answers.
* **Emulator** (no Monitoring): a probe pulls up to ``probe_limit`` messages without acking and immediately
  gives them back with ``modify_ack_deadline(0)``. Measured on the emulator: the messages are redelivered at
  once and in their original order, and ``delivery_attempt`` stays 0 (it is only counted when a dead-letter
  policy exists). Snapshots + ``seek`` would avoid even the lease, but the emulator's seek does not restore
  messages (a seeked subscription received 0 of 250), so that trick does not work here. The probe is skipped
  while a load is in flight, so it never competes with the loader for messages. The count is a lower bound
  capped at ``probe_limit`` (that is all the decision needs); the oldest age is that of the oldest message seen.

Runs never stack: while any run of the load job is queued or in progress the sensor skips (and does not
probe). Every evaluation records what it saw in the cursor; run keys are unique per request.
"""


import datetime as dt
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from dagster import (
    ConfigurableResource,
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES
from pydantic import Field

from .loader import ACK_CHUNK, MAX_PULL, pull_raw
from .resources import PubSubResource

SENSOR_NAME = "segment_events_backlog_sensor"


class BacklogPolicy(ConfigurableResource):
    """Thresholds of the backlog sensor (configuration, not code)."""

    min_messages: int = Field(default=1_000, description="Request a run when at least this many are waiting.")
    max_lag_seconds: float = Field(default=300.0, description="... or when the oldest waiting message is older.")
    probe_limit: int = Field(default=1_000, description="Emulator probe: most messages it looks at.")


@dataclass(frozen=True)
class Backlog:
    messages: int  # waiting messages (a lower bound when ``capped``)
    oldest_age_seconds: float | None  # None when nothing is waiting
    capped: bool
    source: str  # "emulator-probe" | "cloud-monitoring"


def probe_emulator(subscriber: Any, subscription: str, limit: int) -> Backlog:
    """Count up to ``limit`` waiting messages without consuming them (pull, then nack at once)."""
    ack_ids: list[str] = []
    oldest_ns: int | None = None
    try:
        while len(ack_ids) < limit:
            msgs, ids = pull_raw(subscriber, subscription, return_immediately=True, timeout=10.0)
            if not msgs:
                break
            ack_ids.extend(ids)
            first = min(m.publish_time_ns for m in msgs)
            oldest_ns = first if oldest_ns is None else min(oldest_ns, first)
    finally:
        for i in range(0, len(ack_ids), ACK_CHUNK):  # give everything back immediately
            subscriber.modify_ack_deadline(request={"subscription": subscription, "ack_ids": ack_ids[i:i + ACK_CHUNK],
                                                    "ack_deadline_seconds": 0})
    age = None if oldest_ns is None else max(0.0, time.time() - oldest_ns / 1e9)
    return Backlog(len(ack_ids), age, capped=len(ack_ids) >= limit, source="emulator-probe")


def probe_cloud_monitoring(project: str, subscription_id: str, client: Any = None) -> Backlog:
    """Latest backlog metrics from Cloud Monitoring (they lag by about a minute)."""
    from google.cloud import monitoring_v3  # lazy: only the production path needs it

    client = client or monitoring_v3.MetricServiceClient()
    now = time.time()
    interval = monitoring_v3.TimeInterval(end_time={"seconds": int(now)}, start_time={"seconds": int(now - 300)})

    def latest(metric: str) -> float | None:
        series = client.list_time_series(request={
            "name": f"projects/{project}",
            "filter": (f'metric.type = "pubsub.googleapis.com/subscription/{metric}" AND '
                       f'resource.labels.subscription_id = "{subscription_id}"'),
            "interval": interval,
            "view": monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
        })
        for ts in series:
            for point in ts.points:  # newest first
                return float(point.value.int64_value or point.value.double_value)
        return None

    count = latest("num_undelivered_messages")
    age = latest("oldest_unacked_message_age")
    return Backlog(int(count or 0), age if count else None, capped=False, source="cloud-monitoring")


def read_backlog(pubsub: PubSubResource, policy: BacklogPolicy) -> Backlog:
    if not pubsub.simulated:
        return probe_cloud_monitoring(pubsub.project, pubsub.subscription)
    _, subscription = pubsub.ensure_exists()
    subscriber = pubsub.subscriber()
    try:
        return probe_emulator(subscriber, subscription, max(policy.probe_limit, policy.min_messages, MAX_PULL))
    finally:
        subscriber.close()


def build_backlog_sensor(job: JobDefinition | UnresolvedAssetJobDefinition,
                         minimum_interval_seconds: int = 60) -> SensorDefinition:
    @sensor(name=SENSOR_NAME, job=job, minimum_interval_seconds=minimum_interval_seconds,
            default_status=DefaultSensorStatus.RUNNING,
            description="Starts the Segment events load when the Pub/Sub backlog or its age passes a threshold.")
    def segment_events_backlog_sensor(context: SensorEvaluationContext, pubsub: PubSubResource,
                                      events_backlog: BacklogPolicy):
        cursor = json.loads(context.cursor) if context.cursor else {}
        now = dt.datetime.now(dt.timezone.utc)
        in_flight = context.instance.get_runs(
            filters=RunsFilter(job_name=job.name, statuses=NOT_FINISHED_STATUSES), limit=1)
        if in_flight:
            run = in_flight[0]
            context.update_cursor(json.dumps({**cursor, "checked_at": now.isoformat(), "in_flight": run.run_id}))
            return SkipReason(f"run {run.run_id} of {job.name} is {run.status.value}; not stacking another "
                              "(the backlog is probed again once it finishes)")
        backlog = read_backlog(pubsub, events_backlog)
        seen = asdict(backlog) | {"checked_at": now.isoformat(), "in_flight": None}
        count = f"{backlog.messages}{'+' if backlog.capped else ''}"
        age = backlog.oldest_age_seconds
        due_count = backlog.messages >= events_backlog.min_messages
        due_age = age is not None and age >= events_backlog.max_lag_seconds
        if not (due_count or due_age):
            context.update_cursor(json.dumps({**cursor, **seen}))
            if backlog.messages == 0:
                return SkipReason(f"subscription {pubsub.subscription} is empty ({backlog.source})")
            return SkipReason(f"{count} message(s) waiting < {events_backlog.min_messages}, oldest {age:.0f}s < "
                              f"{events_backlog.max_lag_seconds:.0f}s ({backlog.source}); waiting for more")
        requests = int(cursor.get("requests", 0)) + 1
        context.update_cursor(json.dumps({**cursor, **seen, "requests": requests, "requested_at": now.isoformat()}))
        why = (f"backlog {count} >= {events_backlog.min_messages}" if due_count
               else f"oldest message {age:.0f}s >= {events_backlog.max_lag_seconds:.0f}s")
        return RunRequest(run_key=f"backlog-{now:%Y%m%dT%H%M%S%f}-{requests}",
                          tags={"cdp/trigger": SENSOR_NAME, "cdp/backlog": count, "cdp/reason": why})

    return segment_events_backlog_sensor
