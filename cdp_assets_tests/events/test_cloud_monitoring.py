"""The backlog sensor's production path: Cloud Monitoring's Pub/Sub backlog metrics.

There is no Monitoring emulator, so a recording client stands in for ``MetricServiceClient``: the requests are
built and the answers parsed with ``google-cloud-monitoring``'s own types, which checks what we send and how we
read it; what the service would answer is taken from its documentation.
"""

from __future__ import annotations

import time

from google.cloud import monitoring_v3

from cdp_assets.events.sensors import probe_cloud_monitoring


class RecordingMetricClient:
    """Answers ``list_time_series`` with real TimeSeries protos, newest point first, as the service does."""

    def __init__(self, latest: dict[str, int]):
        self.latest = latest
        self.requests: list[dict] = []

    def list_time_series(self, request: dict):
        self.requests.append(request)
        metric = request["filter"].split('"')[1].rsplit("/", 1)[-1]
        if metric not in self.latest:
            return []
        now = int(time.time())
        points = [monitoring_v3.Point(interval={"end_time": {"seconds": now - age}},
                                      value={"int64_value": value})
                  for age, value in ((0, self.latest[metric]), (60, 1))]  # an older point that must be ignored
        return [monitoring_v3.TimeSeries(points=points)]


def test_reads_the_latest_backlog_points_of_the_subscription():
    client = RecordingMetricClient({"num_undelivered_messages": 12_345, "oldest_unacked_message_age": 420})
    backlog = probe_cloud_monitoring("acme-prod", "segment-events-cdp", client=client)
    assert (backlog.messages, backlog.oldest_age_seconds, backlog.capped, backlog.source) == (
        12_345, 420.0, False, "cloud-monitoring")
    assert [r["filter"] for r in client.requests] == [
        'metric.type = "pubsub.googleapis.com/subscription/num_undelivered_messages" AND '
        'resource.labels.subscription_id = "segment-events-cdp"',
        'metric.type = "pubsub.googleapis.com/subscription/oldest_unacked_message_age" AND '
        'resource.labels.subscription_id = "segment-events-cdp"',
    ]
    for request in client.requests:
        assert request["name"] == "projects/acme-prod"
        parsed = monitoring_v3.ListTimeSeriesRequest(request)  # the library accepts the request as built
        window = parsed.interval.end_time.timestamp() - parsed.interval.start_time.timestamp()
        assert window == 300 and parsed.view == monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL


def test_no_data_points_means_an_empty_backlog():
    backlog = probe_cloud_monitoring("acme-prod", "segment-events-cdp", client=RecordingMetricClient({}))
    assert (backlog.messages, backlog.oldest_age_seconds) == (0, None)
