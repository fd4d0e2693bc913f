"""The event tables as one multi-asset, downstream of Segment's stream and the Pub/Sub topic (external assets).

Lineage in the UI: ``segment/event_stream`` -> ``pubsub/segment_events_topic`` -> ``segment_events/{tracks,
identifies, pages, screens, groups, aliases, rejected}``. One step drains the subscription and writes all seven
tables, because a message may only be acked once every table its batch touches is committed.
"""


from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Backoff,
    Config,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    multi_asset,
)
from pydantic import Field

from ..shared.conventions import OWNER, asset_kinds
from ..shared.warehouse import WarehouseResource, table_metadata, write_metadata
from .loader import SCHEMA, DrainReport, drain, final_results
from .parse import EVENT_TABLES, PRIMARY_KEYS, REJECTED_TABLE, table_columns
from .resources import PubSubResource

GROUP = "events"
SEGMENT_EVENT_STREAM = AssetKey(["segment", "event_stream"])
PUBSUB_TOPIC = AssetKey(["pubsub", "segment_events_topic"])

external_specs = [
    AssetSpec(SEGMENT_EVENT_STREAM, group_name=GROUP, owners=[OWNER], kinds={"segment"},
              description="Segment's raw event stream (track, identify, page, screen, group, alias calls)."),
    AssetSpec(PUBSUB_TOPIC, deps=[SEGMENT_EVENT_STREAM], group_name=GROUP, owners=[OWNER], kinds={"pubsub"},
              description="Google Pub/Sub topic Segment's destination publishes every raw event to."),
]

_DESCRIPTIONS = {t.table: t.description for t in EVENT_TABLES} | {
    REJECTED_TABLE: "Pub/Sub messages that could not be loaded: raw payload, reason, Pub/Sub message id.",
}


def table_key(table: str) -> AssetKey:
    return AssetKey([SCHEMA, table])


table_specs = [
    AssetSpec(table_key(table), deps=[PUBSUB_TOPIC], group_name=GROUP, owners=[OWNER],
              kinds=asset_kinds("segment", "pubsub"), description=description,
              metadata=table_metadata("merge", PRIMARY_KEYS[table], columns=table_columns(table)))
    for table, description in _DESCRIPTIONS.items()
]


class EventsLoadConfig(Config):
    """Bounds of one run (the sensor starts another while a backlog remains)."""

    max_messages: int = Field(default=100_000, description="Stop pulling after this many messages.")
    max_seconds: float = Field(default=120.0, description="Stop pulling after this many seconds.")
    batch_messages: int = Field(default=10_000, description="Messages per warehouse write and per ack.")
    lease_seconds: int = Field(default=60, description="Ack deadline held on messages in flight.")


@multi_asset(
    specs=table_specs,
    name="segment_events_load",
    description="Drain the Segment events subscription into the event tables; ack only after commit.",
    retry_policy=RetryPolicy(max_retries=3, delay=10, backoff=Backoff.EXPONENTIAL),
    pool="pubsub_segment_events",
)
def segment_events_load(context: AssetExecutionContext, config: EventsLoadConfig, pubsub: PubSubResource,
                        warehouse: WarehouseResource):
    _, subscription = pubsub.ensure_exists()
    settings = pubsub.drain_settings(max_messages=config.max_messages, max_seconds=config.max_seconds,
                                     batch_messages=config.batch_messages, lease_seconds=config.lease_seconds)
    subscriber = pubsub.subscriber()
    try:
        report = drain(subscriber, subscription, warehouse, settings)
    finally:
        subscriber.close()
    for table, result in final_results(warehouse, report).items():
        pk = PRIMARY_KEYS[table]
        if result is None:
            meta = {"dagster/row_count": MetadataValue.int(0),
                    "cdp/skipped": MetadataValue.text("no messages of this kind yet; the first one creates the table")}
        else:
            meta = write_metadata(result, pk)
        yield MaterializeResult(asset_key=table_key(table), metadata={**meta, **run_metadata(report)})


def run_metadata(report: DrainReport) -> dict:
    return {
        "cdp/pulled": MetadataValue.int(report.pulled),
        "cdp/acked": MetadataValue.int(report.acked),
        "cdp/rejected": MetadataValue.int(report.rejected),
        "cdp/batches": MetadataValue.int(report.batches),
        "cdp/events_per_second": MetadataValue.float(round(report.events_per_second, 1)),
        "cdp/stopped_because": MetadataValue.text(report.stopped_because or "-"),
    }
